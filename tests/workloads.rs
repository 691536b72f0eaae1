//! Real Dockerfile workloads in chroot mode inside the unprivileged-job sandbox,
//! on a Debian bookworm base made with debootstrap from Debian's mirror (the one
//! outside source the suite may use, and only because real package installs are
//! the point): the JVM (`default-jdk-headless`, whose postinst checks
//! `mountpoint -q /proc`, and `java`, which finds `libjli.so` through
//! `/proc/self/exe`), Node's `os.cpus()` and `npm ci` running a package's
//! postinstall script (npm 9 sizes its script queue from `os.cpus()`), Python's multiprocessing (`/dev/shm`)
//! and ptys (`os.openpty`), and procps's `ps` and `pgrep`.

mod support;

use support::debian::context_with_bookworm;
use support::sandbox::gitlab_job;
use support::*;

#[test]
fn jvm_node_python_and_procps_build_in_an_unprivileged_job() {
    if !need_root("jvm_node_python_and_procps_build_in_an_unprivileged_job") {
        return;
    }
    let ctx = context_with_bookworm(&[
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
