//! `kiln build --platform a,b`: one image per platform and one index under the
//! destination, read back with skopeo; stages on `$BUILDPLATFORM` built once for
//! every target; the platform ARGs; the outputs that name the index and each
//! platform; and the refusals (`--tar-path`, a foreign RUN with no emulator).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = run(Command::new("skopeo").args(args));
    assert!(out.status.success(), "skopeo {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn platforms_of(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect()
}

fn file_in(image: &str, arch: &str, path: &str, work: &Path) -> String {
    let dir = work.join(format!("unpack-{arch}"));
    let layout = work.join(format!("copy-{arch}"));
    let out = run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--override-arch",
            arch,
        ])
        .arg(image)
        .arg(format!("oci:{}:x", layout.display())));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:x", layout.display())])
        .arg(&dir));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::read_to_string(dir.join("rootfs").join(path))
        .unwrap_or_else(|e| panic!("{path} in {arch}: {e}"))
}

#[test]
fn two_platforms_make_one_index_with_their_args() {
    let reg = Registry::start();
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nARG TARGETPLATFORM\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\n\
         LABEL target=\"$TARGETPLATFORM\" arch=\"$TARGETARCH\" variant=\"$TARGETVARIANT\" build=\"$BUILDPLATFORM\"\n\
         COPY f /f\n",
    ), ("f", "same bytes for every platform\n")]);
    let work = tempfile::tempdir().unwrap();
    let dest = format!("{}/multi/app:1", reg.addr);
    let (digest_file, dotenv, layout) = (
        work.path().join("digest"),
        work.path().join("env"),
        work.path().join("oci"),
    );
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--destination",
            &dest,
        ])
        .args([
            "--platform",
            "linux/amd64,linux/arm64",
            "--platform",
            "linux/arm/v7",
        ])
        .arg("--digest-file")
        .arg(&digest_file)
        .arg("--dotenv")
        .arg(&dotenv)
        .arg("--oci-layout-path")
        .arg(&layout)
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    for p in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
        assert!(
            err.contains(&format!("[{p} stage-0 ")),
            "step lines name {p}:\n{err}"
        );
    }
    let ix = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{dest}"),
    ]);
    assert_eq!(ix["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        platforms_of(&ix),
        ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    );
    let digest = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    let by_digest = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/multi/app@{digest}", reg.addr),
    ]);
    assert_eq!(
        by_digest, ix,
        "the tag holds the index the digest file names"
    );
    let env = std::fs::read_to_string(&dotenv).unwrap();
    assert!(
        env.contains(&format!("KILN_IMAGE_DIGEST={digest}\n")),
        "{env}"
    );
    for (i, var) in ["LINUX_AMD64", "LINUX_ARM64", "LINUX_ARM_V7"]
        .iter()
        .enumerate()
    {
        let d = ix["manifests"][i]["digest"].as_str().unwrap();
        assert!(
            env.contains(&format!("KILN_IMAGE_DIGEST_{var}={d}\n")),
            "{var}: {env}"
        );
    }
    for (arch, variant, target) in [
        ("amd64", "", "linux/amd64"),
        ("arm64", "", "linux/arm64"),
        ("arm", "v7", "linux/arm/v7"),
    ] {
        let mut args = vec![
            "inspect",
            "--config",
            "--tls-verify=false",
            "--override-arch",
            arch,
        ];
        if !variant.is_empty() {
            args.extend(["--override-variant", variant]);
        }
        let image = format!("docker://{dest}");
        args.push(&image);
        let cfg = skopeo(&args);
        assert_eq!(cfg["architecture"], arch);
        let labels = &cfg["config"]["Labels"];
        assert_eq!(labels["target"], target);
        assert_eq!(labels["arch"], arch);
        assert_eq!(labels["variant"], variant);
        assert_eq!(labels["build"], "linux/amd64");
    }
    // The OCI layout holds the same index.
    let lay = skopeo(&["inspect", "--raw", &format!("oci:{}:1", layout.display())]);
    assert_eq!(lay, ix);
}

#[test]
fn a_buildplatform_stage_is_built_once_for_every_target() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let base = format!("{}/base/busybox", reg.addr);
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM --platform=$BUILDPLATFORM {base} AS builder\n\
             RUN echo tools installed once > /tools\n\
             ARG TARGETARCH\n\
             RUN echo \"compiled on $(busybox uname -m) for $TARGETARCH\" > /out\n\
             FROM scratch\n\
             COPY --from=builder /out /out\n"
        ),
    )]);
    let work = tempfile::tempdir().unwrap();
    let dest = format!("{}/cross/app:1", reg.addr);
    let build = || {
        run(kiln()
            .args([
                "build",
                "--insecure-registry",
                &reg.addr,
                "--destination",
                &dest,
            ])
            .args(["--platform", "linux/amd64,linux/arm64", "--context"])
            .arg(ctx.path()))
    };
    let out = build();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    // The shared RUN ran for the first platform and was found built for the
    // second; the per-target RUN ran natively for each, with no emulator.
    let line = |prefix: &str| {
        err.lines()
            .find(|l| l.starts_with(prefix) && !l.contains('│'))
            .unwrap_or_else(|| panic!("no line {prefix}:\n{err}"))
            .to_string()
    };
    assert!(line("[linux/amd64 builder 2/4]").contains("BUILT"), "{err}");
    assert!(
        line("[linux/arm64 builder 2/4]").contains("CACHED"),
        "{err}"
    );
    assert!(line("[linux/arm64 builder 4/4]").contains("BUILT"), "{err}");
    assert!(!err.contains("binfmt_misc"), "no emulator: {err}");
    let image = format!("docker://{dest}");
    assert_eq!(
        file_in(&image, "amd64", "out", work.path()),
        "compiled on x86_64 for amd64\n"
    );
    assert_eq!(
        file_in(&image, "arm64", "out", work.path()),
        "compiled on x86_64 for arm64\n"
    );
}

#[test]
fn tar_path_and_a_foreign_run_without_emulator_are_refused_with_the_way_out() {
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/amd64,linux/arm64",
            "--tar-path",
        ])
        .arg(ctx.path().join("img.tar"))
        .arg("--context")
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("docker load takes one") && err.contains("--platform linux/amd64"),
        "{err}"
    );
    assert!(!ctx.path().join("img.tar").exists());

    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--custom-platform",
            "linux/amd64,linux/arm64",
            "--context",
        ])
        .arg(ctx.path()));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("kaniko's flag takes one platform"),
        "{}",
        stderr(&out)
    );

    // A RUN of arm64 on this amd64 host, with no binfmt_misc handler here.
    if std::env::consts::ARCH != "x86_64"
        || Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
    {
        eprintln!("skipping the no-emulator case: this host has a qemu-aarch64 handler");
        return;
    }
    let bb = ctx.path().join("busybox");
    std::fs::copy("/bin/busybox", &bb).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n",
    )
    .unwrap();
    // An emulator dir without one: the error names the file looked for too.
    let empty = tempfile::tempdir().unwrap();
    let out = run(kiln()
        .args([
            "build",
            "--no-push",
            "--platform",
            "linux/arm64",
            "--context",
        ])
        .arg(ctx.path())
        .arg("--emulator-dir")
        .arg(empty.path()));
    let err = stderr(&out);
    assert!(!out.status.success());
    let last = err.lines().last().unwrap_or("");
    assert!(last.contains("Dockerfile:3"), "{err}");
    assert!(
        last.contains("RUN for linux/arm64 on this linux/amd64 host needs an emulator"),
        "{err}"
    );
    assert!(
        last.contains("/proc/sys/fs/binfmt_misc/qemu-aarch64"),
        "{err}"
    );
    let looked = empty.path().join("qemu-aarch64-static");
    assert!(
        last.contains(&looked.display().to_string()) && last.contains("--emulator-dir"),
        "{err}"
    );
}

#[test]
fn a_warm_two_platform_rebuild_is_all_hits_and_reproducible_digests_repeat() {
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM scratch AS tools\nCOPY busybox /bin/busybox\n\
         ARG TARGETARCH\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $TARGETARCH > /arch\"]\n\
         FROM scratch\nCOPY --from=tools /arch /arch\nCOPY f /f\n",
        ),
        ("f", "x\n"),
    ]);
    std::fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let build = |extra: &[&str]| {
        let out = run(kiln()
            .args([
                "build",
                "--no-push",
                "--platform",
                "linux/amd64,linux/arm64",
                "--context",
            ])
            .arg(ctx.path())
            .args(extra));
        assert!(out.status.success(), "{}", stderr(&out));
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr(&out),
        )
    };
    let cached = [
        "--cache",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--reproducible",
    ];
    let (first, _) = build(&cached);
    let (second, log) = build(&cached);
    assert_eq!(first, second, "--reproducible: the same index digest");
    let steps: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("[linux/") && (l.contains(" COPY ") || l.contains(" RUN ")))
        .collect();
    assert_eq!(steps.len(), 8, "{log}");
    assert!(
        steps.iter().all(|l| l.contains("CACHED")),
        "a warm rebuild does no work:\n{log}"
    );
    let (third, _) = build(&["--reproducible"]);
    assert_eq!(third, first, "the run's own cache gives the same bytes");
}

/// A single-manifest base of another platform is used with a warning, unless
/// the target also runs it (containerd's order: amd64 runs 386).
#[test]
fn a_base_of_another_platform_is_named_in_a_warning() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {}/base/busybox\nCOPY f /f\n", reg.addr),
        ),
        ("f", "x"),
    ]);
    for (platform, warned) in [("linux/arm64", true), ("linux/amd64", false)] {
        let out = run(kiln()
            .args(["build", "--no-push", "--insecure-registry", &reg.addr])
            .args(["--platform", platform, "--context"])
            .arg(ctx.path()));
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let said = err.contains(&format!("is linux/amd64, not the requested {platform}"));
        assert_eq!(said, warned, "{platform}:\n{err}");
    }
    // A 386 base for an amd64 image: amd64 runs it, no warning.
    std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let i386 = format!("{}/base/i386:1", reg.addr);
    let out = run(kiln()
        .args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--platform",
            "linux/386",
        ])
        .args(["--destination", &i386, "--context"])
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {i386}\nCOPY f /g\n"),
    )
    .unwrap();
    let out = run(kiln()
        .args(["build", "--no-push", "--insecure-registry", &reg.addr])
        .args(["--platform", "linux/amd64", "--context"])
        .arg(ctx.path()));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("not the requested"), "{err}");
}
