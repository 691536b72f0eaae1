//! One run of `kiln build` or `kiln warm`: the request, the reporter, the registry
//! client, the blob store, the work dir, the context's ignore rules and the
//! build's clock. Every part of the engine reads these; none of them changes
//! during the build.
//!
//! It owns setting these up and tearing the work dir down (on drop). It does not
//! read the Dockerfile's instructions: that is the plan's job.

use super::BuildRequest;
use crate::dockerfile::Ignore;
use crate::fs::workdir::WorkDir;
use crate::registry::Client;
use crate::report::Reporter;
use crate::store::Store;
use anyhow::{bail, Context, Result};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Session<'a> {
    pub req: &'a BuildRequest,
    pub report: &'a Reporter,
    pub client: Arc<Client>,
    pub store: Store,
    pub ignore: Ignore,
    /// The build's time (RFC 3339) for `created` and history: now, or
    /// `SOURCE_DATE_EPOCH`.
    pub now: String,
    pub now_secs: u64,
    /// When the build started (RFC 3339): the provenance's `startedOn`, which
    /// follows `SOURCE_DATE_EPOCH` too.
    pub started: String,
    /// What the build resolved (bases, ADD URLs, git sources), for the provenance.
    pub materials: crate::attest::provenance::Materials,
    /// The SBOM scanners' facts of the layers this build wrote, by diffID.
    pub layer_facts:
        std::sync::Mutex<std::collections::HashMap<String, crate::attest::scan::LayerFacts>>,
    rootfs_seq: Cell<usize>,
    /// Removed (with every rootfs in it) when the session ends.
    work: WorkDir,
}

/// The Dockerfile the request names: absolute, or inside the context.
pub fn dockerfile_path(req: &BuildRequest) -> PathBuf {
    if req.dockerfile.is_file() || req.dockerfile.is_absolute() {
        req.dockerfile.clone()
    } else {
        req.context.join(&req.dockerfile)
    }
}

pub(super) fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Leave kiln's own paths that lie inside the context out of it (the cache dir,
/// the work dir, the outputs): a `COPY . /app/` must never copy kiln's cache
/// into the image, nor change its key on every build. Returns them, relative.
fn exclude_own_paths(req: &BuildRequest, ignore: &mut Ignore, work: &Path) -> Vec<String> {
    let Ok(ctx) = req.context.canonicalize() else {
        return vec![];
    };
    let mut own: Vec<PathBuf> = vec![req.cache_dir.clone(), work.to_path_buf()];
    if let Some(w) = &req.work_dir {
        own.push(w.clone());
    }
    own.extend(
        [
            &req.tar_path,
            &req.oci_layout_path,
            &req.digest_file,
            &req.image_name_with_digest_file,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    let mut out = Vec::new();
    for p in own {
        // The path may not exist yet (an output): resolve its parent.
        let abs = match (p.canonicalize(), p.parent(), p.file_name()) {
            (Ok(a), _, _) => a,
            (Err(_), Some(parent), Some(name)) => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                match parent.canonicalize() {
                    Ok(a) => a.join(name),
                    Err(_) => continue,
                }
            }
            _ => continue,
        };
        let Ok(rel) = abs.strip_prefix(&ctx) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if rel.is_empty() || out.contains(&rel) {
            continue;
        }
        ignore.exclude_own(&rel);
        out.push(rel);
    }
    out
}

impl<'a> Session<'a> {
    /// Check the context, load its ignore rules, create the work dir, open the
    /// store (the cache dir with the cache on, else inside the work dir) and the
    /// client, declaring the destinations as push targets.
    pub fn new(req: &'a BuildRequest, report: &'a Reporter) -> Result<Session<'a>> {
        if !req.warm && !req.context.is_dir() {
            bail!("build context {} is not a directory", req.context.display());
        }
        let (mut ignore, ignore_file) = Ignore::load(&req.context, &dockerfile_path(req))?;
        if let Some(f) = ignore_file {
            tracing::debug!("using {f}");
        }
        let work_parent = req.work_dir.clone().unwrap_or_else(std::env::temp_dir);
        let work = WorkDir::create(&work_parent)
            .with_context(|| format!("cannot create a work dir in {}", work_parent.display()))?;
        if !req.warm {
            let left = exclude_own_paths(req, &mut ignore, work.path());
            if !left.is_empty() {
                report.line(&format!(
                    "note: leaving kiln's own {} out of the build context",
                    left.join(", ")
                ));
            }
        }
        // With the cache on, blobs live in the cache dir so later builds (and other
        // jobs restoring it) reuse them; otherwise in the work dir, removed at the end.
        let store = if req.cache {
            Store::open(&req.cache_dir)
                .with_context(|| format!("cannot use cache dir {}", req.cache_dir.display()))?
        } else {
            Store::open(&work.path().join("store"))?
        };
        let client = Arc::new(Client::new(&req.registry)?);
        if !req.no_push {
            for d in &req.destinations {
                client.declare(d, true);
            }
        }
        let now_secs = match req.source_date_epoch {
            Some(e) => e,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        Ok(Session {
            req,
            report,
            client,
            store,
            ignore,
            now: rfc3339(now_secs),
            now_secs,
            started: rfc3339(now_secs),
            materials: Default::default(),
            layer_facts: Default::default(),
            rootfs_seq: Cell::new(0),
            work,
        })
    }

    /// Remember a layer's SBOM facts (by diffID) for this build's SBOM and
    /// layer hints, when it makes either.
    pub fn keep_facts(&self, facts: Option<(String, crate::attest::scan::LayerFacts)>) {
        let req = self.req;
        if req.sbom_files.is_empty() && !req.attach_sbom && !req.hints {
            return;
        }
        if let (Some((id, f)), Ok(mut m)) = (facts, self.layer_facts.lock()) {
            m.insert(id, f);
        }
    }

    /// The compression of new layers.
    pub fn codec(&self) -> crate::layer::Codec {
        crate::layer::Codec {
            zstd: self.req.zstd,
            level: self.req.compression_level,
        }
    }

    /// A fresh directory name for a rootfs inside the work dir.
    pub fn next_rootfs_dir(&self) -> PathBuf {
        let n = self.rootfs_seq.get() + 1;
        self.rootfs_seq.set(n);
        self.work.path().join(format!("rootfs-{n}"))
    }

    pub fn work_path(&self) -> &Path {
        self.work.path()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
