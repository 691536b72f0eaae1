//! RUN without privileges: chroot mode inside a simulated unprivileged GitLab job,
//! namespaces mode as root, snapshots checked with umoci.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use support::sandbox::gitlab_job;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_sandbox_is_what_a_gitlab_job_gets() {
    if !need_root("the_sandbox_is_what_a_gitlab_job_gets") {
        return;
    }
    let out = run(gitlab_job(Command::new("sh").args([
        "-c",
        "grep -E 'CapBnd|NoNewPrivs|Seccomp' /proc/self/status; unshare -m true && echo UNSHARE-WORKED",
    ])));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CapBnd:\t00000000a80425fb"),
        "Docker's default capabilities only: {text}"
    );
    // Docker's profile is a filter (mode 2), and Docker leaves no_new_privs off.
    assert!(text.contains("Seccomp:\t2"), "a seccomp filter: {text}");
    assert!(
        text.contains("NoNewPrivs:\t0"),
        "no no_new_privs on the job: {text}"
    );
    assert!(
        !text.contains("UNSHARE-WORKED"),
        "unshare must be refused: {text} {}",
        stderr(&out)
    );
}

/// (type, mode, uid, gid, size or link target) of every path under `root`, except
/// the kernel filesystems and the listing itself.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel.split('/').next().unwrap_or("");
        if matches!(top, "dev" | "proc" | "sys")
            || rel == "listing.txt"
            || rel == "etc/resolv.conf"
            || rel == "etc/hosts"
        {
            continue;
        }
        let md = e.path().symlink_metadata().unwrap();
        let what = if md.is_dir() {
            "d".to_string()
        } else if md.file_type().is_symlink() {
            format!("l {}", std::fs::read_link(e.path()).unwrap().display())
        } else {
            format!("f {}", md.len())
        };
        out.insert(
            format!("/{rel}"),
            format!("{what} {:o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid()),
        );
    }
    out
}

/// The same listing, as `find` + `stat` print it inside the image.
fn parse_listing(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(6, '|').collect();
            if f.len() != 6 {
                return None;
            }
            let (path, kind, mode, uid, gid, rest) = (f[0], f[1], f[2], f[3], f[4], f[5]);
            let what = match kind {
                "directory" => "d".to_string(),
                "symbolic link" => format!("l {rest}"),
                _ => format!("f {rest}"),
            };
            Some((path.to_string(), format!("{what} {mode} {uid}:{gid}")))
        })
        .collect()
}

const SNAPSHOT_DOCKERFILE: &str = r#"FROM {REG}/base/busybox
ARG VERSION=1.2
ENV GREETING="hi there"
RUN set -e; echo new > /new.txt; echo "extra:x:77:" >> /etc/group; rm -rf /to-delete; chmod 0600 /new.txt; \
    mkdir -p /home/app && chown 1000:1000 /home/app; ln -s /new.txt /link; ln /new.txt /hard; \
    printf 'script\n' > /usr-script && chmod 4755 /usr-script; env | sort > /env.txt; id > /id-root.txt; echo visible-step-output
USER app
WORKDIR /home/app
RUN id > id-app.txt; touch mine; echo "$HOME" > home.txt
USER root
RUN [ -c /dev/null ] && echo ok > /devnull-ok; cat /etc/resolv.conf > /dev/null
COPY --chown=1000:1000 --chmod=0640 tree /opt/tree/
COPY one.txt /home/app/
RUN cat /opt/tree/sub/b.txt /home/app/one.txt > /copied-seen
RUN find / -xdev -path /proc -prune -o -path /dev -prune -o -path /sys -prune -o -path /listing.txt -prune -o -path /etc/resolv.conf -prune -o -path /etc/hosts -prune -o -print | grep -v '^/$' | while read -r p; do \
      if [ -L "$p" ]; then echo "$p|symbolic link|$(stat -c '%a|%u|%g' "$p")|$(readlink "$p")"; \
      elif [ -d "$p" ]; then echo "$p|directory|$(stat -c '%a|%u|%g' "$p")|"; \
      else echo "$p|file|$(stat -c '%a|%u|%g|%s' "$p")"; fi; done > /listing.txt
"#;

/// Build the snapshot Dockerfile (in the GitLab sandbox or not) and check the
/// result with umoci.
fn snapshot_build(sandboxed: bool, isolation: &str, expect_mode: &str) {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &SNAPSHOT_DOCKERFILE.replace("{REG}", &reg.addr),
        ),
        ("tree/a.txt", "a\n"),
        ("tree/sub/b.txt", "bb\n"),
        ("one.txt", "one\n"),
    ]);
    let dest = format!("{}/run/app:1", reg.addr);
    let mut cmd = kiln();
    cmd.args([
        "build",
        "--insecure-registry",
        &reg.addr,
        "--destination",
        &dest,
        "--isolation",
        isolation,
    ])
    .arg("--context")
    .arg(ctx.path())
    .env("CI_JOB_TOKEN", "job-token-must-not-leak")
    .env("KILN_TEST_HOST_ONLY", "host-env-must-not-leak")
    .env("https_proxy", "http://proxy.example:3128");
    if sandboxed {
        gitlab_job(&mut cmd);
    }
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("RUN isolation: {expect_mode}")),
        "{err}"
    );
    assert!(
        err.contains("] │ visible-step-output"),
        "RUN output is streamed with a step prefix:\n{err}"
    );

    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{dest}"), work.path());
    // Created, modified, deleted.
    assert_eq!(
        std::fs::read_to_string(root.join("new.txt")).unwrap(),
        "new\n"
    );
    assert!(std::fs::read_to_string(root.join("etc/group"))
        .unwrap()
        .contains("extra:x:77:"));
    assert!(
        !root.join("to-delete").exists(),
        "deleted in RUN: a whiteout hides it"
    );
    // chmod, chown, setuid, symlink, hardlink.
    assert_eq!(
        std::fs::metadata(root.join("new.txt")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(root.join("usr-script")).unwrap().mode() & 0o7777,
        0o4755
    );
    let home = std::fs::metadata(root.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_link(root.join("link")).unwrap().to_str(),
        Some("/new.txt")
    );
    assert_eq!(
        std::fs::metadata(root.join("hard")).unwrap().ino(),
        std::fs::metadata(root.join("new.txt")).unwrap().ino(),
        "hardlinks stay hardlinks"
    );
    // USER switching, HOME from /etc/passwd, WORKDIR.
    assert!(std::fs::read_to_string(root.join("id-root.txt"))
        .unwrap()
        .starts_with("uid=0(root)"));
    assert!(std::fs::read_to_string(root.join("home/app/id-app.txt"))
        .unwrap()
        .starts_with("uid=1000(app) gid=1000(app)"));
    assert_eq!(
        std::fs::read_to_string(root.join("home/app/home.txt")).unwrap(),
        "/home/app\n"
    );
    assert_eq!(
        std::fs::metadata(root.join("home/app/mine")).unwrap().uid(),
        1000
    );
    // The environment: image ENV, ARGs in scope, PATH, HOME, proxies; nothing else.
    let env = std::fs::read_to_string(root.join("env.txt")).unwrap();
    assert!(
        env.contains("GREETING=hi there")
            && env.contains("VERSION=1.2")
            && env.contains("HOME=/root")
            && env.contains("PATH="),
        "{env}"
    );
    assert!(
        env.contains("https_proxy=http://proxy.example:3128"),
        "proxy variables are passed: {env}"
    );
    assert!(
        !env.contains("job-token-must-not-leak") && !env.contains("CI_JOB_TOKEN"),
        "CI_JOB_TOKEN leaked: {env}"
    );
    assert!(
        !env.contains("host-env-must-not-leak"),
        "kiln's environment leaked: {env}"
    );
    let env_keys: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    for k in &env_keys {
        assert!(
            [
                "GREETING",
                "VERSION",
                "HOME",
                "PATH",
                "https_proxy",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(k),
            "unexpected variable {k} in RUN: {env}"
        );
    }
    // /dev nodes existed for the step but are not in the image; no injected files.
    assert!(
        root.join("devnull-ok").exists(),
        "/dev/null was a character device during RUN"
    );
    assert!(
        !root.join("dev/null").exists()
            && !root.join("etc/resolv.conf").exists()
            && !root.join("etc/hosts").exists(),
        "injected files must not reach a layer"
    );
    // COPY between RUNs: written into the rootfs as its layer was built, so the
    // next RUN saw the files, with --chown/--chmod, as the image has them.
    assert_eq!(
        std::fs::read_to_string(root.join("copied-seen")).unwrap(),
        "bb\none\n"
    );
    let b = std::fs::metadata(root.join("opt/tree/sub/b.txt")).unwrap();
    assert_eq!((b.uid(), b.gid(), b.mode() & 0o7777), (1000, 1000, 0o640));
    assert!(
        err.contains("COPY one.txt /home/app/"),
        "the step lines: {err}"
    );
    // The tree umoci unpacked is the tree the last RUN saw.
    let seen = parse_listing(&std::fs::read_to_string(root.join("listing.txt")).unwrap());
    let unpacked = tree(&root);
    let diff: Vec<String> = seen
        .iter()
        .filter(|(k, v)| unpacked.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: RUN saw {v}, image has {:?}", unpacked.get(k)))
        .chain(
            unpacked
                .keys()
                .filter(|k| !seen.contains_key(*k))
                .map(|k| format!("{k}: only in the image")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "image tree differs from the rootfs after RUN:\n{}",
        diff.join("\n")
    );
    let cfg = config_of(&reg, "run/app:1");
    assert!(!cfg.to_string().contains("job-token-must-not-leak"));
}

#[test]
fn run_in_an_unprivileged_gitlab_job_uses_chroot_and_snapshots_correctly() {
    if !need_root("run_in_an_unprivileged_gitlab_job_uses_chroot_and_snapshots_correctly") {
        return;
    }
    snapshot_build(true, "auto", "chroot");
}

#[test]
fn run_with_namespaces_has_proc_and_is_pid_1() {
    if !need_root("run_with_namespaces_has_proc_and_is_pid_1") {
        return;
    }
    snapshot_build(false, "namespaces", "namespaces");
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[("Dockerfile", &format!("FROM {}/base/busybox\nRUN echo $$ > /pid.txt; test -r /proc/self/status && ps > /ps.txt; sleep 300 &\n", reg.addr))]);
    let out_dir = tempfile::tempdir().unwrap();
    let root = build_and_unpack(
        ctx.path(),
        out_dir.path(),
        &[
            "--isolation",
            "namespaces",
            "--insecure-registry",
            &reg.addr,
        ],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("pid.txt")).unwrap(),
        "1\n",
        "the step is PID 1 of its own namespace"
    );
    assert!(root.join("ps.txt").exists(), "/proc is mounted");
}

#[test]
fn a_failing_run_stops_the_build_and_pushes_nothing() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[("Dockerfile", &format!("FROM {}/base/busybox\nRUN echo preparing; echo 'about to fail' >&2; exit 3\nRUN echo never\n", reg.addr))]);
    let mut cmd = kiln();
    cmd.args([
        "build",
        "--insecure-registry",
        &reg.addr,
        "--destination",
        &format!("{}/fail/app:1", reg.addr),
    ])
    .arg("--context")
    .arg(ctx.path());
    if is_root() {
        gitlab_job(&mut cmd);
    }
    let out = run(&mut cmd);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("Dockerfile:2: RUN failed with exit code 3")
            && err.contains("exit 3")
            && err.contains("about to fail"),
        "{err}"
    );
    assert!(
        !err.contains("never"),
        "the build stops at the failing step:\n{err}"
    );
    assert!(!reg.has_tag("fail/app", "1"));
    // A USER that does not exist is an error at the line that needs it.
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/base/busybox\nUSER nobody-here\nRUN true\n",
            reg.addr
        ),
    )]);
    let out = run(kiln()
        .args(["build", "--no-push", "--tar-path"])
        .arg(ctx.path().join("o.tar"))
        .args(["--insecure-registry", &reg.addr])
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("Dockerfile:3: USER nobody-here: no such user"),
        "{err}"
    );
}

#[test]
fn copy_from_and_from_a_run_built_stage() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/base/busybox AS build\nRUN mkdir /out && echo built > /out/artifact && chmod 0750 /out/artifact\n\n\
             FROM build AS test\nRUN cat /out/artifact > /tested\n\n\
             FROM scratch\nCOPY --from=build /out/artifact /artifact\nCOPY --from=test /tested /tested\n",
            reg.addr
        ),
    )]);
    let out_dir = tempfile::tempdir().unwrap();
    let root = build_and_unpack(
        ctx.path(),
        out_dir.path(),
        &["--insecure-registry", &reg.addr],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("artifact")).unwrap(),
        "built\n"
    );
    assert_eq!(
        std::fs::metadata(root.join("artifact")).unwrap().mode() & 0o777,
        0o750
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tested")).unwrap(),
        "built\n",
        "FROM <stage> continues from its RUN layers"
    );
}

#[test]
fn a_stage_read_only_by_the_next_passes_its_rootfs_on_unextracted() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/base/busybox AS build\nRUN mkdir /out && echo built > /out/artifact && echo gone > /out/old\nRUN rm /out/old && chmod 0750 /out\n\n\
             FROM build AS app\nRUN cat /out/artifact > /tested && ls -a /out > /listing\n",
            reg.addr
        ),
    )]);
    let out_dir = tempfile::tempdir().unwrap();
    let report = out_dir.path().join("report.json");
    let root = build_and_unpack(
        ctx.path(),
        out_dir.path(),
        &[
            "--insecure-registry",
            &reg.addr,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tested")).unwrap(),
        "built\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("listing")).unwrap(),
        ".\n..\nartifact\n",
        "app's RUN sees build's stage as its last RUN left it"
    );
    assert_eq!(
        std::fs::metadata(root.join("out")).unwrap().mode() & 0o777,
        0o750
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    // busybox's one layer, once: app takes build's rootfs rather than
    // extracting busybox and build's two layers again.
    assert_eq!(r["phases"]["extract"]["count"], 1, "{:#}", r["phases"]);
    // Where the time went: each RUN ran, was snapshotted and keyed once.
    for phase in ["run", "snapshot", "key"] {
        assert_eq!(r["phases"][phase]["count"], 3, "{phase}: {:#}", r["phases"]);
    }
    let steps = r["steps"].as_array().unwrap();
    let app_run = steps
        .iter()
        .find(|s| s["step"].as_str().unwrap().starts_with("app 2/2"))
        .unwrap();
    assert_eq!(app_run["result"], "BUILT");
}

#[test]
fn two_builds_in_one_sandboxed_job_and_nothing_written_outside_the_work_dir() {
    if !need_root("two_builds_in_one_sandboxed_job_and_nothing_written_outside_the_work_dir") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let canary = format!("/etc/kiln-canary-{}", std::process::id());
    let ctx = context(&[
        ("Dockerfile", &format!("FROM {}/base/busybox\nCOPY input.txt /input.txt\nRUN echo pwned > {canary}; echo x > /tmp/x; rm /input.txt\n", reg.addr)),
        ("input.txt", "user data\n"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let before = tree(ctx.path());
    let kiln_bin = env!("CARGO_BIN_EXE_kiln");
    let script = format!(
        "set -e; for i in 1 2; do {kiln_bin} build --insecure-registry {r} --destination {r}/twice/app:$i --context {c} --work-dir {w}; done",
        r = reg.addr,
        c = ctx.path().display(),
        w = work.path().display()
    );
    let out = run(gitlab_job(Command::new("sh").args(["-c", &script])));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(reg.has_tag("twice/app", "1") && reg.has_tag("twice/app", "2"));
    assert!(!Path::new(&canary).exists(), "RUN wrote outside its rootfs");
    assert_eq!(tree(ctx.path()), before, "the build context is untouched");
    assert_eq!(
        std::fs::read_dir(work.path()).unwrap().count(),
        0,
        "the work dir is cleaned up"
    );
}

#[test]
fn rootless_mode_as_a_non_root_user() {
    if !need_root("rootless_mode_as_a_non_root_user") {
        return;
    }
    let (d, bin) = nobody_workspace(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir /made && /bin/busybox id > /made/id && /bin/busybox echo $$ > /made/pid\"]\n",
    )]);
    let out = build_as_nobody(d.path(), &bin, &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("RUN isolation: rootless"),
        "auto picks rootless for a non-root user:\n{err}"
    );
    let root = unpack(
        &format!("oci:{}:latest", d.path().join("oci").display()),
        &d.path().join("check"),
    );
    assert!(
        std::fs::read_to_string(root.join("made/id"))
            .unwrap()
            .starts_with("uid=0 gid=0"),
        "the step ran as root inside its user namespace"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("made/pid")).unwrap(),
        "1\n"
    );
    let made = std::fs::metadata(root.join("made")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (0, 0),
        "files the step created belong to root in the image, not to uid 65534"
    );
}

/// With /etc/subuid and /etc/subgid ranges (bind-mounted over the real files in a
/// private mount namespace, so the machine's are not touched) and newuidmap, a
/// rootless build has real users: USER switching, chown, COPY --chown owners that
/// a USER step can write to, and owners beyond the ranges kept as the image says.
#[test]
fn rootless_with_subordinate_ids_runs_steps_as_other_users() {
    if !need_root("rootless_with_subordinate_ids_runs_steps_as_other_users") {
        return;
    }
    let bb = "/bin/busybox";
    let (d, bin) = nobody_workspace(&[
        (
            "Dockerfile",
            &format!(
                "FROM scratch\n\
                 COPY busybox {bb}\n\
                 COPY passwd group /etc/\n\
                 COPY --chown=1000:1000 notes /home/user/notes\n\
                 COPY --chown=70000:70000 far /far\n\
                 RUN [\"{bb}\", \"sh\", \"-c\", \"{bb} mkdir /srv && {bb} chown 1000:100 /srv && {bb} echo more >> /far\"]\n\
                 USER user\n\
                 RUN [\"{bb}\", \"sh\", \"-c\", \"{bb} id > /srv/id && {bb} echo appended >> /home/user/notes && {bb} touch /home/user/made\"]\n\
                 USER root\n\
                 RUN [\"{bb}\", \"chown\", \"-R\", \"2000:2000\", \"/home/user/made\"]\n"
            ),
        ),
        ("passwd", "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n"),
        ("group", "root:x:0:\nusers:x:100:user\nuser:x:1000:\n"),
        ("notes", "first\n"),
        ("far", "far\n"),
    ]);
    let sub = d.path().join("subids");
    std::fs::write(&sub, "nobody:200000:65536\n").unwrap();
    let script = format!(
        "mount --bind {0} /etc/subuid && mount --bind {0} /etc/subgid && exec \"$@\"",
        sub.display()
    );
    let out = build_as_nobody(
        d.path(),
        &bin,
        &["unshare", "-m", "sh", "-c", &script, "sh"],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("RUN isolation: rootless (uids 0-65536, gids 0-65536"),
        "the user's ranges are used and said:\n{err}"
    );
    let root = unpack(
        &format!("oci:{}:latest", d.path().join("oci").display()),
        &d.path().join("check"),
    );
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(root.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    let id = std::fs::read_to_string(root.join("srv/id")).unwrap();
    assert!(
        id.starts_with("uid=1000(user) gid=1000(user) groups=100(users),1000(user)")
            || id.starts_with("uid=1000(user) gid=1000(user) groups=1000(user),100(users)"),
        "USER user ran as uid 1000 with its groups: {id}"
    );
    assert_eq!(owner("srv"), (1000, 100), "chown by root in a step");
    assert_eq!(owner("srv/id"), (1000, 1000), "created by USER user");
    assert_eq!(
        std::fs::read_to_string(root.join("home/user/notes")).unwrap(),
        "first\nappended\n",
        "USER user could write the file COPY --chown gave it"
    );
    assert_eq!(owner("home/user/notes"), (1000, 1000));
    assert_eq!(
        owner("home/user/made"),
        (2000, 2000),
        "chown -R to another mapped id"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("far")).unwrap(),
        "far\nmore\n"
    );
    assert_eq!(
        owner("far"),
        (70000, 70000),
        "an owner beyond the ranges keeps the image's ids"
    );
    // The work dir held files owned by subordinate ids; kiln removed it.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("kiln-"))
        .collect();
    assert!(left.is_empty(), "work dir left behind: {left:?}");
}

#[test]
fn chroot_mode_gives_steps_a_shared_memory_dir_and_keeps_it_out_of_layers() {
    if !need_root("chroot_mode_gives_steps_a_shared_memory_dir_and_keeps_it_out_of_layers") {
        return;
    }
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox stat -c 'shm %a %F' /dev/shm; /bin/busybox test -d /dev/pts && /bin/busybox echo pts-dir; /bin/busybox echo x > /dev/shm/sem.kiln && /bin/busybox echo shm-writable\"]\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox ls -A /dev/shm; /bin/busybox echo listed\"]\n",
    )]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let layout = ctx.path().join("oci");
    let out = run(gitlab_job(
        kiln()
            .args(["build", "--no-push", "--isolation", "chroot", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(&layout),
    ));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("shm 1777 directory"),
        "/dev/shm is Docker's 1777 dir:\n{err}"
    );
    assert!(
        err.contains("pts-dir") && err.contains("shm-writable"),
        "{err}"
    );
    // Each step gets an empty /dev/shm, as each Docker step gets a fresh tmpfs.
    assert!(
        !err.contains("sem.kiln"),
        "the next step saw the last one's shm:\n{err}"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("oci:{}:latest", layout.display()), work.path());
    assert!(root.join("bin/busybox").exists(), "unpacked");
    assert!(!root.join("dev").exists(), "no /dev in any layer");
}

/// `RUN --network=none`: a new network namespace in namespaces mode; in chroot
/// mode (no namespaces in the job), a seccomp filter that allows only AF_UNIX
/// sockets. The default and `host` keep the network; `--security=insecure` is
/// refused at its line.
#[test]
fn run_network_none_has_no_network_in_either_mode() {
    if !need_root("run_network_none_has_no_network_in_either_mode") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let probe = |name: &str| {
        format!(
            "RUN {name}[\"/bin/busybox\", \"sh\", \"-c\", \"echo hi | /bin/busybox nc 127.0.0.1 {port} && echo {0}-net-ok || echo {0}-net-blocked\"]\n",
            name.split_whitespace().last().unwrap_or("default").trim_start_matches("--network=")
        )
    };
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM scratch\nCOPY busybox /bin/busybox\n{}{}{}",
            probe(""),
            probe("--network=none "),
            probe("--network=host "),
        ),
    )]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    for (mode, sandboxed) in [("chroot", true), ("namespaces", false)] {
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--isolation", mode, "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join(format!("oci-{mode}")));
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert!(out.status.success(), "{mode}:\n{err}");
        for want in ["default-net-ok", "none-net-blocked", "host-net-ok"] {
            assert!(
                err.contains(&format!("│ {want}")),
                "{mode}: {want} missing:\n{err}"
            );
        }
    }
    let bad = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN --security=insecure [\"/bin/busybox\", \"true\"]\n",
    )]);
    std::fs::copy("/bin/busybox", bad.path().join("busybox")).unwrap();
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(bad.path())
        .arg("--oci-layout-path")
        .arg(bad.path().join("oci")));
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Dockerfile:3: RUN --security=insecure is refused"),
        "{err}"
    );
}
