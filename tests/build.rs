//! `kiln build` end to end against a real registry, checked with skopeo and umoci.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn multi_stage_copy_build_pushes_a_correct_image() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let big: String = "0123456789abcdef".repeat(20 * 1024 * 1024 / 16);
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "ARG BASE={addr}/base/busybox\n\
                 FROM ${{BASE}} AS assets\n\
                 COPY static/ /assets/\n\
                 COPY big.bin /assets/big.bin\n\
                 \n\
                 FROM $BASE\n\
                 ARG APP_DIR=/srv/app\n\
                 ARG UNUSED_DEFAULT\n\
                 ARG APP_VERSION\n\
                 ENV APP_HOME=${{APP_DIR}} GREETING=\"hello world\"\n\
                 WORKDIR $APP_HOME\n\
                 COPY --from=assets /assets ./public/\n\
                 COPY --chown=app:staff --chmod=0640 config.ini conf/\n\
                 COPY --chown=1000 src/ ./src/\n\
                 COPY *.txt docs/\n\
                 USER app\n\
                 LABEL maintainer=\"team@example.com\" app.version=${{APP_VERSION:-dev}} undeclared=${{NOT_DECLARED:-default}}\n\
                 EXPOSE 8080 9090/udp\n\
                 VOLUME /data\n\
                 STOPSIGNAL SIGTERM\n\
                 HEALTHCHECK --interval=30s --retries=3 CMD [\"/bin/true\"]\n\
                 ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
                 CMD [\"echo $GREETING\"]\n",
                addr = reg.addr
            ),
        ),
        (".dockerignore", "secret.txt\nsrc/**/*.tmp\n"),
        ("static/index.html", "<h1>hi</h1>\n"),
        ("static/css/site.css", "body{}\n"),
        ("config.ini", "[app]\n"),
        ("src/main.rs", "fn main() {}\n"),
        ("src/scratch.tmp", "junk\n"),
        ("src/deep/x.tmp", "junk\n"),
        ("a.txt", "a\n"),
        ("b.txt", "b\n"),
        ("secret.txt", "do not ship\n"),
        ("big.bin", &big),
    ]);
    std::os::unix::fs::symlink("main.rs", ctx.path().join("src/link.rs")).unwrap();
    std::fs::set_permissions(
        ctx.path().join("src/main.rs"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();

    let dest = format!("{}/group/app:v1", reg.addr);
    let digest_file = ctx.path().join("digest");
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--destination",
            &dest,
            "--label",
            "extra=yes",
            "--build-arg",
            "APP_VERSION=9.9",
            "--build-arg",
            "NOT_DECLARED=leak",
        ])
        .arg("--context")
        .arg(ctx.path())
        .arg("--digest-file")
        .arg(&digest_file));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("COPY --from=assets /assets ./public/"),
        "one line per step:\n{err}"
    );
    assert!(err.contains("built sha256:"), "summary with digest:\n{err}");
    assert!(
        err.contains("1 mounted"),
        "the base layer is mounted from base/busybox, not re-uploaded:\n{err}"
    );
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert!(digest.starts_with("sha256:"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));

    // The config, as skopeo sees it.
    let cfg = config_of(&reg, "group/app:v1");
    let c = &cfg["config"];
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "app");
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "APP_HOME=/srv/app"));
    assert!(c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "GREETING=hello world"));
    assert!(
        c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=")),
        "base ENV kept"
    );
    assert_eq!(c["Labels"]["maintainer"], "team@example.com");
    assert_eq!(c["Labels"]["app.version"], "9.9");
    assert_eq!(c["Labels"]["extra"], "yes");
    assert_eq!(
        c["Labels"]["undeclared"], "default",
        "a build-arg without an ARG line is not visible"
    );
    assert!(
        err.contains("not used by any built stage: NOT_DECLARED"),
        "{err}"
    );
    assert!(
        c["ExposedPorts"].get("8080/tcp").is_some() && c["ExposedPorts"].get("9090/udp").is_some()
    );
    assert!(c["Volumes"].get("/data").is_some());
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/bin/true"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo $GREETING"]));
    assert_eq!(
        cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1 + 1 + 4,
        "base layer, WORKDIR's new directory (as BuildKit commits it), one per COPY"
    );
    assert!(cfg["history"].as_array().unwrap().len() >= 5);

    // The filesystem, as umoci unpacks it.
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{dest}"), work.path());
    let app = root.join("srv/app");
    assert_eq!(
        std::fs::read_to_string(app.join("public/index.html")).unwrap(),
        "<h1>hi</h1>\n"
    );
    assert_eq!(
        std::fs::read_to_string(app.join("public/css/site.css")).unwrap(),
        "body{}\n"
    );
    let bigm = std::fs::metadata(app.join("public/big.bin")).unwrap();
    assert_eq!(bigm.len(), big.len() as u64, "20 MB file intact");
    assert_eq!(
        std::fs::read(app.join("public/big.bin")).unwrap(),
        big.as_bytes()
    );
    let conf = std::fs::metadata(app.join("conf/config.ini")).unwrap();
    assert_eq!(conf.mode() & 0o7777, 0o640, "--chmod");
    if is_root() {
        assert_eq!(
            (conf.uid(), conf.gid()),
            (1000, 50),
            "--chown=app:staff resolved in /etc/passwd and /etc/group"
        );
        let src = std::fs::metadata(app.join("src/main.rs")).unwrap();
        assert_eq!(
            (src.uid(), src.gid()),
            (1000, 1000),
            "--chown=1000 means 1000:1000"
        );
        let public = std::fs::metadata(app.join("public/index.html")).unwrap();
        assert_eq!(
            (public.uid(), public.gid()),
            (0, 0),
            "COPY resets owners to root"
        );
    }
    assert_eq!(
        std::fs::metadata(app.join("src/main.rs")).unwrap().mode() & 0o777,
        0o755,
        "modes kept"
    );
    assert_eq!(
        std::fs::read_link(app.join("src/link.rs"))
            .unwrap()
            .to_str(),
        Some("main.rs"),
        "symlinks kept"
    );
    assert!(
        app.join("docs/a.txt").is_file() && app.join("docs/b.txt").is_file(),
        "wildcards"
    );
    assert!(
        !app.join("docs/secret.txt").exists(),
        ".dockerignore'd file absent"
    );
    assert!(
        !app.join("src/scratch.tmp").exists() && !app.join("src/deep/x.tmp").exists(),
        "** patterns"
    );
    assert!(root.join("bin/busybox").is_file(), "base layer present");
    assert!(root.join("to-delete/sub/file").is_file());
}

#[test]
fn reproducible_builds_are_byte_identical() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app/\nENV A=1\n"),
        ("f.txt", "same\n"),
        ("d/g.txt", "g\n"),
    ]);
    let build = |extra: &[&str], env: Option<&str>| -> String {
        let out_dir = tempfile::tempdir().unwrap();
        let mut cmd = kiln();
        cmd.args(["build", "--no-push"])
            .arg("--context")
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(out_dir.path().join("oci"))
            .args(extra);
        if let Some(e) = env {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let a = build(&["--reproducible"], None);
    // Touch the sources: mtimes change, the digest must not.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(ctx.path().join("f.txt"), "same\n").unwrap();
    let b = build(&["--reproducible"], None);
    assert_eq!(a, b, "--reproducible gives the same manifest digest");
    let c = build(&[], Some("1700000000"));
    let d = build(&[], Some("1700000000"));
    assert_eq!(c, d, "SOURCE_DATE_EPOCH gives the same digest");
    assert_ne!(a, c, "a different epoch is a different image");
    std::fs::write(ctx.path().join("f.txt"), "changed\n").unwrap();
    assert_ne!(
        build(&["--reproducible"], None),
        a,
        "content change changes the digest"
    );
}

#[test]
fn local_outputs_are_readable_and_kiln_push_sends_them() {
    let reg = Registry::start();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY hello.txt /\nCMD [\"/hello\"]\n",
        ),
        ("hello.txt", "hi\n"),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let tar = out_dir.path().join("img.tar");
    let oci = out_dir.path().join("oci");
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--destination",
            &format!("{}/local/app:1", reg.addr),
        ])
        .arg("--context")
        .arg(ctx.path())
        .arg("--tar-path")
        .arg(&tar)
        .arg("--oci-layout-path")
        .arg(&oci));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!reg.has_tag("local/app", "1"), "--no-push pushes nothing");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // Independent readers.
    let inspect = check(
        Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("docker-archive:{}", tar.display())),
    );
    assert!(inspect.contains("/hello"));
    let inspect = check(
        Command::new("skopeo")
            .args(["inspect"])
            .arg(format!("oci:{}:1", oci.display())),
    );
    assert!(
        inspect.contains(&digest),
        "OCI layout tagged with the destination's tag"
    );
    let root = unpack(&format!("docker-archive:{}", tar.display()), out_dir.path());
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).unwrap(),
        "hi\n"
    );

    // kiln push of each.
    let out = run(kiln()
        .args(["push", "--insecure-registry", &reg.addr])
        .arg(oci.to_str().unwrap())
        .arg(format!("{}/pushed/oci:v1", reg.addr)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        digest,
        "pushing the layout keeps the digest"
    );
    let out = run(kiln()
        .args(["push", "--insecure-registry", &reg.addr])
        .arg(&tar)
        .arg(format!("{}/pushed/tar:v1", reg.addr)));
    assert!(out.status.success(), "{}", stderr(&out));
    for repo in ["pushed/oci:v1", "pushed/tar:v1"] {
        let cfg = config_of(&reg, repo);
        assert_eq!(
            cfg["config"]["Cmd"],
            serde_json::json!(["/hello"]),
            "{repo}"
        );
    }
    let root = unpack(
        &format!("docker://{}/pushed/tar:v1", reg.addr),
        out_dir.path(),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).unwrap(),
        "hi\n"
    );
}

/// Outputs are the user's files: their mode is 0666 less the umask, as any
/// tool's (they were 0600, unreadable to a later job running as another user).
#[test]
fn local_outputs_follow_the_umask() {
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let out = ctx.path().join("out");
    let cmd = format!(
        "umask 027 && exec {} build --no-push --context {} --tar-path {}/img.tar --oci-layout-path {}/oci --digest-file {}/digest",
        env!("CARGO_BIN_EXE_kiln"),
        ctx.path().display(),
        out.display(),
        out.display(),
        out.display()
    );
    let res = run(Command::new("sh").args(["-c", &cmd]));
    assert!(res.status.success(), "{}", stderr(&res));
    let mut files = vec![
        out.join("img.tar"),
        out.join("digest"),
        out.join("oci/index.json"),
        out.join("oci/oci-layout"),
    ];
    for e in std::fs::read_dir(out.join("oci/blobs/sha256")).unwrap() {
        files.push(e.unwrap().path());
    }
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", f.display());
    }
}

#[test]
fn add_extracts_local_tar_archives() {
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch\nADD files.tar.gz /opt/\nADD plain.txt /opt/plain.txt\n",
        ),
        ("plain.txt", "p\n"),
    ]);
    // Build the archive with the system tar.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("pkg/bin")).unwrap();
    std::fs::write(src.path().join("pkg/bin/tool"), "#!/bin/sh\n").unwrap();
    check(
        Command::new("tar")
            .arg("-czf")
            .arg(ctx.path().join("files.tar.gz"))
            .arg("-C")
            .arg(src.path())
            .arg("pkg"),
    );
    let out_dir = tempfile::tempdir().unwrap();
    let root = build_and_unpack(ctx.path(), out_dir.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(root.join("opt/pkg/bin/tool")).unwrap(),
        "#!/bin/sh\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("opt/plain.txt")).unwrap(),
        "p\n"
    );
}

#[test]
fn only_the_stages_the_target_needs_are_built() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch AS unused\nRUN never runs\n\nFROM scratch AS dep\nCOPY a /a\n\nFROM scratch AS final\nCOPY --from=dep /a /copied\n\nFROM scratch AS other\nCOPY b /b\n"),
        ("a", "a\n"),
        ("b", "b\n"),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    // The unused stage has a RUN (unsupported yet): building it would fail.
    let root = build_and_unpack(ctx.path(), out_dir.path(), &["--target", "final"]);
    assert!(root.join("copied").is_file());
    assert!(!root.join("b").exists());
}

#[test]
fn without_dockerfile_flag_the_contexts_dockerfile_is_built_not_the_current_dirs() {
    let cwd = context(&[
        ("Dockerfile", "FROM scratch\nCOPY wrong /wrong\n"),
        ("wrong", "x"),
        ("app/Dockerfile", "FROM scratch\nCOPY right /right\n"),
        ("app/right", "y"),
        ("app/wrong", "z"),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let build = |extra: &[&str]| {
        build_cmd_and_unpack(
            kiln()
                .current_dir(cwd.path())
                .args(["build", "--context", "app"])
                .args(extra),
            out_dir.path(),
        )
    };
    let root = build(&[]);
    assert!(root.join("right").is_file());
    assert!(!root.join("wrong").exists());
    // A relative --dockerfile is read from the current directory first (kaniko).
    let root = build(&["--dockerfile", "Dockerfile"]);
    assert!(root.join("wrong").is_file());
}

#[test]
fn readme_main_command_builds_the_example_offline() {
    let out_dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello");
    let root = build_and_unpack(std::path::Path::new(example), out_dir.path(), &[]);
    assert!(root.join("srv/site/index.html").is_file());
    assert!(
        !root.join("srv/site/NOTES.md").exists(),
        "**/*.md is ignored"
    );
    assert_eq!(
        std::fs::metadata(root.join("usr/local/bin/hello"))
            .unwrap()
            .mode()
            & 0o777,
        0o755
    );
}

/// The image's layers go up while later steps still run: the RUN after the
/// COPY waits until the registry has a blob of the destination's repository.
/// A builder stage's layers, which are not in the image, are never sent, and a
/// build that fails after an early upload tags nothing.
#[test]
fn layers_are_uploaded_while_later_steps_run() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let wait_for_blob = format!(
        "i=0; while [ $i -lt 300 ]; do /bin/busybox wget -q -O - http://{}/v2/_catalog | grep -q early/app && exit 0; sleep 0.1; i=$((i+1)); done; echo no early upload; exit 1",
        reg.addr
    );
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {0}/base AS builder\nCOPY junk /junk\n\nFROM {0}/base\nCOPY app /app\nRUN {wait_for_blob}\nCOPY --from=builder /junk /j2\n",
                reg.addr
            ),
        ),
        ("app", &"the app ".repeat(50_000)),
        ("junk", "builder only\n"),
    ]);
    let go = |dest: &str, extra: &[&str]| {
        run(kiln()
            .args(["build", "--cache=false", "--insecure-registry", &reg.addr])
            .args(["--destination", &format!("{}/{dest}", reg.addr)])
            .args(extra)
            .arg("--context")
            .arg(ctx.path()))
    };
    let out = go("early/app:1", &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("while the build ran"), "{err}");
    // The image has base, /app, the RUN's (empty: none), /j2 layers; only the
    // builder's own /junk layer stayed home.
    let manifest: serde_json::Value = serde_json::from_str(&check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/early/app:1", reg.addr)),
    ))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap().len();
    let blobs = reg.count_requests(0, "PUT", "/v2/early/app/blobs/uploads/");
    assert_eq!(
        blobs,
        layers - 1 + 1,
        "the new layers and the config, nothing else"
    );
    // A failing step after an early upload: no tag.
    std::fs::write(ctx.path().join("app"), "changed").unwrap();
    let df = std::fs::read_to_string(ctx.path().join("Dockerfile")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        df.replace("COPY --from=builder /junk /j2", "RUN false"),
    )
    .unwrap();
    let out = go("early/app:2", &[]);
    assert!(!out.status.success());
    assert!(!reg.has_tag("early/app", "2"), "{}", stderr(&out));
}

#[test]
fn push_falls_back_to_chunked_upload_when_monolithic_put_is_refused() {
    let reg = Registry::start();
    // Refuse monolithic PUTs with a body, as some registries and proxies do.
    let proxy = support::proxy::FaultProxy::start(&reg.addr, |req| {
        if req.is("PUT", "/blobs/uploads/") && req.body_len > 0 {
            support::proxy::Fault::Respond(413, vec![])
        } else {
            support::proxy::Fault::Forward
        }
    });
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY data /data\n"),
        ("data", &"chunk me ".repeat(100_000)),
    ]);
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &proxy.addr,
            "--destination",
            &format!("{}/chunked/app:1", proxy.addr),
        ])
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        proxy.count("PATCH ") >= 2,
        "layer and config went up in PATCH chunks"
    );
    assert!(reg.has_tag("chunked/app", "1"));
    let root = unpack(
        &format!("docker://{}/chunked/app:1", reg.addr),
        ctx.path().join("check").as_path(),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data")).unwrap(),
        "chunk me ".repeat(100_000)
    );
}

#[test]
fn zstd_layers_push_and_read_back() {
    let reg = Registry::start();
    let ctx = context(&[
        ("Dockerfile", "FROM scratch AS files\nCOPY data/ /data/\n\nFROM scratch\nCOPY --from=files /data /copied/\n"),
        ("data/a.txt", &"zstd me ".repeat(50_000)),
        ("data/b.txt", "b\n"),
    ]);
    let dest = format!("{}/zstd/app:1", reg.addr);
    let out = run(kiln()
        .args([
            "build",
            "--compression",
            "zstd",
            "--insecure-registry",
            &reg.addr,
            "--destination",
            &dest,
        ])
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{dest}")),
    );
    assert!(
        raw.contains("application/vnd.oci.image.layer.v1.tar+zstd") && !raw.contains("tar+gzip"),
        "{raw}"
    );
    // umoci 0.4 cannot read zstd: skopeo decompresses kiln's zstd with its own decoder
    // and recompresses to gzip, then umoci unpacks.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("gz");
    check(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-compress",
                "--dest-compress-format",
                "gzip",
            ])
            .arg(format!("docker://{dest}"))
            .arg(format!("oci:{}:img", layout.display())),
    );
    let bundle = work.path().join("bundle");
    let mut c = Command::new("umoci");
    c.arg("unpack");
    if !is_root() {
        c.arg("--rootless");
    }
    check(
        c.args(["--image", &format!("{}:img", layout.display())])
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/copied/a.txt")).unwrap(),
        "zstd me ".repeat(50_000)
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/copied/b.txt")).unwrap(),
        "b\n"
    );
}

/// An output path that is a FIFO or a device (`--tar-path /dev/null`) is
/// written into, never replaced by a file; a symlink stays a link and its
/// target gets the output.
#[test]
fn outputs_write_into_fifos_and_through_symlinks_without_replacing_them() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let out = tempfile::tempdir().unwrap();
    let fifo = out.path().join("archive.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut data = Vec::new();
            std::fs::File::open(&fifo)
                .unwrap()
                .read_to_end(&mut data)
                .unwrap();
            data
        })
    };
    let target = out.path().join("real-digest");
    std::fs::write(&target, "old").unwrap();
    let link = out.path().join("digest-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let res = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .arg("--tar-path")
        .arg(&fifo)
        .arg("--digest-file")
        .arg(&link));
    assert!(res.status.success(), "{}", output_text(&res));
    let archive = reader.join().unwrap();
    assert!(
        archive.windows(13).any(|w| w == b"manifest.json"),
        "the docker-archive went through the FIFO"
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .starts_with("sha256:"));
}

/// kaniko's `--single-snapshot`: the base's layers and one more, which holds
/// what every step changed, deletions of the base's files included.
#[test]
fn single_snapshot_puts_every_steps_changes_in_one_layer() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let run_step = if is_root() {
        "RUN rm /a /to-delete/sub/file && echo ran > /ran\n"
    } else {
        ""
    };
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base\nCOPY a /a\nCOPY b /b\n{run_step}ENV X=1\n",
                reg.addr
            ),
        ),
        ("a", "a"),
        ("b", "b"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let root = build_and_unpack(
        ctx.path(),
        out.path(),
        &["--single-snapshot", "--insecure-registry", &reg.addr],
    );
    let layout = out.path().join("oci");
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:latest", layout.display())),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["layers"].as_array().unwrap().len(), 2, "base + one: {m}");
    assert_eq!(std::fs::read_to_string(root.join("b")).unwrap(), "b");
    if is_root() {
        assert!(!root.join("a").exists(), "a file a later step removed");
        assert!(
            !root.join("to-delete/sub/file").exists(),
            "a base file a step removed: a whiteout in the one layer"
        );
        assert_eq!(std::fs::read_to_string(root.join("ran")).unwrap(), "ran\n");
    } else {
        assert_eq!(std::fs::read_to_string(root.join("a")).unwrap(), "a");
    }
}
