//! Images: references, config, manifests, and the two local formats (OCI image
//! layout, docker-archive), each readable and writable.

pub mod archive;
pub mod config;
pub mod layout;
pub mod manifest;
pub mod reference;

pub use config::ImageConfig;
pub use manifest::{LayerDesc, Platform};
pub use reference::Reference;

use std::path::PathBuf;

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
    tmp_path.persist(dest).map_err(|e| e.error)?;
    Ok(())
}
