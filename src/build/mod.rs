//! Planning and executing a build: stages, ARG scoping, each instruction's effect on
//! the image config, layers for COPY/ADD, and the sinks at the end.
//!
//! Stages are built on demand, starting from the target: a stage runs only when the
//! target needs it (as its base or through `COPY --from`). Base images are pulled as
//! manifests and configs; layer blobs are downloaded only when a rootfs must be
//! materialized or a sink needs the bytes.

mod base;
pub mod cache;
mod config;
pub mod copy;
mod run;
pub mod sink;

use crate::dockerfile::parse::{Command, CopyArgs, Dockerfile, Form, Instruction};
use crate::dockerfile::{Ignore, Lexer, Vars};
use crate::fs::Rootfs;
use crate::image::config::History;
use crate::image::manifest::{self, LayerDesc, Platform};
use crate::image::{ImageConfig, Reference};
use crate::registry::{self, Client};
use crate::report::Reporter;
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Everything `kiln build` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub context: PathBuf,
    pub dockerfile: PathBuf,
    pub destinations: Vec<Reference>,
    /// `--build-arg`, already resolved (a bare `K` took its value from the environment).
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Fixed timestamps: Some(epoch) from `SOURCE_DATE_EPOCH`, or 0 with `--reproducible`.
    pub source_date_epoch: Option<u64>,
    pub platform: Option<Platform>,
    pub registry: registry::Options,
    pub work_dir: Option<PathBuf>,
    /// Compression level (gzip 0-9, zstd 1-19).
    pub compression_level: u32,
    /// zstd instead of gzip for new layers.
    pub zstd: bool,
    pub isolation: crate::exec::Isolation,
    /// Use and fill the cache (local dir, and the registry cache repo if set).
    pub cache: bool,
    pub cache_dir: PathBuf,
    pub cache_repo: Option<Reference>,
    pub cache_ttl_secs: u64,
    /// `kiln warm`: fetch instead of build (base images with all their layers, and
    /// the cache entries the Dockerfile would hit); no outputs.
    pub warm: bool,
    /// `kiln warm --image`: images to fetch besides the Dockerfile's.
    pub warm_images: Vec<Reference>,
}

/// A layer of a stage: its descriptor, and where to fetch it if it is not local.
#[derive(Debug, Clone)]
struct Layer {
    desc: LayerDesc,
    origin: Option<Reference>,
}

/// The state of a stage while (and after) it is built.
struct Stage {
    config: ImageConfig,
    layers: Vec<Layer>,
    rootfs: Option<Rootfs>,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, String)>,
    shell: Vec<String>,
    /// Cache key of the last layer step (or the base's identity): the parent of
    /// the next step's key.
    key: String,
}

impl Stage {
    fn vars(&self) -> Vars {
        let mut v: Vars = self.args.iter().cloned().collect();
        for (k, val) in self.config.env_pairs() {
            v.insert(k, val);
        }
        v
    }
}

struct StageDef {
    line: usize,
    name: Option<String>,
    image: String,
    platform: Option<String>,
    instructions: Vec<Instruction>,
}

pub struct Outcome {
    pub digest: String,
    pub size: u64,
    pub layers: usize,
    pub pushed: Vec<String>,
}

struct Builder<'a> {
    req: &'a BuildRequest,
    df: Dockerfile,
    lexer: Lexer,
    meta_args: Vec<(String, Option<String>)>,
    stages: Vec<StageDef>,
    done: Vec<Option<Stage>>,
    client: Arc<Client>,
    store: Store,
    work: PathBuf,
    ignore: Ignore,
    report: &'a Reporter,
    used_args: std::collections::HashSet<String>,
    images: HashMap<String, Stage>,
    rootfs_seq: usize,
    /// The stage the build is for (other stages are built because it needs them).
    target: Option<usize>,
    /// The isolation mode, chosen at the first RUN.
    mode: Option<crate::exec::Mode>,
    /// The label of the step being executed, for prefixing its output.
    current_label: String,
    local_cache: Option<cache::LocalCache>,
    remote_cache: Option<cache::RemoteCache>,
    /// Cache entries being pushed to the registry cache repo.
    cache_pushes: Vec<tokio::task::JoinHandle<std::result::Result<(), String>>>,
    hits: usize,
    misses: usize,
    /// Where the last RUN's time went, for its step line.
    run_timing: Option<String>,
    /// Remembered digests of context files (with the cache on).
    file_digests: Option<Arc<std::sync::Mutex<cache::FileDigests>>>,
    now: String,
    now_secs: u64,
}

fn dferr(df: &Dockerfile, line: usize, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}:{}: {}", df.file, line, msg)
}

/// Parse a Go-style duration ("30s", "1m30s", "500ms") into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as u64)
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Run a build end to end.
/// Set up a builder: Dockerfile, context, work dir, store, client, caches.
fn new_builder<'a>(
    req: &'a BuildRequest,
    report: &'a Reporter,
) -> Result<(Builder<'a>, crate::fs::workdir::WorkDir)> {
    let dockerfile_path = if req.dockerfile.is_file() || req.dockerfile.is_absolute() {
        req.dockerfile.clone()
    } else {
        req.context.join(&req.dockerfile)
    };
    let text = if req.warm && req.dockerfile.as_os_str().is_empty() {
        String::new()
    } else {
        std::fs::read_to_string(&dockerfile_path)
            .with_context(|| format!("cannot read Dockerfile {}", dockerfile_path.display()))?
    };
    let df = crate::dockerfile::parse(&dockerfile_path.display().to_string(), &text)?;
    if !req.warm && !req.context.is_dir() {
        bail!("build context {} is not a directory", req.context.display());
    }
    let (ignore, ignore_file) = Ignore::load(&req.context, &dockerfile_path)?;
    if let Some(f) = ignore_file {
        tracing::debug!("using {f}");
    }
    let work_parent = req.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = crate::fs::workdir::WorkDir::create(&work_parent)
        .with_context(|| format!("cannot create a work dir in {}", work_parent.display()))?;
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
    let mut b = Builder {
        req,
        lexer: Lexer::new(df.escape),
        df,
        meta_args: vec![],
        stages: vec![],
        done: vec![],
        client,
        store,
        work: work.path().to_path_buf(),
        ignore,
        report,
        used_args: Default::default(),
        images: HashMap::new(),
        rootfs_seq: 0,
        target: None,
        mode: None,
        current_label: String::new(),
        local_cache: None,
        remote_cache: None,
        cache_pushes: Vec::new(),
        hits: 0,
        misses: 0,
        run_timing: None,
        file_digests: None,
        now: rfc3339(now_secs),
        now_secs,
    };
    if req.cache {
        b.local_cache = Some(cache::LocalCache::new(&b.store, req.cache_ttl_secs)?);
        b.file_digests = Some(Arc::new(std::sync::Mutex::new(cache::FileDigests::load(
            &b.store,
            &req.context,
        ))));
        if let Some(repo) = &req.cache_repo {
            b.client.declare(repo, true);
            b.remote_cache = Some(cache::RemoteCache {
                repo: repo.clone(),
                ttl_secs: req.cache_ttl_secs,
            });
        }
    }
    Ok((b, work))
}

/// Run a build end to end.
pub async fn build(req: &BuildRequest, report: &Reporter) -> Result<Outcome> {
    let (mut b, work) = new_builder(req, report)?;
    b.plan()?;
    let target = b.target_index()?;
    b.target = Some(target);
    b.build_stage(target).await?;
    let unused: Vec<&str> = req
        .build_args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !b.used_args.contains(*k) && !is_predefined_arg(k))
        .collect();
    if !unused.is_empty() {
        report.warn(&format!(
            "build-arg(s) not used by any built stage: {}",
            unused.join(", ")
        ));
    }
    b.save_file_digests();
    let stage = b.done[target]
        .take()
        .ok_or_else(|| anyhow!("target stage was not built"))?;
    let outcome = b.finish(stage).await;
    drop(work);
    outcome
}

/// What `kiln warm` did.
pub struct WarmOutcome {
    pub images: usize,
    pub entries: usize,
    pub missing: usize,
    pub downloaded: u64,
}

/// `kiln warm`: fetch base images (manifests, configs, every layer) and the cache
/// entries the Dockerfile would hit into the cache dir. Running it again downloads
/// only what is missing.
pub async fn warm(req: &BuildRequest, report: &Reporter) -> Result<WarmOutcome> {
    let (mut b, work) = new_builder(req, report)?;
    let platform = req.platform.clone().unwrap_or_else(Platform::host);
    for r in &req.warm_images {
        let t = Instant::now();
        let s = b
            .pull(r, &platform)
            .await
            .with_context(|| format!("warming {r}"))?;
        report.step(
            "warm",
            &format!("{r}"),
            t.elapsed(),
            &format!("{} layer(s)", s.layers.len()),
        );
    }
    let mut images = req.warm_images.len();
    if !req.dockerfile.as_os_str().is_empty() {
        b.plan()?;
        // Every FROM of the Dockerfile (all stages), unless --target narrows it.
        if req.target.is_some() {
            let target = b.target_index()?;
            b.build_stage(target).await?;
        } else {
            for i in 0..b.stages.len() {
                b.build_stage(i).await?;
            }
        }
        images += b
            .stages
            .iter()
            .zip(&b.done)
            .filter(|(d, s)| s.is_some() && !d.image.eq_ignore_ascii_case("scratch"))
            .count();
    }
    b.save_file_digests();
    let downloaded = b.client.counters.snapshot().bytes_down;
    let out = WarmOutcome {
        images,
        entries: b.hits,
        missing: b.misses,
        downloaded,
    };
    drop(work);
    Ok(out)
}

/// Docker's predefined proxy args, usable without an ARG line.
fn is_predefined_arg(k: &str) -> bool {
    matches!(
        k.to_ascii_lowercase().as_str(),
        "http_proxy" | "https_proxy" | "ftp_proxy" | "no_proxy" | "all_proxy"
    )
}

impl<'a> Builder<'a> {
    /// Keep the context file digests for the next build (best effort).
    fn save_file_digests(&self) {
        if let Some(d) = &self.file_digests {
            if let Ok(d) = d.lock() {
                if let Err(e) = d.save(&self.store, &self.req.context) {
                    tracing::warn!("could not save context file digests: {e}");
                }
            }
        }
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> anyhow::Error {
        dferr(&self.df, line, msg)
    }

    fn codec(&self) -> crate::layer::Codec {
        crate::layer::Codec {
            zstd: self.req.zstd,
            level: self.req.compression_level,
        }
    }

    fn build_arg(&self, name: &str) -> Option<String> {
        self.req
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Split instructions into meta ARGs and stages.
    fn plan(&mut self) -> Result<()> {
        let instructions = std::mem::take(&mut self.df.instructions);
        for ins in instructions {
            match &ins.command {
                Command::From {
                    image,
                    name,
                    platform,
                } => {
                    if let Some(n) = name {
                        if self.stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(self.err(ins.line, format!("duplicate stage name {n:?}")));
                        }
                    }
                    self.stages.push(StageDef {
                        line: ins.line,
                        name: name.clone(),
                        image: image.clone(),
                        platform: platform.clone(),
                        instructions: vec![],
                    });
                }
                Command::Arg(kvs) if self.stages.is_empty() => {
                    for kv in kvs {
                        let vars = self.meta_vars();
                        let default = match &kv.value {
                            Some(v) => Some(
                                self.lexer
                                    .word(v, &vars)
                                    .map_err(|e| self.err(ins.line, e))?,
                            ),
                            None => None,
                        };
                        let value = self.build_arg(&kv.key).or(default);
                        self.meta_args.push((kv.key.clone(), value));
                    }
                }
                _ if self.stages.is_empty() => {
                    return Err(self.err(
                        ins.line,
                        format!(
                            "{} before the first FROM (only ARG may come first)",
                            ins.command.keyword()
                        ),
                    ));
                }
                _ => {
                    if let Some(s) = self.stages.last_mut() {
                        s.instructions.push(ins);
                    }
                }
            }
        }
        if self.stages.is_empty() {
            bail!(
                "{}: no FROM instruction: a Dockerfile needs at least one stage",
                self.df.file
            );
        }
        self.done = self.stages.iter().map(|_| None).collect();
        Ok(())
    }

    fn meta_vars(&self) -> Vars {
        self.meta_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    fn target_index(&self) -> Result<usize> {
        match &self.req.target {
            None => Ok(self.stages.len() - 1),
            Some(t) => {
                let t = t.to_ascii_lowercase();
                self.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| {
                        let names: Vec<&str> = self
                            .stages
                            .iter()
                            .filter_map(|s| s.name.as_deref())
                            .collect();
                        anyhow!(
                            "--target {t:?}: no stage has that name in {} (stages: {})",
                            self.df.file,
                            if names.is_empty() {
                                "none are named".to_string()
                            } else {
                                names.join(", ")
                            }
                        )
                    })
            }
        }
    }

    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let lname = name.to_ascii_lowercase();
        if let Some(i) = self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lname.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }

    fn label(&self, idx: usize, step: usize, total: usize) -> String {
        match &self.stages[idx].name {
            Some(n) => format!("{n} {step}/{total}"),
            None => format!("stage-{idx} {step}/{total}"),
        }
    }

    fn platform_for(&self, line: usize, flag: &Option<String>) -> Result<Platform> {
        match flag {
            Some(p) => {
                let expanded = self
                    .lexer
                    .word(p, &self.meta_vars_with_platform())
                    .map_err(|e| self.err(line, e))?;
                Platform::parse(&expanded).map_err(|e| self.err(line, e))
            }
            None => Ok(self.req.platform.clone().unwrap_or_else(Platform::host)),
        }
    }

    fn meta_vars_with_platform(&self) -> Vars {
        let mut v = self.meta_vars();
        let target = self.req.platform.clone().unwrap_or_else(Platform::host);
        let host = Platform::host();
        v.entry("TARGETPLATFORM".into())
            .or_insert_with(|| target.to_string());
        v.entry("TARGETOS".into()).or_insert(target.os.clone());
        v.entry("TARGETARCH".into()).or_insert(target.arch.clone());
        v.entry("BUILDPLATFORM".into())
            .or_insert_with(|| host.to_string());
        v.entry("BUILDOS".into()).or_insert(host.os.clone());
        v.entry("BUILDARCH".into()).or_insert(host.arch.clone());
        v
    }

    fn build_stage<'s>(
        &'s mut self,
        idx: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 's>> {
        Box::pin(async move {
            if self.done[idx].is_some() {
                return Ok(());
            }
            let def_line = self.stages[idx].line;
            let image_raw = self.stages[idx].image.clone();
            let platform_flag = self.stages[idx].platform.clone();
            let image = self
                .lexer
                .word(&image_raw, &self.meta_vars_with_platform())
                .map_err(|e| self.err(def_line, e))?;
            if image.is_empty() {
                return Err(self.err(
                    def_line,
                    format!("FROM {image_raw}: the image name is empty after expansion"),
                ));
            }
            let total = self.stages[idx].instructions.len() + 1;
            let t0 = Instant::now();
            let platform = self.platform_for(def_line, &platform_flag)?;
            let (mut stage, note) = if image.eq_ignore_ascii_case("scratch") {
                (self.scratch(&platform), String::new())
            } else if let Some(j) = self.stage_index(&image, idx) {
                self.build_stage(j).await?;
                (self.clone_stage(j)?, String::new())
            } else {
                let r = Reference::parse(&image).map_err(|e| self.err(def_line, e))?;
                let s = self
                    .pull(&r, &platform)
                    .await
                    .map_err(|e| self.err(def_line, format!("FROM {image}: {e:#}")))?;
                let n = format!("{} layer(s)", s.layers.len());
                (s, n)
            };
            stage.shell = stage
                .config
                .config
                .shell
                .clone()
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            stage.args.clear();
            self.report.step(
                &self.label(idx, 1, total),
                &format!("FROM {image}"),
                t0.elapsed(),
                &note,
            );

            // ONBUILD triggers of the base run first, as if written after FROM.
            let mut instructions = Vec::new();
            if let Some(triggers) = stage.config.config.on_build.take() {
                for t in triggers {
                    let ins = crate::dockerfile::parse::parse_line(
                        &self.df.file,
                        def_line,
                        &t,
                        self.df.escape,
                    )?;
                    instructions.push(ins);
                }
            }
            instructions.extend(self.stages[idx].instructions.clone());
            let total = total.max(instructions.len() + 1);

            // 1. Plan: metadata steps apply to the config at once; layer steps are
            //    prepared with the state at their position, and keyed.
            let mut planned = Vec::new();
            for (n, ins) in instructions.iter().enumerate() {
                let t = Instant::now();
                let label = self.label(idx, n + 2, total);
                let prep = match &ins.command {
                    Command::Copy(c) => {
                        Some(self.prepare_copy(idx, &mut stage, ins, c, false).await?)
                    }
                    Command::Add(c) => {
                        Some(self.prepare_copy(idx, &mut stage, ins, c, true).await?)
                    }
                    Command::Run {
                        cmd,
                        heredocs,
                        flags,
                    } => Some(self.prepare_run(&stage, ins, cmd, heredocs, flags)?),
                    _ => None,
                };
                match prep {
                    Some(prep) => {
                        let key = self.key_for(&stage.key, &prep, ins.line).await?;
                        if let Some(k) = &key {
                            stage.key = k.clone();
                        }
                        self.history(&mut stage, &ins.text, false);
                        let history_idx = stage.config.history.len() - 1;
                        planned.push(Planned::Layer(Box::new(LayerStep {
                            label,
                            ins: ins.clone(),
                            prep,
                            key,
                            history_idx,
                        })));
                    }
                    None => {
                        let note = self.execute(idx, &mut stage, ins).await?;
                        planned.push(Planned::Meta {
                            label,
                            text: ins.text.clone(),
                            took: t.elapsed(),
                            note,
                        });
                    }
                }
            }

            // 2. Look every key up at once: local index, then the registry cache repo.
            let keys: Vec<String> = planned
                .iter()
                .filter_map(|p| match p {
                    Planned::Layer(l) => l.key.clone(),
                    _ => None,
                })
                .collect();
            let mut hits = self.lookup(&keys).await;

            // 3. Execute in order: hits need no filesystem, misses build. A COPY
            //    writes its files into the rootfs as it builds its layer when a later
            //    miss here, or another stage (this one is not the target), needs it.
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
                match p {
                    Planned::Meta {
                        label,
                        text,
                        took,
                        note,
                    } => self.report.step(&label, &text, took, &note),
                    Planned::Layer(step) => {
                        let t = Instant::now();
                        self.current_label = step.label.clone();
                        let hit = step.key.as_ref().and_then(|k| hits.remove(k));
                        if self.req.warm {
                            let note = self.warm_entry(&mut stage, &step, hit).await?;
                            self.report
                                .step(&step.label, &step.ins.text, t.elapsed(), &note);
                            continue;
                        }
                        let note = match hit {
                            Some((entry, origin)) => {
                                self.hits += 1;
                                self.apply_cached(&mut stage, &entry, origin, step.history_idx)
                            }
                            None => {
                                if step.key.is_some() {
                                    self.misses += 1;
                                }
                                self.perform(&mut stage, &step, fs_needed_later).await?
                            }
                        };
                        self.report
                            .step(&step.label, &step.ins.text, t.elapsed(), &note);
                    }
                }
            }
            self.done[idx] = Some(stage);
            Ok(())
        })
    }

    fn scratch(&self, p: &Platform) -> Stage {
        let mut config = ImageConfig::scratch(&p.os, &p.arch, p.variant.as_deref());
        config.config.env = None;
        Stage {
            config,
            layers: vec![],
            rootfs: None,
            args: vec![],
            shell: vec![],
            key: format!("scratch/{p}"),
        }
    }

    fn clone_stage(&self, j: usize) -> Result<Stage> {
        let s = self.done[j]
            .as_ref()
            .ok_or_else(|| anyhow!("stage {j} not built"))?;
        Ok(Stage {
            config: s.config.clone(),
            layers: s.layers.clone(),
            rootfs: None,
            args: vec![],
            shell: s.shell.clone(),
            key: s.key.clone(),
        })
    }

    fn history(&self, stage: &mut Stage, created_by: &str, empty: bool) {
        stage.config.history.push(History {
            created: Some(self.now.clone()),
            created_by: Some(created_by.to_string()),
            comment: Some("kiln".into()),
            empty_layer: empty,
            ..Default::default()
        });
    }

    fn word(&self, line: usize, s: &str, vars: &Vars) -> Result<String> {
        self.lexer.word(s, vars).map_err(|e| self.err(line, e))
    }

    /// Execute one instruction; returns a note for the step line.
    async fn execute(
        &mut self,
        idx: usize,
        stage: &mut Stage,
        ins: &Instruction,
    ) -> Result<String> {
        let line = ins.line;
        let vars = stage.vars();
        match &ins.command {
            Command::From { .. } => return Err(self.err(line, "FROM inside a stage")),
            Command::Arg(kvs) => {
                for kv in kvs {
                    let default = match &kv.value {
                        Some(v) => Some(self.word(line, v, &stage.vars())?),
                        None => None,
                    };
                    // A re-declared meta ARG takes the global value as its default.
                    let meta = self
                        .meta_args
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == kv.key)
                        .and_then(|(_, v)| v.clone());
                    let value = self.build_arg(&kv.key).or(default).or(meta);
                    if self.build_arg(&kv.key).is_some() {
                        self.used_args.insert(kv.key.clone());
                    }
                    stage.args.retain(|(k, _)| *k != kv.key);
                    if let Some(v) = value {
                        stage.args.push((kv.key.clone(), v));
                    } else if let Some(v) = self
                        .meta_vars_with_platform()
                        .get(&kv.key)
                        .filter(|_| kv.key.starts_with("TARGET") || kv.key.starts_with("BUILD"))
                    {
                        stage.args.push((kv.key.clone(), v.clone()));
                    }
                }
                return Ok(String::new());
            }
            Command::Run { .. } | Command::Copy(_) | Command::Add(_) => {
                return Err(self.err(line, "layer steps are planned, not executed directly"))
            }
            edit => {
                let scope = config::Scope {
                    lexer: &self.lexer,
                    vars: &vars,
                    cmd_set_before: matches!(edit, Command::Entrypoint(_))
                        && stage_sets_cmd_before(&self.stages[idx].instructions, line),
                };
                let created_by =
                    config::apply(&mut stage.config, &mut stage.shell, edit, &ins.text, &scope)
                        .map_err(|e| self.err(line, e))?;
                self.history(stage, &created_by, true);
            }
        }
        Ok(String::new())
    }

    /// Plan a COPY/ADD: expand its arguments with the stage state at this point.
    async fn prepare_copy(
        &mut self,
        idx: usize,
        stage: &mut Stage,
        ins: &Instruction,
        c: &CopyArgs,
        is_add: bool,
    ) -> Result<Prepared> {
        let line = ins.line;
        let kw = if is_add { "ADD" } else { "COPY" };
        let vars = stage.vars();
        let mut words = match &c.args {
            Form::Exec(v) => v
                .iter()
                .map(|w| self.word(line, w, &vars))
                .collect::<Result<Vec<_>>>()?,
            Form::Shell(s) => self.lexer.words(s, &vars).map_err(|e| self.err(line, e))?,
        };
        let heredoc_names: Vec<String> = c.heredocs.iter().map(|h| h.name.clone()).collect();
        words.retain(|w| {
            let n = w
                .trim_start_matches("<<")
                .trim_start_matches('-')
                .trim_matches(['"', '\'']);
            !(w.starts_with("<<") && heredoc_names.iter().any(|h| h == n))
        });
        let dest_raw = words
            .pop()
            .ok_or_else(|| self.err(line, format!("{kw} needs a destination")))?;
        let sources = words;
        for s in &sources {
            if s.contains("://") || s.starts_with("git@") {
                return Err(self.err(
                    line,
                    format!("{kw} from a URL or git repository is not supported yet: {s}"),
                ));
            }
        }
        let heredocs = c
            .heredocs
            .iter()
            .map(|h| {
                // An unquoted delimiter expands variables in the body, as inside double quotes.
                let content = if h.expand {
                    self.word(
                        line,
                        &format!("\"{}\"", h.content.replace('"', "\\\"")),
                        &vars,
                    )
                } else {
                    Ok(h.content.clone())
                };
                content.map(|content| (h.name.clone(), content))
            })
            .collect::<Result<Vec<_>>>()?;
        let dest = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            let wd = stage
                .config
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into());
            let sep = if wd.ends_with('/') { "" } else { "/" };
            format!("{wd}{sep}{dest_raw}")
        };
        let chmod = match &c.chmod {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(&self.word(line, m, &vars)?, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        self.err(
                            line,
                            format!("{kw} --chmod={m}: use an octal mode such as 0755"),
                        )
                    })?,
            ),
        };
        let chown = match &c.chown {
            None => None,
            Some(spec) => Some(self.word(line, spec, &vars)?),
        };
        let from = match &c.from {
            None => None,
            Some(f) => {
                let name = self.word(line, f, &vars)?;
                Some(self.resolve_from(idx, line, &name).await?)
            }
        };
        let spec = copy::CopySpec {
            sources,
            heredocs,
            dest,
            chown: None,
            chmod,
            is_add,
            clamp_mtime: self.req.source_date_epoch,
            default_mtime: self.now_secs,
        };
        Ok(Prepared::Copy { spec, chown, from })
    }

    /// Build a planned COPY/ADD: the layer, from the rootfs as it is at this step.
    /// With `apply`, the copied files are also written into the rootfs as the layer
    /// is built (a later step needs the filesystem).
    async fn perform_copy(
        &mut self,
        stage: &mut Stage,
        line: usize,
        spec: &copy::CopySpec,
        chown: &Option<String>,
        from: &Option<SourceKey>,
        apply: bool,
    ) -> Result<Option<crate::layer::BuiltLayer>> {
        self.materialize(stage).await?;
        let mut spec = spec.clone();
        spec.chown = match chown {
            None => None,
            Some(c) => Some(self.resolve_owner(line, stage, c)?),
        };
        if let Some(key) = from {
            self.materialize_source(key).await?;
        }
        let store = self.store.clone();
        let level = self.codec();
        let context = self.req.context.clone();
        let ignore = self.ignore.clone();
        let mut dst = stage
            .rootfs
            .take()
            .ok_or_else(|| anyhow!("rootfs missing"))?;
        let src_rootfs = match from {
            Some(key) => Some(self.take_source_rootfs(key)?),
            None => None,
        };
        let (out, dst, src_rootfs) = tokio::task::spawn_blocking(move || {
            let src = match &src_rootfs {
                Some(r) => copy::Source::Rootfs(r),
                None => copy::Source::Context {
                    dir: &context,
                    ignore: &ignore,
                },
            };
            let out = copy::copy_layer(&store, level, &src, &spec, &mut dst, apply);
            (out, dst, src_rootfs)
        })
        .await?;
        stage.rootfs = Some(dst);
        if let (Some(key), Some(r)) = (from, src_rootfs) {
            self.put_source_rootfs(key, r);
        }
        Ok(Some(out.map_err(|e| self.err(line, e))?))
    }

    /// The cache key of a planned step (see [`cache`] for the scheme), or None
    /// when caching is off.
    async fn key_for(&self, parent: &str, prep: &Prepared, line: usize) -> Result<Option<String>> {
        if (self.local_cache.is_none() && self.remote_cache.is_none())
            || (self.req.warm && self.remote_cache.is_none())
        {
            return Ok(None);
        }
        let key = match prep {
            Prepared::Copy { spec, chown, from } => {
                let mut k =
                    cache::KeyBuilder::new(parent, if spec.is_add { "ADD" } else { "COPY" });
                k.str(self.codec().name());
                k.list(&spec.sources)
                    .str(&spec.dest)
                    .str(chown.as_deref().unwrap_or(""))
                    .str(&spec.chmod.map(|m| format!("{m:o}")).unwrap_or_default());
                for (name, content) in &spec.heredocs {
                    k.str(name).str(content);
                }
                match from {
                    None => {
                        let (dir, ignore, sources, chmod, is_add) = (
                            self.req.context.clone(),
                            self.ignore.clone(),
                            spec.sources.clone(),
                            spec.chmod,
                            spec.is_add,
                        );
                        let digests = self.file_digests.clone();
                        let merkle = tokio::task::spawn_blocking(move || {
                            let mut guard = digests.as_ref().and_then(|d| d.lock().ok());
                            copy::context_digest(
                                &dir,
                                &ignore,
                                &sources,
                                chmod,
                                is_add,
                                guard.as_deref_mut(),
                            )
                        })
                        .await?
                        .map_err(|e| self.err(line, e))?;
                        k.str("context").str(&merkle);
                    }
                    Some(SourceKey::Stage(j)) => {
                        let sk = self.done[*j]
                            .as_ref()
                            .map(|s| s.key.clone())
                            .unwrap_or_default();
                        k.str("stage").str(&sk);
                    }
                    Some(SourceKey::Image(n)) => {
                        let ik = self
                            .images
                            .get(n)
                            .map(|s| s.key.clone())
                            .unwrap_or_default();
                        k.str("image").str(&ik);
                    }
                }
                k.finish()
            }
            Prepared::Run {
                argv,
                env,
                user,
                workdir,
            } => {
                let mut k = cache::KeyBuilder::new(parent, "RUN");
                k.str(self.codec().name());
                // Proxy variables are left out, as Docker does: they do not change results.
                let mut vars: Vec<String> = env
                    .iter()
                    .filter(|(k, _)| !is_predefined_arg(k))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                vars.sort();
                k.list(argv).list(&vars).str(user).str(workdir);
                k.finish()
            }
        };
        Ok(Some(key))
    }

    /// Look up keys: the local index first, then the registry cache repo, concurrently.
    async fn lookup(&self, keys: &[String]) -> HashMap<String, (cache::Entry, Option<Reference>)> {
        let mut found = HashMap::new();
        let mut remote_keys = Vec::new();
        for k in keys {
            match self.local_cache.as_ref().and_then(|c| c.get(k)) {
                Some(e) => {
                    found.insert(k.clone(), (e, None));
                }
                None => remote_keys.push(k.clone()),
            }
        }
        if let Some(remote) = &self.remote_cache {
            let client = &self.client;
            let results = futures_util::future::join_all(
                remote_keys
                    .iter()
                    .map(|k| async move { (k.clone(), remote.get(client, k).await) }),
            )
            .await;
            for (k, e) in results {
                if let Some(e) = e {
                    found.insert(k, (e, Some(remote.repo.clone())));
                }
            }
        }
        found
    }

    /// `kiln warm`: bring a hit into the cache dir (entry and blob); note a miss.
    async fn warm_entry(
        &mut self,
        stage: &mut Stage,
        step: &LayerStep,
        hit: Option<(cache::Entry, Option<Reference>)>,
    ) -> Result<String> {
        let (Some(key), Some((entry, origin))) = (&step.key, hit) else {
            if step.key.is_some() {
                self.misses += 1;
            }
            return Ok("not in the cache".into());
        };
        self.hits += 1;
        if let (Some(l), Some(o)) = (&entry.layer, &origin) {
            self.client.fetch_blob(o, &l.digest, &self.store).await?;
        }
        if let Some(local) = &self.local_cache {
            local.put(key, &entry)?;
        }
        Ok(self
            .apply_cached(stage, &entry, None, step.history_idx)
            .replace("CACHED", "WARMED"))
    }

    /// Use a cached step: its layer joins the stage without touching a filesystem.
    fn apply_cached(
        &mut self,
        stage: &mut Stage,
        entry: &cache::Entry,
        origin: Option<Reference>,
        history_idx: usize,
    ) -> String {
        match &entry.layer {
            Some(l) => {
                stage.config.rootfs.diff_ids.push(l.diff_id.clone());
                stage.layers.push(Layer {
                    desc: l.desc(),
                    origin,
                });
                format!("CACHED {}", crate::report::human_bytes(l.size))
            }
            None => {
                if let Some(h) = stage.config.history.get_mut(history_idx) {
                    h.empty_layer = true;
                }
                "CACHED no changes".into()
            }
        }
    }

    /// Do a planned step that missed the cache, and record the result in the cache.
    /// `fs_needed_later`: a later step will need this stage's filesystem.
    async fn perform(
        &mut self,
        stage: &mut Stage,
        step: &LayerStep,
        fs_needed_later: bool,
    ) -> Result<String> {
        let line = step.ins.line;
        let built = match &step.prep {
            Prepared::Copy { spec, chown, from } => {
                self.perform_copy(stage, line, spec, chown, from, fs_needed_later)
                    .await?
            }
            Prepared::Run {
                argv,
                env,
                user,
                workdir,
            } => {
                self.perform_run(stage, &step.ins, argv, env, user, workdir)
                    .await?
            }
        };
        let note = match &built {
            Some(l) => {
                stage.config.rootfs.diff_ids.push(l.diff_id.clone());
                stage.layers.push(Layer {
                    desc: LayerDesc {
                        digest: l.digest.clone(),
                        size: l.size,
                        media_type: l.media_type.clone(),
                        diff_id: l.diff_id.clone(),
                    },
                    origin: None,
                });
                format!("BUILT {}", crate::report::human_bytes(l.size))
            }
            None => {
                if let Some(h) = stage.config.history.get_mut(step.history_idx) {
                    h.empty_layer = true;
                }
                "BUILT no changes".into()
            }
        };
        if let Some(key) = &step.key {
            self.record(key, &step.ins.text, built.as_ref());
        }
        let note = match self.run_timing.take() {
            Some(t) => format!("{note} {t}"),
            None => note,
        };
        Ok(note)
    }

    /// Write a cache entry locally, and push it to the cache repo in the background.
    fn record(&mut self, key: &str, created_by: &str, built: Option<&crate::layer::BuiltLayer>) {
        let entry = cache::Entry {
            layer: built.map(|l| cache::CachedLayer {
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            }),
            created_by: created_by.to_string(),
            created: cache::now_secs(),
        };
        if let Some(local) = &self.local_cache {
            if let Err(e) = local.put(key, &entry) {
                self.report.warn(&format!(
                    "could not write the cache entry for {created_by}: {e}"
                ));
            }
        }
        if let Some(remote) = self.remote_cache.clone() {
            let client = self.client.clone();
            let path = built.and_then(|l| self.store.blob_path(&l.digest).ok());
            let key = key.to_string();
            self.cache_pushes.push(tokio::spawn(async move {
                remote
                    .put(&client, &key, &entry, path.as_deref())
                    .await
                    .map_err(|e| format!("{e}"))
            }));
        }
    }

    /// `--chown=user[:group]`, names resolved in the stage's /etc/passwd and /etc/group.
    fn resolve_owner(&self, line: usize, stage: &Stage, spec: &str) -> Result<(u32, u32)> {
        let rootfs = stage
            .rootfs
            .as_ref()
            .ok_or_else(|| anyhow!("rootfs missing"))?;
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, primary) = match user.parse::<u32>() {
            Ok(n) => (n, rootfs.primary_gid(n).unwrap_or(n)),
            Err(_) => rootfs.lookup_user(user).ok_or_else(|| {
                self.err(
                    line,
                    format!("--chown: no user {user:?} in the stage's /etc/passwd"),
                )
            })?,
        };
        let gid = match group {
            None => {
                if user.parse::<u32>().is_ok() {
                    uid
                } else {
                    primary
                }
            }
            Some(g) => match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => rootfs.lookup_group(g).ok_or_else(|| {
                    self.err(
                        line,
                        format!("--chown: no group {g:?} in the stage's /etc/group"),
                    )
                })?,
            },
        };
        Ok((uid, gid))
    }

    /// What a `COPY --from=name` reads: a stage (built now if needed), or an image
    /// (its manifest and config; layers only when the step really runs).
    async fn resolve_from(&mut self, idx: usize, line: usize, name: &str) -> Result<SourceKey> {
        if let Some(j) = self.stage_index(name, idx) {
            self.build_stage(j).await?;
            return Ok(SourceKey::Stage(j));
        }
        if let Ok(n) = name.parse::<usize>() {
            return Err(self.err(
                line,
                format!("--from={n}: there is no earlier stage with index {n}"),
            ));
        }
        if self
            .stages
            .iter()
            .any(|s| s.name.as_deref() == Some(&name.to_ascii_lowercase()))
        {
            return Err(self.err(
                line,
                format!("--from={name}: stage {name:?} is defined after this one"),
            ));
        }
        if !self.images.contains_key(name) {
            let r = Reference::parse(name).map_err(|_| {
                self.err(
                    line,
                    format!(
                        "--from={name}: no stage has that name, and it is not an image reference"
                    ),
                )
            })?;
            let platform = self.req.platform.clone().unwrap_or_else(Platform::host);
            let s = self.pull(&r, &platform).await.map_err(|e| self.err(line, format!("--from={name}: no stage has that name, and pulling it as an image failed: {e:#}")))?;
            self.images.insert(name.to_string(), s);
        }
        Ok(SourceKey::Image(name.to_string()))
    }

    /// Materialize the rootfs a `COPY --from` reads.
    async fn materialize_source(&mut self, key: &SourceKey) -> Result<()> {
        let mut s = match key {
            SourceKey::Stage(j) => self.done[*j].take(),
            SourceKey::Image(n) => self.images.remove(n),
        }
        .ok_or_else(|| anyhow!("COPY --from source missing"))?;
        let r = self.materialize(&mut s).await;
        match key {
            SourceKey::Stage(j) => self.done[*j] = Some(s),
            SourceKey::Image(n) => {
                self.images.insert(n.clone(), s);
            }
        }
        r
    }

    fn take_source_rootfs(&mut self, key: &SourceKey) -> Result<Rootfs> {
        let s = match key {
            SourceKey::Stage(j) => self.done[*j].as_mut(),
            SourceKey::Image(n) => self.images.get_mut(n),
        };
        s.and_then(|s| s.rootfs.take())
            .ok_or_else(|| anyhow!("source rootfs missing"))
    }

    fn put_source_rootfs(&mut self, key: &SourceKey, r: Rootfs) {
        let s = match key {
            SourceKey::Stage(j) => self.done[*j].as_mut(),
            SourceKey::Image(n) => self.images.get_mut(n),
        };
        if let Some(s) = s {
            s.rootfs = Some(r);
        }
    }

    /// Final config, manifest, sinks.
    async fn finish(&mut self, mut stage: Stage) -> Result<Outcome> {
        if !self.req.labels.is_empty() {
            let labels = stage.config.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &self.req.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        stage.config.created = Some(self.now.clone());
        let layers: Vec<LayerDesc> = stage.layers.iter().map(|l| l.desc.clone()).collect();
        let out = sink::Assembled::new(&self.store, &stage.config, &layers)?;
        let mut pushed = Vec::new();
        let needs_local = self.req.tar_path.is_some() || self.req.oci_layout_path.is_some();
        if needs_local {
            for l in &stage.layers {
                self.blob(l).await?;
            }
            let local = out.local(&self.store)?;
            if let Some(p) = &self.req.oci_layout_path {
                let t = Instant::now();
                let tag = self
                    .req
                    .destinations
                    .first()
                    .and_then(|d| d.tag.clone())
                    .unwrap_or_else(|| "latest".into());
                crate::image::layout::write(p, &local, &tag)?;
                self.report.step(
                    "output",
                    &format!("OCI layout {}:{tag}", p.display()),
                    t.elapsed(),
                    "",
                );
            }
            if let Some(p) = &self.req.tar_path {
                let t = Instant::now();
                let tags: Vec<String> = self
                    .req
                    .destinations
                    .iter()
                    .filter(|d| d.tag.is_some())
                    .map(|d| d.to_string())
                    .collect();
                crate::image::archive::write(p, &local, &tags)?;
                self.report.step(
                    "output",
                    &format!("docker-archive {}", p.display()),
                    t.elapsed(),
                    "",
                );
            }
        }
        if !self.req.no_push {
            let origins: Vec<(LayerDesc, Option<Reference>)> = stage
                .layers
                .iter()
                .map(|l| (l.desc.clone(), l.origin.clone()))
                .collect();
            // Every blob in every destination first; the tags come after, so a
            // failure part-way leaves no destination tagged.
            for (i, dest) in self.req.destinations.iter().enumerate() {
                let t = Instant::now();
                let sibling = self.req.destinations[..i]
                    .iter()
                    .find(|d| d.registry == dest.registry && d.repository != dest.repository);
                let spinner = self.report.spinner(&format!("pushing {dest}"));
                let before = self.client.counters.snapshot();
                sink::push_blobs(&self.client, &self.store, dest, &out, &origins, sibling).await?;
                if let Some(s) = spinner {
                    s.finish_and_clear();
                }
                let d = self.client.counters.snapshot().since(&before);
                let note = format!(
                    "{} uploaded ({}), {} mounted, {} already there",
                    d.blobs_up,
                    crate::report::human_bytes(d.bytes_up),
                    d.blobs_mounted,
                    d.blobs_skipped
                );
                self.report
                    .step("push", &format!("{dest}"), t.elapsed(), &note);
            }
            for dest in &self.req.destinations {
                sink::push_manifest(&self.client, dest, &out).await?;
                pushed.push(format!("{}@{}", dest.name(), out.manifest_digest));
            }
        }
        // Cache entries go to the registry in the background; a failure there is a
        // warning, never a failed build.
        let pushes = std::mem::take(&mut self.cache_pushes);
        let mut failed = 0;
        for p in pushes {
            match p.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failed += 1;
                    if failed == 1 {
                        self.report
                            .warn(&format!("could not push a cache entry: {e}"));
                    }
                }
                Err(e) => self.report.warn(&format!("cache push task failed: {e}")),
            }
        }
        if failed > 1 {
            self.report
                .warn(&format!("{failed} cache entries could not be pushed"));
        }
        if self.local_cache.is_some() {
            let c = self.client.counters.snapshot();
            self.report.line(&format!(
                "cache: {} hit{}, {} miss{}; {} uploaded, {} downloaded",
                self.hits,
                if self.hits == 1 { "" } else { "s" },
                self.misses,
                if self.misses == 1 { "" } else { "es" },
                crate::report::human_bytes(c.bytes_up),
                crate::report::human_bytes(c.bytes_down)
            ));
        }
        let size = out.manifest.len() as u64
            + out.config.len() as u64
            + layers.iter().map(|l| l.size).sum::<u64>();
        if let Some(p) = &self.req.digest_file {
            crate::image::layout::write_atomic(p, out.manifest_digest.as_bytes())
                .with_context(|| format!("cannot write --digest-file {}", p.display()))?;
        }
        if let Some(p) = &self.req.image_name_with_digest_file {
            let lines: Vec<String> = self
                .req
                .destinations
                .iter()
                .map(|d| format!("{}@{}", d.name(), out.manifest_digest))
                .collect();
            crate::image::layout::write_atomic(p, format!("{}\n", lines.join("\n")).as_bytes())
                .with_context(|| {
                    format!("cannot write --image-name-with-digest-file {}", p.display())
                })?;
        }
        Ok(Outcome {
            digest: out.manifest_digest.clone(),
            size,
            layers: layers.len(),
            pushed,
        })
    }
}

/// A layer step as planned: what it needs, from the stage state at its position.
enum Prepared {
    Copy {
        spec: copy::CopySpec,
        chown: Option<String>,
        from: Option<SourceKey>,
    },
    Run {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        user: String,
        workdir: String,
    },
}

struct LayerStep {
    label: String,
    ins: Instruction,
    prep: Prepared,
    key: Option<String>,
    history_idx: usize,
}

enum Planned {
    Meta {
        label: String,
        text: String,
        took: std::time::Duration,
        note: String,
    },
    Layer(Box<LayerStep>),
}

#[derive(Clone)]
enum SourceKey {
    Stage(usize),
    Image(String),
}

fn stage_sets_cmd_before(instructions: &[Instruction], line: usize) -> bool {
    instructions
        .iter()
        .any(|i| i.line < line && matches!(i.command, Command::Cmd(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
