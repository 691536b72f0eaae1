//! Dockerfile fidelity, built for real: the forms BuildKit builds and kiln must
//! build the same way (each case from the Dockerfile reference or BuildKit's
//! documented behaviour). Parser and expansion tables are in conformance.rs.

mod support;

use std::path::Path;
use support::*;

/// A context with busybox installed as /bin/sh and friends, and `files`.
fn busybox_context(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let mut all = vec![("Dockerfile", dockerfile)];
    all.extend_from_slice(files);
    let ctx = context(&all);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    ctx
}

const PRELUDE: &str = "FROM scratch AS base\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

fn build(ctx: &Path, extra: &[&str]) -> (bool, String) {
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx)
        .arg("--oci-layout-path")
        .arg(ctx.join("oci"))
        .args(extra));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(ctx: &Path) -> serde_json::Value {
    let layout = ctx.join("oci");
    let read = |d: &str| -> serde_json::Value {
        let hex = d.trim_start_matches("sha256:");
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    read(manifest["config"]["digest"].as_str().unwrap())
}

#[test]
fn a_run_heredoc_with_a_shebang_runs_with_that_interpreter_and_leaves_nothing() {
    if !need_root("a_run_heredoc_with_a_shebang_runs_with_that_interpreter_and_leaves_nothing") {
        return;
    }
    let ctx = busybox_context(
        &format!(
            "{PRELUDE}RUN <<EOF\n#!/bin/busybox sh\necho \"shebang-ran as $0\"\nEOF\nRUN ls /.kiln-heredoc-script 2>&1 | sed 's/^/left: /'\n"
        ),
        &[],
    );
    let (ok, log) = build(ctx.path(), &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains("│ shebang-ran as /.kiln-heredoc-script"),
        "{log}"
    );
    assert!(
        log.contains("│ left: ls: /.kiln-heredoc-script: No such file"),
        "{log}"
    );
}

#[test]
fn copy_heredocs_sources_from_variables_and_expanded_arg_names() {
    if !need_root("copy_heredocs_sources_from_variables_and_expanded_arg_names") {
        return;
    }
    let ctx = busybox_context(
        &format!(
            "{PRELUDE}ARG X=value\nARG SRCS=\"a.txt b.txt\"\nARG name=KEY\nARG ${{name}}=from-expanded-key\n\
             COPY <<EOF /quoted.sh\necho \\\"quoted\\\" $X\nEOF\n\
             COPY $SRCS /d/\n\
             LABEL price=\"Costs $5\"\n\
             RUN cat /quoted.sh; ls /d | tr '\\n' ' '; echo; echo \"key=$KEY\"\n"
        ),
        &[("a.txt", "a"), ("b.txt", "b")],
    );
    let (ok, log) = build(ctx.path(), &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains("│ echo \\\"quoted\\\" value"),
        "here-document rules:\n{log}"
    );
    assert!(
        log.contains("│ a.txt b.txt"),
        "$SRCS splits into two sources:\n{log}"
    );
    assert!(log.contains("│ key=from-expanded-key"), "{log}");
    let cfg = config(ctx.path());
    assert_eq!(cfg["config"]["Labels"]["price"], "Costs ", "{cfg}");
}

#[test]
fn onbuild_heredocs_bare_run_and_arg_errors_only_in_built_stages() {
    if !need_root("onbuild_heredocs_bare_run_and_arg_errors_only_in_built_stages") {
        return;
    }
    let ctx = busybox_context(
        &format!(
            "{PRELUDE}ONBUILD RUN <<EOF\necho on-build-heredoc\nEOF\n\
             FROM scratch AS unused\nARG BAD=${{NOPE:?only-when-built}}\n\
             FROM base\nRUN\nRUN echo after-bare-run\n"
        ),
        &[],
    );
    let (ok, log) = build(ctx.path(), &[]);
    assert!(ok, "{log}");
    assert!(log.contains("│ on-build-heredoc"), "{log}");
    assert!(log.contains("│ after-bare-run"), "{log}");
    // The same ARG in the stage that is built is an error at its line.
    let (ok, log) = build(ctx.path(), &["--target", "unused"]);
    assert!(!ok, "{log}");
    assert!(log.contains("Dockerfile:8: NOPE: only-when-built"), "{log}");
}

/// ADD from an HTTPS URL signed by the test CA (trusted as registries are):
/// not unpacked, mode 0600 (or --chmod), named by Content-Disposition or the
/// URL, mtime from Last-Modified, --checksum verified, in the cache key.
#[test]
fn add_from_an_https_url_with_the_company_ca() {
    if !need_root("add_from_an_https_url_with_the_company_ca") {
        return;
    }
    use sha2::Digest as _;
    let pki = support::gitlab::Pki::new();
    let web_root = tempfile::tempdir().unwrap();
    let files = web_root.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    // A real gzip'd tar: ADD from a URL must not unpack it.
    let tgz = files.join("tool.tar.gz");
    let pkg = web_root.path().join("pkg");
    std::fs::create_dir_all(pkg.join("files")).unwrap();
    std::fs::write(pkg.join("files/inner.txt"), "inside").unwrap();
    check(
        std::process::Command::new("tar")
            .args(["-czf"])
            .arg(&tgz)
            .arg("-C")
            .arg(&pkg)
            .arg("files"),
    );
    std::fs::write(files.join("tini"), b"#!/bin/sh\necho tini\n").unwrap();
    std::fs::write(files.join("get"), b"echo script\n").unwrap();
    std::fs::write(files.join("get.disposition"), "script.sh").unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for f in ["tool.tar.gz", "tini", "get"] {
        std::fs::File::options()
            .write(true)
            .open(files.join(f))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let tini_sum = hex::encode(sha2::Sha256::digest(b"#!/bin/sh\necho tini\n"));
    let web = support::https::StaticServer::start(web_root.path(), &pki.cert, &pki.key);
    let u = |p: &str| format!("https://{}/files/{p}", web.addr);
    let dockerfile = |sum: &str| {
        format!(
            "# syntax=docker/dockerfile:1\n{PRELUDE}ADD {} /opt/\nADD --checksum=sha256:{sum} {} /usr/local/bin/tini\nADD --chmod=755 {} /opt/\n\
             ADD --unpack=true {} /unpacked/\n\
             RUN stat -c '%a %Y %n' /opt/tool.tar.gz /usr/local/bin/tini /opt/script.sh; ls /unpacked/files | tr '\\n' ' '\n",
            u("tool.tar.gz"),
            u("tini"),
            u("get"),
            u("tool.tar.gz")
        )
    };
    let ctx = busybox_context(&dockerfile(&tini_sum), &[]);
    let cache = tempfile::tempdir().unwrap();
    let ca = pki.ca.display().to_string();
    let args = [
        "--cache",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--ca-cert",
        &ca,
    ];
    let (ok, log) = build(ctx.path(), &args);
    assert!(ok, "{log}");
    assert!(
        log.contains("note: # syntax=docker/dockerfile:1 is ignored"),
        "{log}"
    );
    for want in [
        "inner.txt ",
        "600 1700000000 /opt/tool.tar.gz",
        "600 1700000000 /usr/local/bin/tini",
        "755 1700000000 /opt/script.sh",
    ] {
        assert!(log.contains(&format!("│ {want}")), "{want}:\n{log}");
    }
    // Again: every ADD is a cache hit (the --checksum one is not even fetched).
    let before = web.requests().len();
    let (ok, log) = build(ctx.path(), &args);
    assert!(ok, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("] ADD") && l.contains("CACHED"))
            .count(),
        4,
        "{log}"
    );
    assert!(
        !web.requests()[before..]
            .iter()
            .any(|p| p.ends_with("/tini")),
        "the checksum-pinned file was fetched again: {:?}",
        web.requests()
    );
    // A checksum that does not match fails the build at its line.
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&"0".repeat(64))).unwrap();
    let (ok, log) = build(ctx.path(), &["--ca-cert", &ca]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("Dockerfile:6: ADD") && log.contains("--checksum does not match"),
        "{log}"
    );
    // Without the CA, the fetch fails and says why.
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&tini_sum)).unwrap();
    let (ok, log) = build(ctx.path(), &[]);
    assert!(!ok && log.contains("Dockerfile:5: ADD"), "{log}");
}

/// COPY --exclude and --parents (with a `/./` pivot), ADD --unpack=false.
#[test]
fn copy_exclude_parents_and_add_unpack_false() {
    if !need_root("copy_exclude_parents_and_add_unpack_false") {
        return;
    }
    let ctx = busybox_context(
        &format!(
            "{PRELUDE}COPY --exclude=*.log --exclude=tmp sub/ /ex/\n\
             COPY --parents ./a/b/f1.txt ./a/c/*.txt /par/\n\
             COPY --parents ./a/./b/f1.txt /pivot/\n\
             ADD --unpack=false pack.tar.gz /nounpack/\n\
             ADD --exclude=*.md a/c/ /addex/\n\
             RUN find /ex /par /pivot /nounpack /addex | sort | tr '\\n' ' '\n"
        ),
        &[
            ("sub/keep.txt", "k"),
            ("sub/drop.log", "d"),
            ("sub/tmp/x", "x"),
            ("sub/deep/also.log", "d"),
            ("a/b/f1.txt", "1"),
            ("a/c/f2.txt", "2"),
            ("a/c/f3.md", "3"),
        ],
    );
    check(
        std::process::Command::new("tar")
            .arg("-czf")
            .arg(ctx.path().join("pack.tar.gz"))
            .arg("-C")
            .arg(ctx.path())
            .arg("a"),
    );
    let (ok, log) = build(ctx.path(), &[]);
    assert!(ok, "{log}");
    // `*.log` does not cross `/` (the .dockerignore rules): deep/also.log stays.
    let want = "/addex /addex/f2.txt /ex /ex/deep /ex/deep/also.log /ex/keep.txt /nounpack /nounpack/pack.tar.gz /par /par/a /par/a/b /par/a/b/f1.txt /par/a/c /par/a/c/f2.txt /pivot /pivot/b /pivot/b/f1.txt ";
    assert!(log.contains(&format!("│ {want}")), "want {want}\n{log}");
}

/// COPY keeps a source's sub-second mtime as BuildKit does, in a PAX `mtime`
/// record (Debian's buildah 1.28 rounds it to the next second instead), and a
/// later RUN sees it in the rootfs.
#[test]
fn copy_keeps_sub_second_mtimes_in_pax_records() {
    if !need_root("copy_keeps_sub_second_mtimes_in_pax_records") {
        return;
    }
    let ctx = busybox_context(
        &format!("{PRELUDE}COPY f.txt /f.txt\nRUN stat -c '%y' /f.txt\n"),
        &[("f.txt", "hi\n")],
    );
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 723_456_789);
    std::fs::File::options()
        .write(true)
        .open(ctx.path().join("f.txt"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    let (ok, log) = build(ctx.path(), &[]);
    assert!(ok, "{log}");
    assert!(log.contains("│ 2023-11-14 22:13:20.723456789"), "{log}");
    // The COPY layer's entry carries the exact time.
    let mut found = false;
    for e in std::fs::read_dir(ctx.path().join("oci/blobs/sha256")).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
        let Ok(entries) = tar.entries() else { continue };
        for entry in entries.flatten() {
            let mut entry = entry;
            if entry.path().is_ok_and(|p| p.to_string_lossy() == "f.txt") {
                let pax: Vec<(String, String)> = entry
                    .pax_extensions()
                    .ok()
                    .flatten()
                    .map(|x| {
                        x.flatten()
                            .map(|r| {
                                (
                                    r.key().unwrap_or("").to_string(),
                                    r.value().unwrap_or("").to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                assert!(
                    pax.contains(&("mtime".into(), "1700000000.723456789".into())),
                    "{pax:?}"
                );
                assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
                found = true;
            }
        }
    }
    assert!(found, "no layer holds f.txt");
}

/// ADD of a git repository over HTTPS with the company CA (the job's git
/// binary runs with the CAs kiln trusts): the files without .git, or with it
/// under --keep-git-dir; a branch ref; keyed by the commit, so a new commit
/// reruns the step.
#[test]
fn add_a_git_repository_over_https() {
    if !need_root("add_a_git_repository_over_https") {
        return;
    }
    let pki = support::gitlab::Pki::new();
    let hosts = tempfile::tempdir().unwrap();
    support::https::git_repo(hosts.path());
    let web = support::https::StaticServer::start(hosts.path(), &pki.cert, &pki.key);
    let repo = format!("https://{}/repo.git", web.addr);
    let ctx = busybox_context(
        &format!(
            "{PRELUDE}ADD {repo}#main /src\nADD --keep-git-dir {repo} /kept\n\
             RUN cat /src/README; test -e /src/.git || echo no-git-dir; test -d /kept/.git && echo kept-git-dir\n"
        ),
        &[],
    );
    let ca = pki.ca.display().to_string();
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "--cache",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--ca-cert",
        &ca,
    ];
    let (ok, log) = build(ctx.path(), &args);
    assert!(ok, "{log}");
    for want in ["knut-repo", "no-git-dir", "kept-git-dir"] {
        assert!(log.contains(&format!("│ {want}")), "{want}:\n{log}");
    }
    let (ok, again) = build(ctx.path(), &args);
    assert!(
        ok && again
            .lines()
            .filter(|l| l.contains("] ADD") && l.contains("CACHED"))
            .count()
            == 2,
        "{again}"
    );
    // A new commit on main: the ADDs run again.
    let work = hosts.path().join("repo-work");
    std::fs::write(work.join("README"), "second-commit\n").unwrap();
    let git = |args: &[&str], cwd: &Path| {
        check(
            std::process::Command::new("git")
                .args(["-c", "user.name=k", "-c", "user.email=k@example.invalid"])
                .args(args)
                .current_dir(cwd),
        )
    };
    git(&["commit", "-q", "-am", "second"], &work);
    git(&["push", "-q", "../repo.git", "main"], &work);
    git(&["update-server-info"], &hosts.path().join("repo.git"));
    let (ok, changed) = build(ctx.path(), &args);
    assert!(ok && changed.contains("│ second-commit"), "{changed}");
    // Without the CA, git cannot reach it, and the error says where.
    let (ok, log) = build(ctx.path(), &[]);
    assert!(
        !ok && log.contains("Dockerfile:4: ADD") && log.contains("git ls-remote"),
        "{log}"
    );
}
