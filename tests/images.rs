//! Base image formats and platform selection, and the smaller build options.

mod support;

use std::process::Command;
use support::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn docker_schema2_bases_and_platform_selection_from_an_index() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    // The same base as a Docker v2 schema 2 image.
    check(
        Command::new("skopeo")
            .args([
                "copy",
                "--quiet",
                "--format",
                "v2s2",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{}/base/busybox:latest", reg.addr))
            .arg(format!("docker://{}/base/docker:latest", reg.addr)),
    );
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/base/docker:latest", reg.addr)),
    );
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{raw}"
    );

    // A multi-platform index: amd64 points at the real image, arm64 at a marker image.
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    check(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}/base/busybox:latest", reg.addr))
            .arg(format!("oci:{}:amd", layout.display())),
    );
    let marker_ctx = context(&[
        ("Dockerfile", "FROM scratch\nCOPY arm-marker /arm-marker\n"),
        ("arm-marker", "arm\n"),
    ]);
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/arm64",
            "--destination",
            "x/y:arm",
        ])
        .arg("--context")
        .arg(marker_ctx.path())
        .arg("--oci-layout-path")
        .arg(&layout));
    assert!(out.status.success(), "{}", stderr(&out));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut entries = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let arch = if tag == "amd" { "amd64" } else { "arm64" };
        entries.push(serde_json::json!({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"], "platform": {"os": "linux", "architecture": arch}}));
    }
    let top = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries})).unwrap();
    let hex = kiln::digest::sha256_bytes(&top)[7..].to_string();
    std::fs::write(layout.join("blobs/sha256").join(&hex), &top).unwrap();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": top.len(), "annotations": {"org.opencontainers.image.ref.name": "multi"}}]})).unwrap()).unwrap();
    // kiln push sends the index and both images.
    let out = run(kiln()
        .args(["push", "--insecure-registry", &reg.addr])
        .arg(format!("{}:multi", layout.display()))
        .arg(format!("{}/base/multi:latest", reg.addr)));
    assert!(out.status.success(), "{}", stderr(&out));

    let ctx = context(&[
        ("Dockerfile", &format!("FROM {a}/base/docker AS d\nFROM {a}/base/multi\nCOPY --from=d /bin/busybox /from-docker-base\n", a = reg.addr)),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/amd64",
            "--insecure-registry",
            &reg.addr,
        ])
        .arg("--context")
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(out_dir.path().join("oci")));
    assert!(out.status.success(), "{}", stderr(&out));
    let root = unpack(
        &format!("oci:{}:latest", out_dir.path().join("oci").display()),
        out_dir.path(),
    );
    assert!(
        root.join("bin/busybox").is_file(),
        "linux/amd64 picked from the index"
    );
    assert!(!root.join("arm-marker").exists());
    assert!(
        root.join("from-docker-base").is_file(),
        "Docker v2s2 base read"
    );

    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/arm64",
            "--insecure-registry",
            &reg.addr,
        ])
        .arg("--context")
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(out_dir.path().join("oci2")));
    // Stage d has no arm64 image (single-platform), so only the index stage switches.
    assert!(out.status.success(), "{}", stderr(&out));
    let root = unpack(
        &format!("oci:{}:latest", out_dir.path().join("oci2").display()),
        out_dir.path(),
    );
    assert!(
        root.join("arm-marker").is_file(),
        "--platform linux/arm64 picks the arm64 entry"
    );

    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/s390x",
            "--insecure-registry",
            &reg.addr,
            "--tar-path",
        ])
        .arg(out_dir.path().join("x.tar"))
        .arg("--context")
        .arg(context(&[("Dockerfile", &format!("FROM {}/base/multi\n", reg.addr))]).path()));
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("no image for linux/s390x")
            && err.contains("linux/amd64"),
        "{err}"
    );
}

#[test]
fn dockerfile_specific_ignore_env_build_args_and_name_digest_file() {
    let ctx = context(&[
        ("build/app.Dockerfile", "FROM scratch\nARG FROM_ENV\nARG MISSING=fallback\nLABEL env=$FROM_ENV missing=$MISSING\nCOPY . /ctx/\n"),
        ("build/app.Dockerfile.dockerignore", "drop-by-specific\n"),
        (".dockerignore", "drop-by-generic\n"),
        ("drop-by-specific", "x"),
        ("drop-by-generic", "y"),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let names = out_dir.path().join("names");
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--destination",
            "registry.example.com/g/app:1",
            "--build-arg",
            "FROM_ENV",
            "--build-arg",
            "MISSING",
        ])
        .env("FROM_ENV", "from-the-environment")
        .env_remove("MISSING")
        .arg("--context")
        .arg(ctx.path())
        .arg("--dockerfile")
        .arg(ctx.path().join("build/app.Dockerfile"))
        .arg("--oci-layout-path")
        .arg(out_dir.path().join("oci"))
        .arg("--image-name-with-digest-file")
        .arg(&names));
    assert!(out.status.success(), "{}", stderr(&out));
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        std::fs::read_to_string(&names).unwrap().trim(),
        format!("registry.example.com/g/app@{digest}")
    );
    let cfg = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--config"])
            .arg(format!("oci:{}:1", out_dir.path().join("oci").display())),
    );
    let cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    assert_eq!(
        cfg["config"]["Labels"]["env"], "from-the-environment",
        "bare --build-arg K reads the environment"
    );
    assert_eq!(
        cfg["config"]["Labels"]["missing"], "fallback",
        "an unset bare --build-arg is not given"
    );
    let root = unpack(
        &format!("oci:{}:1", out_dir.path().join("oci").display()),
        out_dir.path(),
    );
    assert!(
        !root.join("ctx/drop-by-specific").exists(),
        "<Dockerfile>.dockerignore applies"
    );
    assert!(
        root.join("ctx/drop-by-generic").exists(),
        "and takes precedence over .dockerignore"
    );
}

/// Base images that lie about their layers: a size in the manifest that is not the
/// blob's, a diffID in the config that is not the layer's content. kiln refuses
/// both with the image and layer named, instead of copying the lie into its output.
#[test]
fn base_images_whose_sizes_or_diff_ids_lie_are_refused() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    const MT: &str = "application/vnd.oci.image.manifest.v1+json";
    let (_, raw) = http_get(&reg.addr, "/v2/base/busybox/manifests/latest").unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let put_manifest = |tag: &str, m: &serde_json::Value| {
        let (status, body) = http(
            &reg.addr,
            "PUT",
            &format!("/v2/base/busybox/manifests/{tag}"),
            MT,
            m.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 201, "{body}");
    };
    // The size lie.
    let mut sized = manifest.clone();
    let real = sized["layers"][0]["size"].as_u64().unwrap();
    sized["layers"][0]["size"] = (real + 7).into();
    put_manifest("size-lie", &sized);
    // The diffID lie: a config blob with another diffID, uploaded in one POST.
    let cdigest = manifest["config"]["digest"].as_str().unwrap();
    let (_, cfg) = http_get(&reg.addr, &format!("/v2/base/busybox/blobs/{cdigest}")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    let fake = format!("sha256:{}", "ab".repeat(32));
    cfg["rootfs"]["diff_ids"][0] = fake.clone().into();
    let cfg = cfg.to_string();
    let new_digest = upload_blob(&reg.addr, "base/busybox", cfg.as_bytes());
    let mut diffed = manifest.clone();
    diffed["config"]["digest"] = new_digest.into();
    diffed["config"]["size"] = cfg.len().into();
    put_manifest("diffid-lie", &diffed);

    // A COPY needs the base's files (so its layers are fetched and extracted); a
    // LABEL does not, and the size lie is caught when the layer is mounted.
    let size_lie = format!("is {real} bytes, but the manifest says {}", real + 7);
    let mounted_lie = format!(
        "bytes in {}/base/busybox:size-lie, but the image's manifest says {}",
        reg.addr,
        real + 7
    );
    let diff_lie = format!("but the image config says diffID {fake}");
    for (tag, step, expect) in [
        ("size-lie", "COPY a /a", size_lie),
        ("size-lie", "LABEL only=metadata", mounted_lie),
        ("diffid-lie", "COPY a /a", diff_lie),
    ] {
        let ctx = context(&[
            (
                "Dockerfile",
                &format!("FROM {}/base/busybox:{tag}\n{step}\n", reg.addr),
            ),
            ("a", "a\n"),
        ]);
        let out = run(kiln()
            .args(["build", "--insecure-registry", &reg.addr])
            .args(["--destination", &format!("{}/liar/app:{tag}", reg.addr)])
            .arg("--context")
            .arg(ctx.path()));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tag}: refused:\n{err}");
        assert!(
            err.contains(&expect) && err.contains(&format!("base/busybox:{tag}")),
            "{tag}: the image and the lie are named:\n{err}"
        );
        assert!(!reg.has_tag("liar/app", tag), "{tag}: nothing pushed");
    }
}
