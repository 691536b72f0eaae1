//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/…`), as
//! read by skopeo (`oci:DIR:TAG`) and umoci (`--image DIR:TAG`).

use super::manifest::{declared_media_type, is_index, is_manifest, OCI_INDEX};
use super::{place_file, BlobFile, LocalImage};
use crate::digest::{hex_of, sha256_bytes};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf> {
    Ok(dir
        .join("blobs/sha256")
        .join(hex_of(digest).map_err(|e| anyhow!(e))?))
}

/// Write `image` into the layout at `dir` under `tag`, creating the layout if
/// needed. An existing entry with the same tag is replaced; others are kept.
pub fn write(dir: &Path, image: &LocalImage, tag: &str) -> Result<()> {
    write_image(dir, image)?;
    set_entry(
        dir,
        &image.manifest_media_type,
        &image.manifest_digest,
        image.manifest.len(),
        tag,
    )
}

/// Write the images of several platforms and their `index` (bytes, media type)
/// into the layout at `dir`; the index is the entry under `tag`.
pub fn write_index(
    dir: &Path,
    images: &[LocalImage],
    index: &[u8],
    media_type: &str,
    tag: &str,
) -> Result<()> {
    for image in images {
        write_image(dir, image)?;
    }
    let digest = sha256_bytes(index);
    let ipath = blob_path(dir, &digest)?;
    if !ipath.exists() {
        write_atomic(&ipath, index)?;
    }
    set_entry(dir, media_type, &digest, index.len(), tag)
}

/// An image's blobs and manifest, and the `oci-layout` marker.
fn write_image(dir: &Path, image: &LocalImage) -> Result<()> {
    fs::create_dir_all(dir.join("blobs/sha256"))
        .with_context(|| format!("cannot create OCI layout {}", dir.display()))?;
    for b in image.blobs() {
        place_file(&b.path, &blob_path(dir, &b.digest)?)
            .with_context(|| format!("cannot write blob {} into {}", b.digest, dir.display()))?;
    }
    let mpath = blob_path(dir, &image.manifest_digest)?;
    if !mpath.exists() {
        write_atomic(&mpath, &image.manifest)?;
    }
    write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
}

/// `index.json`'s entry for `tag`: this manifest or index, replacing the old one.
fn set_entry(dir: &Path, media_type: &str, digest: &str, size: usize, tag: &str) -> Result<()> {
    let index_path = dir.join("index.json");
    let mut manifests: Vec<Value> = match fs::read(&index_path) {
        Ok(b) => {
            let v: Value = serde_json::from_slice(&b)
                .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
            v.get("manifests")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        }
        Err(_) => vec![],
    };
    manifests.retain(|m| {
        m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
            .and_then(Value::as_str)
            != Some(tag)
    });
    manifests.push(json!({
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": { REF_NAME: tag },
    }));
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    write_atomic(&index_path, &serde_json::to_vec(&index)?)?;
    Ok(())
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let out =
        super::Output::create(path).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut out.file(), data)?;
    out.finish()
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// What a layout holds for pushing: the top manifest (or index) and every blob
/// and child manifest it needs.
#[derive(Debug)]
pub struct LayoutImage {
    pub top: Vec<u8>,
    pub top_media_type: String,
    /// Child manifests of an index: (digest, media type, bytes).
    pub children: Vec<(String, String, Vec<u8>)>,
    pub blobs: Vec<BlobFile>,
}

/// Read `DIR[:TAG]` (skopeo's `oci:` syntax). Without a tag, the layout must hold
/// exactly one image.
pub fn read(spec: &str) -> Result<LayoutImage> {
    let (dir, tag) = split_spec(spec);
    let dir = Path::new(dir);
    let index: Value = serde_json::from_slice(
        &fs::read(dir.join("index.json"))
            .with_context(|| format!("{} is not an OCI layout (no index.json)", dir.display()))?,
    )
    .with_context(|| format!("{}/index.json is not valid JSON", dir.display()))?;
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let chosen = match tag {
        Some(t) => entries
            .iter()
            .find(|m| {
                m.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                    .and_then(Value::as_str)
                    == Some(t)
            })
            .ok_or_else(|| anyhow!("no image tagged {t:?} in OCI layout {}", dir.display()))?,
        None => match entries.as_slice() {
            [one] => one,
            [] => bail!("OCI layout {} holds no image", dir.display()),
            _ => bail!(
                "OCI layout {} holds {} images: name one as {}:TAG",
                dir.display(),
                entries.len(),
                dir.display()
            ),
        },
    };
    let digest = chosen
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("index.json entry without digest"))?;
    let top = read_verified(dir, digest)?;
    let top_media_type = declared_media_type(
        &top,
        chosen
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let mut out = LayoutImage {
        top: top.clone(),
        top_media_type: top_media_type.clone(),
        children: vec![],
        blobs: vec![],
    };
    if is_index(&top_media_type) {
        let v: Value = serde_json::from_slice(&top)?;
        for m in v
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let d = m
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("index entry without digest"))?;
            let bytes = read_verified(dir, d)?;
            let mt = declared_media_type(
                &bytes,
                m.get("mediaType").and_then(Value::as_str).unwrap_or(""),
            );
            if !is_manifest(&mt) {
                bail!("nested indexes are not supported (in {})", dir.display());
            }
            collect_blobs(dir, &bytes, &mut out.blobs)?;
            out.children.push((d.to_string(), mt, bytes));
        }
    } else if is_manifest(&top_media_type) {
        collect_blobs(dir, &top, &mut out.blobs)?;
    } else {
        bail!(
            "unsupported manifest media type {top_media_type:?} in {}",
            dir.display()
        );
    }
    Ok(out)
}

/// `DIR:TAG` → (DIR, Some(TAG)); a colon inside a path component before a `/`
/// is part of the directory.
pub fn split_spec(spec: &str) -> (&str, Option<&str>) {
    let last_slash = spec.rfind('/').map(|i| i + 1).unwrap_or(0);
    match spec[last_slash..].rfind(':') {
        Some(i) if Path::new(&spec[..last_slash + i]).is_dir() => {
            (&spec[..last_slash + i], Some(&spec[last_slash + i + 1..]))
        }
        _ => (spec, None),
    }
}

fn read_verified(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let p = blob_path(dir, digest)?;
    let b = fs::read(&p)
        .with_context(|| format!("OCI layout {} lacks blob {digest}", dir.display()))?;
    if sha256_bytes(&b) != digest {
        bail!(
            "blob {digest} in {} does not match its digest",
            dir.display()
        );
    }
    Ok(b)
}

fn collect_blobs(dir: &Path, manifest: &[u8], out: &mut Vec<BlobFile>) -> Result<()> {
    let v: Value = serde_json::from_slice(manifest)?;
    let config = v.get("config").cloned().into_iter();
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for d in config.chain(layers) {
        let digest = d
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("descriptor without digest"))?;
        let size = d
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("descriptor without size"))?;
        let path = blob_path(dir, digest)?;
        let actual = fs::metadata(&path)
            .with_context(|| format!("OCI layout {} lacks blob {digest}", dir.display()))?
            .len();
        if actual != size {
            bail!(
                "blob {digest} in {} has {actual} bytes, its descriptor says {size}",
                dir.display()
            );
        }
        if !out.iter().any(|b| b.digest == digest) {
            out.push(BlobFile {
                digest: digest.to_string(),
                size,
                media_type: d
                    .get("mediaType")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                path,
            });
        }
    }
    Ok(())
}
