//! The supply-chain documents of a built image: its SBOM (the layers, fetched
//! if a cache hit left them in the registry, read once by `attest`'s scanners
//! on a blocking thread) and its SLSA provenance (the request, what the
//! session resolved, GitLab's job), written to the `--sbom-file`s and
//! `--provenance-file`s after the outputs.

use super::session::{self, Session};
use super::sink;
use super::stage::Stage;
use crate::attest::provenance::{self, Facts, Resource};
use crate::attest::{layers, referrers, sbom, scan};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The name documents give the image: the first destination's repository,
/// else `image`.
pub(super) fn image_name(sess: &Session<'_>) -> String {
    sess.req
        .destinations
        .first()
        .map(|d| format!("{}/{}", d.registry, d.repository))
        .unwrap_or_else(|| "image".into())
}

/// The image a document names: [`image_name`] and the first destination's tag.
fn subject(sess: &Session<'_>, out: &sink::Assembled, platform: &str) -> sbom::Subject {
    let first = sess.req.destinations.first();
    sbom::Subject {
        name: image_name(sess),
        tag: first.and_then(|d| d.tag.clone()),
        digest: out.manifest_digest.clone(),
        platform: platform.to_string(),
        created: sess.now.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

/// "412 packages (deb 398, pypi 14)"
fn summary(inv: &scan::Inventory) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &inv.packages {
        *by.entry(p.found.ecosystem.purl_type()).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "no packages".into()
    } else {
        format!("{} packages ({})", inv.packages.len(), parts.join(", "))
    }
}

/// Write `bytes` to `path` (atomically), making its directory if needed.
fn write_doc(path: &Path, bytes: &[u8], flag: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make {} for {flag}", dir.display()))?;
    }
    crate::image::layout::write_atomic(path, bytes)
}

/// `out/provenance.json` → `out/provenance.linux-arm64.json` for one of several platforms.
fn per_platform_json(path: &Path, platform: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_string(), format!(".{e}")),
        None => (name.clone(), String::new()),
    };
    path.with_file_name(format!("{stem}.{}{ext}", platform.replace('/', "-")))
}

/// Scan the image: the inventory of its final tree.
async fn inventory(sess: &Session<'_>, stage: &Stage) -> Result<scan::Inventory> {
    let mut all = Vec::with_capacity(stage.layers.len());
    for l in &stage.layers {
        all.push(layer_facts(sess, l).await?);
    }
    let inventory = scan::merge(&all);
    for (path, layer) in &inventory.too_big {
        sess.report.warn(&format!(
            "SBOM: /{path} in layer {} is over {} MiB and was not read; its packages are not listed",
            layer + 1,
            scan::MAX_FILE >> 20
        ));
    }
    for (path, layer, why) in &inventory.unread {
        sess.report.warn(&format!(
            "SBOM: /{path} in layer {}: {why}; its packages are not listed",
            layer + 1
        ));
    }
    Ok(inventory)
}

/// Where the cache dir keeps a layer's scanner facts (with the cache on). The
/// cache dir is trusted as far as its index is (which maps keys to layers).
fn facts_file(sess: &Session<'_>, diff_id: &str) -> Option<PathBuf> {
    let hex = crate::digest::hex_of(diff_id).ok()?;
    sess.req.cache.then(|| {
        sess.req
            .cache_dir
            .join("attest-facts/v1")
            .join(format!("{hex}.json"))
    })
}

/// A layer's scanner facts: gathered when this build wrote it, else kept in
/// the cache dir by an earlier build, else read from its blob (fetched first
/// if a cache hit left it in the registry) on a blocking thread, and kept.
async fn layer_facts(sess: &Session<'_>, l: &super::stage::Layer) -> Result<scan::LayerFacts> {
    let id = &l.desc.diff_id;
    let file = facts_file(sess, id);
    if let Some(f) = sess
        .layer_facts
        .lock()
        .ok()
        .and_then(|m| m.get(id).cloned())
    {
        if let Some(p) = file.filter(|p| !p.exists()) {
            keep(&p, &f, id);
        }
        return Ok(f);
    }
    if let Some(f) = file
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Ok(f);
    }
    let blob = sess.blob(l).await?;
    let facts = tokio::task::spawn_blocking(move || {
        layers::scan_tar(crate::layer::writer::open_tar(&blob)?)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", blob.display())))
    })
    .await
    .context("the SBOM scan stopped")?
    .context("cannot read the image's layers for its SBOM")?;
    if let Some(p) = file {
        keep(&p, &facts, id);
    }
    Ok(facts)
}

/// Keep a layer's facts in the cache dir (atomically); a failure only costs a
/// later build a scan.
fn keep(path: &Path, facts: &scan::LayerFacts, id: &str) {
    let kept = serde_json::to_vec(facts)
        .map_err(anyhow::Error::from)
        .and_then(|b| {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            crate::image::layout::write_atomic(path, &b)
        });
    if let Err(e) = kept {
        tracing::debug!("could not keep {id}'s SBOM facts in the cache dir: {e:#}");
    }
}

/// The provenance's facts about this image.
fn facts(sess: &Session<'_>, subject: &sbom::Subject) -> Result<Facts> {
    let req = sess.req;
    let df = session::dockerfile_path(req);
    let dockerfile_digest = crate::digest::sha256_file(&df)
        .with_context(|| format!("cannot read {} for the provenance", df.display()))?;
    let ci: BTreeMap<String, String> = provenance::CI_VARIABLES
        .iter()
        .filter_map(|k| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| (k.to_string(), v))
        })
        .collect();
    let source = ci
        .get("CI_PROJECT_URL")
        .zip(ci.get("CI_COMMIT_SHA"))
        .map(|(url, sha)| Resource {
            name: None,
            uri: format!("git+{}", provenance::public_uri(url)),
            digest: BTreeMap::from([("gitCommit".to_string(), sha.clone())]),
            annotations: ci
                .get("CI_COMMIT_REF_NAME")
                .map(|r| BTreeMap::from([("ref".to_string(), r.clone())]))
                .unwrap_or_default(),
        });
    let host = crate::platform::Platform::host().to_string();
    let platforms = if req.platforms.is_empty() {
        vec![host.clone()]
    } else {
        req.platforms.iter().map(|p| p.to_string()).collect()
    };
    let finished = match req.source_date_epoch {
        Some(_) => sess.now.clone(),
        None => session::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        ),
    };
    Ok(Facts {
        subject_name: subject.name.clone(),
        subject_digest: subject.digest.clone(),
        mode: req.provenance_mode,
        dockerfile: req.dockerfile.display().to_string(),
        dockerfile_digest,
        target: req.target.clone(),
        platform: subject.platform.clone(),
        platforms,
        build_args: req.build_args.clone(),
        secret_ids: req.secrets.iter().map(|(id, _)| id.clone()).collect(),
        ssh_ids: req.ssh.iter().map(|(id, _)| id.clone()).collect(),
        labels: req.labels.clone(),
        no_cache: !req.cache,
        reproducible: req.source_date_epoch.is_some(),
        dependencies: sess.materials.for_platform(&subject.platform, &host),
        source,
        kiln_version: subject.tool_version.clone(),
        ci,
        started: sess.started.clone(),
        finished,
    })
}

/// "layer 3 (Dockerfile:4 RUN apt-get update …)"
fn layer_name(sess: &Session<'_>, stage: &Stage, i: usize) -> String {
    match stage.layers.get(i).and_then(|l| l.made_by.as_ref()) {
        Some(m) => format!(
            "layer {} ({}:{} {})",
            i + 1,
            sess.req.dockerfile.display(),
            m.line,
            crate::clip::clip_to(&m.text, 60)
        ),
        None => format!("layer {}", i + 1),
    }
}

/// The layer hints of the image (`--no-hints` turns them off): lines for the
/// caches and the bytes paid twice, and every hint, the largest files
/// included, in the report. Layers whose facts this build does not have (a
/// base's) have none.
pub fn report_hints(sess: &Session<'_>, stage: &Stage) {
    if !sess.req.hints {
        return;
    }
    // Read under the lock (nothing else takes it while the hints are drawn).
    let Ok(known) = sess.layer_facts.lock() else {
        return;
    };
    let facts: Vec<Option<&scan::LayerFacts>> = stage
        .layers
        .iter()
        .map(|l| known.get(&l.desc.diff_id))
        .collect();
    let views: Vec<crate::attest::hints::LayerView<'_>> = facts
        .iter()
        .map(|f| crate::attest::hints::LayerView {
            usage: f.map(|f| &f.usage),
            removed: f.map_or(&[][..], |f| &f.removed),
            opaque: f.map_or(&[][..], |f| &f.opaque),
        })
        .collect();
    let human = crate::report::human_bytes;
    let all = crate::attest::hints::hints(&views);
    // The largest files: one line per layer whose largest come to 10 MiB.
    let mut layers: Vec<usize> = all
        .iter()
        .filter(|h| h.kind == "largest")
        .map(|h| h.layer)
        .collect();
    layers.dedup();
    for i in layers {
        let top: Vec<&crate::attest::hints::Hint> = all
            .iter()
            .filter(|h| h.kind == "largest" && h.layer == i)
            .collect();
        if top.iter().map(|h| h.bytes).sum::<u64>() >= 10 << 20 {
            let list: Vec<String> = top
                .iter()
                .map(|h| format!("{} {}", h.path, human(h.bytes)))
                .collect();
            sess.report.line(&format!(
                "hint: {}'s largest files: {}",
                layer_name(sess, stage, i),
                list.join(", ")
            ));
        }
    }
    for h in all {
        let name = layer_name(sess, stage, h.layer);
        let line = match h.kind {
            "cache" => Some(format!(
                "{name} keeps {} ({}); {}",
                h.path,
                human(h.bytes),
                h.fix
            )),
            "deleted-later" => h.by_layer.map(|j| {
                format!(
                    "{name} holds {} that {} deletes or overwrites (e.g. {}); {}",
                    human(h.bytes),
                    layer_name(sess, stage, j),
                    h.path,
                    h.fix
                )
            }),
            _ => None,
        };
        let mut record = serde_json::to_value(&h).unwrap_or_default();
        if let Some(m) = stage.layers.get(h.layer).and_then(|l| l.made_by.as_ref()) {
            record["line"] = m.line.into();
        }
        sess.report.hint(line.as_deref(), record);
    }
}

/// The documents of one image, made once for its files and its referrers.
pub struct Documents {
    platform: String,
    several: bool,
    /// SPDX and CycloneDX bytes.
    sbom: Option<(Vec<u8>, Vec<u8>)>,
    provenance: Option<Vec<u8>>,
}

/// Make the documents the request asks for (files, or referrers of a pushed
/// image), or None. `several`: one of several platforms.
pub async fn prepare(
    sess: &Session<'_>,
    stage: &Stage,
    out: &sink::Assembled,
    several: bool,
) -> Result<Option<Documents>> {
    let req = sess.req;
    let pushing = !req.no_push && !req.destinations.is_empty();
    let want_sbom = !req.sbom_files.is_empty() || (req.attach_sbom && pushing);
    let want_provenance = !req.provenance_files.is_empty() || (req.attach_provenance && pushing);
    if !want_sbom && !want_provenance {
        return Ok(None);
    }
    let platform = stage.config.platform().to_string();
    let subject = subject(sess, out, &platform);
    let label = |what: &str| {
        if several {
            format!("{platform} {what}")
        } else {
            what.to_string()
        }
    };
    let mut docs = Documents {
        platform: platform.clone(),
        several,
        sbom: None,
        provenance: None,
    };
    if want_sbom {
        let t = Instant::now();
        let inventory = inventory(sess, stage).await?;
        let origins: Vec<sbom::LayerOrigin> = stage
            .layers
            .iter()
            .map(|l| sbom::LayerOrigin {
                diff_id: l.desc.diff_id.clone(),
                line: l.made_by.as_ref().map(|m| m.line),
                instruction: l.made_by.as_ref().map(|m| m.text.clone()),
            })
            .collect();
        let dockerfile = req.dockerfile.display().to_string();
        let input = sbom::Input {
            subject: &subject,
            layers: &origins,
            inventory: &inventory,
            dockerfile: &dockerfile,
        };
        docs.sbom = Some((
            sbom::Format::Spdx.write(&input)?,
            sbom::Format::CycloneDx.write(&input)?,
        ));
        sess.report
            .step(&label("sbom"), &summary(&inventory), t.elapsed(), "");
    }
    if want_provenance {
        let t = Instant::now();
        let f = facts(sess, &subject)?;
        docs.provenance = Some(provenance::write(&f)?);
        sess.report.step(
            &label("provenance"),
            &format!(
                "SLSA v1 ({}), {} dependencies",
                match f.mode {
                    provenance::Mode::Min => "mode=min",
                    provenance::Mode::Max => "mode=max",
                },
                f.dependencies.len() + usize::from(f.source.is_some())
            ),
            t.elapsed(),
            "",
        );
    }
    Ok(Some(docs))
}

impl Documents {
    /// What goes to the pushed image as referrers: what `--sbom` and
    /// `--provenance` ask for.
    pub fn referrers(&self, sess: &Session<'_>) -> Vec<referrers::Document> {
        let mut out = Vec::new();
        if let (true, Some((spdx, cdx))) = (sess.req.attach_sbom, &self.sbom) {
            out.push(referrers::Document {
                media_type: referrers::SPDX_TYPE,
                bytes: spdx.clone(),
                annotations: vec![],
            });
            out.push(referrers::Document {
                media_type: referrers::CYCLONEDX_TYPE,
                bytes: cdx.clone(),
                annotations: vec![],
            });
        }
        if let (true, Some(p)) = (sess.req.attach_provenance, &self.provenance) {
            out.push(referrers::Document {
                media_type: referrers::IN_TOTO_TYPE,
                bytes: p.clone(),
                annotations: vec![(
                    "in-toto.io/predicate-type".into(),
                    provenance::PREDICATE_TYPE.into(),
                )],
            });
        }
        out
    }

    /// Write the `--sbom-file`s and `--provenance-file`s (after the outputs: a
    /// failed push leaves none).
    pub fn write_files(&self, sess: &Session<'_>) -> Result<()> {
        let req = sess.req;
        let mut written = Vec::new();
        if let Some((spdx, cdx)) = &self.sbom {
            for (path, format) in &req.sbom_files {
                let path = if self.several {
                    format.per_platform(path, &self.platform)
                } else {
                    path.clone()
                };
                let bytes = match format {
                    sbom::Format::Spdx => spdx,
                    sbom::Format::CycloneDx => cdx,
                };
                write_doc(&path, bytes, "--sbom-file")?;
                written.push(path.display().to_string());
            }
        }
        if let Some(bytes) = &self.provenance {
            for path in &req.provenance_files {
                let path = if self.several {
                    per_platform_json(path, &self.platform)
                } else {
                    path.clone()
                };
                write_doc(&path, bytes, "--provenance-file")?;
                written.push(path.display().to_string());
            }
        }
        if !written.is_empty() {
            sess.report
                .step("output", &written.join(", "), std::time::Duration::ZERO, "");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn provenance_files_per_platform() {
        assert_eq!(
            super::per_platform_json(std::path::Path::new("o/provenance.json"), "linux/arm/v7"),
            std::path::Path::new("o/provenance.linux-arm-v7.json")
        );
    }
}
