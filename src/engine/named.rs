//! Named build contexts (`--build-context name=VALUE`, bake's `contexts`), as
//! BuildKit has them: `FROM name`, `COPY --from=name` and
//! `RUN --mount=from=name` resolve to the context when no earlier stage has
//! that name.
//!
//! - `docker-image://REF`: the image REF, pulled as any base;
//! - `oci-layout://DIR[:TAG]`: an image of a local OCI layout (the platform's,
//!   from an index), its blobs copied into the store and checked;
//! - a directory: its files, for `COPY --from` and `RUN --mount=from` (no
//!   `.dockerignore`: that is the main context's).

use super::request::NamedContext;
use super::session::Session;
use super::stage::Stage;
use crate::image::manifest::{self, Platform};
use crate::image::Reference;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// `name=VALUE` of `--build-context`.
pub fn parse(spec: &str) -> Result<(String, NamedContext)> {
    let (name, value) = spec
        .split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "--build-context {}: write NAME=VALUE (a directory, docker-image://REF or oci-layout://DIR[:TAG])",
                crate::clip::clip(spec)
            )
        })?;
    let name = name.to_ascii_lowercase();
    if let Some(r) = value.strip_prefix("docker-image://") {
        let r = Reference::parse(r)
            .with_context(|| format!("--build-context {name}=docker-image://{r}"))?;
        return Ok((name, NamedContext::Image(r)));
    }
    if let Some(l) = value.strip_prefix("oci-layout://") {
        let (dir, tag) = crate::image::layout::split_spec(l);
        if !Path::new(dir).join("index.json").is_file() {
            bail!("--build-context {name}=oci-layout://{l}: {dir} is not an OCI layout (no index.json)");
        }
        return Ok((
            name,
            NamedContext::Layout {
                dir: PathBuf::from(dir),
                tag: tag.map(str::to_string),
            },
        ));
    }
    if value.starts_with("target:") {
        bail!("--build-context {name}={value}: target: names a bake target; it works in a bake file's contexts");
    }
    if value.contains("://") || value.starts_with("git@") {
        bail!("--build-context {name}={}: kiln takes a directory, docker-image:// or oci-layout:// (fetch a remote source in an earlier script line)", crate::clip::clip(value));
    }
    let dir = PathBuf::from(value);
    if !dir.is_dir() {
        bail!(
            "--build-context {name}={}: not a directory",
            crate::clip::clip(value)
        );
    }
    Ok((name, NamedContext::Dir(dir)))
}

/// Copy a layout blob into the store as it streams, checking its digest.
fn import_blob(store: &crate::store::Store, path: &Path, digest: &str) -> Result<()> {
    if store.has(digest) {
        return Ok(());
    }
    let mut src = std::fs::File::open(path)
        .with_context(|| format!("OCI layout: cannot read blob {digest}"))?;
    let mut w = crate::digest::HashWriter::new(store.temp()?);
    std::io::copy(&mut src, &mut w)?;
    let (tmp, got, _) = w.finish();
    if got != digest {
        bail!("OCI layout: blob {digest} holds {got}");
    }
    store.commit(tmp, digest)?;
    Ok(())
}

/// The image of an OCI layout for `platform`, as a stage whose blobs are in
/// the store. `written`: how FROM or `--from` named it.
pub fn layout_stage(
    store: &crate::store::Store,
    written: &str,
    dir: &Path,
    tag: Option<&str>,
    platform: &Platform,
) -> Result<Stage> {
    let spec = match tag {
        Some(t) => format!("{}:{t}", dir.display()),
        None => dir.display().to_string(),
    };
    let img = crate::image::layout::read(&spec)?;
    let (bytes, digest) = if manifest::is_index(&img.top_media_type) {
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&img.top).context("invalid image index in the OCI layout")?;
        let d = manifest::select(&index, platform).ok_or_else(|| {
            anyhow!(
                "oci-layout://{spec} has no image for {platform} (it has: {})",
                manifest::platforms(&index).join(", ")
            )
        })?;
        let want = d.digest().to_string();
        let (_, _, b) = img
            .children
            .iter()
            .find(|(dg, _, _)| *dg == want)
            .ok_or_else(|| anyhow!("oci-layout://{spec}: manifest {want} is missing"))?;
        (b.clone(), want)
    } else {
        (img.top.clone(), crate::digest::sha256_bytes(&img.top))
    };
    let m: oci_spec::image::ImageManifest =
        serde_json::from_slice(&bytes).context("invalid image manifest in the OCI layout")?;
    let needed: Vec<String> = std::iter::once(m.config().digest().to_string())
        .chain(m.layers().iter().map(|l| l.digest().to_string()))
        .collect();
    for d in &needed {
        let b = img
            .blobs
            .iter()
            .find(|b| &b.digest == d)
            .ok_or_else(|| anyhow!("oci-layout://{spec} lacks blob {d}"))?;
        import_blob(store, &b.path, d)?;
    }
    let cdigest = m.config().digest().to_string();
    let cpath = store
        .verified_path(&cdigest)?
        .ok_or_else(|| anyhow!("config {cdigest} missing"))?;
    super::base::base_stage(written, &digest, &cpath, &m, None)
}

/// The stage a named image context gives (`FROM name`, `--from=name`), or
/// None for a directory.
pub async fn image_stage(
    sess: &Session<'_>,
    name: &str,
    ctx: &NamedContext,
    platform: &Platform,
    local: Option<&super::cache::LocalCache>,
) -> Result<Option<Stage>> {
    match ctx {
        NamedContext::Image(r) => Ok(Some(sess.pull(r, platform, local).await?)),
        NamedContext::Layout { dir, tag } => {
            let store = sess.store.clone();
            let (dir, tag, platform) = (dir.clone(), tag.clone(), platform.clone());
            let written = format!("{name} (oci-layout://{})", dir.display());
            Ok(Some(
                tokio::task::spawn_blocking(move || {
                    layout_stage(&store, &written, &dir, tag.as_deref(), &platform)
                })
                .await??,
            ))
        }
        NamedContext::Dir(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_value_and_the_refusals() {
        let (n, c) = parse("Base=docker-image://alpine:3.19").unwrap();
        assert_eq!(n, "base");
        assert!(matches!(c, NamedContext::Image(r) if r.tag.as_deref() == Some("3.19")));
        let d = tempfile::tempdir().unwrap();
        let (_, c) = parse(&format!("src={}", d.path().display())).unwrap();
        assert!(matches!(c, NamedContext::Dir(p) if p == d.path()));
        std::fs::write(d.path().join("index.json"), "{}").unwrap();
        let (_, c) = parse(&format!("img=oci-layout://{}:v1", d.path().display())).unwrap();
        assert!(matches!(c, NamedContext::Layout { tag: Some(t), .. } if t == "v1"));
        for (bad, why) in [
            ("noequals", "NAME=VALUE"),
            ("=x", "NAME=VALUE"),
            ("a=/nonexistent/kiln-ctx", "not a directory"),
            ("a=https://example.com/x.tar", "kiln takes a directory"),
            ("a=target:base", "bake file"),
            ("a=oci-layout:///nonexistent", "not an OCI layout"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
