//! Every flag of kaniko's executor (upstream and the maintained fork) fed to
//! `kiln build`: each is supported with kaniko's meaning, accepted with a note
//! that says why it changes nothing, or refused with the kiln way.

mod support;

use std::process::Command;
use support::*;

enum Want {
    /// Builds; the note (if any) is in the log.
    Ok(Option<&'static str>),
    /// Refused; the message names the kiln way.
    Refused(&'static str),
}
use Want::*;

#[test]
fn every_kaniko_executor_flag_has_an_outcome() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch AS app\nCOPY f /f\n"),
        ("f", "x"),
        (".dockerignore", "nothing\n"),
        ("sub/Dockerfile", "FROM scratch\nCOPY g /g\n"),
        ("sub/g", "y"),
    ]);
    let p = ctx.path().to_path_buf();
    let cache = p.join("cache-dir");
    // A CA and a client certificate and key, as files kaniko's flags name.
    let (ca, cert, key) = (p.join("ca.pem"), p.join("client.pem"), p.join("client.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kiln-test-client",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .status()
        .expect("openssl");
    assert!(ok.success());
    std::fs::copy(&cert, &ca).unwrap();
    let cases: Vec<(Vec<String>, Want)> = vec![
        // Same name and meaning.
        (vec!["--build-arg=A=1".into()], Ok(None)),
        (vec!["--cache=false".into()], Ok(None)),
        (vec![format!("--cache-dir={}", cache.display())], Ok(None)),
        (vec!["--cache-ttl=24h".into()], Ok(None)),
        (vec!["--cache-repo=registry.invalid/cache".into()], Ok(None)),
        (
            vec!["--cache-copy-layers".into()],
            Ok(Some("--cache-copy-layers is not needed")),
        ),
        (vec!["--compression=zstd".into()], Ok(None)),
        (vec!["--compression-level=5".into()], Ok(None)),
        (vec!["--custom-platform=linux/amd64".into()], Ok(None)),
        (
            vec!["--destination=registry.invalid/app:1".into()],
            Ok(None),
        ),
        (
            vec![format!("--digest-file={}", p.join("digest").display())],
            Ok(None),
        ),
        (vec!["--dockerfile=Dockerfile".into()], Ok(None)),
        (vec!["--image-download-retry=3".into()], Ok(None)),
        (
            vec![format!(
                "--image-name-with-digest-file={}",
                p.join("nd").display()
            )],
            Ok(None),
        ),
        (
            vec![format!(
                "--image-name-tag-with-digest-file={}",
                p.join("ntd").display()
            )],
            Ok(None),
        ),
        (
            vec!["--insecure-registry=registry.invalid".into()],
            Ok(None),
        ),
        (vec!["--label=a=b".into()], Ok(None)),
        (vec!["--push-retry=2".into()], Ok(None)),
        (vec!["--registry-mirror=mirror.invalid".into()], Ok(None)),
        (
            vec!["--registry-map=docker.io=mirror.invalid".into()],
            Ok(None),
        ),
        (vec!["--skip-default-registry-fallback".into()], Ok(None)),
        (vec!["--skip-push-permission-check".into()], Ok(None)),
        (
            vec!["--skip-tls-verify-registry=registry.invalid".into()],
            Ok(None),
        ),
        (
            vec![format!("--tar-path={}", p.join("img.tar").display())],
            Ok(None),
        ),
        (vec!["--target=app".into()], Ok(None)),
        (vec!["--reproducible".into()], Ok(None)),
        (vec!["--verbosity=debug".into()], Ok(Some("DEBUG"))),
        (vec!["--log-format=text".into()], Ok(None)),
        (vec!["--insecure".into()], Ok(None)),
        (vec!["--skip-tls-verify".into()], Ok(None)),
        (vec!["--no-push-cache".into()], Ok(None)),
        (vec!["--context-sub-path=sub".into()], Ok(None)),
        (vec!["--annotation=org.example.k=v".into()], Ok(None)),
        // Accepted, changing nothing in kiln.
        (
            vec!["--cleanup".into()],
            Ok(Some("--cleanup changes nothing in kiln")),
        ),
        (vec!["--force".into()], Ok(Some("--force changes nothing"))),
        (
            vec!["--snapshot-mode=redo".into()],
            Ok(Some("--snapshot-mode changes nothing")),
        ),
        (
            vec!["--use-new-run".into()],
            Ok(Some("--use-new-run changes nothing")),
        ),
        (
            vec!["--cache-run-layers".into()],
            Ok(Some("--cache-run-layers changes nothing")),
        ),
        (
            vec!["--compressed-caching=false".into()],
            Ok(Some("--compressed-caching changes nothing")),
        ),
        (
            vec!["--kaniko-dir=/kaniko".into()],
            Ok(Some("--kaniko-dir changes nothing")),
        ),
        (
            vec!["--ignore-var-run=false".into()],
            Ok(Some("--ignore-var-run changes nothing")),
        ),
        (
            vec!["--skip-unused-stages".into()],
            Ok(Some("--skip-unused-stages changes nothing")),
        ),
        (
            vec!["--image-fs-extract-retry=2".into()],
            Ok(Some("--image-fs-extract-retry changes nothing")),
        ),
        (
            vec!["--preserve-context".into()],
            Ok(Some("--preserve-context changes nothing")),
        ),
        (
            vec!["--materialize".into()],
            Ok(Some("--materialize changes nothing")),
        ),
        (
            vec!["--log-timestamp".into()],
            Ok(Some("--log-timestamp changes nothing")),
        ),
        (
            vec!["--ignore-path=/var/mail".into()],
            Ok(Some("--ignore-path changes nothing")),
        ),
        (
            vec!["--push-ignore-immutable-tag-errors".into()],
            Ok(Some("--push-ignore-immutable-tag-errors changes nothing")),
        ),
        (
            vec!["--single-snapshot".into()],
            Ok(Some("--single-snapshot")),
        ),
        // Refused, with the kiln way.
        (
            vec!["--insecure-pull".into()],
            Refused("--insecure-registry HOST"),
        ),
        (
            vec!["--skip-tls-verify-pull".into()],
            Refused("--skip-tls-verify-registry HOST"),
        ),
        (
            vec!["--git=branch=main".into()],
            Refused("ADD it in the Dockerfile"),
        ),
        (
            vec!["--log-format=json".into()],
            Ok(Some("\"event\":\"built\"")),
        ),
        // pflag's spellings: an on/off flag takes =true/=false (and Go's other
        // ParseBool spellings), and -v takes a log level.
        (vec!["--no-push=true".into()], Ok(None)),
        (vec!["--reproducible=true".into()], Ok(None)),
        (vec!["--reproducible=false".into()], Ok(None)),
        (vec!["--insecure=false".into()], Ok(None)),
        (vec!["--skip-tls-verify=True".into()], Ok(None)),
        (vec!["--no-push-cache=1".into()], Ok(None)),
        (vec!["--skip-push-permission-check=t".into()], Ok(None)),
        (
            vec!["--force=true".into()],
            Ok(Some("--force changes nothing")),
        ),
        (vec!["--cleanup=false".into()], Ok(None)),
        (
            vec!["--log-timestamp=true".into()],
            Ok(Some("--log-timestamp changes nothing")),
        ),
        (
            vec!["--cache-copy-layers=TRUE".into()],
            Ok(Some("--cache-copy-layers is not needed")),
        ),
        (vec!["--single-snapshot=false".into()], Ok(None)),
        (
            vec!["--single-snapshot=true".into()],
            Ok(Some("--single-snapshot: 1 step layer(s) in one")),
        ),
        (vec!["-v".into(), "debug".into()], Ok(Some("DEBUG"))),
        (vec!["-v".into(), "info".into()], Ok(None)),
        (vec!["-v=trace".into()], Ok(Some("DEBUG"))),
        (vec!["-vdebug".into()], Ok(Some("DEBUG"))),
        (vec!["--no-push=perhaps".into()], Refused("--no-push")),
        // Flags of kaniko v1.24 and the fork v1.28 that kiln did not know.
        (vec!["--image-format=oci".into()], Ok(None)),
        (
            vec!["--image-format=docker".into()],
            Refused("drop --oci-layout-path"),
        ),
        (
            vec!["--image-format=docker".into(), "--compression=zstd".into()],
            Refused("--compression gzip"),
        ),
        (
            vec!["--credential-helpers=ecr".into()],
            Ok(Some("--credential-helpers changes nothing")),
        ),
        (
            vec!["--credential-helpers=".into()],
            Ok(Some("--credential-helpers changes nothing")),
        ),
        (
            vec!["--pre-cleanup".into()],
            Ok(Some("--pre-cleanup changes nothing")),
        ),
        (
            vec!["--force-build-metadata".into()],
            Ok(Some("--force-build-metadata changes nothing")),
        ),
        (
            vec!["--dryrun".into()],
            Ok(Some("dry run: nothing was pulled")),
        ),
        (vec!["--customPlatform=linux/amd64".into()], Ok(None)),
        (
            vec![format!("--tarPath={}", p.join("img2.tar").display())],
            Ok(None),
        ),
        (
            vec!["--snapshotMode=full".into()],
            Ok(Some("--snapshot-mode changes nothing")),
        ),
        (
            vec!["--whitelist-var-run=false".into()],
            Ok(Some("--ignore-var-run changes nothing")),
        ),
        (
            vec!["--bucket=my-bucket".into()],
            Refused("--context tar://FILE"),
        ),
        (
            vec!["-b".into(), "my-bucket".into()],
            Refused("--context tar://FILE"),
        ),
        // kaniko's other short flags.
        (
            vec![
                "-f".into(),
                "sub/Dockerfile".into(),
                "-c".into(),
                p.join("sub").display().to_string(),
            ],
            Ok(None),
        ),
        (vec!["-d".into(), "registry.invalid/app:2".into()], Ok(None)),
        // TLS per registry, as kaniko takes it.
        (
            vec![format!(
                "--registry-certificate=registry.invalid={}",
                ca.display()
            )],
            Ok(None),
        ),
        (
            vec![format!(
                "--registry-client-cert=registry.invalid={},{}",
                cert.display(),
                key.display()
            )],
            Ok(None),
        ),
        (
            vec!["--registry-client-cert=registry.invalid=only-one-file".into()],
            Refused("HOST=CERT,KEY"),
        ),
        // Hidden in both kaniko binaries (a vendored Azure library's).
        (
            vec!["--azure-container-registry-config=/etc/kubernetes/azure.json".into()],
            Ok(Some("--azure-container-registry-config changes nothing")),
        ),
    ];
    let mut bad = Vec::new();
    for (args, want) in &cases {
        let mut cmd = kiln();
        // In the context, so that a relative --dockerfile means its Dockerfile.
        cmd.current_dir(&p)
            .args(["build", "--no-push", "--context"])
            .arg(&p)
            .arg("--oci-layout-path")
            .arg(p.join("oci"))
            .args(args)
            .env_remove("CI")
            .env_remove("GITLAB_CI");
        let out = run(&mut cmd);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        match want {
            Ok(note) => {
                if !out.status.success() || note.is_some_and(|n| !log.contains(n)) {
                    bad.push(format!("{args:?}: want success{note:?}:\n{log}"));
                }
            }
            Refused(why) => {
                if out.status.success() || !log.contains(why) {
                    bad.push(format!("{args:?}: want refused with {why:?}:\n{log}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
    // Object-store contexts are refused with the kiln way; tar:// is below.
    let out = run(kiln().args([
        "build",
        "--no-push",
        "--context",
        "s3://bucket/ctx.tar.gz",
        "--tar-path",
        "/dev/null",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("kiln takes a directory"),
        "{err}"
    );
}

/// kaniko's `tar://PATH` (gzip) and `tar://stdin` (plain) contexts; a hostile
/// archive is refused.
#[test]
fn tar_contexts_from_a_file_and_from_stdin() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
        ("a.txt", "a\n"),
        ("sub/b.txt", "b\n"),
        (".dockerignore", "*.md\n"),
        ("skip.md", "no\n"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let tgz = work.path().join("ctx.tar.gz");
    check(
        Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(ctx.path())
            .arg("."),
    );
    let root = build_cmd_and_unpack(
        kiln()
            .args(["build", "--context"])
            .arg(format!("tar://{}", tgz.display())),
        &work.path().join("f"),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/sub/b.txt")).unwrap(),
        "b\n"
    );
    assert!(!root.join("app/skip.md").exists(), ".dockerignore applies");
    // tar cf - . | kiln build --context tar://stdin
    let mut tar = Command::new("tar")
        .arg("cf")
        .arg("-")
        .arg("-C")
        .arg(ctx.path())
        .arg(".")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let root = build_cmd_and_unpack(
        kiln()
            .args(["build", "--context", "tar://stdin"])
            .stdin(tar.stdout.take().unwrap()),
        &work.path().join("u"),
    );
    let _ = tar.wait();
    assert_eq!(
        std::fs::read_to_string(root.join("app/a.txt")).unwrap(),
        "a\n"
    );
    // An entry that climbs out of the context is an error, and writes nothing.
    let evil = work.path().join("evil.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&evil).unwrap());
        let mut h = tar::Header::new_gnu();
        let data = b"FROM scratch\n";
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_gnu_mut().unwrap().name[..17].copy_from_slice(b"../../escaped.txt");
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        b.finish().unwrap();
    }
    let res = run(kiln()
        .args(["build", "--no-push", "--tar-path", "/dev/null", "--context"])
        .arg(format!("tar://{}", evil.display())));
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && err.contains("leave"), "{err}");
    assert!(!work.path().parent().unwrap().join("escaped.txt").exists());
}

/// kaniko's warmer flags with their meanings: `-i` an image, `-d` a Dockerfile,
/// `-c` the cache dir, `-f` (force) accepted with a note.
#[test]
fn kiln_warm_takes_the_warmers_short_flags() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {}/base/busybox\nCOPY f /f\n", reg.addr),
    )]);
    let cache = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .args(["warm", "--insecure-registry", &reg.addr, "-i"])
        .arg(format!("{}/base/busybox:latest", reg.addr))
        .arg("-d")
        .arg(ctx.path().join("Dockerfile"))
        .arg("-c")
        .arg(cache.path())
        .arg("-f"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: --force changes nothing in kiln warm"),
        "{err}"
    );
    assert!(
        err.contains(&format!("into {}", cache.path().display())),
        "-c is the cache dir: {err}"
    );
    assert!(
        std::fs::read_dir(cache.path()).unwrap().next().is_some(),
        "the cache dir was filled"
    );
}

/// kaniko's warmer flags for logs and pulls, as the executor takes them.
#[test]
fn kiln_warm_takes_the_warmers_log_and_pull_flags() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    let image = format!("{}/base/busybox:latest", reg.addr);
    let warm = |extra: &[&str]| {
        run(kiln()
            .args(["warm", "--insecure-registry", &reg.addr, "-i", &image, "-c"])
            .arg(cache.path())
            .args(extra))
    };
    for (extra, note) in [
        (vec!["--verbosity=debug"], Some("DEBUG")),
        (vec!["-v", "info"], None),
        (vec!["--log-format=text"], None),
        (vec!["--log-format=json"], Some("\"event\":\"message\"")),
        (
            vec!["--log-timestamp"],
            Some("--log-timestamp changes nothing"),
        ),
        (vec!["--customPlatform=linux/amd64"], None),
        (
            vec!["--azure-container-registry-config=/etc/kubernetes/azure.json"],
            Some("--azure-container-registry-config changes nothing"),
        ),
        (
            vec!["--registry-certificate=registry.invalid=/etc/ssl/certs/ca-certificates.crt"],
            None,
        ),
        (vec!["--skip-default-registry-fallback"], None),
        (vec!["--cache-ttl=6h"], None),
    ] {
        let out = warm(&extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra:?}: {err}");
        if let Some(n) = note {
            assert!(err.contains(n), "{extra:?}: {err}");
        }
    }
    for (extra, why) in [
        (vec!["--insecure-pull"], "--insecure-registry HOST"),
        (
            vec!["--skip-tls-verify-pull"],
            "--skip-tls-verify-registry HOST",
        ),
    ] {
        let out = warm(&extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{extra:?}: {err}"
        );
    }
}

/// `--image-format=docker` pushes Docker v2 schema 2 media types, which skopeo
/// reads as such; `--dryrun` prints the plan and writes nothing.
#[test]
fn image_format_docker_and_dryrun() {
    let reg = Registry::start();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch AS a\nCOPY f /f\nFROM a\nLABEL x=y\n",
        ),
        ("f", "x"),
    ]);
    let out = run(kiln()
        .args([
            "build",
            "--image-format=docker",
            "--insecure-registry",
            &reg.addr,
        ])
        .args(["--destination", &format!("{}/app/docker:1", reg.addr)])
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", output_text(&out));
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/app/docker:1", reg.addr)),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(
        config_of(&reg, "app/docker:1")["config"]["Labels"]["x"],
        "y"
    );
    let dry = ctx.path().join("dry");
    let out = run(kiln()
        .args([
            "build",
            "--dryrun",
            "--destination",
            "registry.invalid/app:1",
            "--context",
        ])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(&dry));
    let log = output_text(&out);
    assert!(out.status.success(), "{log}");
    for want in [
        "[a 1/2] FROM scratch",
        "[a 2/2] COPY f /f",
        "[stage-1 2/2] LABEL x=y",
    ] {
        assert!(log.contains(want), "{want}:\n{log}");
    }
    assert!(!dry.exists(), "a dry run writes nothing");
    // A Dockerfile error is still reported at its line.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nBOGUS x\n").unwrap();
    let out = run(kiln()
        .args(["build", "--dryrun", "--no-push", "--context"])
        .arg(ctx.path()));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("Dockerfile:2"),
        "{}",
        output_text(&out)
    );
}

/// A build killed with -9 while it unpacks a `tar://stdin` context leaves its
/// directory behind; the next build reclaims it.
#[test]
fn a_killed_builds_tar_context_is_reclaimed_by_the_next_build() {
    use std::io::Write;
    let parent = tempfile::tempdir().unwrap();
    let mut child = kiln()
        .args(["build", "--no-push", "--tar-path"])
        .arg(parent.path().join("killed.tar"))
        .args(["--context", "tar://stdin", "--work-dir"])
        .arg(parent.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The start of a tar: a header for a 1 MiB file and a few of its bytes; the
    // build waits for the rest, its context dir made.
    let mut stdin = child.stdin.take().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    stdin.write_all(h.as_bytes()).unwrap();
    stdin.write_all(&[b'x'; 100]).unwrap();
    stdin.flush().unwrap();
    let ours = |p: &std::path::Path| {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("kiln-"))
            .count()
    };
    for _ in 0..200 {
        if ours(parent.path()) > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(
        ours(parent.path()),
        1,
        "the context dir exists while it unpacks"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(ours(parent.path()), 1, "kill -9 left it behind");
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let out = run(kiln()
        .args(["build", "--no-push", "--tar-path"])
        .arg(parent.path().join("next.tar"))
        .arg("--work-dir")
        .arg(parent.path())
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(ours(parent.path()), 0, "the next build reclaimed it");
}
