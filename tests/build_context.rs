//! `--build-context NAME=VALUE`: a directory, an image and an OCI layout as
//! BuildKit's named contexts, for `FROM NAME`, `COPY --from=NAME` and
//! `RUN --mount=from=NAME`.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// A file of an unpacked image.
fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("/{path}: {e}"))
}

fn build(ctx: &Path, out: &Path, extra: &[&str]) -> std::path::PathBuf {
    build_and_unpack(ctx, out, extra)
}

fn build_err(ctx: &Path, extra: &[&str]) -> String {
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx)
        .args(extra));
    let text = output_text(&out);
    assert!(!out.status.success(), "the build passed:\n{text}");
    assert!(!text.contains("panicked"), "{text}");
    text
}

#[test]
fn a_directory_context_feeds_copy_from_and_run_mounts_and_stays_untouched() {
    if !need_root("a_directory_context_feeds_copy_from_and_run_mounts_and_stays_untouched") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let src = context(&[
        ("hello.txt", "from the named context\n"),
        ("secret.key", "not ignored here\n"),
    ]);
    let before = check(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . -exec stat -c '%n %s %Y %a' {{}} + | sort",
        src.path().display()
    )));
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox\nCOPY --from=src hello.txt secret.key /got/\nRUN --mount=from=src,target=/src cat /src/hello.txt > /mounted\nRUN --mount=from=src,target=/src,rw touch /src/written-by-run && rm /src/hello.txt\n",
                reg.addr
            ),
        ),
        // The main context's .dockerignore is the main context's only.
        (".dockerignore", "*.key\n"),
    ]);
    let out = tempfile::tempdir().unwrap();
    let ctx_arg = format!("src={}", src.path().display());
    let root = build(
        ctx.path(),
        out.path(),
        &[
            "--insecure-registry",
            &reg.addr,
            "--build-context",
            &ctx_arg,
        ],
    );
    assert_eq!(read(&root, "got/hello.txt"), "from the named context\n");
    assert!(root.join("got/secret.key").is_file());
    assert_eq!(read(&root, "mounted"), "from the named context\n");
    let after = check(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . -exec stat -c '%n %s %Y %a' {{}} + | sort",
        src.path().display()
    )));
    assert_eq!(before, after, "the named directory was changed");
}

#[test]
fn a_directory_context_is_keyed_by_its_content() {
    let src = context(&[("v.txt", "one\n")]);
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY --from=src v.txt /v.txt\n")]);
    let cache = tempfile::tempdir().unwrap();
    let ctx_arg = format!("src={}", src.path().display());
    let go = || {
        let out = run(kiln()
            .args(["build", "--no-push", "--cache", "--cache-dir"])
            .arg(cache.path())
            .arg("--context")
            .arg(ctx.path())
            .args(["--build-context", &ctx_arg]));
        let text = output_text(&out);
        assert!(out.status.success(), "{text}");
        text
    };
    assert!(go().contains("BUILT"));
    assert!(go().contains("CACHED"));
    std::fs::write(src.path().join("v.txt"), "two\n").unwrap();
    let third = go();
    assert!(
        third.contains("BUILT"),
        "a changed named context hit the cache:\n{third}"
    );
}

#[test]
fn an_image_context_replaces_a_base_and_feeds_copy_from() {
    let reg = Registry::start();
    // Two images in the registry: "pinned" replaces the Dockerfile's base.
    let img = |repo: &str, file: &str| {
        let ctx = context(&[
            (
                "Dockerfile",
                &format!("FROM scratch\nCOPY {file} /{file}\n"),
            ),
            (file, &format!("{repo}\n")),
        ]);
        let o = run(kiln()
            .args(["build", "--insecure-registry", &reg.addr, "--context"])
            .arg(ctx.path())
            .args(["--destination", &format!("{}/{repo}:1", reg.addr)]));
        assert!(o.status.success(), "{}", output_text(&o));
    };
    img("pinned", "base.txt");
    img("tools", "tool.txt");
    let ctx = context(&[(
        "Dockerfile",
        "FROM registry.invalid/never/pulled:latest\nCOPY --from=tools /tool.txt /tool.txt\n",
    )]);
    let out = tempfile::tempdir().unwrap();
    let base = format!(
        "registry.invalid/never/pulled:latest=docker-image://{}/pinned:1",
        reg.addr
    );
    let tools = format!("tools=docker-image://{}/tools:1", reg.addr);
    let root = build(
        ctx.path(),
        out.path(),
        &[
            "--insecure-registry",
            &reg.addr,
            "--build-context",
            &base,
            "--build-context",
            &tools,
        ],
    );
    assert_eq!(read(&root, "base.txt"), "pinned\n");
    assert_eq!(read(&root, "tool.txt"), "tools\n");
}

#[test]
fn an_oci_layout_context_is_a_base_and_its_layers_go_with_the_image() {
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let base = context(&[
        ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
        ("a.txt", "from the layout\n"),
    ]);
    let o = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(base.path())
        .arg("--oci-layout-path")
        .arg(&layout)
        .args(["--destination", "example.com/base:v1"]));
    assert!(o.status.success(), "{}", output_text(&o));
    let ctx = context(&[
        ("Dockerfile", "FROM base\nCOPY b.txt /b.txt\n"),
        ("b.txt", "mine\n"),
    ]);
    let spec = format!("base=oci-layout://{}:v1", layout.display());
    let o = run(kiln()
        .args(["build", "--insecure-registry", &reg.addr, "--context"])
        .arg(ctx.path())
        .args(["--build-context", &spec])
        .args(["--destination", &format!("{}/app/img:1", reg.addr)]));
    assert!(o.status.success(), "{}", output_text(&o));
    // skopeo copies every layer out of the registry: the layout's came along.
    let root = unpack(
        &format!("docker://{}/app/img:1", reg.addr),
        &work.path().join("out"),
    );
    assert_eq!(read(&root, "a.txt"), "from the layout\n");
    assert_eq!(read(&root, "b.txt"), "mine\n");
}

#[test]
fn what_a_named_context_cannot_be_is_said() {
    let src = context(&[("x", "x\n")]);
    let ctx = context(&[("Dockerfile", "FROM src\n")]);
    let dir = format!("src={}", src.path().display());
    let e = build_err(ctx.path(), &["--build-context", &dir]);
    assert!(
        e.contains("Dockerfile:1") && e.contains("is a directory"),
        "{e}"
    );
    for (bad, want) in [
        ("src", "NAME=VALUE"),
        ("src=https://example.com/x.git", "kiln takes a directory"),
        ("src=/nonexistent/kiln", "not a directory"),
    ] {
        let e = build_err(ctx.path(), &["--build-context", bad]);
        assert!(e.contains(want), "{bad}: {e}");
    }
    let e = build_err(
        ctx.path(),
        &["--build-context", &dir, "--build-context", &dir],
    );
    assert!(e.contains("given twice"), "{e}");
}
