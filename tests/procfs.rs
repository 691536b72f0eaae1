//! The /proc kiln serves to chroot-mode steps in an unprivileged job (seccomp
//! user notification): what a step sees of its own processes, and that nothing
//! of the job's other processes (kiln's environment with CI_JOB_TOKEN, a sibling
//! job process, PID 1) or files is reachable through it.

mod support;

use std::process::{Command, Stdio};
use support::sandbox::gitlab_job;
use support::*;

/// Build `script` as one chroot-mode RUN (busybox as `$B`) in the job sandbox;
/// (success, kiln's whole output).
fn step(script: &str, extra_env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let script = script.replace('"', "\\\"");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nARG SIB\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"B=/bin/busybox; {script}\"]\n"
        ),
    )]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let mut cmd = kiln();
    cmd.args(["build", "--no-push", "--isolation", "chroot", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(ctx.path().join("oci"))
        .args(args);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = run(gitlab_job(&mut cmd));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The lines the step printed, without kiln's prefix.
fn printed(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("│ ").map(|(_, r)| r.to_string()))
        .collect()
}

fn has(lines: &[String], want: &str) -> bool {
    lines.iter().any(|l| l == want)
}

#[test]
fn a_chroot_step_sees_its_own_processes_in_proc() {
    if !need_root("a_chroot_step_sees_its_own_processes_in_proc") {
        return;
    }
    let (ok, log) = step(
        "echo exe=$($B readlink /proc/self/exe); \
         echo cwd=$($B readlink /proc/self/cwd); \
         $B grep -q '^Name:' /proc/self/status && echo status-read; \
         $B grep -q processor /proc/cpuinfo && echo cpuinfo-read; \
         $B ps -o pid,args | $B grep -q 'busybox ps' && echo ps-sees-itself; \
         $B ls /proc | $B grep -qx $PPID && echo KILN-LISTED; \
         $B ln -s /bin/busybox /bin/sleep; /bin/sleep 30 & \
         for i in 1 2 3 4 5; do $B pidof sleep >/dev/null && echo pidof-found && break; $B sleep 1; done; \
         kill $!; wait; \
         echo via-dev-stdout > /dev/stdout; \
         echo via-dev-stderr > /dev/stderr; \
         echo stdout-link=$($B readlink /dev/stdout); \
         $B grep -q '^proc /proc proc ' /proc/mounts && echo proc-mounted; \
         $B grep -q ' /proc ' /proc/self/mountinfo && echo proc-in-mountinfo; \
         cd /proc/self && $B test -r status && echo cwd-in-proc; \
         echo done",
        &[],
        &[],
    );
    assert!(ok, "{log}");
    let p = printed(&log);
    for want in [
        "exe=/bin/busybox",
        "cwd=/",
        "status-read",
        "cpuinfo-read",
        "ps-sees-itself",
        "pidof-found",
        "via-dev-stdout",
        "via-dev-stderr",
        "stdout-link=/proc/self/fd/1",
        "proc-mounted",
        "proc-in-mountinfo",
        "cwd-in-proc",
        "done",
    ] {
        assert!(has(&p, want), "{want:?} missing:\n{log}");
    }
    assert!(
        !has(&p, "KILN-LISTED"),
        "kiln is listed in the step's /proc:\n{log}"
    );
    assert!(
        log.contains("/proc served by kiln"),
        "the log says /proc is served:\n{log}"
    );
}

#[test]
fn a_chroot_step_cannot_reach_the_jobs_processes_or_files_through_proc() {
    if !need_root("a_chroot_step_cannot_reach_the_jobs_processes_or_files_through_proc") {
        return;
    }
    let secret = format!("glcbt-{}-secret", std::process::id());
    // A sibling process of the job, with the job's token in its environment.
    let mut sibling = Command::new("sleep")
        .arg("120")
        .env("CI_JOB_TOKEN", &secret)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let host_dir = tempfile::tempdir().unwrap();
    std::fs::write(host_dir.path().join("job-file"), &secret).unwrap();
    let hd = host_dir.path().display().to_string();
    let sib = sibling.id().to_string();
    let (ok, log) = step(
        &format!(
            "for p in $SIB $PPID 1; do \
               $B cat /proc/$p/environ 2>/dev/null && echo READ-ENVIRON-$p; \
               $B ls /proc/$p/root/ 2>/dev/null && echo LISTED-ROOT-$p; \
               $B readlink /proc/$p/exe 2>/dev/null && echo READ-EXE-$p; \
             done; \
             $B cat /proc/[0-9]*/environ 2>/dev/null | $B tr '\\\\0' '\\\\n' | $B grep -c CI_JOB_TOKEN; \
             $B cat /proc/self/root/../../../..{hd}/job-file 2>/dev/null && echo ROOT-ESCAPE; \
             $B cat /proc/self/cwd/../../../..{hd}/job-file 2>/dev/null && echo CWD-ESCAPE; \
             cd /proc && cd .. && cd .. && $B cat .{hd}/job-file 2>/dev/null && echo DOTDOT-ESCAPE; \
             echo x > /proc/sys/kernel/hostname 2>/dev/null && echo WROTE-SYSCTL; \
             echo done"
        ),
        &[("CI_JOB_TOKEN", &secret)],
        &["--build-arg", &format!("SIB={sib}")],
    );
    let _ = sibling.kill();
    let _ = sibling.wait();
    assert!(ok, "{log}");
    assert!(
        !log.contains(&secret),
        "the job's token reached the step:\n{log}"
    );
    let p = printed(&log);
    for bad in [
        "READ-ENVIRON",
        "LISTED-ROOT",
        "READ-EXE",
        "ROOT-ESCAPE",
        "CWD-ESCAPE",
        "DOTDOT-ESCAPE",
        "WROTE-SYSCTL",
    ] {
        assert!(
            !p.iter().any(|l| l.starts_with(bad)),
            "{bad}: the step reached outside itself:\n{log}"
        );
    }
    assert!(
        has(&p, "0"),
        "no environ with CI_JOB_TOKEN is readable:\n{log}"
    );
    assert!(has(&p, "done"), "{log}");
}

#[test]
fn kiln_run_proc_off_keeps_the_empty_proc() {
    if !need_root("kiln_run_proc_off_keeps_the_empty_proc") {
        return;
    }
    let (ok, log) = step(
        "$B ls /proc | $B wc -l; echo done",
        &[("KILN_RUN_PROC", "off")],
        &[],
    );
    assert!(ok, "{log}");
    let p = printed(&log);
    assert!(has(&p, "0") && has(&p, "done"), "{log}");
    assert!(log.contains("RUN has no /proc"), "{log}");
}

/// What the JVM (`libjli.so` through `$ORIGIN`) and rustup (tools found next to
/// `/proc/self/exe`) do, with the host's glibc in a scratch image: a program
/// linked with `-rpath $ORIGIN/../lib` that also runs a helper found beside
/// its own executable.
fn origin_context() -> tempfile::TempDir {
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY root/ /\nRUN [\"/opt/app/bin/tool\"]\n",
    )]);
    let root = ctx.path().join("root");
    for d in [
        "opt/app/bin",
        "opt/app/lib",
        "lib/x86_64-linux-gnu",
        "lib64",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(
        "/lib/x86_64-linux-gnu/libc.so.6",
        root.join("lib/x86_64-linux-gnu/libc.so.6"),
    )
    .unwrap();
    std::fs::copy(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        root.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    std::fs::write(
        s.join("lib.c"),
        "#include <stdio.h>\nvoid from_lib(void) { puts(\"lib-found-through-origin\"); }\n",
    )
    .unwrap();
    std::fs::write(
        s.join("tool.c"),
        r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
void from_lib(void);
int main(int argc, char **argv) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n < 0) { perror("readlink /proc/self/exe"); return 1; }
  self[n] = 0;
  if (argc > 1) { printf("helper-ran-as=%s\n", self); return 0; }
  printf("self-exe=%s\n", self);
  from_lib();
  fflush(stdout);
  /* rustup-style: the helper lives next to this executable. */
  char *slash = strrchr(self, '/');
  strcpy(slash + 1, "helper");
  execl(self, self, "x", (char *)0);
  perror("exec helper");
  return 1;
}
"#,
    )
    .unwrap();
    let lib = root.join("opt/app/lib/libkilnorigin.so");
    check(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(s.join("lib.c")),
    );
    let tool = root.join("opt/app/bin/tool");
    check(
        Command::new("gcc")
            .arg("-o")
            .arg(&tool)
            .arg(s.join("tool.c"))
            .arg("-L")
            .arg(root.join("opt/app/lib"))
            .args(["-lkilnorigin", "-Wl,-rpath,$ORIGIN/../lib"]),
    );
    std::fs::copy(&tool, root.join("opt/app/bin/helper")).unwrap();
    ctx
}

#[test]
fn origin_rpaths_and_tools_found_through_proc_self_exe_work_in_chroot_mode() {
    if !need_root("origin_rpaths_and_tools_found_through_proc_self_exe_work_in_chroot_mode") {
        return;
    }
    let ctx = origin_context();
    let build = |env: &[(&str, &str)]| {
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--isolation", "chroot", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(gitlab_job(&mut cmd));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, log) = build(&[]);
    assert!(ok, "{log}");
    let p = printed(&log);
    for want in [
        "self-exe=/opt/app/bin/tool",
        "lib-found-through-origin",
        "helper-ran-as=/opt/app/bin/helper",
    ] {
        assert!(has(&p, want), "{want:?} missing:\n{log}");
    }
    // Without the server, the loader cannot expand $ORIGIN: the step fails, as it
    // did before kiln served /proc.
    let (ok, log) = build(&[("KILN_RUN_PROC", "off")]);
    assert!(!ok, "without /proc the $ORIGIN lookup should fail:\n{log}");
}

#[test]
fn a_step_run_as_another_user_gets_its_proc_too() {
    if !need_root("a_step_run_as_another_user_gets_its_proc_too") {
        return;
    }
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir -p /etc && echo 'app:x:1000:1000::/:/bin/sh' > /etc/passwd && echo 'app:x:1000:' > /etc/group\"]\n\
         USER app\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"B=/bin/busybox; echo id=$($B id -u); echo exe=$($B readlink /proc/self/exe); $B ps -o user,args | $B grep -q '^app .*busybox ps' && echo ps-as-app; $B cat /proc/1/environ 2>/dev/null && echo READ-PID1; true\"]\n",
    )]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let out = run(gitlab_job(
        kiln()
            .args(["build", "--no-push", "--isolation", "chroot", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci")),
    ));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let p = printed(&log);
    for want in ["id=1000", "exe=/bin/busybox", "ps-as-app"] {
        assert!(has(&p, want), "{want:?} missing:\n{log}");
    }
    assert!(!p.iter().any(|l| l.starts_with("READ-PID1")), "{log}");
}
