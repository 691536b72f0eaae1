//! Foreign RUN steps with no binfmt_misc handler: kiln's own exec tracer puts
//! qemu-user (Debian's static `qemu-aarch64-static`, which ci/test takes out of
//! the package without installing it) in front of every arm64 program a step
//! runs, in every isolation mode. The arm64 Debian base is made here: its
//! `debootstrap --foreign` first stage is unpacked on the host, and its second
//! stage runs as an emulated RUN in the unprivileged-job sandbox. Then
//! `apt-get install python3` runs for amd64 and arm64 in one build, and the
//! arm64 image's programs are arm64's.
//!
//! Also: `--reproducible` gives the same two-platform index twice with
//! emulated steps, and a cross-compiling `$BUILDPLATFORM` stage is built once
//! and starts no emulator.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use support::debian::{bookworm, bookworm_arm64_first_stage};
use support::sandbox::gitlab_job;
use support::*;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where ci/test put qemu-aarch64-static.
fn emulators() -> PathBuf {
    let d = std::env::var_os("KILN_TEST_EMULATOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/qemu-user-static"));
    assert!(
        d.join("qemu-aarch64-static").is_file(),
        "no qemu-aarch64-static in {}: ci/test fetches it",
        d.display()
    );
    d
}

/// Whether this machine can show kiln's own emulation: root on an x86-64 host
/// with no qemu-aarch64 binfmt_misc handler (kiln would use that instead).
fn tracer_host(test: &str) -> bool {
    if !need_root(test) {
        return false;
    }
    if std::env::consts::ARCH != "x86_64" {
        skip(test, "kiln's exec tracer runs on x86-64 hosts only");
        return false;
    }
    if Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        skip(
            test,
            "this machine has a qemu-aarch64 binfmt_misc handler, which kiln would use",
        );
        return false;
    }
    true
}

/// `cp -a` of a tree into the context.
fn copy_tree(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(ok.success());
    let _ = std::fs::remove_file(to.join(".kiln-complete"));
}

/// The two-platform bookworm base as an OCI layout, made once per test run:
/// amd64 from a debootstrapped tree, arm64 from the foreign first stage, whose
/// second stage (dpkg configuring every package, maintainer scripts and all)
/// runs as one emulated RUN in the job sandbox, chroot mode.
fn base_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let amd64 = bookworm().expect("the amd64 bookworm tree");
        let arm64 = bookworm_arm64_first_stage().expect("the arm64 first stage");
        let ctx = context(&[(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY root-${TARGETARCH}/ /\n\
             RUN if [ -x /debootstrap/debootstrap ]; then \
             /debootstrap/debootstrap --second-stage > /tmp/second-stage.log 2>&1 \
             || { tail -30 /tmp/second-stage.log; exit 1; }; rm /tmp/second-stage.log; fi; \
             echo \"second stage done on $(uname -m)\"\n",
        )]);
        copy_tree(&amd64, &ctx.path().join("root-amd64"));
        copy_tree(&arm64, &ctx.path().join("root-arm64"));
        let layout = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-rootfs/emulated-base");
        let _ = std::fs::remove_dir_all(&layout);
        let out = run(gitlab_job(
            kiln()
                .args([
                    "build",
                    "--no-push",
                    "--platform",
                    "linux/amd64,linux/arm64",
                ])
                .arg("--emulator-dir")
                .arg(emulators())
                .arg("--oci-layout-path")
                .arg(&layout)
                .arg("--context")
                .arg(ctx.path()),
        ));
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("RUN isolation: chroot"), "{err}");
        assert!(err.contains("second stage done on aarch64"), "{err}");
        assert!(err.contains("second stage done on x86_64"), "{err}");
        let arm_step = step_line(&err, "[linux/arm64 stage-0 4/4]");
        assert!(
            arm_step.contains("linux/arm64 by ") && arm_step.contains("under kiln's exec tracer"),
            "{err}"
        );
        assert!(
            !step_line(&err, "[linux/amd64 stage-0 4/4]").contains("emulat"),
            "a native step names no emulator:\n{err}"
        );
        layout
    })
}

/// The step line (not an output line) that starts with `prefix`.
fn step_line(log: &str, prefix: &str) -> String {
    log.lines()
        .find(|l| l.starts_with(prefix) && !l.contains('│'))
        .unwrap_or_else(|| panic!("no step line {prefix}:\n{log}"))
        .to_string()
}

/// qemu's machine number of an ELF file (183: aarch64, 62: x86-64).
fn elf_machine(path: &Path) -> u16 {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        b.starts_with(b"\x7fELF"),
        "{} is no ELF file",
        path.display()
    );
    u16::from_le_bytes([b[18], b[19]])
}

/// The unpacked rootfs of one platform of `image`.
fn unpack_arch(image: &str, arch: &str, work: &Path) -> PathBuf {
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
    let dir = work.join(format!("unpack-{arch}"));
    let out = run(Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:x", layout.display())])
        .arg(&dir));
    assert!(out.status.success(), "{}", stderr(&out));
    dir.join("rootfs")
}

/// How a mode's build is started: the command kiln runs under.
enum Mode {
    /// The unprivileged GitLab job's sandbox: chroot isolation.
    Job,
    /// Root on the host: namespaces.
    Namespaces,
    /// uid 65534 with subordinate ids: rootless.
    Rootless,
}

/// `kiln build --platform linux/amd64,linux/arm64` of `apt-get install
/// python3` on the emulated base, in `mode`, pushed to a local registry; then
/// what a user would check of the arm64 image.
fn emulated_apt_build(mode: Mode) {
    let reg = Registry::start();
    let base = format!("{}/debian:bookworm", reg.addr);
    let out = run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", base_layout().display()))
        .arg(format!("docker://{base}")));
    assert!(out.status.success(), "{}", stderr(&out));
    // World-readable for the rootless user.
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends python3 > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1); rm -f /tmp/apt.log\n\
             RUN echo \"arch=$(dpkg --print-architecture) machine=$(uname -m) \
             python=$(python3 -c 'import platform; print(platform.machine())')\" | tee /built-on\n\
             RUN su nobody -s /bin/sh -c 'echo \"as $(id -un) on $(uname -m)\"'\n"
        ),
    )
    .unwrap();
    let dest = format!("{}/emulated/app:1", reg.addr);
    let report = work.path().join("report.json");
    let cache = work.path().join("cache");
    let bin = work.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    let subids = work.path().join("subids");
    std::fs::write(&subids, "nobody:200000:65536\n").unwrap();
    let build = || {
        let mut cmd = match mode {
            Mode::Job | Mode::Namespaces => Command::new(&bin),
            Mode::Rootless => {
                let script = format!(
                    "mount --bind {0} /etc/subuid && mount --bind {0} /etc/subgid && exec \"$@\"",
                    subids.display()
                );
                let mut c = Command::new("unshare");
                c.args(["-m", "sh", "-c", &script, "sh", "setpriv"])
                    .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                    .arg(&bin)
                    .env("HOME", work.path());
                c
            }
        };
        cmd.args([
            "build",
            "--insecure-registry",
            &reg.addr,
            "--destination",
            &dest,
        ])
        .args([
            "--platform",
            "linux/amd64,linux/arm64",
            "--cache",
            "--cache-dir",
        ])
        .arg(&cache)
        .arg("--work-dir")
        .arg(work.path())
        .arg("--emulator-dir")
        .arg(emulators())
        .arg("--report")
        .arg(&report)
        .arg("--context")
        .arg(&ctx);
        let out = match mode {
            Mode::Job => run(gitlab_job(cmd.args(["--isolation", "chroot"]))),
            Mode::Namespaces => run(cmd.args(["--isolation", "namespaces"])),
            Mode::Rootless => run(&mut cmd),
        };
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        err
    };
    let err = build();
    let isolation = match mode {
        Mode::Job => "RUN isolation: chroot",
        Mode::Namespaces => "RUN isolation: namespaces",
        Mode::Rootless => "RUN isolation: rootless (uids 0-65536",
    };
    assert!(err.contains(isolation), "{err}");
    assert!(
        err.contains("arch=arm64 machine=aarch64 python=aarch64"),
        "dpkg, uname and python answer as arm64's:\n{err}"
    );
    assert!(
        err.contains("arch=amd64 machine=x86_64 python=x86_64"),
        "{err}"
    );
    // A program that changed its uid execs under the emulator too (in the
    // job, kiln makes it dumpable first to read its exec call).
    assert!(err.contains("as nobody on aarch64"), "{err}");
    assert!(err.contains("as nobody on x86_64"), "{err}");
    for step in ["2/4", "3/4", "4/4"] {
        let line = step_line(&err, &format!("[linux/arm64 stage-0 {step}]"));
        assert!(
            line.contains("BUILT") && line.contains("under kiln's exec tracer"),
            "{err}"
        );
        let line = step_line(&err, &format!("[linux/amd64 stage-0 {step}]"));
        assert!(!line.contains("emulat"), "{err}");
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let emulated = r["emulated"].as_array().unwrap();
    assert_eq!(emulated.len(), 3, "{r}");
    assert!(emulated.iter().all(|e| e["platform"] == "linux/arm64"
        && e["by"]
            .as_str()
            .unwrap()
            .ends_with("qemu-aarch64-static under kiln's exec tracer")));

    // The index holds both, and the arm64 image's python is an aarch64 program.
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{dest}")));
    let ix: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let archs: Vec<&str> = ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    let arm = unpack_arch(&format!("docker://{dest}"), "arm64", work.path());
    let python = arm
        .join("usr/bin")
        .join(std::fs::read_link(arm.join("usr/bin/python3")).unwrap());
    assert_eq!(elf_machine(&python), 183, "{}", python.display());
    assert_eq!(
        std::fs::read_to_string(arm.join("built-on")).unwrap(),
        "arch=arm64 machine=aarch64 python=aarch64\n"
    );
    // Nothing of kiln's emulation stays in the image.
    assert!(!arm.join("dev/.kiln-emulator").exists());
    let amd = unpack_arch(&format!("docker://{dest}"), "amd64", work.path());
    assert_eq!(elf_machine(&amd.join("usr/bin/dpkg")), 62);

    if matches!(mode, Mode::Job) {
        let again = build();
        let steps: Vec<&str> = again
            .lines()
            .filter(|l| l.starts_with("[linux/") && l.contains(" RUN ") && !l.contains('│'))
            .collect();
        assert_eq!(steps.len(), 6, "{again}");
        assert!(
            steps.iter().all(|l| l.contains("CACHED")),
            "a warm rebuild does no work:\n{again}"
        );
    }
}

#[test]
fn an_emulated_apt_build_in_the_job_sandbox_makes_a_two_platform_index() {
    if tracer_host("an_emulated_apt_build_in_the_job_sandbox_makes_a_two_platform_index") {
        emulated_apt_build(Mode::Job);
    }
}

#[test]
fn an_emulated_apt_build_in_namespaces_makes_a_two_platform_index() {
    if tracer_host("an_emulated_apt_build_in_namespaces_makes_a_two_platform_index") {
        emulated_apt_build(Mode::Namespaces);
    }
}

#[test]
fn an_emulated_apt_build_rootless_makes_a_two_platform_index() {
    if tracer_host("an_emulated_apt_build_rootless_makes_a_two_platform_index") {
        emulated_apt_build(Mode::Rootless);
    }
}

/// A busybox tree for amd64: the same commands, run natively.
fn busybox_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "uname", "cat", "readlink", "grep", "head", "wc", "echo", "ls", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
}

/// In an emulated step, kiln's /proc, /dev, `RUN --mount`s, secrets and the
/// company CA are there as in a native one, and `uname -m`, `/proc/self/exe`
/// and the process name answer as on arm64; `--reproducible` gives the same
/// two-platform index from two cold builds.
#[test]
fn emulated_steps_keep_what_steps_get_and_repeat_their_digest() {
    if !tracer_host("emulated_steps_keep_what_steps_get_and_repeat_their_digest") {
        return;
    }
    let arm64 = bookworm_arm64_first_stage().expect("the arm64 first stage");
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY root-${TARGETARCH}/ /\nARG CA_LINE\n\
         RUN --mount=type=secret,id=token --mount=type=cache,target=/cache \
         --mount=type=tmpfs,target=/scratch \
         echo \"on $(uname -m): exe=$(readlink /proc/self/exe) comm=$(cat /proc/self/comm) \
         zero=$(head -c 3 /dev/zero | wc -c)\"; \
         [ \"$(cat /run/secrets/token)\" = s3cr3t ] && echo \"secret-ok on $(uname -m)\"; \
         echo seen > /cache/seen && echo t > /scratch/t && echo \"mounts-ok on $(uname -m)\"; \
         grep -q \"$CA_LINE\" \"$SSL_CERT_FILE\" && echo \"ca-ok on $(uname -m)\"; \
         uname -m > /machine\n",
    )]);
    copy_tree(&arm64, &ctx.path().join("root-arm64"));
    busybox_tree(&ctx.path().join("root-amd64"));
    let work = tempfile::tempdir().unwrap();
    let (key, ca) = (work.path().join("ca.key"), work.path().join("ca.pem"));
    let out = run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=kiln emulation test CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&ca));
    assert!(out.status.success(), "{}", stderr(&out));
    let pem = std::fs::read_to_string(&ca).unwrap();
    let ca_line = pem.lines().nth(3).unwrap().to_string();
    let secret = work.path().join("token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let build = |name: &str| {
        let report = work.path().join(format!("{name}.json"));
        let out = run(gitlab_job(
            kiln()
                .args(["build", "--no-push", "--reproducible"])
                .args(["--platform", "linux/amd64,linux/arm64", "--emulator-dir"])
                .arg(emulators())
                .args(["--run-ca-certs", "on", "--ca-cert"])
                .arg(&ca)
                .args(["--build-arg", &format!("CA_LINE={ca_line}"), "--secret"])
                .arg(format!("id=token,src={}", secret.display()))
                .arg("--report")
                .arg(&report)
                .arg("--context")
                .arg(ctx.path()),
        ));
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            err,
            r,
        )
    };
    let (first, err, report) = build("first");
    for want in [
        "on aarch64: exe=/usr/bin/readlink comm=cat zero=3",
        "on x86_64: exe=/bin/busybox comm=cat zero=3",
        "secret-ok on aarch64",
        "secret-ok on x86_64",
        "mounts-ok on aarch64",
        "mounts-ok on x86_64",
        "ca-ok on aarch64",
        "ca-ok on x86_64",
    ] {
        assert!(err.contains(want), "{want:?} missing:\n{err}");
    }
    assert!(!err.contains("s3cr3t"), "{err}");
    let native = step_line(&err, "[linux/amd64 stage-0 5/5]");
    assert!(
        !native.contains("emulat"),
        "a native step pays nothing:\n{err}"
    );
    let emulated = report["emulated"].as_array().unwrap();
    assert_eq!(emulated.len(), 1, "{report}");
    assert_eq!(emulated[0]["step"], "linux/arm64 stage-0 5/5");
    let (second, _, _) = build("second");
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(
        first, second,
        "--reproducible: the same index from two cold builds"
    );
}

/// The cross-compilation pattern Docker recommends: a `$BUILDPLATFORM`
/// toolchain stage (Debian's gcc-aarch64-linux-gnu, installed by apt) is built
/// once for both targets, each target's binary is compiled natively, and no
/// emulator starts.
#[test]
fn a_cross_compiling_toolchain_stage_runs_once_and_starts_no_emulator() {
    if !need_root("a_cross_compiling_toolchain_stage_runs_once_and_starts_no_emulator") {
        return;
    }
    let amd64 = bookworm().expect("the amd64 bookworm tree");
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM scratch AS toolchain\nCOPY root/ /\n\
             RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
             > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1); rm -f /tmp/apt.log\n\
             FROM toolchain AS build\nARG TARGETARCH\nCOPY hello.c /src/\n\
             RUN case \"$TARGETARCH\" in arm64) cc=aarch64-linux-gnu-gcc;; *) cc=gcc;; esac; \
             $cc -static -O2 -o /hello /src/hello.c && echo \"compiled for $TARGETARCH on $(uname -m)\"\n\
             FROM scratch\nCOPY --from=build /hello /hello\n",
        ),
        (
            "hello.c",
            "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
        ),
    ]);
    copy_tree(&amd64, &ctx.path().join("root"));
    let work = tempfile::tempdir().unwrap();
    let (layout, report) = (work.path().join("oci"), work.path().join("report.json"));
    let out = run(gitlab_job(
        kiln()
            .args([
                "build",
                "--no-push",
                "--platform",
                "linux/amd64,linux/arm64",
            ])
            .arg("--oci-layout-path")
            .arg(&layout)
            .arg("--report")
            .arg(&report)
            .arg("--context")
            .arg(ctx.path()),
    ));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        step_line(&err, "[linux/amd64 toolchain 3/3]").contains("BUILT"),
        "{err}"
    );
    assert!(
        step_line(&err, "[linux/arm64 toolchain 3/3]").contains("CACHED"),
        "the toolchain stage is built once:\n{err}"
    );
    assert!(err.contains("compiled for arm64 on x86_64"), "{err}");
    assert!(err.contains("compiled for amd64 on x86_64"), "{err}");
    assert!(
        !err.contains("exec tracer") && !err.contains("binfmt"),
        "no emulator:\n{err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["emulated"], serde_json::json!([]), "the report says so");
    let image = format!("oci:{}:latest", layout.display());
    for (arch, machine) in [("arm64", 183), ("amd64", 62)] {
        let root = unpack_arch(&image, arch, work.path());
        assert_eq!(elf_machine(&root.join("hello")), machine, "{arch}");
    }
}
