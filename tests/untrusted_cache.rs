//! The cache dir is not trusted: GitLab's `cache:` is shared across branches, so
//! whoever can write it could plant bytes in later images. kiln re-hashes every
//! blob it uses from there; one that fails is discarded and fetched again.

mod support;

use std::io::Write;
use std::path::Path;
use support::*;

fn build(reg: &Registry, cache: &Path, tag: &str, run_line: &str) -> String {
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {}/base/busybox\nRUN {run_line}\n", reg.addr),
    )]);
    let out = run(kiln()
        .args(["build", "--cache", "--insecure-registry", &reg.addr])
        .arg("--cache-dir")
        .arg(cache)
        .args(["--destination", &format!("{}/app/img:{tag}", reg.addr)])
        .arg("--context")
        .arg(ctx.path()));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {tag} must succeed:\n{err}");
    err
}

fn blob(cache: &Path, digest: &str) -> std::path::PathBuf {
    cache
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// A gzip tar holding one file, as a planted layer.
fn planted_layer() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    let body = b"planted by another branch\n";
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, "planted.txt", &body[..]).unwrap();
    let mut gz = t.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[test]
fn tampered_cache_blobs_are_detected_discarded_and_never_pushed() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let cache = tempfile::tempdir().unwrap();
    build(&reg, cache.path(), "1", "echo one > /one");

    let manifest: serde_json::Value = serde_json::from_str(&check(
        std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/base/busybox:latest", reg.addr)),
    ))
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        blob(cache.path(), &layer_digest).is_file(),
        "the base is in the cache dir"
    );

    // Another branch's job edits the base config and replaces the base layer.
    let cfg_path = blob(cache.path(), &config_digest);
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, cfg.replace("PATH=", "PLANTED=1\",\"PATH=")).unwrap();
    std::fs::write(blob(cache.path(), &layer_digest), planted_layer()).unwrap();

    let err = build(&reg, cache.path(), "2", "echo two > /two");
    assert!(
        err.contains(&format!("blob {config_digest}")) && err.contains("does not match its digest"),
        "the edited config is detected:\n{err}"
    );
    assert!(
        err.contains(&format!("blob {layer_digest}")),
        "the replaced layer is detected:\n{err}"
    );
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/app/img:2", reg.addr), work.path());
    assert!(
        !root.join("planted.txt").exists(),
        "planted content reached the image"
    );
    assert!(root.join("bin/busybox").exists() && root.join("two").exists());
    let pushed = config_of(&reg, "app/img:2");
    assert!(
        !pushed.to_string().contains("PLANTED"),
        "the edited config reached the image: {pushed}"
    );
    // The good blobs were fetched again into the cache dir.
    assert_eq!(
        kiln::digest::sha256_file(&blob(cache.path(), &layer_digest)).unwrap(),
        layer_digest
    );

    // One flipped byte in a cached layer does not fail every later build.
    let p = blob(cache.path(), &layer_digest);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&p, bytes).unwrap();
    let err = build(&reg, cache.path(), "3", "echo three > /three");
    assert!(err.contains("does not match its digest"), "{err}");
    let root = unpack(&format!("docker://{}/app/img:3", reg.addr), work.path());
    assert!(root.join("three").exists() && root.join("bin/busybox").exists());
}
