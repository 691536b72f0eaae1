//! kiln's work directory for one build, and reclaiming those that killed builds
//! left behind.
//!
//! Each build's work dir (`kiln-XXXXXX`, mode 0700) holds a `.lock` file that the
//! build keeps locked while it runs. A `kill -9` skips the cleanup, but the kernel
//! drops the lock with the process, so the next build in the same parent finds a
//! work dir whose lock it can take, and removes it.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const LOCK: &str = ".lock";

#[derive(Debug)]
pub struct WorkDir {
    dir: tempfile::TempDir,
    // Held for the build's life; released (and the dir removed) on drop.
    _lock: File,
}

impl WorkDir {
    /// Create a private work dir in `parent`, after removing the ones of builds
    /// that are gone.
    pub fn create(parent: &Path) -> io::Result<WorkDir> {
        fs::create_dir_all(parent)?;
        let reclaimed = reclaim(parent);
        if reclaimed > 0 {
            tracing::warn!(
                "removed {reclaimed} work dir(s) in {} left by killed kiln builds",
                parent.display()
            );
        }
        // 0700: while a build runs, no other local user may reach its rootfs (and
        // run the base image's setuid binaries from it).
        let dir = tempfile::Builder::new()
            .prefix("kiln-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        // Locked before it gets its name: another build that sees `.lock` never
        // finds it unlocked while this one lives.
        let pending = dir.path().join(".lock-pending");
        let lock = File::create(&pending)?;
        lock.lock()?;
        fs::rename(&pending, dir.path().join(LOCK))?;
        Ok(WorkDir { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Remove the `kiln-*` dirs in `parent` whose lock no process holds; the count.
fn reclaim(parent: &Path) -> usize {
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("kiln-") {
            continue;
        }
        // Only dirs with kiln's lock file: never a stranger's dir of that name.
        if crate::store::abandoned(&e.path().join(LOCK)) {
            match fs::remove_dir_all(e.path()) {
                Ok(()) => n += 1,
                Err(err) => tracing::debug!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_of_builds_that_are_gone_are_reclaimed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let live = WorkDir::create(parent.path()).unwrap();
        // A build killed with -9: its dir and unlocked lock file stay behind.
        let dead = parent.path().join("kiln-dead01");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join(LOCK), b"").unwrap();
        fs::write(dead.join("layer"), b"partial").unwrap();
        // Not kiln's: no lock file.
        let stranger = parent.path().join("kiln-notours");
        fs::create_dir(&stranger).unwrap();
        let next = WorkDir::create(parent.path()).unwrap();
        assert!(!dead.exists(), "the dead build's dir is removed");
        assert!(live.path().exists(), "a running build's dir is kept");
        assert!(
            stranger.exists(),
            "a dir without kiln's lock is not touched"
        );
        let (a, b) = (live.path().to_path_buf(), next.path().to_path_buf());
        drop((live, next));
        assert!(
            !a.exists() && !b.exists(),
            "removed at the end of the build"
        );
    }
}
