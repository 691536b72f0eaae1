//! `--platform a,b`: one image per platform, then one image index under each
//! destination.
//!
//! The platforms are built one after the other in one session (one store, one
//! client, one work dir). Stages whose platform does not depend on the target
//! (`FROM --platform=$BUILDPLATFORM`, the cross-compiling pattern) have the
//! same cache keys for every target, so the later platforms find them built:
//! in the cache when `--cache` is on, in a cache of this run's own (in the work
//! dir's parent, removed at the end) when it is off. Their step lines say
//! `CACHED`.
//!
//! Each platform's blobs and manifest go to every destination by digest; the
//! index comes last, by digest and then under the tags, so a failure anywhere
//! tags nothing. An OCI layout holds the index; a docker-archive cannot (docker
//! load takes one platform), so `--tar-path` is refused.

use super::output::{self, Doc};
use super::request::AttestLayout;
use super::*;
use crate::image::index::{assemble, Source};

pub async fn build(req: &BuildRequest, report: &Reporter, df: Dockerfile) -> Result<Outcome> {
    let names: Vec<String> = req.platforms.iter().map(|p| p.to_string()).collect();
    if let (Some(p), true) = (&req.tar_path, names.len() > 1) {
        anyhow::bail!(
            "--tar-path {}: a docker-archive holds one platform (docker load takes one), and this build has {}: {}. \
             Pick one with --platform {}, or write them all with --oci-layout-path DIR",
            p.display(),
            names.len(),
            names.join(", "),
            names[0]
        );
    }
    // Without --cache, a cache of this run's own lets the later platforms reuse
    // the stages every platform shares.
    let run_cache;
    let req = if req.cache {
        std::borrow::Cow::Borrowed(req)
    } else {
        run_cache = super::run_dir(req.work_dir.as_deref(), "kiln-run-cache-")?;
        let mut r = req.clone();
        r.cache = true;
        r.cache_dir = run_cache.path().to_path_buf();
        r.cache_repo = None;
        std::borrow::Cow::Owned(r)
    };
    let req: &BuildRequest = &req;
    let mut sess = Session::new(req, report)?;
    check_push_access(&sess).await?;

    let mut sources: Vec<Source> = Vec::new();
    let mut locals = Vec::new();
    let mut per_platform: Vec<(String, String)> = Vec::new();
    let mut layers = 0;
    let mut size = 0;
    let mut all_docs = Vec::new();
    let mut attestations = Vec::new();
    for p in &req.platforms {
        let mut input = plan_input(req, Some(p));
        input.label_prefix = match req.label.as_str() {
            "" => p.to_string(),
            target => format!("{target} {p}"),
        };
        let mut t = build_target(sess, df.clone(), input).await?;
        let out = output::assemble(&t.sess, &mut t.stage)?;
        super::attest::report_hints(&t.sess, &t.stage);
        let docs = super::attest::prepare(&t.sess, &t.stage, &out, true).await?;
        if req.oci_layout_path.is_some() {
            locals.push(output::local(&t.sess, &t.stage, &out).await?);
        }
        if !req.no_push {
            output::push_blobs(&t.sess, &t.stage, &out, t.early.as_mut()).await?;
            output::put_by_digest(&t.sess, &Doc::manifest(&out)).await?;
            if let Some(d) = &docs {
                let label = format!("{p} attest");
                if req.attest_layout == AttestLayout::BuildKit {
                    attestations
                        .extend(super::attach::buildkit_manifest(&t.sess, d, &out, &label).await?);
                } else {
                    super::attach::attach(&t.sess, d, &out, &label).await?;
                }
            }
        }
        all_docs.extend(docs);
        t.cache.finish(&t.sess).await;
        layers += t.stage.layers.len();
        size += output::image_size(&out, &t.stage);
        per_platform.push((p.to_string(), out.manifest_digest.clone()));
        sources.push(Source {
            name: p.to_string(),
            manifest_digest: out.manifest_digest.clone(),
            manifest_size: out.manifest.len() as u64,
            media_type: out.format.manifest_type().to_string(),
            platform: p.clone(),
        });
        sess = t.sess;
    }
    let (plain, media_type) = assemble(&sources, None).map_err(|e| anyhow!(e))?;
    // BuildKit's layout: the attestation manifests join the pushed index (the
    // OCI layout holds the images only: their blobs are not local).
    let index = if attestations.is_empty() {
        plain.clone()
    } else {
        crate::attest::buildkit::with_entries(&plain, &attestations).map_err(|e| anyhow!(e))?
    };
    let digest = crate::digest::sha256_bytes(&index);
    size += index.len() as u64;
    if let Some(dir) = &req.oci_layout_path {
        let t = Instant::now();
        let tag = output::layout_tag(&sess);
        crate::image::layout::write_index(dir, &locals, &plain, &media_type, &tag)?;
        sess.report.step(
            "output",
            &format!("OCI layout {}:{tag} ({})", dir.display(), names.join(", ")),
            t.elapsed(),
            "",
        );
    }
    let mut pushed = Vec::new();
    if !req.no_push {
        let t = Instant::now();
        let doc = Doc {
            bytes: &index,
            media_type: &media_type,
            digest: &digest,
        };
        pushed = output::tag_everywhere(&sess, &doc).await?;
        sess.report.step(
            "index",
            &names.join(", "),
            t.elapsed(),
            &format!("{} destination(s)", req.destinations.len()),
        );
    }
    // After the outputs: a failed push leaves no SBOM of an image nobody has.
    for d in &all_docs {
        d.write_files(&sess)?;
    }
    output::write_digest_files(&sess, &digest, size, &per_platform)?;
    Ok(Outcome {
        digest,
        size,
        layers,
        pushed,
    })
}
