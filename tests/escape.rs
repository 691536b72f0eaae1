//! A hostile RUN step (testdata/escape.c, built here as a static binary) tries to
//! leave its root in every isolation mode: nested chroot, kiln's environment, the
//! job's credential files and project dir, kiln's memory, stray descriptors, the
//! kernel's writable files and the host's devices. None of it may be reachable.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::sandbox::gitlab_job;
use support::*;

const TOKEN: &str = "job-token-the-step-must-not-see";
const AUTH: &str = "docker-config-auth-the-step-must-not-see";

/// Compile the escape program statically into `dir`.
fn escape_binary(dir: &Path) -> PathBuf {
    let out = dir.join("escape");
    static_binary("escape.c", &out);
    out
}

/// The job around the build: a HOME with `~/.docker/config.json`, a project dir
/// (the context) and the escape binary in it, all readable by `uid`.
struct Job {
    dir: tempfile::TempDir,
}

impl Job {
    fn new() -> Job {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::set_permissions(d, PermissionsExt::from_mode(0o777)).unwrap();
        for sub in ["home/.docker", "project", "writable", "work"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            std::fs::set_permissions(d.join(sub), PermissionsExt::from_mode(0o777)).unwrap();
        }
        std::fs::set_permissions(d.join("home"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(
            d.join("home/.docker/config.json"),
            format!("{{\"auths\":{{\"registry.example\":{{\"auth\":\"{AUTH}\"}}}}}}"),
        )
        .unwrap();
        std::fs::set_permissions(
            d.join("home/.docker/config.json"),
            PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let bin = escape_binary(&d.join("project"));
        std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).unwrap();
        let dockerfile = format!(
            "FROM scratch\nCOPY escape /escape\nRUN [\"/escape\", \"{}\", \"{}\"]\n",
            d.join("home/.docker/config.json").display(),
            d.join("writable").display()
        );
        std::fs::write(d.join("project/Dockerfile"), dockerfile).unwrap();
        std::fs::set_permissions(
            d.join("project/Dockerfile"),
            PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        Job { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `kiln build` of the project with the job's credentials in its environment.
    fn build(&self, cmd: &mut Command, isolation: &str) -> String {
        cmd.args(["build", "--no-push", "--isolation", isolation, "--context"])
            .arg(self.path("project"))
            .arg("--oci-layout-path")
            .arg(self.path("work/oci"))
            .arg("--work-dir")
            .arg(self.path("work"))
            .env("HOME", self.path("home"))
            .env("CI_JOB_TOKEN", TOKEN)
            .env("CI_REGISTRY_PASSWORD", TOKEN)
            .env("CI_PROJECT_DIR", self.path("project"));
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "the build itself must succeed:\n{err}"
        );
        err
    }

    /// Everything the escape program reached is a failure.
    fn assert_contained(&self, log: &str, mode: &str) {
        assert!(
            log.contains("escape program done"),
            "{mode}: the escape program ran to its end:\n{log}"
        );
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains("LEAK")).collect();
        assert!(
            leaks.is_empty(),
            "{mode}: the step reached outside its root:\n{}\n\nfull log:\n{log}",
            leaks.join("\n")
        );
        assert!(
            !log.contains(TOKEN) && !log.contains(AUTH),
            "{mode}: a credential reached the step:\n{log}"
        );
        let written: Vec<_> = std::fs::read_dir(self.path("writable")).unwrap().collect();
        assert!(
            written.is_empty(),
            "{mode}: the step wrote into the job's files"
        );
        assert!(
            !self.path("project/escaped").exists() && !self.path("project/kiln-escape").exists(),
            "{mode}: the project dir is untouched"
        );
    }
}

/// The capability bounding set the step reported.
fn capbnd(log: &str) -> String {
    log.lines()
        .find_map(|l| l.split_once("capbnd: ").map(|(_, v)| v.trim().to_string()))
        .unwrap_or_default()
}

/// Docker's default capabilities, and the same less CAP_SYS_CHROOT.
const DOCKER_CAPBND: &str = "00000000a80425fb";
const DOCKER_CAPBND_NO_CHROOT: &str = "00000000a80025fb";

/// The /dev the step listed, sorted.
fn dev_listing(log: &str) -> Vec<String> {
    let line = log
        .lines()
        .find_map(|l| l.split_once("dev: ").map(|(_, rest)| rest.to_string()))
        .unwrap_or_default();
    let mut names: Vec<String> = line
        .split_whitespace()
        .filter(|n| *n != "." && *n != "..")
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// What Docker's /dev holds for a container without a TTY, as kiln makes it.
const DOCKER_DEV: &[&str] = &[
    "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
    "urandom", "zero",
];

#[test]
fn chroot_mode_in_an_unprivileged_job_keeps_the_step_inside() {
    if !need_root("chroot_mode_in_an_unprivileged_job_keeps_the_step_inside") {
        return;
    }
    let job = Job::new();
    let log = job.build(gitlab_job(&mut kiln()), "chroot");
    assert!(log.contains("RUN isolation: chroot"), "{log}");
    job.assert_contained(&log, "chroot");
    assert!(
        log.contains("blocked chroot: Operation not permitted"),
        "the step has no CAP_SYS_CHROOT:\n{log}"
    );
    assert_eq!(capbnd(&log), DOCKER_CAPBND_NO_CHROOT, "{log}");
}

#[test]
fn namespaces_mode_pivots_into_the_root_with_its_own_proc_dev_and_read_only_sys() {
    if !need_root("namespaces_mode_pivots_into_the_root_with_its_own_proc_dev_and_read_only_sys") {
        return;
    }
    let job = Job::new();
    let log = job.build(&mut kiln(), "namespaces");
    assert!(log.contains("RUN isolation: namespaces"), "{log}");
    job.assert_contained(&log, "namespaces");
    assert_eq!(capbnd(&log), DOCKER_CAPBND, "Docker's bounding set:\n{log}");
    assert_eq!(dev_listing(&log), DOCKER_DEV, "a Docker-like /dev:\n{log}");
}

#[test]
fn rootless_mode_keeps_the_step_inside() {
    if !need_root("rootless_mode_keeps_the_step_inside") {
        return;
    }
    let job = Job::new();
    let bin = job.path("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin);
    let log = job.build(&mut cmd, "rootless");
    assert!(log.contains("RUN isolation: rootless"), "{log}");
    job.assert_contained(&log, "rootless");
    assert_eq!(capbnd(&log), DOCKER_CAPBND, "Docker's bounding set:\n{log}");
    assert_eq!(dev_listing(&log), DOCKER_DEV, "a Docker-like /dev:\n{log}");
}

/// A base whose /etc or /dev is an absolute symlink to a host directory: kiln's
/// resolv.conf and hosts, and the step's /dev, go where the link leads inside
/// the root (made there, and taken out after the step), never on the host.
#[test]
fn a_base_whose_etc_or_dev_links_out_of_the_root_gets_nothing_written_on_the_host() {
    if !need_root("a_base_whose_etc_or_dev_links_out_of_the_root_gets_nothing_written_on_the_host")
    {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    for (link, sandboxed) in [("etc", true), ("etc", false), ("dev", true), ("dev", false)] {
        let target = host.path().join(format!("{link}-{sandboxed}"));
        std::fs::create_dir(&target).unwrap();
        let ctx = context(&[(
            "Dockerfile",
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY root/ /\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat /etc/hosts > /dev/null; /bin/busybox echo step-ran\"]\n",
        )]);
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
        std::fs::create_dir(ctx.path().join("root")).unwrap();
        std::os::unix::fs::symlink(&target, ctx.path().join("root").join(link)).unwrap();
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--isolation"])
            .arg(if sandboxed { "chroot" } else { "namespaces" })
            .arg("--context")
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"));
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("/{link} -> host dir, sandboxed={sandboxed}");
        assert!(
            out.status.success() && err.contains("step-ran"),
            "{what}:\n{err}"
        );
        // The link stays as the image has it, and what kiln made where it
        // leads inside the root is gone again.
        let root = unpack(
            &format!("oci:{}:latest", ctx.path().join("oci").display()),
            &ctx.path().join("unpacked"),
        );
        assert!(
            std::fs::symlink_metadata(root.join(link))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{what}"
        );
        assert!(
            !root.join(target.strip_prefix("/").unwrap()).exists(),
            "{what}: kiln's stand-in was left in the image"
        );
        let written: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
        assert!(
            written.is_empty(),
            "{what}: kiln wrote on the host: {written:?}"
        );
    }
}

/// A step that replaces /etc and /dev with links to a host directory: kiln's
/// cleanup after the step (restoring resolv.conf and hosts, removing the device
/// nodes it made) resolves every path again inside the root, so nothing on the
/// host is removed or rewritten.
#[test]
fn a_step_that_turns_etc_and_dev_into_links_cannot_steer_the_cleanup() {
    if !need_root("a_step_that_turns_etc_and_dev_into_links_cannot_steer_the_cleanup") {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    for (mode, sandboxed) in [("chroot", true), ("namespaces", false)] {
        let target = host.path().join(mode);
        std::fs::create_dir(&target).unwrap();
        let names = ["hosts", "resolv.conf", "null", "zero", "tty"];
        for n in names {
            std::fs::write(target.join(n), "host file").unwrap();
        }
        let t = target.display();
        let ctx = context(&[(
            "Dockerfile",
            &format!(
                "FROM scratch\nCOPY busybox /bin/busybox\n\
                 RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox rm -rf /etc /dev; /bin/busybox ln -s {t} /etc; /bin/busybox ln -s {t} /dev; /bin/busybox echo step-ran\"]\n"
            ),
        )]);
        std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--isolation", mode, "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"));
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("step-ran"), "{mode}: the step ran:\n{err}");
        for n in names {
            let got = std::fs::read_to_string(target.join(n)).unwrap_or_default();
            assert_eq!(
                got, "host file",
                "{mode}: host file {n} was changed:\n{err}"
            );
        }
        let extra: Vec<String> = std::fs::read_dir(&target)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| !names.contains(&n.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{mode}: kiln wrote on the host: {extra:?}"
        );
    }
}

/// Rootless with /etc/subuid and /etc/subgid ranges (bind-mounted over the real
/// files in a private mount namespace): kiln re-executes itself in a user
/// namespace holding them, and the step is contained there too.
#[test]
fn rootless_mode_with_subordinate_ids_keeps_the_step_inside() {
    if !need_root("rootless_mode_with_subordinate_ids_keeps_the_step_inside") {
        return;
    }
    let job = Job::new();
    let bin = job.path("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).unwrap();
    let sub = job.path("subids");
    std::fs::write(&sub, "nobody:200000:65536\n").unwrap();
    let script = format!(
        "mount --bind {0} /etc/subuid && mount --bind {0} /etc/subgid && exec \"$@\"",
        sub.display()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", &script, "sh", "setpriv"])
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin);
    let log = job.build(&mut cmd, "rootless");
    assert!(
        log.contains("RUN isolation: rootless (uids 0-65536"),
        "the user's ranges are used:\n{log}"
    );
    job.assert_contained(&log, "rootless with ranges");
    assert_eq!(dev_listing(&log), DOCKER_DEV, "a Docker-like /dev:\n{log}");
    assert_eq!(capbnd(&log), DOCKER_CAPBND, "Docker's bounding set:\n{log}");
}
