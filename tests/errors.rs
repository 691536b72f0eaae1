//! Bad input: a short error naming file:line or the registry, a non-zero exit, and
//! no tag pushed.

mod support;

use support::*;

struct Failure {
    stderr: String,
}

/// Run a build that must fail, and check the registry got no tag.
fn fails(reg: &Registry, files: &[(&str, &str)], extra: &[&str]) -> Failure {
    let ctx = context(files);
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--destination",
            &format!("{}/bad/app:t", reg.addr),
        ])
        .arg("--context")
        .arg(ctx.path())
        .args(extra));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{stderr}"
    );
    let err_lines: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .collect();
    assert!(!err_lines.is_empty(), "no error line:\n{stderr}");
    assert!(
        err_lines.len() <= 5,
        "error is longer than 5 lines:\n{stderr}"
    );
    assert!(
        !reg.has_tag("bad/app", "t"),
        "a failed build must push no tag"
    );
    Failure { stderr }
}

#[test]
fn bad_inputs_fail_cleanly() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");

    let f = fails(
        &reg,
        &[
            ("Dockerfile", "FROM scratch\nCOPY a /a\nFROOM x\n"),
            ("a", ""),
        ],
        &[],
    );
    assert!(
        f.stderr
            .contains("Dockerfile:3: unknown instruction: FROOM"),
        "{}",
        f.stderr
    );

    let f = fails(
        &reg,
        &[("Dockerfile", "FROM scratch\nCOPY missing.txt /x\n")],
        &[],
    );
    assert!(
        f.stderr.contains("Dockerfile:2:") && f.stderr.contains("\"missing.txt\" not found"),
        "{}",
        f.stderr
    );

    let f = fails(
        &reg,
        &[("Dockerfile", "FROM scratch\nCOPY ../outside /x\n")],
        &[],
    );
    assert!(
        f.stderr.contains("Dockerfile:2:") && f.stderr.contains("outside the build context"),
        "{}",
        f.stderr
    );

    let ctx_files = [("Dockerfile", "FROM scratch\nCOPY link /x\n")];
    let ctx = context(&ctx_files);
    std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("link")).unwrap();
    let out = run(kiln()
        .args(["build", "--no-push", "--tar-path"])
        .arg(ctx.path().join("o.tar"))
        .arg("--context")
        .arg(ctx.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("Dockerfile:2:")
            && err.contains("leads outside the build context"),
        "{err}"
    );
    assert!(
        !ctx.path().join("o.tar").exists(),
        "no output from a failed build"
    );

    let f = fails(
        &reg,
        &[(
            "Dockerfile",
            "FROM scratch AS a\nCOPY --from=nosuchstage /x /x\n",
        )],
        &[],
    );
    assert!(
        f.stderr.contains("Dockerfile:2:") && f.stderr.contains("--from=nosuchstage"),
        "{}",
        f.stderr
    );

    let f = fails(
        &reg,
        &[
            ("Dockerfile", "FROM scratch AS one\nCOPY a /a\n"),
            ("a", ""),
        ],
        &["--target", "two"],
    );
    assert!(
        f.stderr.contains("--target \"two\"") && f.stderr.contains("one"),
        "{}",
        f.stderr
    );

    let f = fails(
        &reg,
        &[
            (
                "Dockerfile",
                &format!("FROM {}/no/such-image:1\nCOPY a /a\n", reg.addr),
            ),
            ("a", ""),
        ],
        &[],
    );
    assert!(
        f.stderr.contains("Dockerfile:1:") && f.stderr.contains("not found"),
        "{}",
        f.stderr
    );

    let f = fails(
        &reg,
        &[(
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox\nRUN --frobnicate=yes true\n",
                reg.addr
            ),
        )],
        &[],
    );
    assert!(
        f.stderr
            .contains("Dockerfile:2: unknown flag for RUN: --frobnicate"),
        "{}",
        f.stderr
    );

    // An unreachable registry: a closed port on loopback.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let f = fails(
        &reg,
        &[("Dockerfile", &format!("FROM {closed}/x/y\n"))],
        &["--insecure-registry", &closed],
    );
    assert!(
        f.stderr
            .contains(&format!("cannot reach registry {closed}"))
            && f.stderr.contains("hint:"),
        "{}",
        f.stderr
    );

    // Pushing to an unreachable registry after a good build: still no tag anywhere, clear error.
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "")]);
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &closed,
            "--destination",
            &format!("{closed}/x/y:1"),
        ])
        .arg("--context")
        .arg(ctx.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("cannot reach registry {closed}")),
        "{err}"
    );

    // Plain HTTP registry without --insecure-registry: the hint says what to do.
    let ctx = context(&[("Dockerfile", &format!("FROM {}/base/busybox\n", reg.addr))]);
    let out = run(kiln()
        .args(["build", "--no-push", "--tar-path"])
        .arg(ctx.path().join("o.tar"))
        .arg("--context")
        .arg(ctx.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&format!("--insecure-registry {}", reg.addr)),
        "{err}"
    );

    // A destination Docker rejects as a reference is refused before any work.
    let f = fails(
        &reg,
        &[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "")],
        &["--destination", "h:1:2:3/x"],
    );
    assert!(
        f.stderr.contains("h:1:2:3/x") && f.stderr.contains("bad registry host"),
        "{}",
        f.stderr
    );
}

/// A hostile input a megabyte long is cut in the error that quotes it: the
/// message names the file and line and stays short.
#[test]
fn a_megabyte_of_input_is_cut_in_the_error() {
    let reg = Registry::start();
    let huge = "[".to_string() + &"a".repeat(1 << 20);
    let f = fails(
        &reg,
        &[
            ("Dockerfile", "FROM scratch\nCOPY a /a\n"),
            ("a", ""),
            (".dockerignore", &format!("ok\n{huge}\n")),
        ],
        &[],
    );
    assert!(
        f.stderr.contains(".dockerignore:2:"),
        "{}",
        &f.stderr[..200.min(f.stderr.len())]
    );
    assert!(
        f.stderr.contains("bytes cut"),
        "{}",
        &f.stderr[..200.min(f.stderr.len())]
    );
    assert!(f.stderr.len() < 4096, "{} bytes of error", f.stderr.len());
    let word = "x".repeat(1 << 20);
    let f = fails(
        &reg,
        &[("Dockerfile", &format!("FROM scratch\nBOGUS{word}\n"))],
        &[],
    );
    assert!(
        f.stderr.contains("Dockerfile:2:"),
        "{}",
        &f.stderr[..200.min(f.stderr.len())]
    );
    assert!(f.stderr.len() < 4096, "{} bytes of error", f.stderr.len());
}
