//! `kiln index`: single-platform images pushed by earlier jobs (one per native
//! runner) become one image index, read back with skopeo. Blobs are mounted on
//! the same registry and copied across registries; a duplicate or missing
//! platform, or a source that is already an index, is a one-line error.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Push a FROM-scratch image built for `platform` to `dest`.
fn push_for(reg: &Registry, ctx: &Path, platform: &str, dest: &str) {
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--platform",
            platform,
        ])
        .args(["--destination", dest, "--context"])
        .arg(ctx));
    assert!(out.status.success(), "{platform}: {}", stderr(&out));
}

fn index(reg: &[&Registry], args: &[&str]) -> Output {
    let mut cmd = kiln();
    cmd.arg("index");
    for r in reg {
        cmd.args(["--insecure-registry", &r.addr]);
    }
    run(cmd.args(args))
}

fn skopeo_raw(image: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(image));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skopeo_config(image: &str, arch: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo")
        .args([
            "inspect",
            "--config",
            "--tls-verify=false",
            "--override-arch",
            arch,
        ])
        .arg(image));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_native_pushes_become_one_index() {
    let reg = Registry::start();
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY f /f\n"),
        ("f", "payload\n"),
    ]);
    let amd = format!("{}/jobs/app:amd64", reg.addr);
    let arm = format!("{}/jobs/app:arm64", reg.addr);
    push_for(&reg, ctx.path(), "linux/amd64", &amd);
    push_for(&reg, ctx.path(), "linux/arm64", &arm);

    // Another repository of the same registry: every blob is mounted.
    let dest = format!("{}/release/app:1.0", reg.addr);
    let dir = tempfile::tempdir().unwrap();
    let digest_file = dir.path().join("digest");
    let out = index(
        &[&reg],
        &[
            "--destination",
            &dest,
            "--platforms",
            "linux/amd64,linux/arm64",
            "--digest-file",
            digest_file.to_str().unwrap(),
            &amd,
            &arm,
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("linux/amd64, linux/arm64"), "{err}");
    assert!(
        err.contains("0 copied"),
        "same registry: mounted, not copied: {err}"
    );
    assert!(!err.contains(" 0 mounted"), "{err}");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap(), digest);

    let ix = skopeo_raw(&format!("docker://{dest}"));
    assert_eq!(ix["mediaType"], "application/vnd.oci.image.index.v1+json");
    let plats: Vec<String> = ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
    for arch in ["amd64", "arm64"] {
        let cfg = skopeo_config(&format!("docker://{dest}"), arch);
        assert_eq!(cfg["architecture"], arch);
    }
    // The index digest is what the tag holds.
    let by_digest = skopeo_raw(&format!("docker://{}/release/app@{digest}", reg.addr));
    assert_eq!(by_digest, ix);

    // Across registries the blobs are copied.
    let other = Registry::start();
    let dest2 = format!("{}/mirror/app:1.0", other.addr);
    let out = index(&[&reg, &other], &["--destination", &dest2, &amd, &arm]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(" 0 copied"), "{err}");
    let cfg = skopeo_config(&format!("docker://{dest2}"), "arm64");
    assert_eq!(cfg["architecture"], "arm64");
}

#[test]
fn wrong_duplicate_or_nested_sources_are_one_line_errors() {
    let reg = Registry::start();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x\n")]);
    let a1 = format!("{}/jobs/app:a1", reg.addr);
    let a2 = format!("{}/jobs/app:a2", reg.addr);
    push_for(&reg, ctx.path(), "linux/amd64", &a1);
    push_for(&reg, ctx.path(), "linux/x86_64", &a2);
    let dest = format!("{}/release/app:bad", reg.addr);
    let last_line = |o: &Output| stderr(o).lines().last().unwrap_or("").to_string();

    let out = index(&[&reg], &["--destination", &dest, &a1, &a2]);
    assert!(!out.status.success());
    assert!(
        last_line(&out).contains(&format!("{a2} is linux/amd64, as {a1} already is")),
        "{}",
        stderr(&out)
    );

    let out = index(
        &[&reg],
        &["--destination", &dest, "--platforms", "linux/arm64", &a1],
    );
    assert!(!out.status.success());
    assert!(
        last_line(&out).contains("is linux/amd64, which --platforms does not list (linux/arm64)"),
        "{}",
        stderr(&out)
    );

    let out = index(
        &[&reg],
        &[
            "--destination",
            &dest,
            "--platforms",
            "linux/amd64,linux/arm64",
            &a1,
        ],
    );
    assert!(!out.status.success());
    assert!(
        last_line(&out).contains("no source image is linux/arm64"),
        "{}",
        stderr(&out)
    );

    // An index is not a source.
    let good = format!("{}/release/app:good", reg.addr);
    let b = format!("{}/jobs/app:b", reg.addr);
    push_for(&reg, ctx.path(), "linux/arm64", &b);
    let out = index(&[&reg], &["--destination", &good, &a1, &b]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = index(&[&reg], &["--destination", &dest, &good]);
    assert!(!out.status.success());
    assert!(
        last_line(&out).contains("is already an index (linux/amd64, linux/arm64)"),
        "{}",
        stderr(&out)
    );
    // Nothing was tagged by the failures.
    assert!(!reg.has_tag("release/app", "bad"));
}
