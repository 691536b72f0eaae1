//! Manifests and indexes (on `oci-spec`), media types, and platform selection.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// What kiln accepts when it asks a registry for a manifest.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// The media type a manifest document declares (falling back to the one the
/// registry sent in Content-Type).
pub fn declared_media_type(bytes: &[u8], fallback: &str) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
                return Some(mt.to_string());
            }
            // OCI documents may omit mediaType: tell them apart by shape.
            if v.get("manifests").is_some() {
                Some(OCI_INDEX.to_string())
            } else if v.get("config").is_some() {
                Some(OCI_MANIFEST.to_string())
            } else {
                None
            }
        })
        .unwrap_or_else(|| fallback.split(';').next().unwrap_or("").trim().to_string())
}

/// The OCI media type for a layer, whatever format the base image used.
pub fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        other => other.to_string(),
    }
}

/// The media types an image is written with: OCI's (the default, as BuildKit's),
/// or Docker's v2 schema 2 for registries and tools that want it (the kaniko
/// fork's `--image-format=docker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Oci,
    Docker,
}

impl Format {
    pub fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        }
    }

    /// A layer's media type in this format; an error for a layer the format
    /// cannot name (Docker's has no zstd).
    pub fn layer_type(self, media_type: &str) -> Result<String, String> {
        let oci = oci_layer_type(media_type);
        if self == Format::Oci {
            return Ok(oci);
        }
        match oci.as_str() {
            "application/vnd.oci.image.layer.v1.tar+gzip" => {
                Ok("application/vnd.docker.image.rootfs.diff.tar.gzip".into())
            }
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Ok("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into())
            }
            "application/vnd.oci.image.layer.v1.tar" => {
                Ok("application/vnd.docker.image.rootfs.diff.tar".into())
            }
            other => Err(format!(
                "Docker's image format has no media type for a {other} layer: use --image-format=oci, or gzip layers (--compression gzip)"
            )),
        }
    }
}

pub use crate::platform::Platform;

/// Pick the manifest for `platform` from an index (see [`crate::platform::select`]).
pub fn select(index: &ImageIndex, platform: &Platform) -> Option<Descriptor> {
    crate::platform::select(index, platform)
}

/// Available platforms of an index, for error messages.
pub fn platforms(index: &ImageIndex) -> Vec<String> {
    crate::platform::listed(index)
}

/// A layer as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDesc {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
}

/// Serialize an image manifest in `format` for a config blob and layers.
/// `annotations` go on the manifest only when there are any, so images without
/// them keep their digests. They are written sorted by key: oci-spec keeps them
/// in a hash map, whose order changes from process to process, and the same
/// inputs must give the same manifest digest.
pub fn build_manifest(
    format: Format,
    config_digest: &str,
    config_size: u64,
    layers: &[LayerDesc],
    annotations: &[(String, String)],
) -> Result<Vec<u8>, String> {
    let descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| -> Result<Descriptor, String> {
            let d: oci_spec::image::Digest = l.digest.parse().map_err(|e| format!("{e}"))?;
            Ok(Descriptor::new(
                MediaType::from(format.layer_type(&l.media_type)?.as_str()),
                l.size,
                d,
            ))
        })
        .collect::<Result<_, _>>()?;
    let cd: oci_spec::image::Digest = config_digest.parse().map_err(|e| format!("{e}"))?;
    let mut m: ImageManifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::from(format.manifest_type()))
        .config(Descriptor::new(
            MediaType::from(format.config_type()),
            config_size,
            cd,
        ))
        .layers(descs)
        .build()
        .map_err(|e| e.to_string())?;
    if !annotations.is_empty() {
        m.set_annotations(Some(annotations.iter().cloned().collect()));
    }
    let mut v = serde_json::to_value(&m).map_err(|e| e.to_string())?;
    if let Some(a) = v.get_mut("annotations").and_then(|a| a.as_object_mut()) {
        a.sort_keys();
    }
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_written_sorted_whatever_their_order() {
        let layer = LayerDesc {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 3,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: format!("sha256:{}", "b".repeat(64)),
        };
        let mut ann: Vec<(String, String)> = (0..12)
            .map(|i| (format!("org.example.k{i:02}"), format!("v{i}")))
            .collect();
        let config = format!("sha256:{}", "c".repeat(64));
        let first =
            build_manifest(Format::Oci, &config, 10, std::slice::from_ref(&layer), &ann).unwrap();
        for _ in 0..16 {
            ann.reverse();
            let again =
                build_manifest(Format::Oci, &config, 10, std::slice::from_ref(&layer), &ann)
                    .unwrap();
            assert_eq!(first, again);
        }
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        let keys: Vec<&String> = v["annotations"].as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn docker_format_names_docker_media_types_or_refuses() {
        let layer = |mt: &str| LayerDesc {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 3,
            media_type: mt.into(),
            diff_id: format!("sha256:{}", "b".repeat(64)),
        };
        let config = format!("sha256:{}", "c".repeat(64));
        let m = build_manifest(
            Format::Docker,
            &config,
            10,
            &[layer("application/vnd.oci.image.layer.v1.tar+gzip")],
            &[],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["mediaType"], DOCKER_MANIFEST);
        assert_eq!(v["config"]["mediaType"], DOCKER_CONFIG);
        assert_eq!(
            v["layers"][0]["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
        let e = build_manifest(
            Format::Docker,
            &config,
            10,
            &[layer("application/vnd.oci.image.layer.v1.tar+zstd")],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("--image-format=oci"), "{e}");
    }
}
