//! The end of a build: the config and manifest blobs, and the push to registries
//! (HEAD first, cross-repository mount when the blob lives in another repository of
//! the same registry, upload otherwise; the manifest goes last).
//!
//! It owns the mechanics of one image and one destination; which outputs a build
//! writes, and in what order, is `output`'s.

use crate::digest::sha256_bytes;
use crate::image::manifest::{build_manifest, Format, LayerDesc};
use crate::image::{BlobFile, ImageConfig, LocalImage, Reference};
use crate::registry::Client;
use crate::store::Store;
use anyhow::{anyhow, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// Concurrent blob uploads per push.
pub(crate) const PUSH_CONCURRENCY: usize = 3;

pub struct Assembled {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub layers: Vec<LayerDesc>,
    pub format: Format,
}

impl Assembled {
    pub fn new(
        store: &Store,
        config: &ImageConfig,
        layers: &[LayerDesc],
        annotations: &[(String, String)],
        format: Format,
    ) -> Result<Assembled> {
        let cbytes = config.to_bytes();
        let config_digest = store.put_bytes(&cbytes)?;
        let manifest = build_manifest(
            format,
            &config_digest,
            cbytes.len() as u64,
            layers,
            annotations,
        )
        .map_err(|e| anyhow!(e))?;
        let manifest_digest = store.put_bytes(&manifest)?;
        Ok(Assembled {
            config: cbytes,
            config_digest,
            manifest,
            manifest_digest,
            layers: layers.to_vec(),
            format,
        })
    }

    /// As a [`LocalImage`]; every layer blob must already be in `store`.
    pub fn local(&self, store: &Store) -> Result<LocalImage> {
        Ok(LocalImage {
            manifest: self.manifest.clone(),
            manifest_digest: self.manifest_digest.clone(),
            manifest_media_type: self.format.manifest_type().into(),
            config: BlobFile {
                digest: self.config_digest.clone(),
                size: self.config.len() as u64,
                media_type: self.format.config_type().into(),
                path: store.blob_path(&self.config_digest)?,
            },
            layers: self
                .layers
                .iter()
                .map(|l| {
                    Ok(BlobFile {
                        digest: l.digest.clone(),
                        size: l.size,
                        media_type: l.media_type.clone(),
                        path: store.blob_path(&l.digest)?,
                    })
                })
                .collect::<Result<_>>()?,
            diff_ids: self.layers.iter().map(|l| l.diff_id.clone()).collect(),
        })
    }
}

/// Make one blob present in `dest`: skip, mount (from its origin, or from
/// `sibling`, an earlier destination of this build that has it), or upload
/// (fetching it from its origin first if it is not local).
pub(crate) async fn ensure_blob(
    client: &Client,
    store: &Store,
    dest: &Reference,
    digest: &str,
    size: u64,
    origin: Option<&Reference>,
    sibling: Option<&Reference>,
) -> Result<()> {
    // The size the image's manifest gives must be the blob's: a base image that
    // lies about it would make kiln's manifest lie too (containerd refuses it).
    let check = |actual: Option<u64>, whose: &str| {
        match actual {
        Some(n) if n != size => Err(anyhow!(
            "blob {digest} is {n} bytes in {whose}, but the image's manifest says {size}; the base image is broken"
        )),
        _ => Ok(()),
    }
    };
    if let Some(n) = client.blob_size(dest, digest).await? {
        check(n, &dest.to_string())?;
        tracing::debug!("{digest}: already in {}", dest.name());
        client
            .counters
            .blobs_skipped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    for o in origin.into_iter().chain(sibling) {
        if o.registry == dest.registry
            && o.repository != dest.repository
            && client.mount_blob(dest, digest, &o.repository).await?
        {
            if let Some(n) = client.blob_size(dest, digest).await? {
                check(n, &o.to_string())?;
            }
            return Ok(());
        }
    }
    let path = match origin {
        // Verified (or fetched again) by the client.
        Some(o) => client.fetch_blob(o, digest, store).await?,
        None => {
            store
                .verified_path_async(digest)
                .await?
                .ok_or_else(|| anyhow!("blob {digest} is missing or corrupt in the local store and has no origin to fetch it from"))?
        }
    };
    check(
        Some(std::fs::metadata(&path)?.len()),
        "its verified download",
    )?;
    client.push_blob(dest, digest, size, &path).await?;
    Ok(())
}

/// Put a built image's blobs into `dest`: layers (concurrently), then the
/// config. `sibling` is an earlier destination on the same registry that already
/// holds them: blobs are mounted from it, so each layer is uploaded once.
/// `present`: layers this build already uploaded to `dest`, not asked about.
pub async fn push_blobs(
    client: &Client,
    store: &Store,
    dest: &Reference,
    out: &Assembled,
    layers: &[(LayerDesc, Option<Reference>)],
    sibling: Option<&Reference>,
    present: &std::collections::HashSet<String>,
) -> Result<()> {
    let missing = layers.iter().filter(|(l, _)| !present.contains(&l.digest));
    stream::iter(missing.map(|(l, origin)| {
        ensure_blob(
            client,
            store,
            dest,
            &l.digest,
            l.size,
            origin.as_ref(),
            sibling,
        )
    }))
    .buffer_unordered(PUSH_CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    ensure_blob(
        client,
        store,
        dest,
        &out.config_digest,
        out.config.len() as u64,
        None,
        sibling,
    )
    .await
}

/// Push blobs from files, then child manifests by digest, then the top manifest
/// under the destination's tag (or its digest). Used by `kiln push`.
pub async fn push_files(
    client: &Client,
    dest: &Reference,
    blobs: &[BlobFile],
    children: &[(String, String, Vec<u8>)],
    top: &[u8],
    top_media_type: &str,
) -> Result<String> {
    stream::iter(
        blobs
            .iter()
            .map(|b| async move { client.push_blob(dest, &b.digest, b.size, &b.path).await }),
    )
    .buffer_unordered(PUSH_CONCURRENCY)
    .try_collect::<Vec<bool>>()
    .await?;
    for (digest, mt, bytes) in children {
        client.put_manifest(dest, digest, bytes, mt).await?;
    }
    let digest = sha256_bytes(top);
    let reference = dest.tag.clone().unwrap_or_else(|| digest.clone());
    client
        .put_manifest(dest, &reference, top, top_media_type)
        .await?;
    Ok(digest)
}
