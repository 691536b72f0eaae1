//! Dockerfile → [`Plan`]: the stages in file order, the meta ARGs (those before the
//! first FROM) resolved against `--build-arg`, the target, the order in which the
//! target's stages are built, and each stage's steps classified as ARGs, config
//! edits or layer steps.
//!
//! Pure: no I/O, no async, no registry. It owns Docker's scoping rules (which
//! ARG value a stage sees, what FROM names, which stage `--from` means). It does
//! not know images, filesystems or the cache: the engine brings those.

use crate::dockerfile::parse::{self, Command, Dockerfile, Instruction, KeyValue};
use crate::dockerfile::{Lexer, Vars};
use crate::image::manifest::Platform;
use crate::image::Reference;
use anyhow::{anyhow, bail, Result};

/// What the plan needs from the request.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    /// `--build-arg`, in command-line order (the last of a name wins).
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    /// `--platform`; the host's when None.
    pub platform: Option<Platform>,
    /// Before every step label (`linux/arm64 app 2/5`), in a multi-platform build.
    pub label_prefix: String,
    /// Names of the named build contexts (lower case).
    pub named: Vec<String>,
}

/// How a step changes the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// `ARG`: a variable of the stage, no config change.
    Arg,
    /// A metadata instruction: an edit of the image config (see `config`).
    Config,
    /// `RUN`, `COPY`, `ADD`: a layer, keyed and cached.
    Layer,
    /// `WORKDIR`: a config edit, and a layer when the directory is new.
    Workdir,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub ins: Instruction,
    pub kind: StepKind,
}

impl Step {
    fn new(ins: Instruction) -> Result<Step, String> {
        let kind = match &ins.command {
            Command::Arg(_) => StepKind::Arg,
            Command::Run { .. } | Command::Copy(_) | Command::Add(_) => StepKind::Layer,
            Command::Workdir(_) => StepKind::Workdir,
            Command::From { .. } => return Err("FROM inside a stage".into()),
            _ => StepKind::Config,
        };
        Ok(Step { ins, kind })
    }
}

/// A stage as written: its FROM line and its steps.
#[derive(Debug, Clone)]
pub struct StageDef {
    pub line: usize,
    /// `AS name`, lowercased by the parser.
    pub name: Option<String>,
    /// The FROM image as written (expanded by [`Plan::base`]).
    pub image: String,
    pub platform: Option<String>,
    pub steps: Vec<Step>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image to pull; the string is the expanded name, as the log shows it.
    Image(Reference, String),
    /// A named build context (`--build-context NAME=…`), by its name.
    Named(String),
}

#[derive(Debug)]
pub struct Plan {
    pub file: String,
    pub escape: char,
    pub lexer: Lexer,
    pub stages: Vec<StageDef>,
    /// The stage the build is for: `--target`, else the last.
    pub target: usize,
    meta_args: Vec<(String, Option<String>)>,
    input: PlanInput,
}

/// Docker's predefined proxy args, usable without an ARG line.
pub fn is_predefined_arg(k: &str) -> bool {
    matches!(
        k.to_ascii_lowercase().as_str(),
        "http_proxy" | "https_proxy" | "ftp_proxy" | "no_proxy" | "all_proxy"
    )
}

impl Plan {
    /// Split the Dockerfile into meta ARGs and stages, and find the target.
    pub fn new(df: Dockerfile, input: PlanInput) -> Result<Plan> {
        let mut plan = Plan {
            lexer: Lexer::new(df.escape),
            file: df.file,
            escape: df.escape,
            stages: vec![],
            target: 0,
            meta_args: vec![],
            input,
        };
        for ins in df.instructions {
            match &ins.command {
                Command::From {
                    image,
                    name,
                    platform,
                } => {
                    if let Some(n) = name {
                        if plan.stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(plan.err(ins.line, format!("duplicate stage name {n:?}")));
                        }
                    }
                    plan.stages.push(StageDef {
                        line: ins.line,
                        name: name.clone(),
                        image: image.clone(),
                        platform: platform.clone(),
                        steps: vec![],
                    });
                }
                Command::Arg(kvs) if plan.stages.is_empty() => {
                    for kv in kvs {
                        let kv = &plan.arg_key(ins.line, kv, &plan.meta_vars())?;
                        let default = match &kv.value {
                            Some(v) => Some(plan.word(ins.line, v, &plan.meta_vars())?),
                            None => None,
                        };
                        let value = plan.build_arg(&kv.key).or(default);
                        plan.meta_args.push((kv.key.clone(), value));
                    }
                }
                _ if plan.stages.is_empty() => {
                    return Err(plan.err(
                        ins.line,
                        format!(
                            "{} before the first FROM (only ARG may come first)",
                            ins.command.keyword()
                        ),
                    ));
                }
                _ => {
                    let line = ins.line;
                    let step = Step::new(ins).map_err(|e| plan.err(line, e))?;
                    if let Some(s) = plan.stages.last_mut() {
                        s.steps.push(step);
                    }
                }
            }
        }
        if plan.stages.is_empty() {
            bail!(
                "{}: no FROM instruction: a Dockerfile needs at least one stage",
                plan.file
            );
        }
        plan.target = plan.target_index()?;
        Ok(plan)
    }

    /// An error at a line of the Dockerfile.
    pub fn err(&self, line: usize, msg: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "{}:{}: {}",
            self.file,
            line,
            crate::clip::clip_to(&msg.to_string(), crate::clip::MAX_MESSAGE)
        )
    }

    /// Expand a word with `vars`, the error naming the line.
    pub fn word(&self, line: usize, s: &str, vars: &Vars) -> Result<String> {
        self.lexer.word(s, vars).map_err(|e| self.err(line, e))
    }

    /// Expand a shell-form argument list into words.
    pub fn words(&self, line: usize, s: &str, vars: &Vars) -> Result<Vec<String>> {
        self.lexer.words(s, vars).map_err(|e| self.err(line, e))
    }

    /// The value of a `--build-arg` (the last one given wins).
    pub fn build_arg(&self, name: &str) -> Option<String> {
        self.input
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The target platform: `--platform`, else the host's.
    pub fn platform(&self) -> Platform {
        self.input.platform.clone().unwrap_or_else(Platform::host)
    }

    /// The meta ARGs that have a value.
    pub fn meta_vars(&self) -> Vars {
        self.meta_args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    /// What FROM and `--platform` expand with: the meta ARGs, and the automatic
    /// platform ARGs unless a meta ARG overrides them.
    pub fn meta_vars_with_platform(&self) -> Vars {
        let mut v = self.meta_vars();
        let (target, host) = (self.platform(), Platform::host());
        for (k, val) in target.args("TARGET").into_iter().chain(host.args("BUILD")) {
            v.entry(k).or_insert(val);
        }
        v
    }

    fn target_index(&self) -> Result<usize> {
        let Some(t) = &self.input.target else {
            return Ok(self.stages.len() - 1);
        };
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
                    self.file,
                    if names.is_empty() {
                        "none are named".to_string()
                    } else {
                        names.join(", ")
                    }
                )
            })
    }

    /// The stage `name` means when read by stage `before`: a name or an index,
    /// of an earlier stage only.
    pub fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let lname = name.to_ascii_lowercase();
        if let Some(i) = self.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lname.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }

    /// Why `--from=name` in stage `idx` names no stage, when it looks like it
    /// meant one; None when it may be an image.
    pub fn not_a_stage(&self, idx: usize, line: usize, name: &str) -> Option<anyhow::Error> {
        if let Ok(n) = name.parse::<usize>() {
            return Some(self.err(
                line,
                format!("--from={n}: there is no earlier stage with index {n}"),
            ));
        }
        let lname = name.to_ascii_lowercase();
        if self.stages[idx..]
            .iter()
            .any(|s| s.name.as_deref() == Some(lname.as_str()))
        {
            return Some(self.err(
                line,
                format!("--from={name}: stage {name:?} is defined after this one"),
            ));
        }
        None
    }

    /// The step label of the log: `name 2/5` or `stage-1 2/5`.
    pub fn label(&self, idx: usize, step: usize, total: usize) -> String {
        let label = match &self.stages[idx].name {
            Some(n) => format!("{n} {step}/{total}"),
            None => format!("stage-{idx} {step}/{total}"),
        };
        match self.input.label_prefix.as_str() {
            "" => label,
            prefix => format!("{prefix} {label}"),
        }
    }

    /// The platform of stage `idx`: its `FROM --platform`, else the target's.
    pub fn stage_platform(&self, idx: usize) -> Result<Platform> {
        let def = &self.stages[idx];
        match &def.platform {
            Some(p) => {
                let expanded = self.word(def.line, p, &self.meta_vars_with_platform())?;
                Platform::parse(&expanded).map_err(|e| self.err(def.line, e))
            }
            None => Ok(self.platform()),
        }
    }

    /// The FROM image of stage `idx`, expanded with the meta ARGs.
    pub fn from_name(&self, idx: usize) -> Result<String> {
        let def = &self.stages[idx];
        let image = self.word(def.line, &def.image, &self.meta_vars_with_platform())?;
        if image.is_empty() {
            return Err(self.err(
                def.line,
                format!(
                    "FROM {}: the image name is empty after expansion",
                    def.image
                ),
            ));
        }
        Ok(image)
    }

    /// The named build context `name` refers to, if there is one.
    pub fn named(&self, name: &str) -> Option<String> {
        let lname = name.to_ascii_lowercase();
        self.input.named.contains(&lname).then_some(lname)
    }

    /// What stage `idx` starts from.
    pub fn base(&self, idx: usize) -> Result<Base> {
        let def = &self.stages[idx];
        let image = self.from_name(idx)?;
        if image.eq_ignore_ascii_case("scratch") {
            return Ok(Base::Scratch);
        }
        if let Some(j) = self.stage_index(&image, idx) {
            return Ok(Base::Stage(j));
        }
        if let Some(n) = self.named(&image) {
            return Ok(Base::Named(n));
        }
        let r = Reference::parse(&image).map_err(|e| self.err(def.line, e))?;
        Ok(Base::Image(r, image))
    }

    /// The value an `ARG` in a stage gives its variable: `--build-arg`, else its
    /// default (expanded with the stage's variables), else the meta ARG of that
    /// name, else the automatic platform ARG. The flag says a `--build-arg` was
    /// used.
    ///
    /// An ARG's key is expanded first (`ARG ${name}=v`), as BuildKit does.
    pub fn arg_key(&self, line: usize, kv: &KeyValue, vars: &Vars) -> Result<KeyValue> {
        if !kv.key.contains('$') {
            return Ok(kv.clone());
        }
        let key = self.word(line, &kv.key, vars)?;
        if key.is_empty() {
            return Err(self.err(line, format!("ARG {}: the name expands to nothing", kv.key)));
        }
        Ok(KeyValue {
            key,
            value: kv.value.clone(),
        })
    }

    pub fn stage_arg(
        &self,
        line: usize,
        kv: &KeyValue,
        vars: &Vars,
    ) -> Result<(Option<String>, bool)> {
        let default = match &kv.value {
            Some(v) => Some(self.word(line, v, vars)?),
            None => None,
        };
        let given = self.build_arg(&kv.key);
        let used = given.is_some();
        // A re-declared meta ARG takes the global value as its default.
        let meta = self
            .meta_args
            .iter()
            .rev()
            .find(|(k, _)| *k == kv.key)
            .and_then(|(_, v)| v.clone());
        let value = given.or(default).or(meta).or_else(|| {
            (kv.key.starts_with("TARGET") || kv.key.starts_with("BUILD"))
                .then(|| self.meta_vars_with_platform().get(&kv.key).cloned())
                .flatten()
        });
        Ok((value, used))
    }

    /// `--build-arg` names no built stage declared (proxy args excepted).
    pub fn unused_build_args(&self, used: &std::collections::HashSet<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in &self.input.build_args {
            // A meta ARG (before the first FROM) consumes its build arg, as in
            // BuildKit: FROM and --platform read it.
            let meta = self.meta_args.iter().any(|(m, _)| m == k);
            if !used.contains(k) && !meta && !is_predefined_arg(k) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    /// ONBUILD triggers of a base image, as steps of stage `idx` (reported at its
    /// FROM line).
    pub fn triggers(&self, idx: usize, triggers: &[String]) -> Result<Vec<Step>> {
        let line = self.stages[idx].line;
        triggers
            .iter()
            .map(|t| {
                let ins = parse::parse_line(&self.file, line, t, self.escape)?;
                Step::new(ins).map_err(|e| self.err(line, format!("ONBUILD {t}: {e}")))
            })
            .collect()
    }

    /// The stages a stage needs before it can run, as far as the Dockerfile shows
    /// without building: its FROM, and every `COPY/ADD --from` written without a
    /// variable. (A `--from=$X` expands with the stage's own variables, so it is
    /// resolved, and its stage built, when the step is prepared.)
    pub fn deps(&self, idx: usize) -> Vec<usize> {
        let mut out = Vec::new();
        if let Ok(Base::Stage(j)) = self.base(idx) {
            out.push(j);
        }
        for step in &self.stages[idx].steps {
            let from = match &step.ins.command {
                Command::Copy(c) | Command::Add(c) => c.from.as_deref(),
                _ => None,
            };
            let Some(f) = from.filter(|f| !f.contains('$')) else {
                continue;
            };
            if let Some(j) = self.stage_index(f, idx) {
                if !out.contains(&j) {
                    out.push(j);
                }
            }
        }
        out
    }

    /// Whether stage `idx` is the only stage of the build of `target` that reads
    /// stage `j`, so that `j`'s rootfs can pass on to it instead of being
    /// extracted a second time. A `--from` written with a variable, or a
    /// `RUN --mount` with `from=`, could read any stage: then no. (Were a stage
    /// read after all, it would be extracted again: slower, never wrong.)
    pub fn sole_reader(&self, j: usize, idx: usize, target: usize) -> bool {
        if j == target || j == idx {
            return false;
        }
        let order = self.order(&[target]);
        if !order.contains(&idx) {
            return false;
        }
        for &i in &order {
            for step in &self.stages[i].steps {
                let opaque = match &step.ins.command {
                    Command::Copy(c) | Command::Add(c) => {
                        c.from.as_deref().is_some_and(|f| f.contains('$'))
                    }
                    Command::Run { flags, .. } => flags.iter().any(|f| {
                        f.name == "mount"
                            && f.value.as_deref().is_some_and(|v| {
                                v.split(',').any(|kv| kv.trim_start().starts_with("from="))
                            })
                    }),
                    _ => false,
                };
                if opaque {
                    return false;
                }
            }
            if i != idx && self.deps(i).contains(&j) {
                return false;
            }
        }
        self.deps(idx).contains(&j)
    }

    /// The stages to build for `roots`, dependencies first, each once: the
    /// Dockerfile pruned to what the roots need.
    pub fn order(&self, roots: &[usize]) -> Vec<usize> {
        fn visit(p: &Plan, i: usize, seen: &mut Vec<bool>, out: &mut Vec<usize>) {
            if seen[i] {
                return;
            }
            seen[i] = true;
            for d in p.deps(i) {
                // Dependencies are always earlier stages, so this terminates.
                if d < i {
                    visit(p, d, seen, out);
                }
            }
            out.push(i);
        }
        let mut seen = vec![false; self.stages.len()];
        let mut out = Vec::new();
        for &r in roots {
            visit(self, r, &mut seen, &mut out);
        }
        out
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
