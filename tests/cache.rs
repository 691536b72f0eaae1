//! The build cache: keys, the local dir, the registry cache repo, and what a second
//! runner downloads and uploads (counted in the registry's access log).

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The step lines of a build's output: (instruction text prefix, CACHED/BUILT).
fn step_status(err: &str, instruction: &str) -> &'static str {
    for l in err.lines() {
        if l.contains(instruction) && l.starts_with('[') {
            if l.contains("CACHED") {
                return "CACHED";
            }
            if l.contains("BUILT") {
                return "BUILT";
            }
        }
    }
    panic!("no step line for {instruction:?} in:\n{err}");
}

struct Setup {
    reg: Registry,
    ctx: tempfile::TempDir,
}

const DOCKERFILE: &str = "FROM {REG}/base/busybox
ARG USED=1
COPY app/ /app/
RUN echo \"used=$USED\" > /app/used.txt
RUN echo static > /static.txt
ARG DECLARED_LATE=x
LABEL late=$DECLARED_LATE
";

fn setup() -> Setup {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        ("Dockerfile", &DOCKERFILE.replace("{REG}", &reg.addr)),
        ("app/main.txt", "main\n"),
        ("app/lib/util.txt", "util\n"),
    ]);
    Setup { reg, ctx }
}

fn build(s: &Setup, cache_dir: &Path, tag: &str, extra: &[&str]) -> String {
    let out = run(kiln()
        .args([
            "build",
            "--cache",
            "--insecure-registry",
            &s.reg.addr,
            "--cache-repo",
            &format!("{}/app/cache", s.reg.addr),
            "--destination",
            &format!("{}/app/img:{tag}", s.reg.addr),
        ])
        .arg("--cache-dir")
        .arg(cache_dir)
        .arg("--context")
        .arg(s.ctx.path())
        .args(extra));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    err
}

fn layers_of(reg: &Registry, repo_tag: &str) -> Vec<String> {
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{repo_tag}", reg.addr)),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_second_runner_gets_every_step_from_the_registry_without_transfers() {
    let s = setup();
    let first = tempfile::tempdir().unwrap();
    let err = build(&s, first.path(), "1", &[]);
    for step in ["COPY app/ /app/", "RUN echo \"used", "RUN echo static"] {
        assert_eq!(step_status(&err, step), "BUILT", "{err}");
    }
    assert!(err.contains("cache: 0 hits, 3 misses"), "{err}");
    let layers = layers_of(&s.reg, "app/img:1");
    // Each new layer went up once (to the cache repo) and was mounted into the
    // destination: no second upload of the same bytes.
    for l in &layers[1..] {
        assert_eq!(
            s.reg
                .count_requests(0, "PUT", &format!("digest={}", l.replace(':', "%3A"))),
            1,
            "{l} was uploaded more than once:\n{}",
            s.reg.access_log()
        );
    }
    // The layers went to the cache repo while they were written (a streamed
    // upload is PATCHed), not after the build.
    assert!(
        s.reg
            .count_requests(0, "PATCH", "/v2/app/cache/blobs/uploads/")
            >= 1,
        "no layer streamed to the cache repo:\n{}",
        s.reg.access_log()
    );

    // Another runner: empty cache dir, same registry.
    let from = s.reg.log_len();
    let second = tempfile::tempdir().unwrap();
    // Into another repository, so the layers must arrive by cross-repo mount.
    let err = build(
        &s,
        second.path(),
        "2",
        &["--destination", &format!("{}/other/img:2", s.reg.addr)],
    );
    for step in ["COPY app/ /app/", "RUN echo \"used", "RUN echo static"] {
        assert_eq!(step_status(&err, step), "CACHED", "{err}");
    }
    assert!(err.contains("cache: 3 hits, 0 misses"), "{err}");
    assert_eq!(layers_of(&s.reg, "app/img:2"), layers, "the same layers");
    assert_eq!(layers_of(&s.reg, "other/img:2"), layers);
    // The second destination mounts everything, the config included, from the
    // first: nothing is uploaded to it.
    let other = err
        .lines()
        .find(|l| l.starts_with("[push]") && l.contains("other/img:2"))
        .unwrap_or_default();
    assert!(
        other.contains("0 uploaded") && other.contains("5 mounted"),
        "layers are mounted from the cache repo, the base and the first destination:\n{err}"
    );
    for layer in &layers {
        assert_eq!(
            s.reg
                .count_requests(from, "GET", &format!("/blobs/{layer}")),
            0,
            "layer {layer} was downloaded"
        );
        assert_eq!(
            s.reg.count_requests(
                from,
                "PUT",
                &format!("digest={}", layer.replace(':', "%3A"))
            ),
            0,
            "layer {layer} was uploaded"
        );
    }
    assert_eq!(s.reg.count_requests(from, "PATCH", "/blobs/uploads/"), 0);

    // The same runner again: local hits.
    let err = build(&s, second.path(), "3", &[]);
    assert!(err.contains("cache: 3 hits, 0 misses"), "{err}");
}

#[test]
fn keys_follow_the_inputs_that_matter() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    build(&s, dir.path(), "base", &[]);

    // A build-arg declared only after the RUNs, or never declared: all cached.
    let err = build(
        &s,
        dir.path(),
        "late",
        &[
            "--build-arg",
            "DECLARED_LATE=changed",
            "--build-arg",
            "NEVER_DECLARED=1",
        ],
    );
    assert!(err.contains("cache: 3 hits, 0 misses"), "{err}");

    // The used build-arg changed: its RUN and everything after it rebuild; the COPY before does not.
    let err = build(&s, dir.path(), "used", &["--build-arg", "USED=2"]);
    assert_eq!(step_status(&err, "COPY app/ /app/"), "CACHED", "{err}");
    assert_eq!(step_status(&err, "RUN echo \"used"), "BUILT", "{err}");
    assert_eq!(step_status(&err, "RUN echo static"), "BUILT", "{err}");

    // One byte of a COPY source changed: that COPY misses.
    std::fs::write(s.ctx.path().join("app/lib/util.txt"), "utiL\n").unwrap();
    let err = build(&s, dir.path(), "byte", &[]);
    assert_eq!(step_status(&err, "COPY app/ /app/"), "BUILT", "{err}");
    std::fs::write(s.ctx.path().join("app/lib/util.txt"), "util\n").unwrap();
    let err = build(&s, dir.path(), "back", &[]);
    assert_eq!(
        step_status(&err, "COPY app/ /app/"),
        "CACHED",
        "restoring the byte hits again: {err}"
    );

    // mtime alone does not matter.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(s.ctx.path().join("app/main.txt"), "main\n").unwrap();
    let err = build(&s, dir.path(), "touched", &[]);
    assert_eq!(step_status(&err, "COPY app/ /app/"), "CACHED", "{err}");

    // A file renamed with the same content: a miss, and the new name in the image.
    std::fs::rename(
        s.ctx.path().join("app/main.txt"),
        s.ctx.path().join("app/renamed.txt"),
    )
    .unwrap();
    let err = build(&s, dir.path(), "renamed", &[]);
    assert_eq!(step_status(&err, "COPY app/ /app/"), "BUILT", "{err}");
    let work = tempfile::tempdir().unwrap();
    let root = unpack(
        &format!("docker://{}/app/img:renamed", s.reg.addr),
        work.path(),
    );
    assert!(root.join("app/renamed.txt").exists() && !root.join("app/main.txt").exists());
}

#[test]
fn a_changed_multi_stage_base_gives_no_stale_hit() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        ("Dockerfile", &format!("FROM {}/base/busybox AS builder\nCOPY src.txt /src.txt\nRUN cat /src.txt > /built.txt\n\nFROM builder AS next\nRUN cp /built.txt /next.txt\n\nFROM scratch\nCOPY --from=next /next.txt /out.txt\n", reg.addr)),
        ("src.txt", "one\n"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let go = |tag: &str| -> String {
        let out = run(kiln()
            .args([
                "build",
                "--cache",
                "--insecure-registry",
                &reg.addr,
                "--destination",
                &format!("{}/ms/app:{tag}", reg.addr),
            ])
            .arg("--cache-dir")
            .arg(dir.path())
            .arg("--context")
            .arg(ctx.path()));
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    go("1");
    assert!(go("2").contains("cache: 4 hits, 0 misses"));
    std::fs::write(ctx.path().join("src.txt"), "two\n").unwrap();
    let err = go("3");
    assert!(
        err.contains("cache: 0 hits, 4 misses"),
        "a change in the first stage invalidates every dependent step:\n{err}"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/ms/app:3", reg.addr), work.path());
    assert_eq!(
        std::fs::read_to_string(root.join("out.txt")).unwrap(),
        "two\n"
    );
}

#[test]
fn a_corrupt_local_blob_is_detected_and_rebuilt() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/base/busybox\nRUN echo hello > /hello.txt\n",
            reg.addr
        ),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let go = |tag: &str| -> String {
        let out = run(kiln()
            .args([
                "build",
                "--cache",
                "--insecure-registry",
                &reg.addr,
                "--destination",
                &format!("{}/corrupt/app:{tag}", reg.addr),
            ])
            .arg("--cache-dir")
            .arg(dir.path())
            .arg("--context")
            .arg(ctx.path()));
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    go("1");
    // Corrupt the RUN layer's blob in the cache dir.
    let index = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let digest = entry["layer"]["digest"].as_str().unwrap().to_string();
    let blob = dir.path().join("blobs/sha256").join(&digest[7..]);
    std::fs::write(&blob, b"not the layer").unwrap();
    let err = go("2");
    assert!(
        err.contains("corrupt") && step_status(&err, "RUN echo hello") == "BUILT",
        "{err}"
    );
    // The entry now points at a sound blob (the rebuilt layer may differ from the
    // corrupted one: RUN writes fresh mtimes).
    let entry: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let rebuilt = entry["layer"]["digest"].as_str().unwrap().to_string();
    let rebuilt_blob = dir.path().join("blobs/sha256").join(&rebuilt[7..]);
    assert_eq!(
        kiln::digest::sha256_reader(std::fs::File::open(&rebuilt_blob).unwrap())
            .unwrap()
            .0,
        rebuilt,
        "the rebuilt blob is sound"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/corrupt/app:2", reg.addr), work.path());
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).unwrap(),
        "hello\n"
    );
}

#[test]
fn two_concurrent_builds_can_share_a_cache_dir() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let dir = tempfile::tempdir().unwrap();
    let ctxs: Vec<tempfile::TempDir> = (0..2)
        .map(|i| context(&[("Dockerfile", &format!("FROM {}/base/busybox\nCOPY f /f\nRUN echo common > /common.txt\nRUN echo {i} > /own.txt\n", reg.addr)), ("f", "same file\n")]))
        .collect();
    let children: Vec<std::process::Child> = ctxs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            kiln()
                .args([
                    "build",
                    "--cache",
                    "--insecure-registry",
                    &reg.addr,
                    "--destination",
                    &format!("{}/shared/app:{i}", reg.addr),
                ])
                .arg("--cache-dir")
                .arg(dir.path())
                .arg("--context")
                .arg(c.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert!(reg.has_tag("shared/app", "0") && reg.has_tag("shared/app", "1"));
    assert!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count() == 0,
        "no temporary files left behind"
    );
}

#[test]
fn warm_then_build_offline_and_warm_reruns_are_cheap() {
    let base = Registry::start();
    push_busybox_base(&base, "base/busybox");
    push_busybox_base(&base, "base/other");
    let dest = Registry::start();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                // The first stage is not needed by the target, but warm fetches every FROM.
                "ARG TAG=latest\nFROM {b}/base/other:$TAG AS unused\nRUN true\n\nFROM {b}/base/busybox:$TAG\nCOPY f /f\nRUN cat /f > /g\n",
                b = base.addr
            ),
        ),
        ("f", "offline\n"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let warm = || {
        run(kiln()
            .args([
                "warm",
                "--insecure-registry",
                &base.addr,
                "--build-arg",
                "TAG=latest",
            ])
            .arg("--dockerfile")
            .arg(ctx.path().join("Dockerfile"))
            .arg("--cache-dir")
            .arg(dir.path()))
    };
    let out = warm();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("2 image(s)"), "{}", stderr(&out));
    assert!(
        base.count_requests(0, "GET", "/v2/base/other/manifests/latest") > 0,
        "the unused stage's image was warmed"
    );
    let from = base.log_len();
    let out = warm();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        base.count_requests(from, "GET", "/blobs/"),
        0,
        "a rerun downloads no blob again"
    );

    drop(base); // the base registry goes away
    let out = run(kiln()
        .args([
            "build",
            "--cache",
            "--insecure-registry",
            &dest.addr,
            "--destination",
            &format!("{}/offline/app:1", dest.addr),
        ])
        .arg("--cache-dir")
        .arg(dir.path())
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("is unreachable: using") && err.contains("from the cache dir"),
        "kiln says it used the warmed image:\n{err}"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(
        &format!("docker://{}/offline/app:1", dest.addr),
        work.path(),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("g")).unwrap(),
        "offline\n"
    );
    assert!(root.join("bin/busybox").exists());
}

#[test]
fn warm_prefetches_the_entries_a_build_would_hit() {
    let s = setup();
    let first = tempfile::tempdir().unwrap();
    build(&s, first.path(), "1", &[]);
    // A warming job fills a fresh cache dir from the cache repo…
    let warmed = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .args([
            "warm",
            "--insecure-registry",
            &s.reg.addr,
            "--cache-repo",
            &format!("{}/app/cache", s.reg.addr),
        ])
        .arg("--dockerfile")
        .arg(s.ctx.path().join("Dockerfile"))
        .arg("--context")
        .arg(s.ctx.path())
        .arg("--cache-dir")
        .arg(warmed.path()));
    let err = stderr(&out);
    assert!(
        out.status.success() && err.contains("3 cache entries"),
        "{err}"
    );
    // …and a build with only that dir (no cache repo) hits everything locally.
    let out = run(kiln()
        .args([
            "build",
            "--cache",
            "--insecure-registry",
            &s.reg.addr,
            "--destination",
            &format!("{}/app/img:local", s.reg.addr),
        ])
        .arg("--cache-dir")
        .arg(warmed.path())
        .arg("--context")
        .arg(s.ctx.path()));
    let err = stderr(&out);
    assert!(
        out.status.success() && err.contains("cache: 3 hits, 0 misses"),
        "{err}"
    );
}

#[test]
fn a_failed_cache_push_is_only_a_warning() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {}/base/busybox\nRUN echo x > /x\n", reg.addr),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .args([
            "build",
            "--cache",
            "--insecure-registry",
            &reg.addr,
            "--insecure-registry",
            &closed,
            "--cache-repo",
            &format!("{closed}/cache"),
            "--destination",
            &format!("{}/warn/app:1", reg.addr),
        ])
        .arg("--cache-dir")
        .arg(dir.path())
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: could not push a cache entry"),
        "{err}"
    );
    assert!(reg.has_tag("warn/app", "1"));
}

#[test]
fn in_ci_the_cache_is_on_by_default_with_the_project_cache_repo() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {}/base/busybox\nRUN echo ci > /ci\n", reg.addr),
    )]);
    let home = tempfile::tempdir().unwrap();
    let go = |extra: &[&str]| {
        run(kiln()
            .env("CI", "true")
            .env("CI_REGISTRY_IMAGE", format!("{}/group/project", reg.addr))
            .env("HOME", home.path())
            .env_remove("XDG_CACHE_HOME")
            .args([
                "build",
                "--insecure-registry",
                &reg.addr,
                "--destination",
                &format!("{}/group/project:1", reg.addr),
            ])
            .args(extra)
            .arg("--context")
            .arg(ctx.path()))
    };
    let out = go(&[]);
    let err = stderr(&out);
    assert!(
        out.status.success() && err.contains("cache: 0 hits, 1 miss"),
        "{err}"
    );
    assert!(
        home.path().join(".cache/kiln/index").is_dir(),
        "default cache dir is ~/.cache/kiln"
    );
    let tags = check(
        Command::new("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/group/project/cache", reg.addr)),
    );
    assert!(
        tags.contains("kiln-v1-"),
        "entries go to $CI_REGISTRY_IMAGE/cache: {tags}"
    );
    let out = go(&["--cache=false"]);
    let err = stderr(&out);
    assert!(
        out.status.success() && !err.contains("cache:") && err.contains("BUILT"),
        "--cache=false turns it off:\n{err}"
    );
}

#[test]
fn the_compression_is_part_of_the_key() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    build(&s, dir.path(), "gz", &[]);
    let err = build(&s, dir.path(), "zst", &["--compression", "zstd"]);
    assert!(
        err.contains("cache: 0 hits, 3 misses"),
        "a zstd build must not reuse gzip layers:\n{err}"
    );
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/app/img:zst", s.reg.addr)),
    );
    assert_eq!(
        raw.matches("tar+zstd").count(),
        3,
        "every layer kiln built is zstd: {raw}"
    );
    let err = build(&s, dir.path(), "zst2", &["--compression", "zstd"]);
    assert!(err.contains("cache: 3 hits, 0 misses"), "{err}");
}

#[test]
fn a_refused_cross_repo_mount_falls_back_to_an_upload() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = kiln::store::Store::open(dir.path()).unwrap();
    let digest = store
        .put_bytes(b"a blob the source repository does not have")
        .unwrap();
    let path = store.blob_path(&digest).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let client = kiln::registry::Client::new(&kiln::registry::Options {
        insecure: vec![reg.addr.clone()],
        ..Default::default()
    })
    .unwrap();
    let dest = kiln::image::Reference::parse(&format!("{}/mount/dest", reg.addr)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The registry answers 202 (an upload session) when it cannot mount.
        assert!(
            !client
                .mount_blob(&dest, &digest, "nowhere/source")
                .await
                .unwrap(),
            "a refused mount is reported as such"
        );
        client.push_blob(&dest, &digest, size, &path).await.unwrap();
        assert!(
            client.blob_exists(&dest, &digest).await.unwrap(),
            "the upload fallback put the blob there"
        );
    });
}

/// The GitLab layout: `.kiln-cache` (and a work dir and an output) inside the
/// project dir, which is the build context. A COPY of everything leaves them
/// out, says so once, and hits the cache the second time.
#[test]
fn kilns_own_dirs_inside_the_context_stay_out_of_the_image_and_the_key() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
        ("a.txt", "a"),
    ]);
    let p = ctx.path();
    let go = || {
        let out = run(kiln()
            .args(["build", "--no-push", "--cache", "--context"])
            .arg(p)
            .arg("--cache-dir")
            .arg(p.join(".kiln-cache"))
            .arg("--work-dir")
            .arg(p.join(".kiln-work"))
            .arg("--oci-layout-path")
            .arg(p.join("out")));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    };
    let first = go();
    assert_eq!(
        first.matches("note: leaving kiln's own").count(),
        1,
        "{first}"
    );
    assert!(
        first.contains(".kiln-cache") && first.contains(".kiln-work") && first.contains("out"),
        "{first}"
    );
    let second = go();
    assert!(
        second
            .lines()
            .any(|l| l.contains("COPY . /app/") && l.contains("CACHED")),
        "the key changed although nothing of the user's did:\n{second}"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(
        &format!("oci:{}:latest", p.join("out").display()),
        work.path(),
    );
    assert!(root.join("app/a.txt").exists());
    for own in [".kiln-cache", ".kiln-work", "out"] {
        assert!(
            !root.join("app").join(own).exists(),
            "{own} is in the image"
        );
    }
}

/// The same build's digest, whatever happened to its cache dir before: a clean
/// build, two builds at once on one cache dir, and a rebuild after a build was
/// killed with -9 in the middle of a step all give one digest; the killed
/// build's work dir is reclaimed.
#[test]
fn a_killed_or_concurrent_build_leaves_the_next_digest_unchanged() {
    if !need_root("a_killed_or_concurrent_build_leaves_the_next_digest_unchanged") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox\nCOPY f /f\nRUN sleep 1 && echo a > /a\nRUN echo b > /b\nLABEL l=v\n",
                reg.addr
            ),
        ),
        ("f", "same file\n"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let digest_of = |cache: &Path, n: &str| -> std::process::Command {
        let mut c = kiln();
        c.args(["build", "--no-push", "--reproducible", "--cache"])
            .args(["--insecure-registry", &reg.addr])
            .arg("--cache-dir")
            .arg(cache)
            .arg("--work-dir")
            .arg(work.path())
            .arg("--digest-file")
            .arg(work.path().join(format!("digest-{n}")))
            .arg("--context")
            .arg(ctx.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    let read = |n: &str| std::fs::read_to_string(work.path().join(format!("digest-{n}"))).unwrap();
    let clean = tempfile::tempdir().unwrap();
    let out = digest_of(clean.path(), "clean").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reference = read("clean");
    // Two at once on one cache dir.
    let shared = tempfile::tempdir().unwrap();
    let a = digest_of(shared.path(), "a").spawn().unwrap();
    let b = digest_of(shared.path(), "b").spawn().unwrap();
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(read("a"), reference);
    assert_eq!(read("b"), reference);
    // Killed with -9 during the first RUN, then built again on its cache dir.
    let killed = tempfile::tempdir().unwrap();
    let mut c = digest_of(killed.path(), "killed").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    c.kill().unwrap();
    c.wait().unwrap();
    let out = digest_of(killed.path(), "again").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read("again"), reference);
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("kiln-"))
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "work dirs left behind: {left:?}");
}
