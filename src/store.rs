//! The local content-addressed store: blobs named by digest, written atomically
//! (temporary file in the same directory tree, then rename), so a reader never sees
//! a half-written blob and two builds can share one store.

use crate::digest::{hex_of, sha256_bytes};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::create_dir_all(root.join("tmp"))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
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

    /// A new temporary file inside the store, for a blob being written.
    pub fn temp(&self) -> io::Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(self.root.join("tmp"))
    }

    /// Move a finished temporary file into place under `digest`.
    pub fn commit(&self, tmp: NamedTempFile, digest: &str) -> io::Result<PathBuf> {
        let dest = self.blob_path(digest)?;
        tmp.as_file().sync_data()?;
        tmp.persist(&dest).map_err(|e| e.error)?;
        Ok(dest)
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

    /// Re-hash a stored blob; a mismatch means it is corrupt.
    pub fn verify(&self, digest: &str) -> io::Result<bool> {
        Ok(crate::digest::sha256_file(&self.blob_path(digest)?)? == digest)
    }
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
        assert!(!s.verify(&d).unwrap());
        assert!(s.blob_path("sha256:../../x").is_err());
    }
}
