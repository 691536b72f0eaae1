//! `RUN --mount` in chroot mode inside the unprivileged-job sandbox (no mount(2))
//! and in namespaces mode (real mounts): each type, the trace it leaves (none,
//! as under BuildKit, and the same in both modes), the build context left
//! untouched, the cache shared between builds and locked between concurrent
//! ones, the errors, and a secret that reaches no output at all.

mod support;

use sha2::Digest as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::sandbox::gitlab_job;
use support::*;

const SECRET: &str = "kiln-test-secret-7f3a9c";

fn sha256(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// An ssh agent holding one fresh key, on a socket in `dir`; killed on drop.
struct Agent {
    child: std::process::Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (ci/test installs openssh-client)");
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let key = dir.join("id_ed25519");
        check(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key),
        );
        check(
            Command::new("ssh-add")
                .arg(&key)
                .env("SSH_AUTH_SOCK", &sock),
        );
        Agent { child, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DOCKERFILE: &str = r#"FROM scratch AS files
COPY from-stage.txt /data/f.txt

FROM scratch
COPY busybox /bin/busybox
COPY agent-probe /bin/agent-probe
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /root /etc /var/cache/apt && echo keep > /var/cache/apt/orig && echo root:x:0:0::/root:/bin/sh > /etc/passwd
RUN --mount=type=cache,target=/root/.cache/pip,id=pip sh -c 'date >> /root/.cache/pip/runs; echo "cache-runs=$(wc -l < /root/.cache/pip/runs)"'
RUN --mount=type=cache,target=/var/cache/apt ls /var/cache/apt | sed 's/^/apt-cache-has=/'
RUN --mount=type=cache,target=/owned,uid=1000,gid=1000,mode=0700,id=owned stat -c 'owned=%a %u:%g' /owned
RUN --mount=type=secret,id=tok echo "secret-file=$(sha256sum < /run/secrets/tok | cut -d' ' -f1) $(stat -c %a /run/secrets/tok)"
RUN --mount=type=secret,id=tok,env=TOKEN,target=/etc/tok.conf sh -c 'echo "secret-env=$(printf %s "$TOKEN" | sha256sum | cut -d" " -f1)"; test -s /etc/tok.conf && echo secret-target-ok'
RUN --mount=type=tmpfs,target=/x/y sh -c 'test -z "$(ls -A /x/y)" && touch /x/y/f && usleep 50000 && echo tmpfs-ok'
RUN --mount=type=bind,source=sub,target=/b/c sh -c 'ls /b/c | tr "\n" " " | sed "s/^/bind-has=/"; echo; echo w > /b/c/a 2>/dev/null; rm -f /b/c/keep.txt 2>/dev/null; echo bind-done'
RUN --mount=type=bind,source=sub,target=/b/rw,rw sh -c 'echo changed > /b/rw/a && cat /b/rw/a | sed "s/^/bind-rw=/"'
RUN --mount=type=bind,from=files,source=/data,target=/from-stage cat /from-stage/f.txt
RUN --mount=type=ssh agent-probe
RUN --mount=type=cache,target=/roc,id=pip,ro sh -c 'test -s /roc/runs && echo ro-sees-cache; touch /roc/x 2>/dev/null && echo ro-writable || echo ro-refused'
RUN --mount=type=cache,target=/root/.cache/pip,id=pip sh -c 'test -e /root/.cache/pip/x && echo ro-write-leaked || echo ro-write-discarded'
RUN --mount=type=secret,id=tok,target=/s2,mode=0440,uid=1000,gid=1000 stat -c 'secret-meta=%a %u:%g' /s2
RUN --mount=type=tmpfs,target=/tsz,size=1m sh -c 'dd if=/dev/zero of=/tsz/f bs=1k count=2048 2>/dev/null && echo tmpfs-unbounded || echo tmpfs-bounded'
RUN ls -d /run /x /b /b/c /root/.cache /from-stage /owned /roc /s2 /tsz 2>&1 | sed 's/^/left: /'; cat /var/cache/apt/orig
"#;

/// A context for [`DOCKERFILE`]: busybox, the agent probe, a `sub/` dir with
/// an ignored file, and the file the `files` stage copies.
fn mount_context() -> tempfile::TempDir {
    let ctx = context(&[
        ("Dockerfile", DOCKERFILE),
        ("sub/a", "context-a\n"),
        ("sub/keep.txt", "keep\n"),
        ("sub/skip.log", "ignored\n"),
        ("from-stage.txt", "stage-file-content\n"),
        (".dockerignore", "sub/*.log\n"),
    ]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    static_binary("agent_probe.c", &ctx.path().join("agent-probe"));
    ctx
}

struct Built {
    log: String,
    layout: PathBuf,
}

fn build(ctx: &Path, mode: &str, cache: &Path, agent: &Path, extra: &[&str]) -> Built {
    let layout = ctx.join(format!("oci-{mode}"));
    let _ = std::fs::remove_dir_all(&layout);
    let secret = ctx.join("..").join(format!(
        "{}-secret",
        ctx.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&secret, SECRET).unwrap();
    let mut cmd = kiln();
    cmd.args([
        "build",
        "--no-push",
        "--reproducible",
        "--isolation",
        mode,
        "--context",
    ])
    .arg(ctx)
    .arg("--cache-dir")
    .arg(cache)
    .arg("--oci-layout-path")
    .arg(&layout)
    .arg("--secret")
    .arg(format!("id=tok,src={}", secret.display()))
    .args(["--ssh", "default"])
    .env("SSH_AUTH_SOCK", agent)
    .args(extra);
    if mode == "chroot" {
        gitlab_job(&mut cmd);
    }
    let out = run(&mut cmd);
    let _ = std::fs::remove_file(&secret);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{mode}:\n{log}");
    Built { log, layout }
}

fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_mount_type_works_in_both_modes_and_leaves_the_same_trace_as_buildkit() {
    if !need_root("every_mount_type_works_in_both_modes_and_leaves_the_same_trace_as_buildkit") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let agent = Agent::start(t.path());
    let ctx = mount_context();
    let mut digests = Vec::new();
    for mode in ["chroot", "namespaces"] {
        let cache = t.path().join(format!("cache-{mode}"));
        let first = build(ctx.path(), mode, &cache, &agent.sock, &[]);
        let log = &first.log;
        let lines = |want: &str| log.contains(&format!("│ {want}"));
        for want in [
            "cache-runs=1",
            "owned=700 1000:1000",
            &format!("secret-file={} 400", sha256(SECRET)),
            &format!("secret-env={}", sha256(SECRET)),
            "secret-target-ok",
            "tmpfs-ok",
            "bind-has=a keep.txt ",
            "bind-done",
            "bind-rw=changed",
            "stage-file-content",
            "agent: 1 identities at /run/buildkit/ssh_agent.0",
            "ro-sees-cache",
            "ro-write-discarded",
            "secret-meta=440 1000:1000",
            "keep",
        ] {
            assert!(lines(want), "{mode}: {want:?} missing:\n{log}");
        }
        // A mount step that writes only into its mounts changes nothing (the
        // image's /etc and the targets' parents included).
        for l in log
            .lines()
            .filter(|l| l.contains("RUN --mount") && l.contains("BUILT"))
        {
            assert!(
                l.contains("BUILT no changes"),
                "{mode}: a mount left a trace: {l}\n{log}"
            );
        }
        // Namespaces mode enforces `ro` and `size` with real mounts; chroot mode
        // discards the writes instead (a copy, on disk), as the README says.
        if mode == "namespaces" {
            assert!(lines("ro-refused") && lines("tmpfs-bounded"), "{log}");
        }
        assert!(
            !log.contains("skip.log"),
            "{mode}: .dockerignore'd file shown:\n{log}"
        );
        assert!(
            !log.contains("apt-cache-has=orig"),
            "{mode}: the image's dir shows through the cache:\n{log}"
        );
        for gone in [
            "/run",
            "/x",
            "/b",
            "/b/c",
            "/root/.cache",
            "/from-stage",
            "/owned",
            "/roc",
            "/s2",
            "/tsz",
        ] {
            assert!(
                lines(&format!("left: ls: {gone}: No such file or directory")),
                "{mode}: {gone} is left in the image:\n{log}"
            );
        }
        // The user's context is never changed, even by a root step.
        assert_eq!(
            std::fs::read_to_string(ctx.path().join("sub/a")).unwrap(),
            "context-a\n"
        );
        assert!(
            ctx.path().join("sub/keep.txt").exists(),
            "{mode}: context file removed"
        );
        // The cache persists: the second build's step sees the first one's run.
        let second = build(ctx.path(), mode, &cache, &agent.sock, &[]);
        assert!(
            second.log.contains("│ cache-runs=2"),
            "{mode}:\n{}",
            second.log
        );
        digests.push(manifest_digest(&first.layout));
        // No empty mount points, parent dirs or changed parents in any layer.
        let work = tempfile::tempdir().unwrap();
        let root = unpack(
            &format!("oci:{}:latest", first.layout.display()),
            work.path(),
        );
        for p in [
            "run",
            "x",
            "b",
            "root/.cache",
            "from-stage",
            "owned",
            "etc/tok.conf",
        ] {
            assert!(!root.join(p).exists(), "{mode}: /{p} is in the image");
        }
        assert_eq!(
            std::fs::read_to_string(root.join("var/cache/apt/orig")).unwrap(),
            "keep\n"
        );
        assert!(!root.join("var/cache/apt/runs").exists());
    }
    // Every mount step after the first two RUNs changes nothing, in both modes
    // alike: the images are the same bytes (--reproducible).
    assert_eq!(
        digests[0], digests[1],
        "chroot and namespaces images differ"
    );
}

#[test]
fn a_bind_mount_of_changed_context_content_reruns_the_step_and_a_cache_does_not() {
    if !need_root("a_bind_mount_of_changed_context_content_reruns_the_step_and_a_cache_does_not") {
        return;
    }
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN --mount=type=bind,source=req.txt,target=/req.txt [\"/bin/busybox\", \"cat\", \"/req.txt\"]\n\
             RUN --mount=type=cache,target=/c [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox date > /c/stamp\"]\n\
             RUN --mount=type=secret,id=s [\"/bin/busybox\", \"true\"]\n",
        ),
        ("req.txt", "one\n"),
    ]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let go = |secret: &str| {
        let out = run(gitlab_job(
            kiln()
                .args([
                    "build",
                    "--no-push",
                    "--cache",
                    "--isolation",
                    "chroot",
                    "--context",
                ])
                .arg(ctx.path())
                .arg("--cache-dir")
                .arg(cache.path())
                .arg("--oci-layout-path")
                .arg(ctx.path().join("oci"))
                .args(["--secret", "id=s,env=KILN_TEST_S"])
                .env("KILN_TEST_S", secret),
        ));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    };
    let step = |log: &str, n: usize| -> String {
        log.lines()
            .find(|l| l.contains(&format!(" {n}/5] RUN")))
            .unwrap_or("")
            .to_string()
    };
    go("a");
    let again = go("b");
    for n in [3, 4, 5] {
        assert!(step(&again, n).contains("CACHED"), "step {n}: {again}");
    }
    std::fs::write(ctx.path().join("req.txt"), "two\n").unwrap();
    let changed = go("b");
    assert!(
        step(&changed, 3).contains("BUILT"),
        "the bind source changed:\n{changed}"
    );
    assert!(changed.contains("│ two"), "{changed}");
}

#[test]
fn locked_caches_serialize_concurrent_builds_in_the_job() {
    if !need_root("locked_caches_serialize_concurrent_builds_in_the_job") {
        return;
    }
    let script = "if [ -e /c/busy ]; then echo OVERLAP; fi; touch /c/busy; sleep 1; rm /c/busy; echo step-done";
    let cache = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    let mut ctxs = Vec::new();
    for (i, sharing) in ["locked", "shared"].iter().enumerate() {
        for j in 0..2 {
            let ctx = context(&[(
                "Dockerfile",
                &format!(
                    "FROM scratch\nCOPY busybox /bin/busybox\nARG N={i}{j}\n\
                     RUN --mount=type=cache,target=/c,sharing={sharing},id=lock-{sharing} [\"/bin/busybox\", \"sh\", \"-c\", \"PATH=/bin; /bin/busybox --install -s /bin; {script}\"]\n"
                ),
            )]);
            std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
            let mut cmd = kiln();
            cmd.args(["build", "--no-push", "--isolation", "chroot", "--context"])
                .arg(ctx.path())
                .arg("--cache-dir")
                .arg(cache.path())
                .arg("--oci-layout-path")
                .arg(ctx.path().join("oci"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            children.push(gitlab_job(&mut cmd).spawn().unwrap());
            ctxs.push(ctx);
        }
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        assert!(log.contains("│ step-done"), "{log}");
        // chroot mode moves the cache into one root at a time: shared waits too.
        assert!(
            !log.contains("OVERLAP"),
            "two steps had the cache at once:\n{log}"
        );
    }
}

/// `kiln build` of `ctx` into an OCI layout: (success, stderr).
fn plain_build(ctx: &Path) -> (bool, String) {
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx)
        .arg("--oci-layout-path")
        .arg(ctx.join("oci")));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mount_errors_name_the_line_and_the_fix() {
    let ctx = context(&[]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    for (df, want) in [
        (
            "RUN --mount=type=secret,id=npmrc,required [\"/bin/busybox\", \"true\"]",
            "Dockerfile:3: RUN --mount=type=secret,id=npmrc: the secret \"npmrc\" is required and was not given; pass --secret id=npmrc,src=FILE",
        ),
        (
            "RUN --mount=type=nfs,target=/x [\"/bin/busybox\", \"true\"]",
            "Dockerfile:3: RUN --mount=type=nfs,target=/x: unknown mount type \"nfs\"",
        ),
        (
            "RUN --mount=type=cache [\"/bin/busybox\", \"true\"]",
            "Dockerfile:3: RUN --mount=type=cache: --mount type=cache needs a target",
        ),
        (
            "RUN --mount=type=bind,source=nope,target=/n [\"/bin/busybox\", \"true\"]",
            "Dockerfile:3: RUN --mount at /n: nope does not exist in the build context",
        ),
        (
            "RUN --mount=type=ssh,required [\"/bin/busybox\", \"true\"]",
            "Dockerfile:3: RUN --mount=type=ssh,id=default: no ssh agent \"default\" was given; pass --ssh default",
        ),
    ] {
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM scratch\nCOPY busybox /bin/busybox\n{df}\n"),
        )
        .unwrap();
        let (ok, err) = plain_build(ctx.path());
        assert!(!ok, "{df}: {err}");
        assert!(err.contains(want), "{df}: want {want:?} in:\n{err}");
    }
    // A secret that is not required and not given: the step runs without it.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN --mount=type=secret,id=opt [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox test -e /run/secrets/opt || echo no-secret\"]\n",
    )
    .unwrap();
    let (ok, err) = plain_build(ctx.path());
    assert!(ok && err.contains("│ no-secret"), "{err}");
    // --secret's own errors name the flag and never echo a value.
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .args([
            "--tar-path",
            "/dev/null",
            "--secret",
            "id=x,env=KILN_UNSET_VAR_FOR_TEST",
        ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "--secret id=x: the environment variable KILN_UNSET_VAR_FOR_TEST is not set"
            ),
        "{err}"
    );
}

/// Every byte kiln wrote or printed: layers decompressed, the config, history
/// and index of the OCI layout, the docker-archive, the cache dir (blobs
/// decompressed too) and the log at -v. Neither the secret nor the company CA
/// may be anywhere.
#[test]
fn the_secret_and_the_ca_reach_no_layer_config_history_layout_log_or_cache() {
    if !need_root("the_secret_and_the_ca_reach_no_layer_config_history_layout_log_or_cache") {
        return;
    }
    let pki = support::gitlab::Pki::new();
    let pem = std::fs::read_to_string(&pki.ca).unwrap();
    let ca_line = pem.lines().nth(1).unwrap().to_string();
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nARG MODE\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN --mount=type=secret,id=tok sh -c 'mkdir -p /tmp && cp /run/secrets/tok /tmp/t && test -s /tmp/t && rm /tmp/t && echo used-file'\n\
         RUN --mount=type=secret,id=tok,env=TOK sh -c 'test -n \"$TOK\" && echo used-env; env | grep -c TOK'\n\
         RUN sh -c 'test -s \"$SSL_CERT_FILE\" && echo ca-there; mkdir -p /out && date > /out/stamp'\n",
    ), (".dockerignore", "not-here\n")]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), SECRET).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let cache = out_dir.path().join("cache");
    let layout = out_dir.path().join("oci");
    let tar = out_dir.path().join("image.tar");
    for (mode, sandboxed) in [("chroot", true), ("namespaces", false)] {
        let mut cmd = kiln();
        cmd.args([
            "-v",
            "build",
            "--no-push",
            "--cache",
            "--isolation",
            mode,
            "--context",
        ])
        .arg(ctx.path())
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--oci-layout-path")
        .arg(&layout)
        .arg("--tar-path")
        .arg(&tar)
        .arg("--secret")
        .arg(format!("id=tok,src={}", secret_file.path().display()))
        .args(["--run-ca-certs", "on", "--ca-cert"])
        .arg(&pki.ca)
        .args(["--build-arg", &format!("MODE={mode}")]);
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{mode}:\n{log}");
        for want in ["used-file", "used-env", "ca-there"] {
            assert!(log.contains(&format!("│ {want}")), "{mode}: {want}:\n{log}");
        }
        assert!(
            log.contains("using "),
            "{mode}: -v gives the debug log:\n{log}"
        );
        for needle in [SECRET, &ca_line] {
            assert!(!log.contains(needle), "{mode}: in the log: {needle}");
        }
        // Every file, and every gzip or zstd blob decompressed.
        for e in walkdir::WalkDir::new(out_dir.path()).into_iter().flatten() {
            if !e.file_type().is_file() {
                continue;
            }
            let raw = std::fs::read(e.path()).unwrap();
            let mut texts = vec![raw.clone()];
            let mut gz = Vec::new();
            if std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut gz)
                .is_ok()
            {
                texts.push(gz);
            }
            if let Ok(z) = zstd::decode_all(&raw[..]) {
                texts.push(z);
            }
            for t in &texts {
                for needle in [SECRET, ca_line.as_str()] {
                    assert!(
                        !t.windows(needle.len()).any(|w| w == needle.as_bytes()),
                        "{mode}: {needle:?} is in {}",
                        e.path().display()
                    );
                }
            }
        }
    }
}

/// A bind mount from an image, a cache seeded from a stage (`from`/`source`)
/// and a private cache, in both modes.
#[test]
fn bind_from_an_image_and_a_cache_seeded_from_a_stage() {
    if !need_root("bind_from_an_image_and_a_cache_seeded_from_a_stage") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let base = format!("{}/base/busybox", reg.addr);
    let ctx = context(&[
        ("seed.txt", "seeded-content\n"),
        (
            "Dockerfile",
            &format!(
                "FROM scratch AS seed\nCOPY seed.txt /s/seed.txt\n\
                 FROM {base}\n\
                 RUN --mount=type=bind,from={base},source=/bin,target=/imgbin test -e /imgbin/busybox && echo image-bind-ok\n\
                 RUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/s cat /c/seed.txt\n\
                 RUN --mount=type=cache,target=/p,id=priv,sharing=private sh -c 'touch /p/x && echo private-ok'\n\
                 RUN ls -d /imgbin /c /p 2>&1 | while read l; do echo \"left: $l\"; done\n"
            ),
        ),
    ]);
    for mode in ["chroot", "namespaces"] {
        let cache = tempfile::tempdir().unwrap();
        let log = build_with_cache(mode, ctx.path(), &reg, cache.path());
        for want in [
            "image-bind-ok",
            "seeded-content",
            "private-ok",
            "left: ls: /imgbin: No such file or directory",
            "left: ls: /c: No such file or directory",
            "left: ls: /p: No such file or directory",
        ] {
            assert!(log.contains(&format!("│ {want}")), "{mode}: {want}:\n{log}");
        }
    }
}

/// A cache mount outlives the build with what the step wrote as root, setuid
/// binaries included. On a shell-executor runner other local users share the
/// machine: none of them may reach those files, neither while the build runs
/// nor after it (issue #25's hostile case), and a cache dir an older kiln left
/// open is closed.
#[test]
fn a_setuid_file_in_a_cache_mount_is_out_of_other_users_reach() {
    if !need_root("a_setuid_file_in_a_cache_mount_is_out_of_other_users_reach") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let base = format!("{}/base/busybox", reg.addr);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {base}\n\
             RUN --mount=type=cache,target=/c,id=tools cp /bin/busybox /c/su && chmod 4755 /c/su && echo setuid-placed\n"
        ),
    )]);
    for mode in ["chroot", "namespaces"] {
        let cache = tempfile::tempdir().unwrap();
        // The cache dir as a job might keep it: in the project, open to all.
        std::fs::set_permissions(cache.path(), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir(cache.path().join("mounts")).unwrap();
        std::fs::set_permissions(
            cache.path().join("mounts"),
            PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let log = build_with_cache(mode, ctx.path(), &reg, cache.path());
        assert!(log.contains("│ setuid-placed"), "{mode}:\n{log}");
        let su = std::fs::read_dir(cache.path().join("mounts"))
            .unwrap()
            .flatten()
            .map(|e| e.path().join("su"))
            .find(|p| p.exists())
            .expect("the cache mount keeps the step's file");
        let m = std::fs::metadata(&su).unwrap().permissions().mode();
        assert_eq!(m & 0o4000, 0o4000, "{mode}: the step's setuid bit is kept");
        // Another local user (nobody) cannot run it. (The shell execs it: setpriv
        // itself keeps root's capabilities up to its own exec.)
        let other = run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["/bin/sh", "-c", "exec \"$0\" true"])
            .arg(&su));
        let err = String::from_utf8_lossy(&other.stderr).into_owned();
        assert!(
            !other.status.success() && err.contains("Permission denied"),
            "{mode}: another user reached {}: {err}",
            su.display()
        );
    }
}

/// `kiln build --no-push` of `ctx` in `mode` (chroot: in the unprivileged-job
/// sandbox) with `cache` as the cache dir; its log, after checking it succeeded.
fn build_with_cache(mode: &str, ctx: &Path, reg: &Registry, cache: &Path) -> String {
    let mut cmd = kiln();
    cmd.args(["build", "--no-push", "--isolation", mode, "--context"])
        .arg(ctx)
        .args(["--insecure-registry", &reg.addr, "--cache-dir"])
        .arg(cache)
        .arg("--oci-layout-path")
        .arg(ctx.join(format!("oci-{mode}")));
    if mode == "chroot" {
        gitlab_job(&mut cmd);
    }
    let out = run(&mut cmd);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{mode}:\n{log}");
    log
}
