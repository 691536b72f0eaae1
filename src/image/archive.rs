//! docker-archive tarballs (`docker save` format: `manifest.json`, the config as
//! `<hex>.json`, each layer uncompressed as `<diffID hex>/layer.tar`), read by
//! `docker load`, `podman load` and skopeo's `docker-archive:` transport.

use super::manifest::{build_manifest, Format, LayerDesc, OCI_CONFIG, OCI_MANIFEST};
use super::{BlobFile, ImageConfig, LocalImage};
use crate::digest::{hex_of, sha256_bytes};
use crate::layer::writer::{compress_stream, diff_id_of, store_stream};
use crate::layer::{open_tar, MEDIA_TYPE_GZIP};
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, Read};
use std::path::Path;

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h
}

/// Write `image` as a docker-archive at `path`, tagged with `repo_tags`.
pub fn write(path: &Path, image: &LocalImage, repo_tags: &[String]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out =
        super::Output::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, out.file()));
    let config_name = format!(
        "{}.json",
        hex_of(&image.config.digest).map_err(|e| anyhow!(e))?
    );
    let config = fs::read(&image.config.path)?;
    tar.append_data(
        &mut header(config.len() as u64, 0o644, tar::EntryType::Regular),
        &config_name,
        &config[..],
    )?;
    let mut layer_names = Vec::new();
    for (layer, diff_id) in image.layers.iter().zip(&image.diff_ids) {
        let hex = hex_of(diff_id).map_err(|e| anyhow!(e))?;
        let name = format!("{hex}/layer.tar");
        if !layer_names.contains(&name) {
            // Uncompressed size first (the tar header needs it), then the bytes.
            let (actual, size) = diff_id_of(&layer.path)?;
            if actual != *diff_id {
                bail!("layer {} does not match its diffID {diff_id}", layer.digest);
            }
            tar.append_data(
                &mut header(0, 0o755, tar::EntryType::Directory),
                format!("{hex}/"),
                io::empty(),
            )?;
            tar.append_data(
                &mut header(size, 0o644, tar::EntryType::Regular),
                &name,
                open_tar(&layer.path)?,
            )?;
        }
        layer_names.push(name);
    }
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layer_names }]);
    let mbytes = serde_json::to_vec(&manifest)?;
    tar.append_data(
        &mut header(mbytes.len() as u64, 0o644, tar::EntryType::Regular),
        "manifest.json",
        &mbytes[..],
    )?;
    let mut w = tar.into_inner()?;
    io::Write::flush(&mut w)?;
    drop(w);
    out.finish()
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

/// Read a docker-archive (optionally gzip-compressed as a whole) into `store`,
/// compressing uncompressed layers on the way, and return it as an OCI image.
/// With several images in the archive, `pick` selects one by its RepoTag.
pub fn read(
    path: &Path,
    store: &Store,
    level: u32,
    pick: Option<&str>,
) -> Result<(LocalImage, Vec<String>)> {
    let mut archive = tar::Archive::new(
        open_tar(path).with_context(|| format!("cannot open {}", path.display()))?,
    );
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let mut layers: HashMap<String, (String, u64, String)> = HashMap::new(); // path -> (digest, size, diff_id)
    for entry in archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", path.display()))?
    {
        let entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let size = entry.header().size()?;
        let mut r = io::BufReader::with_capacity(1 << 20, entry);
        let head = r.fill_buf()?.to_vec();
        let is_gzip = head.starts_with(&[0x1f, 0x8b]);
        let is_tar = head.len() >= 262 && &head[257..262] == b"ustar";
        if is_gzip {
            let (digest, csize) = store_stream(store, r)?;
            let (diff_id, _) = diff_id_of(&store.blob_path(&digest)?)?;
            layers.insert(name, (digest, csize, diff_id));
        } else if is_tar || (size == 0 && name.ends_with("layer.tar")) {
            let built = compress_stream(store, level, r)?;
            layers.insert(name, (built.digest, built.size, built.diff_id));
        } else if size <= 64 << 20 {
            let mut b = Vec::with_capacity(size as usize);
            r.read_to_end(&mut b)?;
            small.insert(name, b);
        }
    }
    let manifest: Value = serde_json::from_slice(small.get("manifest.json").ok_or_else(|| {
        anyhow!(
            "{} has no manifest.json: not a docker-archive",
            path.display()
        )
    })?)?;
    let images = manifest.as_array().cloned().unwrap_or_default();
    let entry = match pick {
        Some(tag) => images
            .iter()
            .find(|i| {
                i.get("RepoTags")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|x| x.as_str() == Some(tag)))
            })
            .ok_or_else(|| anyhow!("{} holds no image tagged {tag}", path.display()))?,
        None => match images.as_slice() {
            [one] => one,
            [] => bail!("{} holds no image", path.display()),
            _ => bail!(
                "{} holds {} images: pass --source-tag to pick one",
                path.display(),
                images.len()
            ),
        },
    };
    let config_name = entry
        .get("Config")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("manifest.json entry without Config"))?;
    let config_bytes = small
        .get(config_name)
        .ok_or_else(|| anyhow!("{} lacks its config {config_name}", path.display()))?;
    let config: ImageConfig = serde_json::from_slice(config_bytes)
        .with_context(|| format!("config {config_name} is not a valid image config"))?;
    let config_digest = store.put_bytes(config_bytes)?;
    let names: Vec<&str> = entry
        .get("Layers")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.len() != config.rootfs.diff_ids.len() {
        bail!(
            "{}: {} layers but the config lists {} diffIDs",
            path.display(),
            names.len(),
            config.rootfs.diff_ids.len()
        );
    }
    let mut descs = Vec::new();
    let mut files = Vec::new();
    for (name, want) in names.iter().zip(&config.rootfs.diff_ids) {
        let (digest, size, diff_id) = layers
            .get(*name)
            .ok_or_else(|| anyhow!("{} lacks layer {name}", path.display()))?;
        if diff_id != want {
            bail!(
                "layer {name} in {} does not match diffID {want} from its config",
                path.display()
            );
        }
        descs.push(LayerDesc {
            digest: digest.clone(),
            size: *size,
            media_type: MEDIA_TYPE_GZIP.into(),
            diff_id: diff_id.clone(),
        });
        files.push(BlobFile {
            digest: digest.clone(),
            size: *size,
            media_type: MEDIA_TYPE_GZIP.into(),
            path: store.blob_path(digest)?,
        });
    }
    let manifest = build_manifest(
        Format::Oci,
        &config_digest,
        config_bytes.len() as u64,
        &descs,
        &[],
    )
    .map_err(|e| anyhow!(e))?;
    let tags = entry
        .get("RepoTags")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        LocalImage {
            manifest_digest: sha256_bytes(&manifest),
            manifest,
            manifest_media_type: OCI_MANIFEST.into(),
            config: BlobFile {
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                media_type: OCI_CONFIG.into(),
                path: store.blob_path(&config_digest)?,
            },
            diff_ids: descs.iter().map(|d| d.diff_id.clone()).collect(),
            layers: files,
        },
        tags,
    ))
}
