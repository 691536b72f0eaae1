//! Evaluate bake files: variables (defaults, then the environment, as buildx
//! does), groups, and the requested targets with their `matrix` forks and
//! `inherits`, then `--set`.

use super::funcs::{self, to_str};
use super::parse::{self, Attr, Loc, RawBlock, RawFile};
use super::target::{self, Opts, Override, Target};
use super::userfunc::{self, Scope};
use hcl::eval::{Context, Evaluate};
use hcl::Value;
use std::collections::{BTreeMap, HashSet};

/// What a bake is resolved from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// (name for messages, text), in buildx's merge order.
    pub files: Vec<(String, String)>,
    /// The environment variables may be set from.
    pub env: BTreeMap<String, String>,
    /// `BAKE_LOCAL_PLATFORM`.
    pub local_platform: String,
    /// Targets or groups asked for; none: `default`.
    pub requested: Vec<String>,
    /// `--set`s.
    pub overrides: Vec<String>,
}

/// The resolved targets, ready to build.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    /// Groups as `--print` shows them (`default`: what was asked for).
    pub groups: BTreeMap<String, Vec<String>>,
    /// Targets to build, in the order asked.
    pub targets: Vec<Target>,
}

impl Definition {
    /// buildx's `--print`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut groups = serde_json::Map::new();
        for (name, targets) in &self.groups {
            groups.insert(name.clone(), serde_json::json!({ "targets": targets }));
        }
        let mut targets = serde_json::Map::new();
        for t in &self.targets {
            targets.insert(t.name.clone(), t.to_json());
        }
        serde_json::json!({ "group": groups, "target": targets })
    }
}

/// An hcl-rs error in words, with where the expression was written.
fn at(loc: &Loc, what: &str, e: impl std::fmt::Display) -> String {
    format!("{loc}: {what}: {}", crate::clip::clip(&e.to_string()))
}

/// The evaluation context: functions, and the variables resolved so far.
fn context<'a>(scope: &Scope, vars: &[(String, Value)]) -> Context<'a> {
    let mut ctx = Context::new();
    funcs::declare(&mut ctx);
    scope.declare(&mut ctx);
    for (k, v) in vars {
        ctx.declare_var(k.as_str(), v.clone());
    }
    ctx
}

/// A variable's value from the environment, typed as its default is.
fn from_env(name: &str, raw: &str, default: &Value, loc: &Loc) -> Result<Value, String> {
    match default {
        Value::Bool(_) => match raw {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "{loc}: variable {name} is a bool, and the environment sets it to {:?}",
                crate::clip::clip(raw)
            )),
        },
        Value::Number(_) => raw.trim().parse::<f64>().map(funcs::num).map_err(|_| {
            format!(
                "{loc}: variable {name} is a number, and the environment sets it to {:?}",
                crate::clip::clip(raw)
            )
        }),
        _ => Ok(Value::String(raw.to_string())),
    }
}

fn undefined_var(e: &hcl::eval::Error) -> bool {
    matches!(e.kind(), hcl::eval::ErrorKind::UndefinedVar(_))
}

/// A variable as written: name, default, where, whether the environment may
/// set it (`variable` blocks, not top-level attributes), its validations.
type VarDef = (String, Option<Attr>, Loc, bool, Vec<RawBlock>);

/// Resolve every variable: in rounds, so a default may use another
/// variable, whatever the order they are written in.
fn variables(
    files: &[RawFile],
    inputs: &Inputs,
    scope: &Scope,
) -> Result<Vec<(String, Value)>, String> {
    // Later definitions of a name win (override files).
    let mut defs: Vec<VarDef> = vec![];
    for f in files {
        for v in &f.variables {
            for a in &v.attrs {
                if !matches!(a.key.as_str(), "default" | "description") {
                    return Err(format!(
                        "{}: variable {:?}: key {:?} is not supported (default, description, validation)",
                        a.at, v.name, a.key
                    ));
                }
            }
            let validations: Vec<RawBlock> = v
                .blocks
                .iter()
                .map(|(k, b)| {
                    if k == "validation" {
                        Ok(b.clone())
                    } else {
                        Err(format!(
                            "{}: variable {:?}: unknown block {k:?}",
                            b.at, v.name
                        ))
                    }
                })
                .collect::<Result<_, _>>()?;
            defs.retain(|d| d.0 != v.name);
            defs.push((
                v.name.clone(),
                v.attr("default").cloned(),
                v.at.clone(),
                true,
                validations,
            ));
        }
        for g in &f.globals {
            defs.retain(|d| d.0 != g.key);
            defs.push((g.key.clone(), Some(g.clone()), g.at.clone(), false, vec![]));
        }
    }
    let mut vars: Vec<(String, Value)> = vec![
        ("BAKE_CMD_CONTEXT".into(), Value::String(".".into())),
        (
            "BAKE_LOCAL_PLATFORM".into(),
            Value::String(inputs.local_platform.clone()),
        ),
    ];
    let mut pending: Vec<usize> = (0..defs.len()).collect();
    loop {
        let before = pending.len();
        let mut last_err = None;
        let mut still = vec![];
        for i in pending {
            let (name, default, loc, from_environment, _) = &defs[i];
            let value = match default {
                None => Ok(Value::String(String::new())),
                Some(a) => {
                    scope.set_vars(vars.clone());
                    a.expr.evaluate(&context(scope, &vars))
                }
            };
            match value {
                Ok(v) => {
                    let v = match inputs.env.get(name).filter(|_| *from_environment) {
                        Some(raw) => from_env(name, raw, &v, loc)?,
                        None => v,
                    };
                    vars.retain(|(k, _)| k != name);
                    vars.push((name.clone(), v));
                }
                Err(e) if undefined_var(&e) => {
                    last_err = Some(at(loc, &format!("variable {name}"), e));
                    still.push(i);
                }
                Err(e) => return Err(at(loc, &format!("variable {name}"), e)),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if pending.len() == before {
            return Err(
                last_err.unwrap_or_else(|| "variables refer to each other in a cycle".into())
            );
        }
    }
    // Validations, with every variable known.
    scope.set_vars(vars.clone());
    let ctx = context(scope, &vars);
    for (name, _, _, _, validations) in &defs {
        for v in validations {
            let cond = v.attr("condition").ok_or_else(|| {
                format!("{}: variable {name}: a validation needs a condition", v.at)
            })?;
            let ok = cond
                .expr
                .evaluate(&ctx)
                .map_err(|e| at(&cond.at, &format!("variable {name}"), e))?;
            if ok != Value::Bool(true) {
                let msg = match v.attr("error_message") {
                    Some(m) => m
                        .expr
                        .evaluate(&ctx)
                        .ok()
                        .and_then(|v| to_str(&v).ok())
                        .unwrap_or_default(),
                    None => "the validation's condition is false".into(),
                };
                return Err(format!("{}: variable {name}: {msg}", cond.at));
            }
        }
    }
    Ok(vars)
}

/// Strings of a list value (nulls and empty strings dropped, as buildx
/// drops the `""` a conditional tag leaves).
fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a
            .iter()
            .filter(|x| !matches!(x, Value::Null))
            .map(to_str)
            .filter(|s| s.as_ref().map_or(true, |s| !s.is_empty()))
            .collect(),
        other => Ok(vec![to_str(other)?]),
    }
}

fn map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(o) => o
            .iter()
            .filter(|(_, v)| !matches!(v, Value::Null))
            .map(|(k, v)| Ok((k.clone(), to_str(v)?)))
            .collect(),
        _ => Err("a map is required".into()),
    }
}

fn options(key: &str, v: &Value) -> Result<Vec<Opts>, String> {
    let list = match v {
        Value::Null => return Ok(vec![]),
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    list.iter()
        .filter(|x| !matches!(x, Value::Null))
        .map(|x| match x {
            Value::Object(o) => o
                .iter()
                .filter(|(_, v)| !matches!(v, Value::Null))
                .map(|(k, v)| {
                    let v = match v {
                        Value::Array(a) => a
                            .iter()
                            .map(to_str)
                            .collect::<Result<Vec<_>, _>>()?
                            .join(","),
                        other => to_str(other)?,
                    };
                    Ok((k.clone(), v))
                })
                .collect(),
            other => target::opts_from_csv(key, &to_str(other)?),
        })
        .collect()
}

fn boolean(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) => Ok(Some(n.as_f64() != Some(0.0))),
        Value::String(s) => match s.as_str() {
            "true" | "1" | "always" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(format!("{s:?} is not a boolean")),
        },
        _ => Err("a boolean is required".into()),
    }
}

fn optional(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        other => to_str(other).map(Some),
    }
}

/// Set one key of `t` from its evaluated value.
fn set_key(t: &mut Target, key: &str, v: &Value) -> Result<(), String> {
    match key {
        "description" => t.description = optional(v)?,
        "context" => t.context = optional(v)?,
        "dockerfile" => t.dockerfile = optional(v)?,
        "dockerfile-inline" => t.dockerfile_inline = optional(v)?,
        "target" => t.target = optional(v)?,
        "args" => t.args = map(v)?,
        "labels" => t.labels = map(v)?,
        "contexts" => t.contexts = map(v)?,
        "tags" => t.tags = Some(strings(v)?),
        "platforms" => t.platforms = Some(strings(v)?),
        "annotations" => t.annotations = Some(strings(v)?),
        "inherits" => t.inherits = strings(v)?,
        "cache-from" => t.cache_from = Some(options(key, v)?),
        "cache-to" => t.cache_to = Some(options(key, v)?),
        "secret" => t.secret = Some(options(key, v)?),
        "ssh" => t.ssh = Some(options(key, v)?),
        "output" => t.output = Some(options(key, v)?),
        "attest" => t.attest = Some(options(key, v)?),
        "pull" => t.pull = boolean(v)?,
        "no-cache" => t.no_cache = boolean(v)?,
        _ => {}
    }
    Ok(())
}

/// Refuse a key kiln does not honour, naming it, its file and line.
fn check_key(b: &RawBlock, a: &Attr) -> Result<(), String> {
    if target::KEYS.contains(&a.key.as_str()) {
        return Ok(());
    }
    Err(match target::REFUSED.iter().find(|(k, _)| *k == a.key) {
        Some((k, why)) => format!(
            "{}: target {:?}: kiln does not honour {k}: {why}; remove it, or build this target with buildx",
            a.at, b.name
        ),
        None => format!("{}: target {:?}: unknown key {:?}", a.at, b.name, a.key),
    })
}

/// The matrix's combinations, first key outermost, values in written order.
fn combinations(m: &Value, loc: &Loc, name: &str) -> Result<Vec<Vec<(String, Value)>>, String> {
    let Value::Object(axes) = m else {
        return Err(format!("{loc}: target {name:?}: matrix is a map of lists"));
    };
    let mut out: Vec<Vec<(String, Value)>> = vec![vec![]];
    for (k, vals) in axes {
        let Value::Array(vals) = vals else {
            return Err(format!("{loc}: target {name:?}: matrix.{k} is a list"));
        };
        let mut next = vec![];
        for combo in &out {
            for v in vals {
                let mut c = combo.clone();
                c.push((k.clone(), v.clone()));
                next.push(c);
            }
        }
        out = next;
        if out.len() > 256 {
            return Err(format!(
                "{loc}: target {name:?}: the matrix makes more than 256 targets"
            ));
        }
    }
    Ok(out)
}

/// Evaluate one target block: one target, or one per matrix combination.
fn eval_block(
    b: &RawBlock,
    scope: &Scope,
    vars: &[(String, Value)],
) -> Result<Vec<Target>, String> {
    for a in &b.attrs {
        check_key(b, a)?;
    }
    if let Some((k, inner)) = b.blocks.first() {
        return Err(format!(
            "{}: target {:?}: unknown block {k:?}",
            inner.at, b.name
        ));
    }
    let base = context(scope, vars);
    let combos = match b.attr("matrix") {
        Some(m) => {
            let v = m.expr.evaluate(&base).map_err(|e| at(&m.at, "matrix", e))?;
            combinations(&v, &m.at, &b.name)?
        }
        None => vec![vec![]],
    };
    if combos.len() > 1 && b.attr("name").is_none() {
        return Err(format!(
            "{}: target {:?}: a matrix of {} targets needs name = \"…\" to name each",
            b.at,
            b.name,
            combos.len()
        ));
    }
    let mut out = vec![];
    for combo in combos {
        let mut ctx = base.clone();
        for (k, v) in &combo {
            ctx.declare_var(k.as_str(), v.clone());
        }
        let mut t = Target {
            name: b.name.clone(),
            ..Default::default()
        };
        if let Some(n) = b.attr("name") {
            let v = n.expr.evaluate(&ctx).map_err(|e| at(&n.at, "name", e))?;
            t.name = to_str(&v).map_err(|e| at(&n.at, "name", e))?;
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "{}: target name {:?}: use letters, digits, -, _ and .",
                    n.at, t.name
                ));
            }
        }
        for a in &b.attrs {
            if matches!(a.key.as_str(), "matrix" | "name") {
                continue;
            }
            let v = a
                .expr
                .evaluate(&ctx)
                .map_err(|e| at(&a.at, &format!("target {:?}: {}", t.name, a.key), e))?;
            set_key(&mut t, &a.key, &v)
                .map_err(|e| format!("{}: target {:?}: {}: {e}", a.at, t.name, a.key))?;
            t.at.insert(a.key.clone(), a.at.clone());
        }
        out.push(t);
    }
    Ok(out)
}

struct Resolver<'a> {
    blocks: BTreeMap<String, Vec<&'a RawBlock>>,
    groups: BTreeMap<String, (Vec<String>, Loc)>,
    scope: &'a Scope,
    vars: Vec<(String, Value)>,
    /// Evaluated (merged across files, not yet inherited) by block name.
    evaluated: BTreeMap<String, Vec<Target>>,
    overrides: Vec<Override>,
}

impl Resolver<'_> {
    fn evaluated(&mut self, name: &str) -> Result<Option<Vec<Target>>, String> {
        if let Some(t) = self.evaluated.get(name) {
            return Ok(Some(t.clone()));
        }
        let Some(blocks) = self.blocks.get(name).cloned() else {
            return Ok(None);
        };
        let mut merged: Vec<Target> = vec![];
        for b in blocks {
            let ts = eval_block(b, self.scope, &self.vars)?;
            if merged.is_empty() {
                merged = ts;
            } else if ts.len() == 1 && merged.len() == 1 {
                merged[0].merge(&ts[0]);
            } else {
                return Err(format!(
                    "{}: target {name:?} is defined again with a matrix; kiln merges a matrix target only when it is defined once",
                    b.at
                ));
            }
        }
        self.evaluated.insert(name.to_string(), merged.clone());
        Ok(Some(merged))
    }

    /// A target with its `inherits` applied (parents first, in order).
    /// `--set`s apply to each target by its name as it is resolved, parents
    /// included, so a child inherits its parent's overrides (as buildx).
    fn inherited(&mut self, t: &Target, chain: &mut Vec<String>) -> Result<Target, String> {
        if t.inherits.is_empty() {
            let mut t = t.clone();
            target::apply(&mut t, &self.overrides)?;
            return Ok(t);
        }
        let mut base = Target::default();
        for parent in &t.inherits {
            if chain.contains(parent) {
                return Err(format!(
                    "target {:?} inherits from itself: {} → {parent}",
                    t.name,
                    chain.join(" → ")
                ));
            }
            let found = self.evaluated(parent)?.ok_or_else(|| {
                let loc =
                    t.at.get("inherits")
                        .map(|l| format!("{l}: "))
                        .unwrap_or_default();
                format!(
                    "{loc}target {:?} inherits from {parent:?}, which no bake file defines",
                    t.name
                )
            })?;
            let [p] = found.as_slice() else {
                return Err(format!(
                    "target {:?} inherits from {parent:?}, a matrix of {} targets; inherit from one target",
                    t.name,
                    found.len()
                ));
            };
            chain.push(parent.clone());
            let p = self.inherited(p, chain)?;
            chain.pop();
            base.merge(&p);
        }
        let mut own = t.clone();
        own.inherits.clear();
        base.inherits.clear();
        base.merge(&own);
        base.name = t.name.clone();
        target::apply(&mut base, &self.overrides)?;
        Ok(base)
    }

    /// Expand requested names into targets (groups first, as buildx does).
    fn expand(
        &mut self,
        name: &str,
        seen: &mut HashSet<String>,
        out: &mut Vec<Target>,
        groups: &mut BTreeMap<String, Vec<String>>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 32 {
            return Err(format!(
                "groups nest deeper than 32 (a cycle through {name:?}?)"
            ));
        }
        if let Some((members, _)) = self.groups.get(name).cloned() {
            groups.insert(name.to_string(), members.clone());
            for m in &members {
                self.expand(m, seen, out, groups, depth + 1)?;
            }
            return Ok(());
        }
        let Some(ts) = self.evaluated(name)? else {
            let mut known: Vec<&String> = self.blocks.keys().chain(self.groups.keys()).collect();
            known.sort();
            known.dedup();
            return Err(format!(
                "no target or group named {name:?} (defined: {})",
                known
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if ts.len() > 1 || ts.first().is_some_and(|t| t.name != name) {
            groups.insert(
                name.to_string(),
                ts.iter().map(|t| t.name.clone()).collect(),
            );
        }
        for t in ts {
            if seen.insert(t.name.clone()) {
                let t = self.inherited(&t, &mut vec![name.to_string()])?;
                out.push(t);
            }
        }
        Ok(())
    }
}

/// `target:` contexts must not lead back to the target.
fn check_context_cycles(targets: &[Target]) -> Result<(), String> {
    fn visit<'a>(
        t: &'a Target,
        all: &'a [Target],
        path: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Result<(), String> {
        if done.contains(t.name.as_str()) {
            return Ok(());
        }
        if path.contains(&t.name.as_str()) {
            path.push(&t.name);
            return Err(format!("contexts form a cycle: {}", path.join(" → ")));
        }
        path.push(&t.name);
        for n in t.needs() {
            if let Some(u) = all.iter().find(|u| u.name == n) {
                visit(u, all, path, done)?;
            }
        }
        path.pop();
        done.insert(&t.name);
        Ok(())
    }
    let mut done = HashSet::new();
    for t in targets {
        visit(t, targets, &mut vec![], &mut done)?;
    }
    Ok(())
}

/// Resolve bake files into the targets to build.
pub fn resolve(inputs: &Inputs) -> Result<Definition, String> {
    let files: Vec<RawFile> = inputs
        .files
        .iter()
        .map(|(n, t)| parse::parse(n, t))
        .collect::<Result<_, _>>()?;
    let mut fns: Vec<userfunc::UserFn> = vec![];
    for f in &files {
        for b in &f.functions {
            let u = userfunc::from_block(b)?;
            fns.retain(|x| x.name != u.name);
            fns.push(u);
        }
    }
    let scope = Scope::new(fns)?;
    let vars = variables(&files, inputs, &scope)?;
    scope.set_vars(vars.clone());

    let ctx = context(&scope, &vars);
    let mut groups: BTreeMap<String, (Vec<String>, Loc)> = BTreeMap::new();
    for f in &files {
        for g in &f.groups {
            let mut members = groups.remove(&g.name).map(|(m, _)| m).unwrap_or_default();
            for a in &g.attrs {
                match a.key.as_str() {
                    "targets" => {
                        let v = a.expr.evaluate(&ctx).map_err(|e| at(&a.at, "targets", e))?;
                        for m in strings(&v).map_err(|e| at(&a.at, "targets", e))? {
                            if !members.contains(&m) {
                                members.push(m);
                            }
                        }
                    }
                    "description" => {}
                    other => {
                        return Err(format!(
                            "{}: group {:?}: unknown key {other:?}",
                            a.at, g.name
                        ))
                    }
                }
            }
            groups.insert(g.name.clone(), (members, g.at.clone()));
        }
    }
    let mut blocks: BTreeMap<String, Vec<&RawBlock>> = BTreeMap::new();
    for f in &files {
        for t in &f.targets {
            blocks.entry(t.name.clone()).or_default().push(t);
        }
    }
    let overrides: Vec<Override> = inputs
        .overrides
        .iter()
        .map(|s| target::parse_override(s))
        .collect::<Result<_, _>>()?;
    let mut r = Resolver {
        blocks,
        groups,
        scope: &scope,
        vars,
        evaluated: BTreeMap::new(),
        overrides: overrides.clone(),
    };
    let requested = if inputs.requested.is_empty() {
        vec!["default".to_string()]
    } else {
        inputs.requested.clone()
    };
    let mut def = Definition::default();
    let mut seen = HashSet::new();
    let mut printed = BTreeMap::new();
    for name in &requested {
        r.expand(name, &mut seen, &mut def.targets, &mut printed, 0)?;
    }
    // A `contexts` value `target:NAME` needs that target built in this run
    // too (first), as buildx builds it.
    let mut i = 0;
    while i < def.targets.len() {
        let needs: Vec<String> = def.targets[i].needs().map(str::to_string).collect();
        for n in needs {
            if !def.targets.iter().any(|t| t.name == n) {
                let before = def.targets.len();
                r.expand(&n, &mut seen, &mut def.targets, &mut BTreeMap::new(), 0)?;
                if def.targets.len() == before || r.groups.contains_key(&n) {
                    return Err(format!(
                        "target {:?}: contexts target:{n} must name one target",
                        def.targets[i].name
                    ));
                }
            }
        }
        i += 1;
    }
    check_context_cycles(&def.targets)?;
    def.groups = printed;
    // `default`: the group of that name when it was expanded, else what was
    // asked for.
    def.groups
        .entry("default".into())
        .or_insert_with(|| requested.clone());
    // A --set must name something: a target being built or one they inherit.
    let mut names: Vec<String> = r
        .evaluated
        .values()
        .flatten()
        .map(|t| t.name.clone())
        .collect();
    names.extend(def.targets.iter().map(|t| t.name.clone()));
    for o in &overrides {
        let glob = globset::Glob::new(&o.pattern)
            .map_err(|e| format!("--set {}: {e}", o.pattern))?
            .compile_matcher();
        if !names.iter().any(|n| glob.is_match(n)) {
            return Err(format!(
                "--set {}.{}: no target being built matches {:?}",
                o.pattern, o.key, o.pattern
            ));
        }
    }
    Ok(def)
}

#[cfg(test)]
#[path = "eval_tests.rs"]
mod tests;
