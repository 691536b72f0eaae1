//! FROM: resolving a base image (platform selection from an index, the offline
//! fallback to the cache dir), pulling its config, and materializing a stage's
//! rootfs from its layers when a step needs the files.
//!
//! It owns turning a reference into a [`Stage`] and layers into files. It does
//! not know Dockerfiles: the plan expands FROM, the engine names the line.

use super::cache::{self, LocalCache};
use super::session::Session;
use super::stage::{Layer, Stage};
use crate::fs::Rootfs;
use crate::image::manifest::{self, LayerDesc, Platform};
use crate::image::{ImageConfig, Reference};
use crate::registry;
use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt as _;
use std::path::PathBuf;

/// Base layers downloaded at once while a stage's rootfs is materialized.
const DOWNLOADS: usize = 3;

impl Session<'_> {
    /// Resolve `r` to the manifest for `platform`: (bytes, media type, digest).
    pub(super) async fn resolve_manifest(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<(Vec<u8>, String, String)> {
        let (bytes, ct, digest) = self.client.get_manifest(r).await?;
        let mt = manifest::declared_media_type(&bytes, &ct);
        if !manifest::is_index(&mt) {
            tracing::debug!("{r} is a single manifest {digest}");
            return Ok((bytes, mt, digest));
        }
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&bytes).context("invalid image index")?;
        let d = manifest::select(&index, platform).ok_or_else(|| {
            anyhow!(
                "{r} has no image for {platform} (it has: {})",
                manifest::platforms(&index).join(", ")
            )
        })?;
        let child = r.with_digest(d.digest().as_ref());
        let (b, ct, child_digest) = self.client.get_manifest(&child).await?;
        let mt = manifest::declared_media_type(&b, &ct);
        Ok((b, mt, child_digest))
    }

    /// Pull a manifest (selecting the platform from an index) and its config. With
    /// the cache on, how the reference resolved is remembered, so a later build can
    /// run with the registry unreachable.
    ///
    /// Mirrors, maps and the Dependency Proxy are tried first, in order, then
    /// `r` itself (see [`super::mirrors`]); a source that fails falls through to
    /// the next with one warning line. The stage records `r` as written.
    pub(super) async fn pull(
        &self,
        r: &Reference,
        platform: &Platform,
        local: Option<&LocalCache>,
    ) -> Result<Stage> {
        let cands = self.req.pull.candidates(r);
        let n = cands.len();
        for (i, c) in cands.iter().enumerate() {
            let last = i + 1 == n;
            let attempt = self.pull_from(r, &c.reference, platform, local, last);
            let res = if last {
                attempt.await
            } else {
                registry::falling_through(attempt).await
            };
            match res {
                Ok(stage) => {
                    if let Some((_, digest)) = &stage.base {
                        self.record_image(r, &c.reference, digest, platform);
                    }
                    if !c.via.is_empty() {
                        self.report
                            .line(&format!("{r}: pulled from {} {}", c.via, c.reference));
                    }
                    return Ok(stage);
                }
                Err(e) if !last => {
                    let what = if c.via.is_empty() { "registry" } else { c.via };
                    self.report.warn(&format!(
                        "{what} {} failed for {r} ({}); trying {}",
                        c.reference.registry,
                        format!("{e:#}").lines().next().unwrap_or(""),
                        cands[i + 1].reference
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Err(anyhow!("{r}: nowhere to pull it from"))
    }

    /// A base or `--from` image for the provenance: named as written, by the
    /// reference and digest really pulled (a mirror's, the Dependency Proxy's).
    fn record_image(&self, r: &Reference, src: &Reference, digest: &str, platform: &Platform) {
        use crate::attest::provenance::{docker_purl, Material, Resource};
        let version = src
            .tag
            .clone()
            .or_else(|| src.digest.clone())
            .unwrap_or_else(|| "latest".into());
        let mut annotations = std::collections::BTreeMap::new();
        if src != r {
            annotations.insert("kiln.pulled-from".to_string(), src.to_string());
        }
        self.materials.record(Material {
            platform: Some(platform.to_string()),
            resource: Resource {
                name: Some(r.to_string()),
                uri: docker_purl(
                    &src.registry,
                    &src.repository,
                    &version,
                    &platform.to_string(),
                ),
                digest: Resource::digest_of(digest),
                annotations,
            },
        });
    }

    /// Pull `r` (as written) from `src`; the offline fallback to the cache dir
    /// only when `offline_ok` (the last place to try).
    async fn pull_from(
        &self,
        r: &Reference,
        src: &Reference,
        platform: &Platform,
        local: Option<&LocalCache>,
        offline_ok: bool,
    ) -> Result<Stage> {
        let spinner = self.report.spinner(&format!("resolving {r}"));
        self.client.declare(src, false);
        let (bytes, mt, resolved) = match self.resolve_manifest(src, platform).await {
            Ok((bytes, mt, digest)) => {
                if let Some(local) = local {
                    self.store.put_bytes(&bytes)?;
                    let rec = cache::ImageRecord {
                        reference: r.to_string(),
                        platform: platform.to_string(),
                        manifest_digest: digest.clone(),
                        media_type: mt.clone(),
                        resolved: cache::now_secs(),
                    };
                    if let Err(e) = local.record_image(&rec) {
                        tracing::warn!("could not record {r} in the cache dir: {e}");
                    }
                }
                (bytes, mt, digest)
            }
            Err(e)
                if offline_ok
                    && matches!(
                        e.downcast_ref::<registry::RegistryError>(),
                        Some(registry::RegistryError::Unreachable { .. })
                    ) =>
            {
                let rec = local.and_then(|c| c.image(&r.to_string(), &platform.to_string()));
                let bytes = rec
                    .as_ref()
                    .and_then(|rec| self.store.read_verified(&rec.manifest_digest).ok());
                match (rec, bytes) {
                    (Some(rec), Some(bytes)) => {
                        self.report.line(&format!(
                            "registry {} is unreachable: using {r} as resolved {} ago, from the cache dir ({})",
                            r.registry,
                            humantime::format_duration(std::time::Duration::from_secs(cache::now_secs().saturating_sub(rec.resolved))),
                            rec.manifest_digest
                        ));
                        (bytes, rec.media_type, rec.manifest_digest)
                    }
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if !manifest::is_manifest(&mt) {
            bail!("{r}: unsupported manifest type {mt:?} (kiln reads OCI and Docker v2 schema 2 images)");
        }
        let m: oci_spec::image::ImageManifest =
            serde_json::from_slice(&bytes).context("invalid image manifest")?;
        let cdigest = m.config().digest().to_string();
        // fetch_blob checks the digest of what it downloads and of what the
        // cache dir already held.
        let cpath = self.client.fetch_blob(src, &cdigest, &self.store).await?;
        let stage = base_stage(&r.to_string(), &resolved, &cpath, &m, Some(src))?;
        // What the platform also runs (arm64 takes arm/v7, amd64 386) is no surprise.
        let got = stage.config.platform();
        if !platform.candidates().contains(&got) {
            self.report
                .warn(&format!("{r} is {got}, not the requested {platform}"));
        }
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if self.req.warm {
            let fetches = stage.layers.iter().map(|l: &Layer| self.blob(l));
            for res in futures_util::future::join_all(fetches).await {
                res?;
            }
        }
        Ok(stage)
    }

    /// The layer's blob on local disk, downloading it if needed.
    pub(super) async fn blob(&self, l: &Layer) -> Result<PathBuf> {
        let local = self.store.verified_path_async(&l.desc.digest).await?;
        let path = match (local, l.origin.as_ref()) {
            (Some(p), _) => p,
            (None, Some(origin)) => {
                self.client
                    .fetch_blob(origin, &l.desc.digest, &self.store)
                    .await?
            }
            (None, None) => bail!("layer {} is missing from the local store", l.desc.digest),
        };
        // The bytes match the digest; a size that does not match them is the
        // manifest's lie, and kiln would copy it into its own manifest.
        let size = std::fs::metadata(&path)?.len();
        if size != l.desc.size {
            let from = l.origin.as_ref().map(|o| o.to_string()).unwrap_or_default();
            bail!(
                "{from}: layer {} is {size} bytes, but the manifest says {}; the image is broken (containerd refuses it too)",
                l.desc.digest,
                l.desc.size
            );
        }
        Ok(path)
    }

    /// Bring the stage's rootfs up to date with its layers.
    pub(super) async fn materialize(&self, stage: &mut Stage) -> Result<()> {
        if stage.rootfs.is_none() {
            stage.rootfs = Some(Rootfs::create(&self.next_rootfs_dir())?);
        }
        let applied = stage.rootfs.as_ref().map(|r| r.applied).unwrap_or(0);
        let pending: Vec<Layer> = stage.layers[applied..].to_vec();
        // What is still to download, for the progress bar (a terminal only).
        let mut missing = 0;
        for l in pending.iter().filter(|_| self.report.tty) {
            if !self.store.has(&l.desc.digest) {
                missing += l.desc.size;
            }
        }
        let _bar = (missing > 0)
            .then(|| {
                self.report.transfer(
                    "pulling layers",
                    Some(missing),
                    self.client.counters.bytes_down.clone(),
                )
            })
            .flatten();
        // Up to DOWNLOADS layers download at once; each is applied, in order, as
        // soon as it and the ones below it are there.
        let mut paths =
            futures_util::stream::iter(pending.iter().map(|l| self.blob(l))).buffered(DOWNLOADS);
        for l in pending.iter() {
            let path = paths
                .next()
                .await
                .ok_or_else(|| anyhow!("layer download stream ended early"))??;
            let mut rootfs = stage
                .rootfs
                .take()
                .ok_or_else(|| anyhow!("rootfs vanished"))?;
            let diff_id = l.desc.diff_id.clone();
            let t = std::time::Instant::now();
            let rootfs = tokio::task::spawn_blocking(move || {
                rootfs.apply_verified(&path, &diff_id).map(|_| rootfs)
            })
            .await?
            .with_context(|| {
                let from = l
                    .origin
                    .as_ref()
                    .map(|o| format!("{o}: "))
                    .unwrap_or_default();
                format!("{from}cannot extract layer {}", l.desc.digest)
            })?;
            self.report.phase("extract", t.elapsed(), l.desc.size);
            stage.rootfs = Some(rootfs);
        }
        Ok(())
    }
}

/// A base image's starting stage: its config (at `config`, checked against
/// its digest) as a base's, and its layers, each with its diffID and the
/// repository it can be fetched from (`origin`; None: already in the store).
/// `written` is how FROM named it, `digest` its manifest's.
pub(super) fn base_stage(
    written: &str,
    digest: &str,
    config: &std::path::Path,
    m: &oci_spec::image::ImageManifest,
    origin: Option<&Reference>,
) -> Result<Stage> {
    let cdigest = m.config().digest().to_string();
    let mut config: ImageConfig =
        serde_json::from_slice(&crate::image::read_json_blob(config, &cdigest)?)
            .with_context(|| format!("{written}: invalid image config"))?;
    config.as_base();
    if config.rootfs.diff_ids.len() != m.layers().len() {
        bail!(
            "{written}: manifest lists {} layers but its config {} diffIDs",
            m.layers().len(),
            config.rootfs.diff_ids.len()
        );
    }
    let layers: Vec<Layer> = m
        .layers()
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(l, diff_id)| Layer {
            desc: LayerDesc {
                digest: l.digest().to_string(),
                size: l.size(),
                media_type: l.media_type().to_string(),
                diff_id: diff_id.clone(),
            },
            origin: origin.cloned(),
            made_by: None,
        })
        .collect();
    Ok(Stage {
        config,
        base_layers: layers.len(),
        layers,
        rootfs: None,
        args: vec![],
        shell: vec![],
        base: Some((written.to_string(), digest.to_string())),
        key: digest.to_string(),
    })
}
