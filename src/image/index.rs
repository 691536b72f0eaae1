//! An image index from single-platform images, pure: the checks `kiln index`
//! makes (every source one platform, read from its config; no platform twice;
//! exactly the platforms asked for, when a list is given) and the index
//! document itself.
//!
//! The index is OCI's, unless every source is a Docker v2 schema 2 manifest:
//! then it is Docker's manifest list, so that tools that read only Docker's
//! media types still read it.

use super::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX};
use crate::platform::Platform;
use serde_json::{json, Value};

/// One single-platform image, as found in its registry.
#[derive(Debug, Clone)]
pub struct Source {
    /// As the user named it.
    pub name: String,
    pub manifest_digest: String,
    pub manifest_size: u64,
    pub media_type: String,
    /// From the image's config.
    pub platform: Platform,
}

/// The platform an image config (`architecture`, `os`, `variant`) says.
pub fn config_platform(config: &[u8]) -> Result<Platform, String> {
    let v: Value =
        serde_json::from_slice(config).map_err(|e| format!("its config is not JSON: {e}"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let (os, arch) = (field("os"), field("architecture"));
    if os.is_empty() || arch.is_empty() {
        return Err("its config names no os/architecture".into());
    }
    let variant = Some(field("variant")).filter(|s| !s.is_empty());
    Ok(Platform::new(os, arch, variant))
}

/// The index of `sources`, in their order: (bytes, media type). `expected`: the
/// platforms the index must hold, each once, none else.
pub fn assemble(
    sources: &[Source],
    expected: Option<&[Platform]>,
) -> Result<(Vec<u8>, String), String> {
    if sources.is_empty() {
        return Err("no source image: name one per platform".into());
    }
    for (i, s) in sources.iter().enumerate() {
        if let Some(first) = sources[..i].iter().find(|o| o.platform == s.platform) {
            return Err(format!(
                "{} is {}, as {} already is: an index holds each platform once",
                s.name, s.platform, first.name
            ));
        }
        if let Some(list) = expected {
            if !list.contains(&s.platform) {
                return Err(format!(
                    "{} is {}, which --platforms does not list ({})",
                    s.name,
                    s.platform,
                    names(list)
                ));
            }
        }
    }
    if let Some(list) = expected {
        let missing: Vec<&Platform> = list
            .iter()
            .filter(|p| !sources.iter().any(|s| s.platform == **p))
            .collect();
        if !missing.is_empty() {
            let m: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
            return Err(format!(
                "no source image is {} (the sources are {})",
                m.join(", "),
                sources
                    .iter()
                    .map(|s| format!("{} {}", s.name, s.platform))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let docker = sources.iter().all(|s| s.media_type == DOCKER_MANIFEST);
    let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
    let manifests: Vec<Value> = sources
        .iter()
        .map(|s| {
            let mut platform = json!({"architecture": s.platform.arch, "os": s.platform.os});
            if let Some(v) = &s.platform.variant {
                platform["variant"] = json!(v);
            }
            json!({
                "mediaType": s.media_type,
                "digest": s.manifest_digest,
                "size": s.manifest_size,
                "platform": platform,
            })
        })
        .collect();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
    Ok((bytes, media_type.to_string()))
}

fn names(list: &[Platform]) -> String {
    list.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::OCI_MANIFEST;

    fn src(name: &str, platform: &str, mt: &str) -> Source {
        Source {
            name: name.into(),
            manifest_digest: format!("sha256:{:0>64}", name.len()),
            manifest_size: 500,
            media_type: mt.into(),
            platform: Platform::parse(platform).unwrap(),
        }
    }

    #[test]
    fn the_config_says_the_platform() {
        let p = config_platform(br#"{"architecture":"arm","os":"linux","variant":"v7"}"#).unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        let p =
            config_platform(br#"{"architecture":"aarch64","os":"linux","variant":"v8"}"#).unwrap();
        assert_eq!(p.to_string(), "linux/arm64");
        assert!(config_platform(br#"{"os":"linux"}"#).is_err());
        assert!(config_platform(b"not json").is_err());
    }

    #[test]
    fn an_index_lists_each_source_with_its_platform() {
        let (bytes, mt) = assemble(
            &[
                src("a:amd64", "linux/amd64", OCI_MANIFEST),
                src("a:arm", "linux/arm/v7", OCI_MANIFEST),
            ],
            None,
        )
        .unwrap();
        assert_eq!(mt, OCI_INDEX);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v["manifests"][0]["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(
            v["manifests"][1]["platform"],
            json!({"architecture": "arm", "os": "linux", "variant": "v7"})
        );
        assert_eq!(v["manifests"][1]["size"], 500);
        let ix: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(ix.manifests().len(), 2);
        // Docker manifests only: Docker's list.
        let (_, mt) = assemble(&[src("d", "linux/amd64", DOCKER_MANIFEST)], None).unwrap();
        assert_eq!(mt, DOCKER_LIST);
    }

    #[test]
    fn duplicates_and_mismatches_are_one_line_errors() {
        let e = assemble(
            &[
                src("x:1", "linux/amd64", OCI_MANIFEST),
                src("x:22", "linux/x86_64", OCI_MANIFEST),
            ],
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "x:22 is linux/amd64, as x:1 already is: an index holds each platform once"
        );
        let want = Platform::parse_list("linux/amd64,linux/arm64").unwrap();
        let e = assemble(&[src("x:1", "linux/s390x", OCI_MANIFEST)], Some(&want)).unwrap_err();
        assert!(
            e.contains("x:1 is linux/s390x, which --platforms does not list"),
            "{e}"
        );
        let e = assemble(&[src("x:1", "linux/amd64", OCI_MANIFEST)], Some(&want)).unwrap_err();
        assert!(e.starts_with("no source image is linux/arm64"), "{e}");
        assert!(!e.contains('\n'));
        assert!(assemble(&[], None).is_err());
    }
}
