//! Real Dockerfile workloads in chroot mode inside the unprivileged-job sandbox,
//! on a Debian bookworm base made with debootstrap from Debian's mirror (the one
//! outside source the suite may use, and only because real package installs are
//! the point): the JVM (`default-jdk-headless`, whose postinst checks
//! `mountpoint -q /proc`, and `java`, which finds `libjli.so` through
//! `/proc/self/exe`), Node's `os.cpus()` and `npm ci` running a package's
//! postinstall script (npm 9 sizes its script queue from `os.cpus()`), Python's multiprocessing (`/dev/shm`)
//! and ptys (`os.openpty`), and procps's `ps` and `pgrep`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::sandbox::gitlab_job;
use support::*;

/// A minbase bookworm tree, made once per checkout under target/ and reused.
/// The tests of this file run in parallel: the first one makes it, the others wait.
fn bookworm() -> Option<PathBuf> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(make_bookworm).clone()
}

fn make_bookworm() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-rootfs/bookworm");
    let done = dir.join(".kiln-complete");
    if done.exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent()?).ok()?;
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (ci/test installs it)");
    assert!(
        out.status.success(),
        "debootstrap failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Device nodes are the runtime's, not the image's.
    for e in std::fs::read_dir(dir.join("dev")).ok()?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    std::fs::write(&done, "").ok()?;
    Some(dir)
}

#[test]
fn jvm_node_python_and_procps_build_in_an_unprivileged_job() {
    if !need_root("jvm_node_python_and_procps_build_in_an_unprivileged_job") {
        return;
    }
    let Some(base) = bookworm() else {
        panic!("could not make the bookworm base");
    };
    let ctx = context(&[
        (
            "app/package.json",
            r#"{ "name": "app", "version": "1.0.0", "dependencies": { "dep": "file:./dep" } }"#,
        ),
        (
            "app/dep/package.json",
            r#"{ "name": "dep", "version": "1.0.0", "scripts": { "postinstall": "node -e \"require('fs').writeFileSync('/tmp/postinstall-ran', String(require('os').cpus().length))\"" } }"#,
        ),
        (
            "Dockerfile",
            r#"FROM scratch
COPY root/ /
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends default-jdk-headless nodejs npm python3 procps > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1)
COPY app/ /app/
RUN cd /app && npm install --offline --no-audit --no-fund && rm -rf node_modules /tmp/postinstall-ran && npm ci --offline --no-audit --no-fund && test "$(cat /tmp/postinstall-ran)" -gt 0 && echo npm-ci-postinstall-saw-cpus
RUN printf 'public class Hi { public static void main(String[] a) { System.out.println("java-ran cpus=" + Runtime.getRuntime().availableProcessors()); } }\n' > /tmp/Hi.java && cd /tmp && javac Hi.java && java -cp /tmp Hi
RUN node -e 'console.log("node-cpus=" + (require("os").cpus().length > 0))'
RUN python3 -c 'import multiprocessing as m; p = m.Pool(2); print("python-pool", sum(p.map(abs, [-1, -2, 3]))); p.close(); p.join()'
RUN python3 -c 'import os; m, s = os.openpty(); os.write(m, b"hi\n"); print("pty-works", os.ttyname(s).startswith("/dev/pts/"), os.read(s, 2))'
RUN sleep 30 & ps -eo comm | grep -qx sleep && echo ps-sees-sleep; pgrep -x sleep > /dev/null && echo pgrep-sees-sleep; mountpoint -q /proc && echo proc-is-a-mountpoint
"#,
        ),
    ]);
    // The tree goes in as the context's root/ (a symlink would be copied as one).
    let root = ctx.path().join("root");
    let cp = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&base)
        .arg(&root)
        .status()
        .expect("cp");
    assert!(cp.success());
    let _ = std::fs::remove_file(root.join(".kiln-complete"));
    let out = run(gitlab_job(
        kiln()
            .args(["build", "--no-push", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci")),
    ));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("RUN isolation: chroot"), "{log}");
    for want in [
        "java-ran cpus=",
        "node-cpus=true",
        "npm-ci-postinstall-saw-cpus",
        "python-pool 6",
        "ps-sees-sleep",
        "pgrep-sees-sleep",
        "proc-is-a-mountpoint",
        "pty-works True b'hi'",
    ] {
        assert!(log.contains(want), "{want:?} missing:\n{log}");
    }
}

/// The company CA inside RUN steps (`--run-ca-certs`): curl, Python, Node and git
/// reach an HTTPS server signed by the test's "KNUT" CA, also after the step
/// rebuilt the system bundle, in chroot mode in the job sandbox (on by default
/// there: GITLAB_CI and KILN_CA_CERT are set) and in namespaces mode; without it
/// they fail. The CA is in no layer, config or history, and not in the cache key.
#[test]
fn run_steps_trust_the_company_ca_for_their_duration_only() {
    if !need_root("run_steps_trust_the_company_ca_for_their_duration_only") {
        return;
    }
    let Some(base) = bookworm() else {
        panic!("could not make the bookworm base");
    };
    let pki = support::gitlab::Pki::new();
    let server = Registry::start_with("", Some((&pki.cert, &pki.key)));
    let url = format!("https://{}/v2/", server.addr);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            r#"FROM scratch
COPY root/ /
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl git python3 nodejs ca-certificates > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1)
ARG MODE
RUN echo "mode=$MODE"; \
    curl -sS -o /dev/null -w 'curl=%{{http_code}}\n' {url} 2>&1 | tail -1; \
    python3 -c "import urllib.request; print('python=%d' % urllib.request.urlopen('{url}').status)" 2>&1 | tail -1; \
    node -e "require('https').get('{url}', r => console.log('node=' + r.statusCode)).on('error', e => console.log('node-error ' + e.code))"; \
    git ls-remote {url} 2>&1 | grep -qi 'certificate' && echo git=tls-refused || echo git=tls-ok; \
    update-ca-certificates > /dev/null 2>&1; \
    curl -sS -o /dev/null -w 'curl-after-update=%{{http_code}}\n' {url} 2>&1 | tail -1
"#
        ),
    )]);
    let root = ctx.path().join("root");
    assert!(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&base)
        .arg(&root)
        .status()
        .expect("cp")
        .success());
    let _ = std::fs::remove_file(root.join(".kiln-complete"));
    let cache = tempfile::tempdir().unwrap();
    let build = |mode: &str, sandboxed: bool, extra: &[&str], env: &[(&str, &str)]| {
        let layout = ctx.path().join(format!("oci-{mode}"));
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--cache", "--cache-dir"])
            .arg(cache.path())
            .args(["--context"])
            .arg(ctx.path())
            .args(["--build-arg", &format!("MODE={mode}"), "--oci-layout-path"])
            .arg(&layout)
            .args(extra)
            .env_remove("GITLAB_CI")
            .env_remove("KILN_CA_CERT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{mode}:\n{log}");
        (log, layout)
    };
    let ca = pki.ca.display().to_string();
    let gitlab = [("GITLAB_CI", "true"), ("KILN_CA_CERT", ca.as_str())];
    let (on, on_layout) = build("chroot-on", true, &[], &gitlab);
    let (off, _) = build("chroot-off", true, &["--run-ca-certs", "off"], &gitlab);
    let (ns, _) = build(
        "namespaces-on",
        false,
        &[
            "--isolation",
            "namespaces",
            "--run-ca-certs",
            "on",
            "--ca-cert",
            &ca,
        ],
        &[],
    );
    for (name, log) in [("chroot", &on), ("namespaces", &ns)] {
        for want in [
            "curl=200",
            "python=200",
            "node=200",
            "git=tls-ok",
            "curl-after-update=200",
        ] {
            assert!(log.contains(want), "{name}: {want:?} missing:\n{log}");
        }
    }
    assert!(
        off.contains("curl=000") || off.contains("curl: (60)"),
        "without the CA curl must fail:\n{off}"
    );
    assert!(off.contains("git=tls-refused"), "{off}");
    // The CA changes no cache key: the apt layer of the first build is reused.
    assert!(
        off.lines()
            .any(|l| l.contains("RUN apt-get update") && l.contains("CACHED")),
        "{off}"
    );
    // Nothing of the CA in the image: layers (unpacked), config and history.
    let pem = std::fs::read_to_string(&pki.ca).unwrap();
    let needle = pem.lines().nth(1).unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let rootfs = unpack(&format!("oci:{}:latest", on_layout.display()), work.path());
    let grep = Command::new("grep")
        .args(["-rlF", &needle])
        .arg(&rootfs)
        .arg(&on_layout)
        .arg(cache.path())
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&grep.stdout);
    assert!(
        found.trim().is_empty(),
        "the CA reached the image or the cache: {found}"
    );
    assert!(!on.contains(&needle), "the CA is in the log");
}
