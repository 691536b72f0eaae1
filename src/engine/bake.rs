//! `kiln bake`: several targets in one run.
//!
//! - Targets build side by side, as many at once as the machine has cores.
//! - They share one cache (the user's, or one of this run's own when the
//!   cache is off), and a step two targets need is built once: the second
//!   waits for the first ([`super::flight`]) and finds it in the cache.
//! - Every target pushes its blobs and manifests by digest as it finishes and
//!   holds its tags; the tags go out only once every target has succeeded, so
//!   a failure anywhere tags nothing (unless `partial`).
//! - A target whose `contexts` name another target (`target:NAME`) starts
//!   once that one is built, and reads its image from the OCI layout it wrote.

use super::{build, flight, put_held, BuildRequest, HeldTags, Outcome};
use crate::report::Reporter;
use anyhow::{Context, Result};

/// One target of the bake and its build.
pub struct BakeTarget {
    pub name: String,
    pub req: BuildRequest,
    /// (context name, target): `contexts = { NAME = "target:TARGET" }`.
    pub needs: Vec<(String, String)>,
}

/// What one target came to.
pub struct TargetResult {
    pub name: String,
    /// The build, or why it failed.
    pub outcome: std::result::Result<Outcome, String>,
    /// `dest:tag` put for this target (empty when tags were held back).
    pub tagged: Vec<String>,
    /// When its build started and ended, from the start of the bake.
    pub started: std::time::Duration,
    pub finished: std::time::Duration,
}

/// What the bake made.
pub struct BakeOutcome {
    /// In the order the targets were asked for.
    pub targets: Vec<TargetResult>,
    /// (target, the target that built it, step): steps built once and used
    /// by several targets.
    pub shared: Vec<(String, String, String)>,
    /// Whether the tags were held back because a target failed.
    pub held_back: bool,
}

impl BakeOutcome {
    pub fn failed(&self) -> usize {
        self.targets.iter().filter(|t| t.outcome.is_err()).count()
    }
}

type Done = (
    usize,
    std::result::Result<Outcome, String>,
    [std::time::Duration; 2],
);

/// Give each target a `target:` context names an OCI layout to write (its
/// own `--oci-layout-path`, or one in a directory of this run's, returned
/// to be removed at the end), and each target that needs it that layout as a
/// named context.
fn link_targets(targets: &mut [BakeTarget]) -> Result<Option<tempfile::TempDir>> {
    let needed: Vec<String> = targets
        .iter()
        .flat_map(|t| t.needs.iter().map(|(_, n)| n.clone()))
        .collect();
    if needed.is_empty() {
        return Ok(None);
    }
    let work_dir = targets.iter().find_map(|t| t.req.work_dir.clone());
    let dir = super::run_dir(work_dir.as_deref(), "kiln-bake-contexts-")?;
    let mut layouts = std::collections::BTreeMap::new();
    for t in targets.iter_mut().filter(|t| needed.contains(&t.name)) {
        let path = t
            .req
            .oci_layout_path
            .get_or_insert_with(|| dir.path().join(&t.name))
            .clone();
        let tag = t
            .req
            .destinations
            .first()
            .and_then(|d| d.tag.clone())
            .unwrap_or_else(|| "latest".into());
        layouts.insert(t.name.clone(), (path, tag));
    }
    for t in targets.iter_mut() {
        for (ctx, n) in t.needs.clone() {
            let (path, tag) = layouts
                .get(&n)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("target {}: no target {n} in this run", t.name))?;
            t.req.build_contexts.retain(|(c, _)| *c != ctx);
            t.req.build_contexts.push((
                ctx,
                super::NamedContext::Layout {
                    dir: path,
                    tag: Some(tag),
                },
            ));
        }
    }
    Ok(Some(dir))
}

/// Build `targets`; `jobs` at once.
pub async fn bake(
    mut targets: Vec<BakeTarget>,
    jobs: usize,
    partial: bool,
    report: &Reporter,
) -> Result<BakeOutcome> {
    // Targets without a cache share one of this run's own, so what they have
    // in common is built once (removed at the end, as multi-platform's).
    let work_dir = targets.iter().find_map(|t| t.req.work_dir.clone());
    let run_cache = if targets.iter().any(|t| !t.req.cache) {
        Some(super::run_dir(work_dir.as_deref(), "kiln-run-cache-")?)
    } else {
        None
    };
    let run_layouts = link_targets(&mut targets)?;
    let mut held = Vec::with_capacity(targets.len());
    for t in &mut targets {
        if let (false, Some(dir)) = (t.req.cache, &run_cache) {
            t.req.cache = true;
            t.req.cache_dir = dir.path().to_path_buf();
            t.req.cache_repo = None;
        }
        t.req.label = t.name.clone();
        let h = HeldTags::default();
        t.req.hold_tags = Some(h.clone());
        held.push(h);
    }
    // A target holds one of `jobs` shares while it works, not while it waits
    // on a step another target builds (see [`flight::JobSlot`]).
    let jobs = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs.max(1)));
    for t in &mut targets {
        t.req.job_slot = Some(flight::JobSlot::new(jobs.clone()));
    }
    let start = std::time::Instant::now();
    let mut done: Vec<Done> = Vec::with_capacity(targets.len());
    // In waves: every target whose needs are built, side by side.
    loop {
        let state = |name: &str, done: &[Done]| {
            done.iter()
                .find(|(i, ..)| targets[*i].name == name)
                .map(|(_, r, _)| r.is_ok())
        };
        let pending: Vec<usize> = (0..targets.len())
            .filter(|i| !done.iter().any(|(j, ..)| j == i))
            .collect();
        if pending.is_empty() {
            break;
        }
        let mut ready = vec![];
        let failed_before = done.len();
        for &i in &pending {
            let needs: Vec<Option<bool>> = targets[i]
                .needs
                .iter()
                .map(|(_, n)| state(n, &done))
                .collect();
            if let Some(((_, n), _)) = targets[i]
                .needs
                .iter()
                .zip(&needs)
                .find(|(_, s)| **s == Some(false))
            {
                let why = format!("its context target:{n} failed");
                report.warn(&format!("target {}: not built: {why}", targets[i].name));
                done.push((i, Err(why), [start.elapsed(); 2]));
            } else if needs.iter().all(|s| *s == Some(true)) {
                ready.push(i);
            }
        }
        if ready.is_empty() {
            if done.len() == failed_before {
                // Nothing can start (needs outside the run): never spin.
                for i in pending {
                    done.push((
                        i,
                        Err("its contexts wait on no target".into()),
                        [start.elapsed(); 2],
                    ));
                }
            }
            continue;
        }
        // All at once: the job shares limit how many work.
        let wave: Vec<Done> = futures_util::future::join_all(ready.into_iter().map(|i| {
            let t = &targets[i];
            async move {
                if let Some(s) = &t.req.job_slot {
                    s.acquire().await;
                }
                let began = start.elapsed();
                let r = build(&t.req, report).await.map_err(|e| format!("{e:#}"));
                if let Some(s) = &t.req.job_slot {
                    s.release();
                }
                if let Err(e) = &r {
                    report.warn(&format!("target {}: {e}", t.name));
                }
                (i, r, [began, start.elapsed()])
            }
        }))
        .await;
        done.extend(wave);
    }
    drop(run_layouts);
    done.sort_by_key(|(i, ..)| *i);
    let any_failed = done.iter().any(|(_, r, _)| r.is_err());
    let held_back = any_failed && !partial;
    // Every tag in one go, so that a tag that fails names all that exist.
    let mut owners = vec![];
    let mut tags = vec![];
    for ((i, outcome, _), h) in done.iter().zip(&held) {
        if outcome.is_ok() && !held_back {
            for t in h.take() {
                owners.push(*i);
                tags.push(t);
            }
        }
    }
    let put = match (tags.is_empty(), targets.first()) {
        (false, Some(t)) => put_held(&t.req.registry, &tags)
            .await
            .context("the targets were built and pushed by digest, but tagging failed")?,
        _ => vec![],
    };
    let mut results = Vec::with_capacity(done.len());
    for (i, outcome, [started, finished]) in done {
        results.push(TargetResult {
            name: targets[i].name.clone(),
            outcome,
            tagged: put
                .iter()
                .zip(&owners)
                .filter(|(_, o)| **o == i)
                .map(|(t, _)| t.clone())
                .collect(),
            started,
            finished,
        });
    }
    Ok(BakeOutcome {
        targets: results,
        shared: flight::take_shared(),
        held_back,
    })
}
