//! The SBOM of a built image: its layers (fetched if a cache hit left them in
//! the registry) read once by `attest`'s scanners on a blocking thread, and
//! the documents written to the `--sbom-file`s.

use super::session::Session;
use super::sink;
use super::stage::Stage;
use crate::attest::{layers, sbom, scan};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Instant;

/// The image a document names: the first destination's repository and tag,
/// else `image`.
fn subject(sess: &Session<'_>, out: &sink::Assembled, platform: &str) -> sbom::Subject {
    let first = sess.req.destinations.first();
    sbom::Subject {
        name: first
            .map(|d| format!("{}/{}", d.registry, d.repository))
            .unwrap_or_else(|| "image".into()),
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

/// Scan the image and write its `--sbom-file`s. `several`: one of several
/// platforms, so each file name gets the platform.
pub async fn write_files(
    sess: &Session<'_>,
    stage: &Stage,
    out: &sink::Assembled,
    several: bool,
) -> Result<()> {
    let req = sess.req;
    if req.sbom_files.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let mut blobs = Vec::with_capacity(stage.layers.len());
    for l in &stage.layers {
        blobs.push(sess.blob(l).await?);
    }
    let inventory = tokio::task::spawn_blocking(move || {
        let refs: Vec<&std::path::Path> = blobs.iter().map(|b| b.as_path()).collect();
        layers::inventory(&refs)
    })
    .await
    .context("the SBOM scan stopped")?
    .context("cannot read the image's layers for its SBOM")?;
    for (path, layer) in &inventory.too_big {
        sess.report.warn(&format!(
            "SBOM: /{path} in layer {} is over {} MiB and was not read; its packages are not listed",
            layer + 1,
            scan::MAX_FILE >> 20
        ));
    }
    let platform = stage.config.platform().to_string();
    let subject = subject(sess, out, &platform);
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
    let mut written = Vec::new();
    for (path, format) in &req.sbom_files {
        let path = if several {
            format.per_platform(path, &platform)
        } else {
            path.clone()
        };
        let bytes = format.write(&input)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make {} for --sbom-file", dir.display()))?;
        }
        crate::image::layout::write_atomic(&path, &bytes)?;
        written.push(path.display().to_string());
    }
    let label = if several {
        format!("{platform} sbom")
    } else {
        "sbom".to_string()
    };
    sess.report.step(
        &label,
        &format!("{} → {}", summary(&inventory), written.join(", ")),
        t.elapsed(),
        "",
    );
    Ok(())
}
