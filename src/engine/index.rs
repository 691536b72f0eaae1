//! `kiln index`: one image index from single-platform images that earlier jobs
//! pushed (a job per native runner, GitLab's `parallel: matrix:`), under the
//! destination's tag.
//!
//! Each source's platform is read from its config ([`crate::image::index`]
//! checks them). The destination repository gets every source's blobs first:
//! nothing to do when they are there already, a cross-repository mount on the
//! same registry (no byte is copied), else a copy through the local store: a
//! build's own push mechanics (`sink::ensure_blob`, sizes checked too).
//! Then each source's manifest by digest, then the index under the tag, so a
//! failure on the way tags nothing.

use crate::image::index::{assemble, config_platform, Source};
use crate::image::manifest::{declared_media_type, is_index, is_manifest, platforms};
use crate::image::Reference;
use crate::platform::Platform;
use crate::registry::Client;
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use oci_spec::image::{ImageIndex, ImageManifest};

/// What `kiln index` was asked to do.
pub struct IndexRequest {
    pub destination: Reference,
    pub sources: Vec<Reference>,
    /// The platforms the index must hold (`--platforms`).
    pub platforms: Option<Vec<Platform>>,
}

/// What it did: the index digest, and how the blobs got there.
#[derive(Debug, Default)]
pub struct IndexOutcome {
    pub digest: String,
    pub platforms: Vec<String>,
    /// (platform, manifest digest) of each image, in the index's order.
    pub manifests: Vec<(String, String)>,
    pub present: usize,
    pub mounted: usize,
    pub copied: usize,
}

/// A source as fetched: its manifest document and what it references.
struct Fetched {
    source: Source,
    reference: Reference,
    manifest: Vec<u8>,
    /// (digest, size) of the config and the layers.
    blobs: Vec<(String, u64)>,
}

async fn fetch(client: &Client, r: &Reference) -> Result<Fetched> {
    let (bytes, ct, digest) = client.get_manifest(r).await?;
    let media_type = declared_media_type(&bytes, &ct);
    if is_index(&media_type) {
        let listed = serde_json::from_slice::<ImageIndex>(&bytes)
            .map(|ix| platforms(&ix).join(", "))
            .unwrap_or_default();
        bail!("{r} is already an index ({listed}): name one platform's image, by tag or digest");
    }
    if !is_manifest(&media_type) {
        bail!("{r}: {media_type} is not an image manifest");
    }
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("{r}: the manifest is not an image manifest"))?;
    let config_digest = m.config().digest().to_string();
    let config = client.fetch_small_blob(r, &config_digest).await?;
    let platform = config_platform(&config).map_err(|e| anyhow!("{r}: {e}"))?;
    let mut blobs = vec![(config_digest, m.config().size())];
    blobs.extend(
        m.layers()
            .iter()
            .map(|l| (l.digest().to_string(), l.size())),
    );
    Ok(Fetched {
        source: Source {
            name: r.to_string(),
            manifest_digest: digest,
            manifest_size: bytes.len() as u64,
            media_type,
            platform,
        },
        reference: r.clone(),
        manifest: bytes,
        blobs,
    })
}

/// Assemble and push the index; nothing is tagged unless every step before
/// succeeded.
pub async fn index(client: &Client, store: &Store, req: &IndexRequest) -> Result<IndexOutcome> {
    let fetched: Vec<Fetched> = stream::iter(req.sources.iter().map(|r| fetch(client, r)))
        .buffered(4)
        .try_collect()
        .await?;
    let sources: Vec<Source> = fetched.iter().map(|f| f.source.clone()).collect();
    let (index, media_type) =
        assemble(&sources, req.platforms.as_deref()).map_err(|e| anyhow!("kiln index: {e}"))?;
    let dest = &req.destination;
    let mut out = IndexOutcome {
        platforms: sources.iter().map(|s| s.platform.to_string()).collect(),
        manifests: sources
            .iter()
            .map(|s| (s.platform.to_string(), s.manifest_digest.clone()))
            .collect(),
        ..Default::default()
    };
    let before = client.counters.snapshot();
    for f in &fetched {
        // Present, mounted from the source's repository, or copied from it.
        stream::iter(f.blobs.iter().map(|(digest, size)| {
            super::sink::ensure_blob(client, store, dest, digest, *size, Some(&f.reference), None)
        }))
        .buffer_unordered(3)
        .try_collect::<Vec<()>>()
        .await
        .with_context(|| format!("cannot put the blobs of {} into {dest}", f.reference))?;
        client
            .put_manifest(
                dest,
                &f.source.manifest_digest,
                &f.manifest,
                &f.source.media_type,
            )
            .await
            .with_context(|| format!("{dest} refused the manifest of {}", f.reference))?;
    }
    let moved = client.counters.snapshot().since(&before);
    (out.present, out.mounted, out.copied) = (
        moved.blobs_skipped as usize,
        moved.blobs_mounted as usize,
        moved.blobs_up as usize,
    );
    let digest = crate::digest::sha256_bytes(&index);
    let reference = dest.tag.clone().unwrap_or_else(|| digest.clone());
    client
        .put_manifest(dest, &reference, &index, &media_type)
        .await
        .with_context(|| format!("not tagged: {dest} refused the index"))?;
    out.digest = digest;
    Ok(out)
}
