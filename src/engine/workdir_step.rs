//! WORKDIR as BuildKit builds it: besides setting the config's `WorkingDir`, a
//! WORKDIR other than `/` runs `mkdir -p` in the stage's filesystem, the new
//! directories owned by the current USER, mode 0755, dated `SOURCE_DATE_EPOCH`
//! (or now), and commits them as a layer. A later `COPY --from` of that stage
//! finds the directory, and a RUN as that USER can write in it.
//!
//! One difference on purpose: when every directory already exists, BuildKit
//! commits an empty layer; kiln commits none (the history entry says
//! `empty_layer`), so images carry no 32-byte layers that change nothing.

use super::copy;
use super::copy_step::resolve_owner;
use super::plan::Plan;
use super::session::Session;
use super::stage::Stage;
use crate::layer::BuiltLayer;
use anyhow::{anyhow, Result};

/// What a WORKDIR step needs once its config edit is done.
#[derive(Debug, Clone)]
pub struct WorkdirPrep {
    /// The absolute, cleaned directory.
    pub dir: String,
    /// USER at this point (None: root).
    pub user: Option<String>,
}

impl WorkdirPrep {
    /// The step's layer work, or None for `WORKDIR /`, which creates nothing.
    pub fn of(stage: &Stage) -> Option<WorkdirPrep> {
        let dir = stage.workdir();
        (dir != "/").then(|| WorkdirPrep {
            dir,
            user: stage.config.config.user.clone().filter(|u| !u.is_empty()),
        })
    }
}

/// `mkdir -p` the WORKDIR in the stage's filesystem; the layer of what it
/// created, or None when the directory was already there.
pub async fn perform(
    sess: &Session<'_>,
    plan: &Plan,
    stage: &mut Stage,
    line: usize,
    prep: &WorkdirPrep,
) -> Result<Option<BuiltLayer>> {
    sess.materialize(stage).await?;
    let rootfs = stage
        .rootfs
        .as_ref()
        .ok_or_else(|| anyhow!("rootfs missing"))?;
    let rel = rootfs.resolve(&prep.dir, true)?;
    match rootfs.stat(&rel) {
        Some((md, _)) if md.is_dir() => return Ok(None),
        Some(_) => {
            return Err(plan.err(
                line,
                format!("WORKDIR {}: /{rel} exists and is not a directory", prep.dir),
            ))
        }
        None => {}
    }
    let owner = match &prep.user {
        Some(u) => Some(resolve_owner(plan, line, stage, u, "WORKDIR (USER)")?),
        None => None,
    };
    // COPY of nothing into `dir/`: the directory and its missing parents, new
    // ones 0755 and owned by the user, existing ones as the image has them.
    let spec = copy::CopySpec {
        sources: vec![],
        heredocs: vec![],
        fetched: vec![],
        unpack_fetched: false,
        dest: format!("{}/", prep.dir),
        chown: owner,
        chmod: None,
        is_add: false,
        exclude: vec![],
        parents: false,
        clamp_mtime: sess.req.source_date_epoch,
        default_mtime: sess.now_secs,
    };
    let store = sess.store.clone();
    let codec = sess.codec();
    let mut dst = stage
        .rootfs
        .take()
        .ok_or_else(|| anyhow!("rootfs missing"))?;
    let (built, dst) = tokio::task::spawn_blocking(move || {
        let built = copy::copy_layer(&store, codec, &copy::Source::Nothing, &spec, &mut dst, true);
        (built, dst)
    })
    .await?;
    stage.rootfs = Some(dst);
    built.map_err(|e| plan.err(line, e))
}
