//! A Debian bookworm base for the workload tests, made with debootstrap from
//! Debian's mirror (the one outside source the suite may use, and only where
//! real package installs are the point).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A minbase bookworm tree, made once per checkout under target/ and reused.
/// The tests of this file run in parallel: the first one makes it, the others wait.
pub fn bookworm() -> Option<PathBuf> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(make_bookworm).clone()
}

fn make_bookworm() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-rootfs/bookworm");
    let done = dir.join(".kiln-complete");
    if done.exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent()?).ok()?;
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (ci/test installs it)");
    assert!(
        out.status.success(),
        "debootstrap failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Device nodes are the runtime's, not the image's.
    for e in std::fs::read_dir(dir.join("dev")).ok()?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    std::fs::write(&done, "").ok()?;
    Some(dir)
}

/// A build context holding `files` and, as `root/`, a copy of the bookworm
/// tree (`FROM scratch` + `COPY root/ /` makes the base; a symlink would be
/// copied as one).
pub fn context_with_bookworm(files: &[(&str, &str)]) -> tempfile::TempDir {
    let Some(base) = bookworm() else {
        panic!("could not make the bookworm base");
    };
    let ctx = super::context(files);
    let root = ctx.path().join("root");
    assert!(Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&base)
        .arg(&root)
        .status()
        .expect("cp")
        .success());
    let _ = std::fs::remove_file(root.join(".kiln-complete"));
    ctx
}

/// The first stage of an arm64 bookworm (`debootstrap --foreign --arch=arm64`):
/// arm64 packages unpacked, not yet configured. Its second stage has to run as
/// arm64, which is the point of the tests that use it. Made once per checkout
/// under target/ and reused.
pub fn bookworm_arm64_first_stage() -> Option<PathBuf> {
    static BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    BASE.get_or_init(make_arm64_first_stage).clone()
}

fn make_arm64_first_stage() -> Option<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-rootfs/bookworm-arm64-foreign");
    let done = dir.join(".kiln-complete");
    if done.exists() {
        return Some(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent()?).ok()?;
    let out = Command::new("debootstrap")
        .args(["--foreign", "--arch=arm64", "--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("debootstrap (ci/test installs it)");
    assert!(
        out.status.success(),
        "debootstrap --foreign failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The first stage leaves /proc as a link to the host's; an image has a
    // directory there. Device nodes are the runtime's.
    let proc_ = dir.join("proc");
    if std::fs::symlink_metadata(&proc_).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&proc_).ok()?;
        std::fs::create_dir(&proc_).ok()?;
    }
    for e in std::fs::read_dir(dir.join("dev")).ok()?.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    std::fs::write(&done, "").ok()?;
    Some(dir)
}
