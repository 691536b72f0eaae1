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
