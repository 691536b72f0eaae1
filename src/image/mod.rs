//! Images: references, config, manifests, and the two local formats (OCI image
//! layout, docker-archive), each readable and writable.

pub mod archive;
pub mod config;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod reference;

pub use config::ImageConfig;
pub use manifest::{LayerDesc, Platform};
pub use reference::Reference;

use std::path::{Path, PathBuf};

/// Largest manifest, index or config kiln reads, as containerd caps them: a
/// hostile registry or base image cannot make kiln hold gigabytes.
pub const MAX_JSON: usize = 4 << 20;

/// Read a manifest or config blob from disk, refusing one over [`MAX_JSON`].
pub fn read_json_blob(path: &Path, digest: &str) -> std::io::Result<Vec<u8>> {
    let len = std::fs::metadata(path)?.len();
    if len > MAX_JSON as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{digest} is {len} bytes; manifests and configs are limited to 4 MiB"),
        ));
    }
    std::fs::read(path)
}

/// A blob with its digest, size and where its bytes are on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

/// A single-platform image whose blobs are all on local disk, ready for a sink.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub config: BlobFile,
    pub layers: Vec<BlobFile>,
    /// diffIDs, in layer order (needed for docker-archive).
    pub diff_ids: Vec<String>,
}

impl LocalImage {
    /// Every blob (config first), for pushing or copying.
    pub fn blobs(&self) -> impl Iterator<Item = &BlobFile> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }
}

/// The mode of a file kiln writes for the user (an output, not its own state):
/// 0666 less the umask, as `docker save` or `cp` would make it.
pub(crate) fn output_mode() -> u32 {
    // Read once: a layout writes one file per blob.
    static MODE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| {
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022);
        0o666 & !umask
    })
}

/// A file output (`--tar-path`, an OCI layout's index, `--digest-file`, ...)
/// being written: to a temporary file beside it, renamed into place when
/// complete; or, when the path is a device or a FIFO (`--tar-path /dev/null`,
/// `--digest-file /dev/stdout`), into that path itself, which is never replaced.
/// A symlink is followed: the link stays, its target is written.
pub(crate) struct Output {
    file: std::fs::File,
    tmp: Option<(tempfile::NamedTempFile, std::path::PathBuf)>,
}

impl Output {
    pub(crate) fn create(path: &std::path::Path) -> std::io::Result<Output> {
        use std::os::unix::fs::FileTypeExt;
        let dest = match std::fs::metadata(path) {
            Ok(md) if md.file_type().is_char_device() || md.file_type().is_fifo() => {
                let file = std::fs::OpenOptions::new().write(true).open(path)?;
                return Ok(Output { file, tmp: None });
            }
            Ok(_) => std::fs::canonicalize(path)?,
            Err(_) => path.to_path_buf(),
        };
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tmp = output_tempfile(dir)?;
        let file = tmp.as_file().try_clone()?;
        Ok(Output {
            file,
            tmp: Some((tmp, dest)),
        })
    }

    /// Where to write.
    pub(crate) fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// Put the complete output in place.
    pub(crate) fn finish(self) -> std::io::Result<()> {
        match self.tmp {
            Some((tmp, dest)) => tmp.persist(dest).map(|_| ()).map_err(|e| e.error),
            None => Ok(()),
        }
    }
}

/// A temporary file in `dir` for an output, renamed into place when complete.
pub(crate) fn output_tempfile(dir: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::Builder::new().prefix(".kiln-").tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(output_mode()))?;
    Ok(tmp)
}

/// Copy a file into place atomically: hardlink when possible, else copy.
pub(crate) fn place_file(src: &std::path::Path, dest: &std::path::Path) -> std::io::Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let dir = dest.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".kiln-").tempfile_in(dir)?;
    let tmp_path = tmp.into_temp_path();
    std::fs::remove_file(&tmp_path)?;
    if std::fs::hard_link(src, &tmp_path).is_err() {
        std::fs::copy(src, &tmp_path)?;
    }
    // A hardlink shares the store's inode: readable per the umask is fine there
    // too, as the store's directories stay the user's own.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(output_mode()))?;
    tmp_path.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_blobs_over_4_mib_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big");
        std::fs::write(&p, vec![b' '; super::MAX_JSON + 1]).unwrap();
        let e = super::read_json_blob(&p, "sha256:x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("limited to 4 MiB"), "{e}");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(super::read_json_blob(&p, "sha256:x").unwrap(), b"{}");
    }
}
