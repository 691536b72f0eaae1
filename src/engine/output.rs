//! The end of a build: the target stage's final config (`--label`, `created`),
//! the OCI layout and docker-archive outputs, the push to every destination
//! (blobs everywhere first, tags last), and the digest files.
//!
//! It owns the order of the outputs and their log lines. The config, manifest and
//! registry mechanics are `sink`'s; the cache's pushes are waited for by the engine.

use super::session::Session;
use super::sink;
use super::stage::Stage;
use crate::image::manifest::{Format, LayerDesc};
use crate::image::{LocalImage, Reference};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Instant;

/// The image a build made, before its digest files are written.
pub struct Delivered {
    pub out: sink::Assembled,
    pub size: u64,
    pub pushed: Vec<String>,
}

/// The target stage's final config (`--label`, `created`) and its manifest,
/// with the base named in annotations (OCI format only).
pub fn assemble(sess: &Session<'_>, stage: &mut Stage) -> Result<sink::Assembled> {
    let req = sess.req;
    if !req.labels.is_empty() {
        let labels = stage.config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &req.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    stage.config.created = Some(sess.now.clone());
    let layers: Vec<LayerDesc> = stage.layers.iter().map(|l| l.desc.clone()).collect();
    // The base as the Dockerfile names it, whatever mirror served it.
    let annotations: Vec<(String, String)> = stage
        .base
        .iter()
        .flat_map(|(name, digest)| {
            [
                (
                    "org.opencontainers.image.base.name".to_string(),
                    name.clone(),
                ),
                (
                    "org.opencontainers.image.base.digest".to_string(),
                    digest.clone(),
                ),
            ]
        })
        .chain(req.annotations.iter().cloned())
        .collect();
    // Docker's format has no annotations: the base is not named there.
    let annotations = match req.image_format {
        Format::Oci => annotations,
        Format::Docker => vec![],
    };
    sink::Assembled::new(
        &sess.store,
        &stage.config,
        &layers,
        &annotations,
        req.image_format,
    )
}

/// The image as a local image: every layer's bytes in the store.
pub async fn local(sess: &Session<'_>, stage: &Stage, out: &sink::Assembled) -> Result<LocalImage> {
    for l in &stage.layers {
        sess.blob(l).await?;
    }
    out.local(&sess.store)
}

/// Final config, manifest, local outputs and pushes.
/// `early`: the uploads to the destinations that started while the build ran.
pub async fn deliver(
    sess: &Session<'_>,
    mut stage: Stage,
    early: Option<&mut super::early_push::EarlyPush>,
) -> Result<Delivered> {
    let req = sess.req;
    let out = assemble(sess, &mut stage)?;
    let mut pushed = Vec::new();
    if req.tar_path.is_some() || req.oci_layout_path.is_some() {
        let local = local(sess, &stage, &out).await?;
        if let Some(p) = &req.oci_layout_path {
            let t = Instant::now();
            let tag = layout_tag(sess);
            crate::image::layout::write(p, &local, &tag)?;
            sess.report.step(
                "output",
                &format!("OCI layout {}:{tag}", p.display()),
                t.elapsed(),
                "",
            );
        }
        if let Some(p) = &req.tar_path {
            let t = Instant::now();
            let tags: Vec<String> = req
                .destinations
                .iter()
                .filter(|d| d.tag.is_some())
                .map(|d| d.to_string())
                .collect();
            crate::image::archive::write(p, &local, &tags)?;
            sess.report.step(
                "output",
                &format!("docker-archive {}", p.display()),
                t.elapsed(),
                "",
            );
        }
    }
    super::attest::report_hints(sess, &stage);
    let docs = super::attest::prepare(sess, &stage, &out, false).await?;
    if !req.no_push {
        push_blobs(sess, &stage, &out, early).await?;
        if let Some(d) = &docs {
            // Referrers before any tag: a failure here tags nothing.
            put_by_digest(sess, &Doc::manifest(&out)).await?;
            super::attach::attach(sess, d, &out, "attest").await?;
        }
        pushed = tag_everywhere(sess, &Doc::manifest(&out)).await?;
    }
    // After the outputs: a failed push leaves no SBOM of an image nobody has.
    if let Some(d) = &docs {
        d.write_files(sess)?;
    }
    let size = image_size(&out, &stage);
    Ok(Delivered { out, size, pushed })
}

/// The tag of the OCI layout's entry: the first destination's, else `latest`.
pub fn layout_tag(sess: &Session<'_>) -> String {
    sess.req
        .destinations
        .first()
        .and_then(|d| d.tag.clone())
        .unwrap_or_else(|| "latest".into())
}

/// Every blob of the image in every destination, one step line each.
pub async fn push_blobs(
    sess: &Session<'_>,
    stage: &Stage,
    out: &sink::Assembled,
    early: Option<&mut super::early_push::EarlyPush>,
) -> Result<()> {
    let req = sess.req;
    let origins: Vec<(LayerDesc, Option<Reference>)> = stage
        .layers
        .iter()
        .map(|l| (l.desc.clone(), l.origin.clone()))
        .collect();
    // Every blob in every destination first; the tags come after, so a
    // failure part-way leaves no destination tagged.
    // The push's time starts with the wait for uploads still under way.
    let started = Instant::now();
    let early = match early {
        Some(e) => e.wait().await,
        None => Default::default(),
    };
    sess.report.phase("early upload wait", started.elapsed(), 0);
    let no_blobs = std::collections::HashSet::new();
    for (i, dest) in req.destinations.iter().enumerate() {
        let t = if i == 0 { started } else { Instant::now() };
        let sibling = req.destinations[..i]
            .iter()
            .find(|d| d.registry == dest.registry && d.repository != dest.repository);
        let bar = sess.report.transfer(
            &format!("pushing {dest}"),
            None,
            sess.client.counters.streamed_up.clone(),
        );
        let before = sess.client.counters.snapshot();
        let sent = early.get(&dest.to_string());
        let present = sent.map(|s| &s.digests).unwrap_or(&no_blobs);
        sink::push_blobs(
            &sess.client,
            &sess.store,
            dest,
            out,
            &origins,
            sibling,
            present,
        )
        .await?;
        drop(bar);
        let d = sess.client.counters.snapshot().since(&before);
        sess.report.phase("push", t.elapsed(), d.bytes_up);
        // Blobs sent while the build ran count as uploaded.
        let (en, eb) = sent.map_or((0, 0), |s| (s.digests.len() as u64, s.bytes));
        let during = if en > 0 {
            format!(", {en} while the build ran")
        } else {
            String::new()
        };
        let note = format!(
            "{} uploaded ({}{during}), {} mounted, {} already there",
            d.blobs_up + en,
            crate::report::human_bytes(d.bytes_up + eb),
            d.blobs_mounted,
            d.blobs_skipped
        );
        sess.report
            .step("push", &format!("{dest}"), t.elapsed(), &note);
    }
    Ok(())
}

/// A manifest or an index, as pushed.
pub struct Doc<'b> {
    pub bytes: &'b [u8],
    pub media_type: &'b str,
    pub digest: &'b str,
}

impl<'b> Doc<'b> {
    /// An assembled image's manifest.
    pub fn manifest(out: &'b sink::Assembled) -> Doc<'b> {
        Doc {
            bytes: &out.manifest,
            media_type: out.format.manifest_type(),
            digest: &out.manifest_digest,
        }
    }
}

/// The bytes of an image: manifest, config and layers.
pub fn image_size(out: &sink::Assembled, stage: &Stage) -> u64 {
    out.manifest.len() as u64
        + out.config.len() as u64
        + stage.layers.iter().map(|l| l.desc.size).sum::<u64>()
}

/// `doc` by digest in every destination (an index's platform images).
pub async fn put_by_digest(sess: &Session<'_>, doc: &Doc<'_>) -> Result<()> {
    for dest in &sess.req.destinations {
        sess.client
            .put_manifest(dest, doc.digest, doc.bytes, doc.media_type)
            .await
            .with_context(|| format!("no destination was tagged: {dest} refused the image"))?;
    }
    Ok(())
}

/// The manifest by digest in every destination, then the tags: a registry that
/// refuses the image fails the build before any destination is tagged. A tag
/// that still fails after the retries is an error that says exactly which tags
/// exist. Returns `name@digest` for each destination.
pub async fn tag_everywhere(sess: &Session<'_>, doc: &Doc<'_>) -> Result<Vec<String>> {
    let req = sess.req;
    let digest = doc.digest;
    if let Some(held) = &req.hold_tags {
        put_by_digest(sess, doc).await?;
        if let Ok(mut h) = held.0.lock() {
            for dest in &req.destinations {
                if let Some(tag) = &dest.tag {
                    h.push(super::request::HeldTag {
                        dest: dest.clone(),
                        tag: tag.clone(),
                        manifest: doc.bytes.to_vec(),
                        media_type: doc.media_type.to_string(),
                        digest: digest.to_string(),
                    });
                }
            }
        }
        return Ok(req
            .destinations
            .iter()
            .map(|d| format!("{}@{digest}", d.name()))
            .collect());
    }
    let put = |dest: Reference, reference: String| async move {
        sess.client
            .put_manifest(&dest, &reference, doc.bytes, doc.media_type)
            .await
    };
    // One destination with a tag: the PUT by tag alone is already all or nothing.
    if let [dest] = req.destinations.as_slice() {
        if let Some(tag) = &dest.tag {
            put(dest.clone(), tag.clone())
                .await
                .with_context(|| format!("not tagged: {dest} refused the image"))?;
            return Ok(vec![format!("{}@{digest}", dest.name())]);
        }
    }
    put_by_digest(sess, doc).await?;
    let mut tagged: Vec<String> = Vec::new();
    for (i, dest) in req.destinations.iter().enumerate() {
        let Some(tag) = &dest.tag else { continue };
        if let Err(e) = put(dest.clone(), tag.clone()).await {
            let rest: Vec<String> = req.destinations[i..]
                .iter()
                .filter(|d| d.tag.is_some())
                .map(|d| d.to_string())
                .collect();
            let done = if tagged.is_empty() {
                "none".to_string()
            } else {
                tagged.join(", ")
            };
            return Err(anyhow::anyhow!(
                "{e:#}\ntagged: {done}; not tagged: {}; every destination holds the image as {digest}",
                rest.join(", ")
            ));
        }
        tagged.push(dest.to_string());
    }
    Ok(req
        .destinations
        .iter()
        .map(|d| format!("{}@{digest}", d.name()))
        .collect())
}

/// `linux/arm/v7` → `LINUX_ARM_V7`: a name as part of an environment
/// variable's (letters and digits upper-cased, the rest `_`).
pub fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// What `--dotenv` holds, for `artifacts:reports:dotenv`: the image, its
/// digest and `name@digest`, and with an index each platform's digest
/// (`KILN_IMAGE_DIGEST_LINUX_ARM64=…`, `KILN_IMAGE_DIGEST_LINUX_ARM_V7=…`).
pub fn dotenv_text(
    image: &str,
    digest: &str,
    reference: &str,
    platforms: &[(String, String)],
) -> String {
    let mut text =
        format!("KILN_IMAGE={image}\nKILN_IMAGE_DIGEST={digest}\nKILN_IMAGE_REF={reference}\n");
    for (p, d) in platforms {
        text.push_str(&format!("KILN_IMAGE_DIGEST_{}={d}\n", env_name(p)));
    }
    text
}

/// `--digest-file` and `--image-name-with-digest-file`, written atomically.
/// `platforms`: each platform's image digest when the digest is an index's.
pub fn write_digest_files(
    sess: &Session,
    digest: &str,
    size: u64,
    platforms: &[(String, String)],
) -> Result<()> {
    let req = sess.req;
    if let Some(p) = &req.dotenv {
        // For `artifacts:reports:dotenv`: later jobs use the exact digest.
        let (image, reference) = match req.destinations.first() {
            Some(d) => (d.to_string(), format!("{}@{digest}", d.name())),
            None => (String::new(), String::new()),
        };
        let text = dotenv_text(&image, digest, &reference, platforms);
        crate::image::layout::write_atomic(p, text.as_bytes())
            .with_context(|| format!("cannot write --dotenv {}", p.display()))?;
    }
    if let Some(p) = &req.report {
        let r = sess.report.record();
        let c = sess.client.counters.snapshot();
        let json = serde_json::json!({
            "digest": digest,
            "size": size,
            "platforms": platforms
                .iter()
                .map(|(p, d)| serde_json::json!({"platform": p, "digest": d}))
                .collect::<Vec<_>>(),
            "destinations": req.destinations.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "bases": r.bases,
            "steps": r.steps,
            "emulated": r.emulated,
            "hints": r.hints,
            "phases": r.phases.iter().map(|(k, p)| (k.to_string(), serde_json::json!({
                "count": p.count,
                "seconds": (p.seconds * 1000.0).round() / 1000.0,
                "bytes": p.bytes,
            }))).collect::<serde_json::Map<_, _>>(),
            "busy": crate::report::busy::totals().into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!((v * 1000.0).round() / 1000.0)))
                .collect::<serde_json::Map<_, _>>(),
            "bytes_up": c.bytes_up,
            "bytes_down": c.bytes_down,
            "seconds": (sess.report.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        let text = serde_json::to_vec_pretty(&json)?;
        crate::image::layout::write_atomic(p, &text)
            .with_context(|| format!("cannot write --report {}", p.display()))?;
    }
    if let Some(p) = &req.digest_file {
        crate::image::layout::write_atomic(p, digest.as_bytes())
            .with_context(|| format!("cannot write --digest-file {}", p.display()))?;
    }
    if let Some(p) = &req.image_name_tag_with_digest_file {
        let lines: Vec<String> = req
            .destinations
            .iter()
            .map(|d| format!("{d}@{digest}"))
            .collect();
        crate::image::layout::write_atomic(p, format!("{}\n", lines.join("\n")).as_bytes())
            .with_context(|| {
                format!(
                    "cannot write --image-name-tag-with-digest-file {}",
                    p.display()
                )
            })?;
    }
    if let Some(p) = &req.image_name_with_digest_file {
        let lines: Vec<String> = req
            .destinations
            .iter()
            .map(|d| format!("{}@{digest}", d.name()))
            .collect();
        crate::image::layout::write_atomic(p, format!("{}\n", lines.join("\n")).as_bytes())
            .with_context(|| {
                format!("cannot write --image-name-with-digest-file {}", p.display())
            })?;
    }
    Ok(())
}

/// Put tags that builds held back (their manifests are in place by digest).
/// A tag that fails after the retries is an error naming the tags that exist
/// and those that do not.
pub async fn put_held(
    registry: &crate::registry::Options,
    held: &[super::request::HeldTag],
) -> Result<Vec<String>> {
    let client = crate::registry::Client::new(registry)?;
    for h in held {
        client.declare(&h.dest, true);
    }
    let mut done: Vec<String> = vec![];
    for (i, h) in held.iter().enumerate() {
        if let Err(e) = client
            .put_manifest(&h.dest, &h.tag, &h.manifest, &h.media_type)
            .await
        {
            let rest: Vec<String> = held[i..].iter().map(|h| h.dest.to_string()).collect();
            let tagged = if done.is_empty() {
                "none".to_string()
            } else {
                done.join(", ")
            };
            return Err(anyhow::anyhow!(
                "{e:#}\ntagged: {tagged}; not tagged: {}; each image is in its destination by digest",
                rest.join(", ")
            ));
        }
        done.push(h.dest.to_string());
    }
    Ok(done)
}
