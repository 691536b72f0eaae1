//! The local content-addressed store: blobs named by digest, written atomically
//! (temporary file in the same directory tree, then rename), so a reader never sees
//! a half-written blob and two builds can share one store.
//!
//! The store is not trusted: with `--cache-dir` it is a directory that GitLab's
//! `cache:` shares across branches, so anyone who can write it could plant bytes.
//! A blob is re-hashed the first time a build uses it ([`Store::verified_path`]);
//! one that fails is discarded, so the caller fetches it again or rebuilds it.

use crate::digest::{hex_of, sha256_bytes};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tempfile::NamedTempFile;

#[derive(Clone)]
pub struct Store {
    root: PathBuf,
    /// Digests this process wrote or re-hashed: their files are known good.
    verified: Arc<Mutex<HashSet<String>>>,
    /// Who wants the next blob a layer writer starts, while it is written.
    announced: Arc<Mutex<Option<crate::layer::live::Hook>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("tmp"))?;
        reclaim_partials(&root.join("tmp"));
        Ok(Store {
            root: root.to_path_buf(),
            verified: Arc::default(),
            announced: Arc::default(),
        })
    }

    /// Hand the next layer blob a writer starts to `hook` while it is written
    /// (one blob only; [`Store::unannounce`] withdraws an unused hook).
    pub fn announce(&self, hook: crate::layer::live::Hook) {
        if let Ok(mut a) = self.announced.lock() {
            *a = Some(hook);
        }
    }

    /// Take the hook for the blob being started, if any.
    pub fn take_announced(&self) -> Option<crate::layer::live::Hook> {
        self.announced.lock().ok().and_then(|mut a| a.take())
    }

    /// Withdraw a hook no writer took.
    pub fn unannounce(&self) {
        drop(self.take_announced());
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &str) -> io::Result<PathBuf> {
        let hex = hex_of(digest).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// A new temporary file inside the store, for a blob being written. It is
    /// locked while this process has it open, so other builds know it is live.
    pub fn temp(&self) -> io::Result<NamedTempFile> {
        let tmp = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(self.root.join("tmp"))?;
        tmp.as_file().lock()?;
        Ok(tmp)
    }

    /// Move a finished temporary file into place under `digest`.
    pub fn commit(&self, tmp: NamedTempFile, digest: &str) -> io::Result<PathBuf> {
        let dest = self.blob_path(digest)?;
        tmp.as_file().sync_data()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        self.mark_verified(digest);
        Ok(dest)
    }

    fn mark_verified(&self, digest: &str) {
        if let Ok(mut v) = self.verified.lock() {
            v.insert(digest.to_string());
        }
    }

    fn is_verified(&self, digest: &str) -> bool {
        self.verified.lock().is_ok_and(|v| v.contains(digest))
    }

    /// The blob's path if it is present and its content matches `digest`, hashing
    /// it on first use. A blob that fails is removed, with a warning, and `None`
    /// is returned as for a missing one.
    pub fn verified_path(&self, digest: &str) -> io::Result<Option<PathBuf>> {
        let path = self.blob_path(digest)?;
        if !path.is_file() {
            return Ok(None);
        }
        if self.is_verified(digest) {
            return Ok(Some(path));
        }
        if crate::digest::sha256_file(&path)? == digest {
            self.mark_verified(digest);
            return Ok(Some(path));
        }
        tracing::warn!(
            "blob {digest} in {} does not match its digest: discarded, fetching or building it again",
            self.root.display()
        );
        fs::remove_file(&path)?;
        Ok(None)
    }

    pub fn put_bytes(&self, data: &[u8]) -> io::Result<String> {
        let digest = sha256_bytes(data);
        if !self.has(&digest) {
            let mut tmp = self.temp()?;
            tmp.write_all(data)?;
            self.commit(tmp, &digest)?;
        }
        Ok(digest)
    }

    /// [`Store::verified_path`] on a blocking thread, for async callers.
    pub async fn verified_path_async(&self, digest: &str) -> io::Result<Option<PathBuf>> {
        let (store, digest) = (self.clone(), digest.to_string());
        tokio::task::spawn_blocking(move || store.verified_path(&digest))
            .await
            .map_err(io::Error::other)?
    }

    /// Read a small blob (config, manifest) whole, checking its digest.
    pub fn read_verified(&self, digest: &str) -> io::Result<Vec<u8>> {
        let data = fs::read(self.blob_path(digest)?)?;
        if sha256_bytes(&data) != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {digest} in the local store is corrupt"),
            ));
        }
        Ok(data)
    }
}

/// Remove partial blobs that killed builds left in `tmp`: unlocked (no process
/// is writing them) and untouched for a minute (not just created by a build that
/// is about to lock them).
fn reclaim_partials(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let stale = std::time::Duration::from_secs(60);
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > stale);
        if !old {
            continue;
        }
        if abandoned(&e.path()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// True when `path` exists and no process holds a lock on it: its owner, which
/// kept it locked while alive, is gone.
pub fn abandoned(path: &Path) -> bool {
    fs::File::open(path).is_ok_and(|f| f.try_lock().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_bytes(b"hello").unwrap();
        assert!(s.has(&d));
        assert_eq!(s.read_verified(&d).unwrap(), b"hello");
        fs::write(s.blob_path(&d).unwrap(), b"tampered").unwrap();
        assert!(s.read_verified(&d).is_err());
        // Written by this store: trusted without re-hashing.
        assert!(s.verified_path(&d).unwrap().is_some());
        // A fresh open (another build) re-hashes, finds the tampering and
        // discards the blob.
        let other = Store::open(dir.path()).unwrap();
        assert!(other.verified_path(&d).unwrap().is_none());
        assert!(!other.has(&d));
        let d2 = other.put_bytes(b"again").unwrap();
        assert!(Store::open(dir.path())
            .unwrap()
            .verified_path(&d2)
            .unwrap()
            .is_some());
        assert!(s.blob_path("sha256:../../x").is_err());
    }

    #[test]
    fn partials_of_killed_builds_are_reclaimed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let live = s.temp().unwrap();
        let dead = dir.path().join("tmp/.blob-dead");
        fs::write(&dead, b"partial").unwrap();
        let fresh = dir.path().join("tmp/.blob-fresh");
        fs::write(&fresh, b"just created").unwrap();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for p in [&dead, &live.path().to_path_buf()] {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        Store::open(dir.path()).unwrap();
        assert!(!dead.exists(), "an old unlocked partial is removed");
        assert!(live.path().exists(), "a locked one, being written, is kept");
        assert!(fresh.exists(), "a new one is kept");
    }
}
