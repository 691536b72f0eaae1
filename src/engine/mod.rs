//! The build engine: from a Dockerfile and a context to an image in the sinks.
//!
//! This module is the orchestration only. For each stage the target needs
//! (`plan`), dependencies first: start from its base (`base`), then three phases:
//!
//! 1. **plan and key**: config edits apply at once (`config`); layer steps are
//!    prepared with the stage state at their position (`copy_step`, `run`) and
//!    keyed (`cache::steps`);
//! 2. **look up** every key at once: the local index, then the registry cache repo;
//! 3. **execute** in order: a hit joins the stage without a filesystem (`stage`),
//!    a miss materializes the rootfs and builds its layer.
//!
//! Then the target's outputs (`output`). Base images are pulled as manifests and
//! configs; layer blobs are downloaded only when a rootfs must be materialized or
//! a sink needs the bytes. Shared state has one owner each: the [`Session`]
//! (request, client, store, work dir), the [`Plan`], the [`Sources`] kept for
//! `COPY --from`, the [`StepCache`] and the RUN [`Runner`].

mod attach;
mod attest;
pub mod bake;
mod base;
pub mod cache;
mod chmod;
mod config;
pub mod copy;
mod copy_step;
mod early_push;
mod flight;
mod from;
mod git_source;
pub mod index;
pub mod mirrors;
mod mount_sources;
pub mod mounts;
mod multi;
mod named;
mod output;
pub mod plan;
mod request;
mod run;
mod session;
pub mod sink;
mod squash;
mod stage;
mod warm;
mod workdir_step;

pub use named::parse as parse_build_context;
pub use output::{dotenv_text, env_name, put_held};
pub use request::{AttestLayout, BuildRequest, Outcome};
pub use request::{HeldTag, HeldTags, NamedContext};

pub use config::parse_duration;
pub use warm::{warm, WarmOutcome};

use crate::dockerfile::parse::{Command, Dockerfile, Instruction};
use crate::image::manifest::{LayerDesc, Platform};
use crate::image::Reference;
use crate::report::Reporter;
use anyhow::{anyhow, bail, Context, Result};
use cache::steps::{CopySource, Hit, StepCache};
use copy_step::CopyPrep;
use plan::{Base, Plan, PlanInput, Step, StepKind};
use run::{RunPrep, Runner};
use session::Session;
use stage::{SourceKey, Sources, Stage};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn read_dockerfile(req: &BuildRequest) -> Result<Dockerfile> {
    let path = session::dockerfile_path(req);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
    Ok(crate::dockerfile::parse(
        &path.display().to_string(),
        &text,
    )?)
}

fn plan_input(req: &BuildRequest, platform: Option<&Platform>) -> PlanInput {
    PlanInput {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        platform: platform.cloned(),
        label_prefix: req.label.clone(),
        named: req.build_contexts.iter().map(|(n, _)| n.clone()).collect(),
    }
}

/// A directory of this run's own beside the work dir (`--work-dir`'s parent
/// or the system's temp dir), removed when dropped: a run cache, bake's
/// context layouts.
fn run_dir(work_dir: Option<&Path>, prefix: &str) -> Result<tempfile::TempDir> {
    let parent = work_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    std::fs::create_dir_all(&parent)?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a directory in {}", parent.display()))
}

/// Before the first step: may the credentials push to every destination? A
/// token without push rights (another project, a missing scope) fails the build
/// in seconds, not after it ran. `--skip-push-permission-check` turns it off.
async fn check_push_access(sess: &Session<'_>) -> Result<()> {
    let req = sess.req;
    if req.no_push || req.skip_push_permission_check || req.destinations.is_empty() {
        return Ok(());
    }
    let checks = req
        .destinations
        .iter()
        .map(|d| async move { (d, sess.client.check_push(d).await) });
    for (d, r) in futures_util::future::join_all(checks).await {
        r.map_err(|e| anyhow!("cannot push to {d} (checked before the build): {e}"))?;
    }
    Ok(())
}

/// `--dryrun` (kaniko's fork): the Dockerfile parsed and planned, every stage the
/// target needs with its steps, as the build would log them; nothing is pulled,
/// built, written or pushed. A Dockerfile error is reported at its line.
pub fn plan_only(req: &BuildRequest) -> Result<Vec<String>> {
    let plan = Plan::new(
        read_dockerfile(req)?,
        plan_input(req, req.platforms.first()),
    )?;
    let mut lines = Vec::new();
    for idx in plan.order(&[plan.target]) {
        let steps = &plan.stages[idx].steps;
        let total = steps.len() + 1;
        lines.push(format!(
            "[{}] FROM {}",
            plan.label(idx, 1, total),
            plan.from_name(idx)?
        ));
        for (n, step) in steps.iter().enumerate() {
            lines.push(format!(
                "[{}] {}",
                plan.label(idx, n + 2, total),
                step.ins.text
            ));
        }
    }
    Ok(lines)
}

/// Run a build end to end.
pub async fn build(req: &BuildRequest, report: &Reporter) -> Result<Outcome> {
    let df = read_dockerfile(req)?;
    if let Some(syntax) = &df.syntax {
        // kiln is its own frontend: a `# syntax=` image is not run.
        report.line(&format!(
            "note: # syntax={syntax} is ignored: kiln parses the Dockerfile itself"
        ));
    }
    let buildkit_index = req.attest_layout == request::AttestLayout::BuildKit
        && (req.attach_sbom || req.attach_provenance)
        && !req.no_push
        && !req.destinations.is_empty();
    if buildkit_index && req.tar_path.is_some() {
        bail!("--attest-layout buildkit puts the attestations in an image index, which a docker-archive cannot hold: drop --tar-path, or keep the default layout (OCI referrers)");
    }
    if buildkit_index && req.image_format == crate::image::manifest::Format::Docker {
        bail!("--attest-layout buildkit needs OCI media types: drop --image-format=docker, or keep the default layout (OCI referrers)");
    }
    if req.platforms.len() > 1 {
        return multi::build(req, report, df).await;
    }
    if buildkit_index {
        // BuildKit's layout needs an index: one platform's, with its attestations.
        let mut one = req.clone();
        one.platforms = vec![req
            .platforms
            .first()
            .cloned()
            .unwrap_or_else(Platform::host)];
        return multi::build(&one, report, df).await;
    }
    let sess = Session::new(req, report)?;
    check_push_access(&sess).await?;
    let input = plan_input(req, req.platforms.first());
    let mut t = build_target(sess, df, input).await?;
    let layers = t.stage.layers.len();
    let d = output::deliver(&t.sess, t.stage, t.early.as_mut()).await?;
    t.cache.finish(&t.sess).await;
    output::write_digest_files(&t.sess, &d.out.manifest_digest, d.size, &[])?;
    Ok(Outcome {
        digest: d.out.manifest_digest.clone(),
        size: d.size,
        layers,
        pushed: d.pushed,
    })
}

/// One platform's target stage, built, with what it still needs for its outputs.
struct Built<'a> {
    sess: Session<'a>,
    stage: Stage,
    early: Option<early_push::EarlyPush>,
    cache: StepCache,
}

/// Build the target stage of `input`'s plan (its platform's), with the
/// stages it needs; the layers the cache repo holds get it as their origin.
async fn build_target<'a>(
    sess: Session<'a>,
    df: Dockerfile,
    input: PlanInput,
) -> Result<Built<'a>> {
    let req = sess.req;
    let plan = Plan::new(df, input)?;
    let cache = StepCache::new(&sess)?;
    let target = plan.target;
    let mut e = Engine::new(sess, plan, cache, Some(target));
    let cache_repo = e.cache.push_repo(e.sess.req.no_push_cache).cloned();
    // With --single-snapshot the steps' layers are not the image's: none is
    // sent before the end.
    if !req.single_snapshot {
        e.early = Some(early_push::EarlyPush::new(
            &e.sess,
            &e.plan,
            target,
            cache_repo.as_ref(),
        ));
    }
    for idx in e.plan.order(&[target]) {
        e.build_stage(idx).await?;
    }
    let unused = e.plan.unused_build_args(&e.used_args);
    if !unused.is_empty() {
        e.sess.report.warn(&format!(
            "build-arg(s) not used by any built stage: {}",
            unused.join(", ")
        ));
    }
    e.cache.save_file_digests(&e.sess);
    let mut stage = e.sources.stages[target]
        .take()
        .ok_or_else(|| anyhow!("target stage was not built"))?;
    // Layers this build put in the cache repo are mounted from there into the
    // destinations on that registry: each layer is uploaded once.
    let t = Instant::now();
    e.cache.wait_pushes(&e.sess).await;
    e.sess.report.phase("cache push wait", t.elapsed(), 0);
    for l in stage.layers.iter_mut().filter(|l| l.origin.is_none()) {
        if let Some(repo) = e.cache.holds(&l.desc.digest) {
            l.origin = Some(repo.clone());
        }
    }
    if req.single_snapshot {
        squash::single_snapshot(&e.sess, &mut stage).await?;
    }
    Ok(Built {
        sess: e.sess,
        stage,
        early: e.early,
        cache: e.cache,
    })
}

/// A layer step as planned: what it needs, from the stage state at its position.
enum Prepared {
    Copy(Box<CopyPrep>, Option<SourceKey>),
    Run(RunPrep),
    Workdir(workdir_step::WorkdirPrep),
}

struct LayerStep {
    label: String,
    ins: Instruction,
    prep: Prepared,
    key: Option<String>,
    history_idx: usize,
}

impl LayerStep {
    fn made_by(&self) -> stage::MadeBy {
        stage::MadeBy {
            line: self.ins.line,
            text: crate::clip::clip_to(&self.ins.text, 200),
        }
    }
}

enum Planned {
    Meta {
        label: String,
        text: String,
        took: Duration,
    },
    Layer(Box<LayerStep>),
}

/// One build's moving parts, each with its owner.
struct Engine<'a> {
    sess: Session<'a>,
    plan: Plan,
    sources: Sources,
    cache: StepCache,
    runner: Runner,
    used_args: HashSet<String>,
    /// The stage the build is for (others feed it); None for `kiln warm`.
    target: Option<usize>,
    /// Layers sent to the destinations while the build runs (not for warm).
    early: Option<early_push::EarlyPush>,
}

impl<'a> Engine<'a> {
    fn new(sess: Session<'a>, plan: Plan, cache: StepCache, target: Option<usize>) -> Engine<'a> {
        Engine {
            sources: Sources::new(plan.stages.len()),
            sess,
            plan,
            cache,
            runner: Runner::default(),
            used_args: HashSet::new(),
            target,
            early: None,
        }
    }

    /// Build stage `idx` (and, on demand, the stages it reads), unless built.
    fn build_stage<'s>(
        &'s mut self,
        idx: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 's>> {
        Box::pin(async move {
            if self.sources.built(idx) {
                return Ok(());
            }
            let section = format!("kiln_stage_{idx}");
            self.sess.report.section_start(
                &section,
                &format!(
                    "stage {}",
                    self.plan.stages[idx]
                        .name
                        .as_deref()
                        .unwrap_or(&idx.to_string())
                ),
                false,
            );
            let mut stage = self.start(idx).await?;
            // ONBUILD triggers of the base run first, as if written after FROM.
            let mut steps = match stage.config.config.on_build.take() {
                Some(t) => self.plan.triggers(idx, &t)?,
                None => vec![],
            };
            steps.extend(self.plan.stages[idx].steps.iter().cloned());
            let planned = self.prepare(idx, &mut stage, &steps).await?;
            let keys: Vec<String> = planned
                .iter()
                .filter_map(|p| match p {
                    Planned::Layer(l) => l.key.clone(),
                    Planned::Meta { .. } => None,
                })
                .collect();
            let hits = self.cache.lookup(&self.sess.client, &keys).await;
            self.execute(idx, &mut stage, planned, hits).await?;
            self.sources.stages[idx] = Some(stage);
            self.sess.report.section_end(&section);
            Ok(())
        })
    }

    /// Phase 1: config edits apply at once; layer steps are prepared with the
    /// state at their position, and keyed.
    async fn prepare(
        &mut self,
        idx: usize,
        stage: &mut Stage,
        steps: &[Step],
    ) -> Result<Vec<Planned>> {
        let total = steps.len() + 1;
        let mut planned = Vec::new();
        for (n, step) in steps.iter().enumerate() {
            let t = Instant::now();
            let label = self.plan.label(idx, n + 2, total);
            let ins = &step.ins;
            match step.kind {
                StepKind::Layer => {
                    let (prep, key) = self.prepare_layer(idx, stage, ins).await?;
                    self.sess.report.phase("key", t.elapsed(), 0);
                    if let Some(k) = &key {
                        stage.key = k.clone();
                    }
                    stage.history(&self.sess.now, &ins.text, false);
                    let history_idx = stage.config.history.len() - 1;
                    planned.push(Planned::Layer(Box::new(LayerStep {
                        label,
                        ins: ins.clone(),
                        prep,
                        key,
                        history_idx,
                    })));
                    continue;
                }
                StepKind::Arg => self.apply_arg(stage, ins)?,
                StepKind::Config => self.apply_config(idx, stage, ins)?,
                StepKind::Workdir => {
                    self.apply_config(idx, stage, ins)?;
                    if let Some(prep) = workdir_step::WorkdirPrep::of(stage) {
                        let key = self.cache.workdir_key(&self.sess, &stage.key, &prep);
                        if let Some(k) = &key {
                            stage.key = k.clone();
                        }
                        let history_idx = stage.config.history.len() - 1;
                        stage.config.history[history_idx].empty_layer = false;
                        planned.push(Planned::Layer(Box::new(LayerStep {
                            label,
                            ins: ins.clone(),
                            prep: Prepared::Workdir(prep),
                            key,
                            history_idx,
                        })));
                        continue;
                    }
                }
            }
            planned.push(Planned::Meta {
                label,
                text: ins.text.clone(),
                took: t.elapsed(),
            });
        }
        Ok(planned)
    }

    /// A COPY, ADD or RUN with the stage state at its position, and its key.
    async fn prepare_layer(
        &mut self,
        idx: usize,
        stage: &Stage,
        ins: &Instruction,
    ) -> Result<(Prepared, Option<String>)> {
        let line = ins.line;
        match &ins.command {
            Command::Copy(c) | Command::Add(c) => {
                let is_add = matches!(ins.command, Command::Add(_));
                let mut cp = copy_step::prepare(&self.sess, &self.plan, stage, ins, c, is_add)?;
                // A git source is keyed by the commit its ref names now.
                if let Some((g, commit)) = &mut cp.git {
                    let c = git_source::resolve(&self.sess, &self.plan, line, g).await?;
                    self.sess.materials.record(git_source::material(g, &c));
                    *commit = Some(c);
                }
                // A pinned ADD URL is what its checksum says, fetched or not.
                if let Some(sum) = &cp.checksum {
                    for url in &cp.urls {
                        self.sess.materials.record(copy_step::material(url, sum));
                    }
                }
                // ADD URLs without --checksum are fetched now: their content keys the step.
                if !cp.urls.is_empty() && cp.checksum.is_none() && self.cache.keyed() {
                    cp.fetched =
                        Some(copy_step::fetch_urls(&self.sess, &self.plan, line, &cp).await?);
                }
                let from = match &cp.from {
                    None => None,
                    Some(name) => Some(self.resolve_from(idx, line, name).await?),
                };
                let source_key = from.as_ref().map(|k| {
                    self.sources
                        .get(k)
                        .map(|s| s.key.clone())
                        .unwrap_or_default()
                });
                let git_id = cp.git.as_ref().map(|(g, c)| {
                    format!(
                        "{}#{}:{} keep={}",
                        g.url,
                        c.as_deref().unwrap_or(""),
                        g.subdir.as_deref().unwrap_or(""),
                        cp.keep_git_dir
                    )
                });
                let named_dir = match &from {
                    Some(SourceKey::Dir(n)) => Some(self.named_dir(line, n)?),
                    _ => None,
                };
                let source = match (&from, &source_key) {
                    _ if git_id.is_some() => CopySource::Git(git_id.as_deref().unwrap_or("")),
                    (Some(SourceKey::Dir(_)), _) => {
                        CopySource::Dir(named_dir.as_deref().unwrap_or(Path::new("")))
                    }
                    (Some(SourceKey::Stage(_)), Some(k)) => CopySource::Stage(k),
                    (Some(SourceKey::Image(_)), Some(k)) => CopySource::Image(k),
                    _ => CopySource::Context,
                };
                let key = self
                    .cache
                    .copy_key(&self.sess, &stage.key, &cp, source)
                    .await
                    .map_err(|e| self.plan.err(line, format!("{e:#}")))?;
                Ok((Prepared::Copy(Box::new(cp), from), key))
            }
            Command::Run {
                cmd,
                heredocs,
                flags,
            } => {
                let mut rp = run::prepare(&self.plan, stage, ins, cmd, heredocs, flags)?;
                let mut from_keys = Vec::new();
                for (i, m) in rp.mounts.clone().iter().enumerate() {
                    let Some(name) = m.from() else {
                        from_keys.push(None);
                        continue;
                    };
                    let k = self.resolve_from(idx, line, name).await?;
                    let from_key = match &k {
                        // A directory's part of the key: what the mount shows.
                        SourceKey::Dir(n) => {
                            let dir = self.named_dir(line, n)?;
                            self.cache
                                .dir_digest(dir, m.bind_source().unwrap_or(".").to_string())
                                .await
                                .map_err(|e| self.plan.err(line, format!("{e:#}")))?
                                .map(|d| format!("dir:{d}"))
                        }
                        _ => self.sources.get(&k).map(|s| s.key.clone()),
                    };
                    from_keys.push(from_key);
                    rp.mount_from[i] = Some(k);
                }
                rp.mount_keys = self
                    .cache
                    .mount_keys(&self.sess, &rp.mounts, &from_keys)
                    .await
                    .map_err(|e| self.plan.err(line, format!("{e:#}")))?;
                let key = self.cache.run_key(&self.sess, &stage.key, &rp);
                Ok((Prepared::Run(rp), key))
            }
            _ => Err(self.plan.err(line, "not a layer step")),
        }
    }

    /// ARG: the stage's variable, from `--build-arg`, its default or the meta ARG.
    fn apply_arg(&mut self, stage: &mut Stage, ins: &Instruction) -> Result<()> {
        let Command::Arg(kvs) = &ins.command else {
            return Err(self.plan.err(ins.line, "not an ARG"));
        };
        for kv in kvs {
            let kv = &self.plan.arg_key(ins.line, kv, &stage.vars())?;
            let (value, used) = self.plan.stage_arg(ins.line, kv, &stage.vars())?;
            if used {
                self.used_args.insert(kv.key.clone());
            }
            stage.args.retain(|(k, _)| *k != kv.key);
            if let Some(v) = value {
                stage.args.push((kv.key.clone(), v));
            }
        }
        Ok(())
    }

    /// A metadata instruction: a pure edit of the config, and its history entry.
    fn apply_config(&mut self, idx: usize, stage: &mut Stage, ins: &Instruction) -> Result<()> {
        let vars = stage.vars();
        let scope = config::Scope {
            lexer: &self.plan.lexer,
            vars: &vars,
            cmd_set_before: matches!(ins.command, Command::Entrypoint(_))
                && self.plan.stages[idx]
                    .steps
                    .iter()
                    .any(|s| s.ins.line < ins.line && matches!(s.ins.command, Command::Cmd(_))),
        };
        let created_by = config::apply(
            &mut stage.config,
            &mut stage.shell,
            &ins.command,
            &ins.text,
            &scope,
        )
        .map_err(|e| self.plan.err(ins.line, e))?;
        stage.history(&self.sess.now, &created_by, true);
        Ok(())
    }

    /// Phase 3: in order, hits need no filesystem, misses build. A COPY writes
    /// its files into the rootfs as it builds its layer when a later miss here,
    /// or another stage (this one is not the target), needs them.
    async fn execute(
        &mut self,
        idx: usize,
        stage: &mut Stage,
        planned: Vec<Planned>,
        mut hits: HashMap<String, Hit>,
    ) -> Result<()> {
        let will_build: Vec<bool> = planned
            .iter()
            .map(|p| match p {
                Planned::Layer(l) => l.key.as_ref().is_none_or(|k| !hits.contains_key(k)),
                Planned::Meta { .. } => false,
            })
            .collect();
        let feeds_others = self.target != Some(idx);
        for (i, p) in planned.into_iter().enumerate() {
            let fs_needed_later = feeds_others || will_build[i + 1..].iter().any(|b| *b);
            let step = match p {
                Planned::Meta { label, text, took } => {
                    self.sess.report.step(&label, &text, took, "");
                    continue;
                }
                Planned::Layer(step) => step,
            };
            let t = Instant::now();
            self.sess.report.step_start(&step.label, &step.ins.text);
            let layers_before = stage.layers.len();
            let hit = step.key.as_ref().and_then(|k| hits.remove(k));
            let mut armed = None;
            let note = match (hit, &step.key) {
                (Some(hit), Some(key)) if self.sess.req.warm => {
                    self.cache.warm(&self.sess, key, &hit).await?;
                    stage.add_cached(&hit.0, None, step.made_by(), step.history_idx, "WARMED")
                }
                (_, key) if self.sess.req.warm => {
                    if key.is_some() {
                        self.cache.misses += 1;
                    }
                    "not in the cache".into()
                }
                (Some(hit), key) => self.cached(stage, &step, key.as_deref(), hit),
                (None, key) => {
                    // One build of a step per run: a concurrent target
                    // building the same key goes first, then this one finds it.
                    let dir = self.sess.req.cache_dir.clone();
                    let ticket = match key {
                        // While another target builds this step, this stage's
                        // filesystem is put on disk if a later step needs it
                        // (and this one does, should it build after all).
                        Some(k) if self.cache.keyed() && fs_needed_later => {
                            let take = flight::take(&dir, k, self.sess.req.job_slot.as_ref());
                            let (ticket, ready) = tokio::join!(take, self.sess.materialize(stage));
                            ready?;
                            Some(ticket)
                        }
                        Some(k) if self.cache.keyed() => {
                            Some(flight::take(&dir, k, self.sess.req.job_slot.as_ref()).await)
                        }
                        _ => None,
                    };
                    let late = match (&ticket, key) {
                        (Some(t), Some(k)) if t.waited => self
                            .cache
                            .lookup(&self.sess.client, std::slice::from_ref(k))
                            .await
                            .remove(k),
                        _ => None,
                    };
                    match late {
                        Some(hit) => self.cached(stage, &step, key.as_deref(), hit),
                        None => {
                            if key.is_some() {
                                self.cache.misses += 1;
                            }
                            armed = self.early.as_mut().and_then(|e| e.arm(&self.sess, idx));
                            let done = self.perform(stage, &step, fs_needed_later).await;
                            self.sess.store.unannounce();
                            let note = done?;
                            if let Some(k) = key {
                                flight::built(&dir, k, &self.sess.req.label);
                            }
                            note
                        }
                    }
                }
            };
            let layer = stage.layers.get(layers_before);
            self.sess.report.step_with_layer(
                &step.label,
                &step.ins.text,
                t.elapsed(),
                &note,
                layer.map(|l| (l.desc.digest.as_str(), l.desc.size)),
            );
            if let Some(l) = layer {
                if let Some(early) = self.early.as_mut() {
                    let live = armed.as_ref().is_some_and(|a| a.taken());
                    early.offer(&self.sess, idx, &l.desc, l.origin.as_ref(), live);
                }
            }
        }
        Ok(())
    }

    /// A step found in the cache joins the stage as it is.
    fn cached(
        &mut self,
        stage: &mut Stage,
        step: &LayerStep,
        key: Option<&str>,
        hit: Hit,
    ) -> String {
        let (entry, origin) = hit;
        self.cache.hits += 1;
        self.sess.keep_facts(
            entry
                .layer
                .as_ref()
                .and_then(|l| l.facts.clone().map(|f| (l.diff_id.clone(), f))),
        );
        if let Some(k) = key {
            flight::reused(
                &self.sess.req.cache_dir,
                k,
                &self.sess.req.label,
                &step.label,
            );
        }
        stage.add_cached(&entry, origin, step.made_by(), step.history_idx, "CACHED")
    }

    /// Do a planned step that missed the cache, and record the result in the cache.
    /// `fs_needed_later`: a later step will need this stage's filesystem.
    async fn perform(
        &mut self,
        stage: &mut Stage,
        step: &LayerStep,
        fs_needed_later: bool,
    ) -> Result<String> {
        let (built, timing) = match &step.prep {
            Prepared::Copy(cp, from) => {
                let named_dir = match from {
                    Some(SourceKey::Dir(n)) => Some(self.named_dir(step.ins.line, n)?),
                    _ => None,
                };
                let mut source = match from {
                    Some(SourceKey::Dir(_)) => None,
                    Some(k) => Some(
                        self.sources
                            .take(k)
                            .ok_or_else(|| anyhow!("COPY --from source missing"))?,
                    ),
                    None => None,
                };
                let line = step.ins.line;
                let built = copy_step::perform(
                    &self.sess,
                    &self.plan,
                    stage,
                    source.as_mut(),
                    named_dir,
                    line,
                    cp,
                    fs_needed_later,
                )
                .await;
                if let (Some(k), Some(s)) = (from, source) {
                    self.sources.put(k, s);
                }
                (built?, None)
            }
            Prepared::Run(rp) => {
                let roots =
                    mount_sources::source_roots(&self.sess, &mut self.sources, &rp.mount_from)
                        .await?;
                let (built, timing) = self
                    .runner
                    .perform(
                        &self.sess,
                        &self.plan,
                        stage,
                        run::RunStep {
                            ins: &step.ins,
                            prep: rp,
                            label: &step.label,
                            roots: &roots,
                        },
                    )
                    .await?;
                (built, Some(timing))
            }
            Prepared::Workdir(wp) => (
                workdir_step::perform(&self.sess, &self.plan, stage, step.ins.line, wp).await?,
                None,
            ),
        };
        let desc = built.as_ref().map(|l| LayerDesc {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            diff_id: l.diff_id.clone(),
        });
        self.sess.keep_facts(
            built
                .as_ref()
                .and_then(|b| b.facts.clone().map(|f| (b.diff_id.clone(), f))),
        );
        let note = stage.add_layer(desc, None, step.made_by(), step.history_idx, "BUILT");
        if let Some(key) = &step.key {
            self.cache
                .record(&self.sess, key, &step.ins.text, built.as_ref());
        }
        Ok(match timing {
            Some(t) => format!("{note} {t}"),
            None => note,
        })
    }
}
