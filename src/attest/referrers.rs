//! Attestations as OCI 1.1 referrers, the pure part: one artifact manifest
//! per document, whose `subject` is the image manifest and whose
//! `artifactType` names the format; and, for registries without the referrers
//! API, the referrers index kept under the distribution spec's tag schema
//! (`sha256-<hex>`). Nothing is added to the image's own manifest or index, so
//! no registry shows an `unknown/unknown` platform.

use crate::image::manifest::{OCI_INDEX, OCI_MANIFEST};
use serde_json::{json, Value};

/// The OCI 1.1 empty descriptor's media type and content (`{}`).
pub const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_BLOB: &[u8] = b"{}";
pub const SPDX_TYPE: &str = "application/spdx+json";
pub const CYCLONEDX_TYPE: &str = "application/vnd.cyclonedx+json";
pub const IN_TOTO_TYPE: &str = "application/vnd.in-toto+json";

/// One document to attach.
#[derive(Debug, Clone)]
pub struct Document {
    /// The artifact type and the blob's media type (the same for each format).
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    /// Annotations of the artifact manifest (e.g. the in-toto predicate type).
    pub annotations: Vec<(String, String)>,
}

impl Document {
    pub fn digest(&self) -> String {
        crate::digest::sha256_bytes(&self.bytes)
    }
}

/// The image manifest a document is about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

fn annotations(pairs: &[(String, String)]) -> Value {
    pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The artifact manifest of `doc` about `subject` (OCI image manifest v1.1:
/// `artifactType`, the empty config, the document as the one layer).
pub fn artifact_manifest(doc: &Document, subject: &Subject, created: &str) -> Vec<u8> {
    let mut ann = vec![(
        "org.opencontainers.image.created".to_string(),
        created.to_string(),
    )];
    ann.extend(doc.annotations.iter().cloned());
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": doc.media_type,
        "config": {
            "mediaType": EMPTY_TYPE,
            "digest": crate::digest::sha256_bytes(EMPTY_BLOB),
            "size": EMPTY_BLOB.len(),
            "data": "e30=",
        },
        "layers": [{
            "mediaType": doc.media_type,
            "digest": doc.digest(),
            "size": doc.bytes.len(),
        }],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        "annotations": annotations(&ann),
    });
    serde_json::to_vec(&m).unwrap_or_default()
}

/// The referrers tag of `subject_digest` (`sha256:abc…` → `sha256-abc…`), as
/// the distribution spec's fallback schema names it.
pub fn fallback_tag(subject_digest: &str) -> String {
    let t = subject_digest.replacen(':', "-", 1);
    t.chars().take(128).collect()
}

/// The referrers index with `manifest` (an artifact manifest) listed: `old`
/// is the index found under the fallback tag, if any. An entry already there
/// is not listed twice; entries of others are kept as they are.
pub fn index_with(old: Option<&[u8]>, manifest: &[u8]) -> Result<Vec<u8>, String> {
    let mut index: Value = match old {
        Some(b) => serde_json::from_slice(b)
            .map_err(|e| format!("the referrers index is not JSON: {e}"))?,
        None => json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [] }),
    };
    let m: Value = serde_json::from_slice(manifest).map_err(|e| e.to_string())?;
    let digest = crate::digest::sha256_bytes(manifest);
    let mut desc = json!({
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": manifest.len(),
    });
    if let Some(t) = m.get("artifactType") {
        desc["artifactType"] = t.clone();
    }
    if let Some(a) = m.get("annotations") {
        desc["annotations"] = a.clone();
    }
    let list = index
        .get_mut("manifests")
        .and_then(|l| l.as_array_mut())
        .ok_or("the referrers index has no manifests list")?;
    if !list.iter().any(|d| d["digest"] == digest.as_str()) {
        list.push(desc);
    }
    serde_json::to_vec(&index).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        Document {
            media_type: SPDX_TYPE,
            bytes: b"{\"spdxVersion\":\"SPDX-2.3\"}".to_vec(),
            annotations: vec![],
        }
    }

    fn subject() -> Subject {
        Subject {
            media_type: OCI_MANIFEST.into(),
            digest: "sha256:aaaa".into(),
            size: 500,
        }
    }

    #[test]
    fn an_artifact_manifest_names_its_subject_and_type() {
        let m: Value = serde_json::from_slice(&artifact_manifest(
            &doc(),
            &subject(),
            "1970-01-01T00:00:00Z",
        ))
        .unwrap();
        assert_eq!(m["artifactType"], SPDX_TYPE);
        assert_eq!(m["subject"]["digest"], "sha256:aaaa");
        assert_eq!(m["config"]["mediaType"], EMPTY_TYPE);
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(m["layers"][0]["digest"], doc().digest());
        assert_eq!(
            m["annotations"]["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_fallback_index_lists_each_referrer_once_and_keeps_others() {
        assert_eq!(fallback_tag("sha256:abcd"), "sha256-abcd");
        let m1 = artifact_manifest(&doc(), &subject(), "t");
        let i1 = index_with(None, &m1).unwrap();
        let again = index_with(Some(&i1), &m1).unwrap();
        let v: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["artifactType"], SPDX_TYPE);
        let other = Document {
            media_type: IN_TOTO_TYPE,
            bytes: b"{}".to_vec(),
            annotations: vec![(
                "in-toto.io/predicate-type".into(),
                "https://slsa.dev/provenance/v1".into(),
            )],
        };
        let m2 = artifact_manifest(&other, &subject(), "t");
        let v: Value = serde_json::from_slice(&index_with(Some(&again), &m2).unwrap()).unwrap();
        assert_eq!(v["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["manifests"][1]["annotations"]["in-toto.io/predicate-type"],
            "https://slsa.dev/provenance/v1"
        );
        assert!(index_with(Some(b"not json"), &m2).is_err());
    }
}
