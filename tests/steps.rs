//! Supervising RUN steps: output streams while a step runs (however much of it
//! there is), and a killed kiln takes its steps with it.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::sandbox::gitlab_job;
use support::*;

/// Wait for `child` at most `limit`; kill it and fail if it is still running.
fn wait_bounded(child: &mut std::process::Child, limit: Duration, what: &str) -> bool {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: kiln still running after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("sh -c") {
                found.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn busybox_context(dockerfile_tail: &str) -> tempfile::TempDir {
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM scratch\nCOPY busybox /bin/busybox\n{dockerfile_tail}"),
    )]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    ctx
}

#[test]
fn a_step_that_prints_megabytes_streams_in_every_mode() {
    if !need_root("a_step_that_prints_megabytes_streams_in_every_mode") {
        return;
    }
    // 550 KB of output, far beyond a pipe's 64 KiB buffer.
    let ctx = busybox_context(
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"i=0; while [ $i -lt 5000 ]; do /bin/busybox echo line-$i-0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890; i=$((i+1)); done; /bin/busybox echo all-printed\"]\n",
    );
    for (mode, sandboxed) in [("chroot", true), ("namespaces", false), ("rootless", false)] {
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--isolation", mode, "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join(format!("oci-{mode}")))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = 0usize;
            let mut last = String::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("│ line-") {
                    lines += 1;
                }
                if l.contains("all-printed") {
                    last = l;
                }
            }
            (lines, last)
        });
        let ok = wait_bounded(&mut child, Duration::from_secs(120), mode);
        let (lines, last) = reader.join().unwrap();
        assert!(ok, "{mode}: the build failed");
        assert_eq!(lines, 5000, "{mode}: every line was streamed");
        assert!(!last.is_empty(), "{mode}: the step's last line arrived");
    }
}

#[test]
fn a_killed_kiln_takes_its_steps_with_it() {
    if !need_root("a_killed_kiln_takes_its_steps_with_it") {
        return;
    }
    for mode in ["namespaces", "rootless"] {
        let marker = format!("{}{}", 7_000_000 + std::process::id(), mode.len());
        let ctx = busybox_context(&format!(
            "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep {marker} & /bin/busybox echo step-started; /bin/busybox sleep {marker}\"]\n"
        ));
        let work = tempfile::tempdir().unwrap();
        let mut child = kiln()
            .args(["build", "--no-push", "--isolation", mode, "--context"])
            .arg(ctx.path())
            .arg("--work-dir")
            .arg(work.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read kiln's output on a thread, so a kiln that never streams cannot
        // hang the test.
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("step-started") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("{mode}: the step's first line never arrived while it ran");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&marker).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(processes_with(&marker).len(), 2, "{mode}: both sleeps run");
        // While it runs, no other user can reach the build's rootfs.
        let dirs: Vec<u32> = std::fs::read_dir(work.path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().permissions().mode() & 0o7777)
            .collect();
        assert_eq!(dirs, [0o700], "{mode}: kiln's work dir is private");
        child.kill().unwrap();
        child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !processes_with(&marker).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = processes_with(&marker);
        assert!(left.is_empty(), "{mode}: the step outlived kiln: {left:?}");
        // Its work dir stayed behind; the next build in the same place removes it.
        assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 1);
        let next = busybox_context("");
        let out = support::run(
            kiln()
                .args(["build", "--no-push", "--context"])
                .arg(next.path())
                .arg("--oci-layout-path")
                .arg(next.path().join("oci"))
                .arg("--work-dir")
                .arg(work.path()),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("left by killed kiln builds"),
            "{mode}: said:\n{err}"
        );
        assert_eq!(
            std::fs::read_dir(work.path()).unwrap().count(),
            0,
            "{mode}: the killed build's work dir is reclaimed"
        );
        let _ = reader.join();
    }
}

#[test]
fn what_a_step_leaves_running_ends_with_it_in_chroot_mode() {
    if !need_root("what_a_step_leaves_running_ends_with_it_in_chroot_mode") {
        return;
    }
    // Two daemons that left the step's session: one holds the output pipe (it used
    // to hang the build until it exited), one let go of every descriptor (it used
    // to outlive the build). Then a later step must still run.
    let held = format!("{}1", 8_000_000 + std::process::id());
    let quiet = format!("{}2", 8_000_000 + std::process::id());
    let ctx = busybox_context(&format!(
        "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox setsid /bin/busybox sh -c '/bin/busybox sleep {held} &' ; /bin/busybox setsid /bin/busybox sh -c '/bin/busybox sleep {quiet} </dev/null >/dev/null 2>&1 &'; /bin/busybox echo daemons-started\"]\n\
         RUN [\"/bin/busybox\", \"echo\", \"next-step-ran\"]\n"
    ));
    let mut cmd = kiln();
    cmd.args(["build", "--no-push", "--isolation", "chroot", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(ctx.path().join("oci"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    gitlab_job(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    // The daemons sleep for days: a build that waits for them hangs.
    let ok = wait_bounded(&mut child, Duration::from_secs(120), "chroot");
    let log = reader.join().unwrap();
    assert!(ok, "the build failed:\n{log}");
    assert!(
        log.contains("daemons-started") && log.contains("next-step-ran"),
        "{log}"
    );
    for m in [&held, &quiet] {
        let left = processes_with(m);
        assert!(left.is_empty(), "a daemon outlived its step: {left:?}");
    }
}
