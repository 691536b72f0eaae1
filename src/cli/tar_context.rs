//! kaniko's `tar://PATH` and `tar://stdin` contexts: the archive (plain, gzip or
//! zstd) unpacked into a private directory that lives as long as the build, with
//! the same confinement as a base layer (no entry leaves the directory, links
//! stay inside). Entries keep no owner: COPY gives files root's unless --chown.

use crate::fs::workdir::WorkDir;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Unpack the context named by `spec` (what follows `tar://`) into `context/`
/// of a kiln work dir under `work_dir`: locked while the build lives, so a build
/// killed with -9 leaves nothing that the next one does not reclaim. Returns the
/// work dir and the context's path.
pub fn unpack(spec: &str, work_dir: Option<&Path>) -> Result<(Arc<WorkDir>, PathBuf)> {
    let base = work_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let work = WorkDir::create(&base).with_context(|| {
        format!(
            "cannot make a directory for the tar context in {}",
            base.display()
        )
    })?;
    let dir = work.path().join("context");
    std::fs::create_dir(&dir)?;
    let (what, tar) = if spec == "stdin" {
        let stdin = std::io::BufReader::with_capacity(1 << 20, std::io::stdin());
        (
            "standard input".to_string(),
            crate::layer::tar_reader(stdin),
        )
    } else {
        (spec.to_string(), crate::layer::open_tar(Path::new(spec)))
    };
    let tar = tar.with_context(|| format!("--context tar://{spec}: cannot read {what}"))?;
    crate::layer::extract::extract(tar, &dir, false, &mut HashMap::new())
        .with_context(|| format!("--context tar://{spec}: {what} is not a usable tar archive"))?;
    Ok((Arc::new(work), dir))
}
