//! BuildKit's attestation layout, for tools that read only that: per
//! platform image, an attestation manifest inside the image index, with the
//! platform `unknown/unknown` and annotations naming the image it is about;
//! its layers are in-toto Statements (the SBOMs wrapped in one, the
//! provenance as it is). Pure: the documents and the index entries.

use super::provenance::{PREDICATE_TYPE, STATEMENT_TYPE};
use super::referrers::{Document, CYCLONEDX_TYPE, IN_TOTO_TYPE, SPDX_TYPE};
use crate::image::manifest::{OCI_CONFIG, OCI_MANIFEST};
use serde_json::{json, Value};

/// The predicate types BuildKit gives an SPDX and a CycloneDX SBOM.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
pub const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";

/// One blob of the attestation manifest: bytes and predicate type.
#[derive(Debug, Clone)]
pub struct Layer {
    pub bytes: Vec<u8>,
    pub predicate_type: String,
}

impl Layer {
    pub fn digest(&self) -> String {
        crate::digest::sha256_bytes(&self.bytes)
    }
}

/// A document as an in-toto Statement about the image `digest` (`name`): an
/// SBOM is wrapped, a provenance statement is already one.
pub fn statement(doc: &Document, name: &str, digest: &str) -> Option<Layer> {
    let predicate_type = match doc.media_type {
        SPDX_TYPE => SPDX_PREDICATE,
        CYCLONEDX_TYPE => CYCLONEDX_PREDICATE,
        IN_TOTO_TYPE => {
            return Some(Layer {
                bytes: doc.bytes.clone(),
                predicate_type: PREDICATE_TYPE.into(),
            })
        }
        _ => return None,
    };
    let predicate: Value = serde_json::from_slice(&doc.bytes).ok()?;
    let hex = digest.strip_prefix("sha256:")?;
    let s = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": name, "digest": { "sha256": hex } }],
        "predicateType": predicate_type,
        "predicate": predicate,
    });
    Some(Layer {
        bytes: serde_json::to_vec(&s).ok()?,
        predicate_type: predicate_type.into(),
    })
}

/// The attestation manifest's config and manifest.
pub fn manifest(layers: &[Layer]) -> (Vec<u8>, Vec<u8>) {
    let diff_ids: Vec<String> = layers.iter().map(Layer::digest).collect();
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": crate::digest::sha256_bytes(&config),
            "size": config.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": IN_TOTO_TYPE,
            "digest": l.digest(),
            "size": l.bytes.len(),
            "annotations": { "in-toto.io/predicate-type": l.predicate_type },
        })).collect::<Vec<_>>(),
    });
    (config, serde_json::to_vec(&m).unwrap_or_default())
}

/// The index entry of the attestation manifest `m` about the image `subject`.
pub fn index_entry(m: &[u8], subject: &str) -> Value {
    json!({
        "mediaType": OCI_MANIFEST,
        "digest": crate::digest::sha256_bytes(m),
        "size": m.len(),
        "annotations": {
            "vnd.docker.reference.digest": subject,
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": { "architecture": "unknown", "os": "unknown" },
    })
}

/// `index` with `entries` appended to its manifests.
pub fn with_entries(index: &[u8], entries: &[Value]) -> Result<Vec<u8>, String> {
    let mut v: Value = serde_json::from_slice(index).map_err(|e| e.to_string())?;
    let list = v
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or("the index has no manifests")?;
    list.extend(entries.iter().cloned());
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sboms_are_wrapped_and_the_index_entry_points_at_the_image() {
        let spdx = Document {
            media_type: SPDX_TYPE,
            bytes: br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
            annotations: vec![],
        };
        let l = statement(&spdx, "registry.example/app", "sha256:abcd").unwrap();
        let v: Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(v["predicateType"], SPDX_PREDICATE);
        assert_eq!(v["predicate"]["spdxVersion"], "SPDX-2.3");
        assert_eq!(v["subject"][0]["digest"]["sha256"], "abcd");
        let (config, m) = manifest(std::slice::from_ref(&l));
        let mv: Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(
            mv["layers"][0]["annotations"]["in-toto.io/predicate-type"],
            SPDX_PREDICATE
        );
        assert_eq!(mv["config"]["digest"], crate::digest::sha256_bytes(&config));
        let e = index_entry(&m, "sha256:abcd");
        assert_eq!(e["platform"]["os"], "unknown");
        assert_eq!(
            e["annotations"]["vnd.docker.reference.digest"],
            "sha256:abcd"
        );
        let ix = with_entries(
            br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:abcd"}]}"#,
            &[e],
        )
        .unwrap();
        let iv: Value = serde_json::from_slice(&ix).unwrap();
        assert_eq!(iv["manifests"].as_array().unwrap().len(), 2);
    }
}
