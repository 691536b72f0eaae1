//! The attestations' sink: each document as an OCI 1.1 referrer of the image
//! manifest, in every destination repository, before any tag is set (a build
//! that fails here tags nothing). Where the registry keeps referrers itself
//! (it answers the PUT with `OCI-Subject`), that is all; elsewhere (Debian's
//! docker-registry, distribution 2.x) the referrers index under the tag
//! `sha256-<hex>` is read, extended and written back, as the distribution spec
//! says a client must.

use super::attest::Documents;
use super::session::Session;
use super::sink;
use crate::attest::referrers::{self, Subject, EMPTY_BLOB};
use crate::image::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::image::Reference;
use crate::registry::RegistryError;
use anyhow::{Context, Result};
use std::time::Instant;

/// Attach `docs`' referrers to the image `out` in every destination.
pub async fn attach(
    sess: &Session<'_>,
    docs: &Documents,
    out: &sink::Assembled,
    label: &str,
) -> Result<()> {
    let req = sess.req;
    let list = docs.referrers(sess);
    if list.is_empty() || req.no_push {
        return Ok(());
    }
    let t = Instant::now();
    let subject = Subject {
        media_type: out.format.manifest_type().to_string(),
        digest: out.manifest_digest.clone(),
        size: out.manifest.len() as u64,
    };
    let empty = crate::digest::sha256_bytes(EMPTY_BLOB);
    let mut repos: Vec<&Reference> = Vec::new();
    for d in &req.destinations {
        if !repos
            .iter()
            .any(|r| r.registry == d.registry && r.repository == d.repository)
        {
            repos.push(d);
        }
    }
    let mut how = Vec::new();
    for d in &repos {
        let repo = Reference {
            tag: None,
            digest: None,
            ..(*d).clone()
        };
        let mut by_api = true;
        sess.client
            .push_blob_bytes(&repo, &empty, EMPTY_BLOB)
            .await?;
        for doc in &list {
            sess.client
                .push_blob_bytes(&repo, &doc.digest(), &doc.bytes)
                .await?;
            let m = referrers::artifact_manifest(doc, &subject, &sess.now);
            if !sess.client.put_referrer(&repo, &m, OCI_MANIFEST).await? {
                by_api = false;
                add_to_fallback(sess, &repo, &subject.digest, &m).await?;
            }
        }
        how.push(format!(
            "{}/{} ({})",
            d.registry,
            d.repository,
            if by_api {
                "referrers API".to_string()
            } else {
                format!("tag {}", referrers::fallback_tag(&subject.digest))
            }
        ));
    }
    let kinds: Vec<&str> = list
        .iter()
        .map(|d| match d.media_type {
            referrers::SPDX_TYPE => "SPDX",
            referrers::CYCLONEDX_TYPE => "CycloneDX",
            _ => "provenance",
        })
        .collect();
    sess.report.step(
        label,
        &format!(
            "{} → referrers of {} in {}",
            kinds.join(", "),
            subject.digest,
            how.join(", ")
        ),
        t.elapsed(),
        "",
    );
    Ok(())
}

/// BuildKit's layout: `docs` as one attestation manifest about the image
/// `out`, pushed by digest to every destination; returns its index entry.
pub async fn buildkit_manifest(
    sess: &Session<'_>,
    docs: &Documents,
    out: &sink::Assembled,
    label: &str,
) -> Result<Option<serde_json::Value>> {
    use crate::attest::buildkit;
    let req = sess.req;
    let t = Instant::now();
    let name = super::attest::image_name(sess);
    let layers: Vec<buildkit::Layer> = docs
        .referrers(sess)
        .iter()
        .filter_map(|d| buildkit::statement(d, &name, &out.manifest_digest))
        .collect();
    if layers.is_empty() {
        return Ok(None);
    }
    let (config, manifest) = buildkit::manifest(&layers);
    for d in &req.destinations {
        let repo = Reference {
            tag: None,
            digest: None,
            ..d.clone()
        };
        for l in &layers {
            sess.client
                .push_blob_bytes(&repo, &l.digest(), &l.bytes)
                .await?;
        }
        sess.client
            .push_blob_bytes(&repo, &crate::digest::sha256_bytes(&config), &config)
            .await?;
        let digest = crate::digest::sha256_bytes(&manifest);
        sess.client
            .put_manifest(&repo, &digest, &manifest, OCI_MANIFEST)
            .await?;
    }
    sess.report.step(
        label,
        &format!(
            "{} in-toto statement(s) → attestation manifest of {} in the index (BuildKit's layout)",
            layers.len(),
            out.manifest_digest
        ),
        t.elapsed(),
        "",
    );
    Ok(Some(buildkit::index_entry(&manifest, &out.manifest_digest)))
}

/// List the artifact manifest `m` in the referrers index under the subject's
/// fallback tag.
async fn add_to_fallback(
    sess: &Session<'_>,
    repo: &Reference,
    subject: &str,
    m: &[u8],
) -> Result<()> {
    let tag = referrers::fallback_tag(subject);
    let at = Reference {
        tag: Some(tag.clone()),
        ..repo.clone()
    };
    let old = match sess.client.get_manifest(&at).await {
        Ok((bytes, _, _)) => Some(bytes),
        Err(RegistryError::NotFound { .. }) => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read the referrers index {at}")),
    };
    let index =
        referrers::index_with(old.as_deref(), m).map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    sess.client
        .put_manifest(&at, &tag, &index, OCI_INDEX)
        .await?;
    Ok(())
}
