//! A bake target's keys as values, merged as buildx merges them (files in
//! order, then `inherits`), overridden by `--set`, and written as `--print`
//! writes them.

use super::parse::Loc;
use serde_json::{json, Map as JMap, Value as J};
use std::collections::BTreeMap;

/// A `type=registry,ref=…` option list (cache-from, cache-to, output, secret,
/// ssh, attest) as key → value.
pub type Opts = BTreeMap<String, String>;

/// One target, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub name: String,
    pub description: Option<String>,
    pub context: Option<String>,
    pub contexts: BTreeMap<String, String>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    pub args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub tags: Option<Vec<String>>,
    pub cache_from: Option<Vec<Opts>>,
    pub cache_to: Option<Vec<Opts>>,
    pub target: Option<String>,
    pub secret: Option<Vec<Opts>>,
    pub ssh: Option<Vec<Opts>>,
    pub platforms: Option<Vec<String>>,
    pub output: Option<Vec<Opts>>,
    pub pull: Option<bool>,
    pub no_cache: Option<bool>,
    pub annotations: Option<Vec<String>>,
    pub attest: Option<Vec<Opts>>,
    pub inherits: Vec<String>,
    /// Where each key was last set (for errors found later, e.g. an output
    /// type kiln cannot write).
    pub at: BTreeMap<String, Loc>,
}

/// The keys a target may have, and whether kiln honours them. The others
/// buildx knows are refused by name, never ignored.
pub const KEYS: &[&str] = &[
    "description",
    "context",
    "contexts",
    "dockerfile",
    "dockerfile-inline",
    "args",
    "labels",
    "tags",
    "cache-from",
    "cache-to",
    "target",
    "secret",
    "ssh",
    "platforms",
    "output",
    "pull",
    "no-cache",
    "annotations",
    "attest",
    "inherits",
    "matrix",
    "name",
];

/// buildx keys kiln does not honour, with the reason.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "network",
        "RUN steps use the job's network as the sandbox allows it",
    ),
    (
        "no-cache-filter",
        "kiln's --no-cache (no-cache = true) is per target",
    ),
    ("shm-size", "RUN steps get Docker's default /dev/shm"),
    ("ulimits", "RUN steps keep the job's limits"),
    (
        "call",
        "kiln builds images; it has no build checks or outlines",
    ),
    (
        "entitlements",
        "kiln grants no extra privileges to RUN steps",
    ),
    ("extra-hosts", "RUN steps resolve names as the job does"),
];

/// Split buildx's CSV option syntax (`type=registry,"ref=a,b"`) into fields.
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// One option list from its CSV text, as buildx reads each key's shorthand:
/// a bare value is a registry ref (cache-from/to), a local destination
/// (output), an id (secret, ssh), a type (attest).
pub fn opts_from_csv(key: &str, s: &str) -> Result<Opts, String> {
    let mut o = Opts::new();
    // `--ssh` syntax, not CSV: ID[=PATH[,PATH…]].
    if key == "ssh" && !s.starts_with("id=") {
        let (id, paths) = s.split_once('=').unwrap_or((s, ""));
        if id.is_empty() {
            return Err("ssh: an empty id".into());
        }
        o.insert("id".into(), id.into());
        if !paths.is_empty() {
            o.insert("paths".into(), paths.into());
        }
        return Ok(o);
    }
    for f in csv_fields(s) {
        if f.is_empty() {
            continue;
        }
        match f.split_once('=') {
            Some((k, v)) => {
                o.insert(k.trim().to_string(), v.to_string());
            }
            None => {
                let (k, extra) = match key {
                    "cache-from" | "cache-to" => ("ref", Some(("type", "registry"))),
                    "output" if f != "-" => ("dest", Some(("type", "local"))),
                    "output" => ("dest", Some(("type", "tar"))),
                    "attest" => ("type", None),
                    _ => ("id", None),
                };
                o.insert(k.into(), f.clone());
                if let Some((k, v)) = extra {
                    o.entry(k.into()).or_insert_with(|| v.into());
                }
            }
        }
    }
    if o.is_empty() {
        return Err(format!("{key}: an empty option list"));
    }
    Ok(o)
}

/// Merge option lists: an entry replaces one with the same identity
/// (secret/ssh id, attest type, cache ref), others append.
fn merge_opts(base: &mut Vec<Opts>, more: &[Opts]) {
    let id = |o: &Opts| {
        o.get("id")
            .or_else(|| o.get("ref"))
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("{o:?}"))
    };
    for m in more {
        let key = (m.get("type").cloned(), id(m));
        match base
            .iter_mut()
            .find(|b| (b.get("type").cloned(), id(b)) == key)
        {
            Some(b) => *b = m.clone(),
            None => base.push(m.clone()),
        }
    }
}

impl Target {
    /// The targets its `contexts` name (`target:NAME`).
    pub fn needs(&self) -> impl Iterator<Item = &str> {
        self.contexts
            .values()
            .filter_map(|v| v.strip_prefix("target:"))
    }

    /// buildx's merge: `other`'s keys win; maps merge per entry; cache-from,
    /// secret, ssh, attest and annotations merge; the other lists replace.
    pub fn merge(&mut self, other: &Target) {
        fn set<T: Clone>(a: &mut Option<T>, b: &Option<T>) {
            if b.is_some() {
                a.clone_from(b);
            }
        }
        set(&mut self.description, &other.description);
        set(&mut self.context, &other.context);
        set(&mut self.dockerfile, &other.dockerfile);
        set(&mut self.dockerfile_inline, &other.dockerfile_inline);
        set(&mut self.target, &other.target);
        set(&mut self.tags, &other.tags);
        set(&mut self.platforms, &other.platforms);
        set(&mut self.cache_to, &other.cache_to);
        set(&mut self.output, &other.output);
        set(&mut self.pull, &other.pull);
        set(&mut self.no_cache, &other.no_cache);
        self.args.extend(other.args.clone());
        self.labels.extend(other.labels.clone());
        self.contexts.extend(other.contexts.clone());
        for (mine, theirs) in [
            (&mut self.cache_from, &other.cache_from),
            (&mut self.secret, &other.secret),
            (&mut self.ssh, &other.ssh),
            (&mut self.attest, &other.attest),
        ] {
            if let Some(t) = theirs {
                merge_opts(mine.get_or_insert_with(Vec::new), t);
            }
        }
        if let Some(a) = &other.annotations {
            self.annotations
                .get_or_insert_with(Vec::new)
                .extend(a.clone());
        }
        self.inherits.extend(other.inherits.clone());
        self.at.extend(other.at.clone());
    }

    /// The target as `--print` writes it (buildx's field names; the context
    /// and Dockerfile defaults filled in).
    pub fn to_json(&self) -> J {
        let mut m = JMap::new();
        let opt_list = |v: &[Opts]| {
            J::Array(
                v.iter()
                    .map(|o| {
                        J::Object(
                            o.iter()
                                .map(|(k, v)| {
                                    let v = if k == "paths" {
                                        json!(v.split(',').collect::<Vec<_>>())
                                    } else {
                                        J::String(v.clone())
                                    };
                                    (k.clone(), v)
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        };
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert(
            "context".into(),
            json!(self.context.as_deref().unwrap_or(".")),
        );
        if !self.contexts.is_empty() {
            m.insert("contexts".into(), json!(self.contexts));
        }
        m.insert(
            "dockerfile".into(),
            json!(self.dockerfile.as_deref().unwrap_or("Dockerfile")),
        );
        if let Some(d) = &self.dockerfile_inline {
            m.insert("dockerfile-inline".into(), json!(d));
        }
        if !self.args.is_empty() {
            m.insert("args".into(), json!(self.args));
        }
        if !self.labels.is_empty() {
            m.insert("labels".into(), json!(self.labels));
        }
        for (k, v) in [("tags", &self.tags)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                m.insert(k.into(), json!(v));
            }
        }
        for (k, v) in [
            ("cache-from", &self.cache_from),
            ("cache-to", &self.cache_to),
        ] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                m.insert(k.into(), opt_list(v));
            }
        }
        if let Some(t) = &self.target {
            m.insert("target".into(), json!(t));
        }
        for (k, v) in [("secret", &self.secret), ("ssh", &self.ssh)] {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                m.insert(k.into(), opt_list(v));
            }
        }
        if let Some(v) = self.platforms.as_ref().filter(|v| !v.is_empty()) {
            m.insert("platforms".into(), json!(v));
        }
        if let Some(v) = self.output.as_ref().filter(|v| !v.is_empty()) {
            m.insert("output".into(), opt_list(v));
        }
        if let Some(p) = self.pull {
            m.insert("pull".into(), json!(p));
        }
        if let Some(p) = self.no_cache {
            m.insert("no-cache".into(), json!(p));
        }
        if let Some(v) = self.annotations.as_ref().filter(|v| !v.is_empty()) {
            m.insert("annotations".into(), json!(v));
        }
        if let Some(v) = self.attest.as_ref().filter(|v| !v.is_empty()) {
            m.insert("attest".into(), opt_list(v));
        }
        J::Object(m)
    }
}

/// One `--set pattern.key[.sub]=value` (or `+=`, or a bare boolean key).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub pattern: String,
    pub key: String,
    pub sub: Option<String>,
    pub value: Option<String>,
    pub append: bool,
}

/// Parse a `--set`.
pub fn parse_override(s: &str) -> Result<Override, String> {
    let (lhs, value, append) = match s.split_once('=') {
        Some((l, v)) if l.ends_with('+') => (&l[..l.len() - 1], Some(v.to_string()), true),
        Some((l, v)) => (l, Some(v.to_string()), false),
        None => (s, None, false),
    };
    let mut parts = lhs.splitn(3, '.');
    let (Some(pattern), Some(key)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "--set {}: write TARGET.KEY=VALUE (TARGET may be a pattern such as *)",
            crate::clip::clip(s)
        ));
    };
    let sub = parts.next().map(str::to_string);
    let key = match key {
        "platform" => "platforms",
        "secrets" => "secret",
        k => k,
    };
    let maps = ["args", "labels", "contexts"];
    if maps.contains(&key) != sub.is_some() {
        return Err(format!(
            "--set {}: {key} {}",
            crate::clip::clip(s),
            if sub.is_some() {
                "takes no sub-key"
            } else {
                "needs a name, as in TARGET.args.NAME=VALUE"
            }
        ));
    }
    if value.is_none() && !matches!(key, "no-cache" | "pull") {
        return Err(format!(
            "--set {}: {key} needs =VALUE",
            crate::clip::clip(s)
        ));
    }
    // Every target key but those that shape the file rather than the build.
    let known = KEYS
        .iter()
        .any(|k| *k == key && !matches!(*k, "description" | "inherits" | "matrix" | "name"));
    if !known {
        return Err(match REFUSED.iter().find(|(k, _)| *k == key) {
            Some((k, why)) => format!(
                "--set {}: kiln does not honour {k}: {why}",
                crate::clip::clip(s)
            ),
            None => format!("--set {}: unknown key {key:?}", crate::clip::clip(s)),
        });
    }
    Ok(Override {
        pattern: pattern.to_string(),
        key: key.to_string(),
        sub,
        value,
        append,
    })
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean")),
    }
}

/// Apply the overrides that match `t.name`, in order. Several `=` overrides
/// of one list key accumulate (as buildx's repeated `--set` do); `+=`
/// appends to what the file has.
pub fn apply(t: &mut Target, overrides: &[Override]) -> Result<(), String> {
    let mut replaced: Vec<&str> = vec![];
    for o in overrides {
        let glob = globset::Glob::new(&o.pattern)
            .map_err(|e| format!("--set {}: {e}", o.pattern))?
            .compile_matcher();
        if !glob.is_match(&t.name) {
            continue;
        }
        let v = o.value.clone().unwrap_or_else(|| "true".into());
        let fresh = !o.append && !replaced.contains(&o.key.as_str());
        if fresh {
            replaced.push(o.key.as_str());
        }
        let list = |l: &mut Option<Vec<String>>, items: Vec<String>| {
            let l = l.get_or_insert_with(Vec::new);
            if fresh {
                l.clear();
            }
            l.extend(items);
        };
        let opts = |l: &mut Option<Vec<Opts>>, key: &str| -> Result<(), String> {
            let l = l.get_or_insert_with(Vec::new);
            if fresh {
                l.clear();
            }
            l.push(opts_from_csv(key, &v)?);
            Ok(())
        };
        let sub = o.sub.clone().unwrap_or_default();
        match o.key.as_str() {
            "args" => drop(t.args.insert(sub, v.clone())),
            "labels" => drop(t.labels.insert(sub, v.clone())),
            "contexts" => drop(t.contexts.insert(sub, v.clone())),
            "context" => t.context = Some(v.clone()),
            "dockerfile" => t.dockerfile = Some(v.clone()),
            "dockerfile-inline" => t.dockerfile_inline = Some(v.clone()),
            "target" => t.target = Some(v.clone()),
            "tags" => list(&mut t.tags, vec![v.clone()]),
            "annotations" => list(&mut t.annotations, vec![v.clone()]),
            "platforms" => list(
                &mut t.platforms,
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
            ),
            "cache-from" => opts(&mut t.cache_from, "cache-from")?,
            "cache-to" => opts(&mut t.cache_to, "cache-to")?,
            "secret" => opts(&mut t.secret, "secret")?,
            "ssh" => opts(&mut t.ssh, "ssh")?,
            "output" => opts(&mut t.output, "output")?,
            "attest" => opts(&mut t.attest, "attest")?,
            "pull" => {
                t.pull = Some(parse_bool(&v).map_err(|e| format!("--set {}.pull: {e}", o.pattern))?)
            }
            "no-cache" => {
                t.no_cache =
                    Some(parse_bool(&v).map_err(|e| format!("--set {}.no-cache: {e}", o.pattern))?)
            }
            other => return Err(format!("--set: unknown key {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_options_read_as_buildx_reads_them() {
        let o = opts_from_csv("cache-to", "type=registry,ref=r/app:cache,mode=max").unwrap();
        assert_eq!(o["ref"], "r/app:cache");
        assert_eq!(o["mode"], "max");
        let o = opts_from_csv("cache-from", "user/repo:cache").unwrap();
        assert_eq!(
            (o["type"].as_str(), o["ref"].as_str()),
            ("registry", "user/repo:cache")
        );
        let o = opts_from_csv("output", "type=oci,\"dest=a,b\"").unwrap();
        assert_eq!(o["dest"], "a,b");
        let o = opts_from_csv("ssh", "default=/k1,/k2").unwrap();
        assert_eq!(
            (o["id"].as_str(), o["paths"].as_str()),
            ("default", "/k1,/k2")
        );
        assert!(opts_from_csv("output", "").is_err());
    }

    #[test]
    fn merge_replaces_lists_and_merges_maps() {
        let mut a = Target {
            tags: Some(vec!["a".into()]),
            args: [("X".to_string(), "1".to_string()), ("Y".into(), "1".into())].into(),
            cache_from: Some(vec![opts_from_csv("cache-from", "r/a").unwrap()]),
            ..Default::default()
        };
        let b = Target {
            tags: Some(vec!["b".into()]),
            args: [("Y".to_string(), "2".to_string())].into(),
            cache_from: Some(vec![opts_from_csv("cache-from", "r/b").unwrap()]),
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.tags, Some(vec!["b".into()]));
        assert_eq!(a.args["X"], "1");
        assert_eq!(a.args["Y"], "2");
        assert_eq!(a.cache_from.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn overrides_match_patterns_accumulate_and_append() {
        let sets: Vec<Override> = [
            "app*.args.V=2",
            "*.tags=r/x:1",
            "*.tags=r/x:2",
            "app.platform=linux/amd64,linux/arm64",
            "app.no-cache",
            "app.annotations+=a=b",
        ]
        .iter()
        .map(|s| parse_override(s).unwrap())
        .collect();
        let mut t = Target {
            name: "app".into(),
            tags: Some(vec!["old".into()]),
            annotations: Some(vec!["k=v".into()]),
            ..Default::default()
        };
        apply(&mut t, &sets).unwrap();
        assert_eq!(t.args["V"], "2");
        assert_eq!(t.tags, Some(vec!["r/x:1".into(), "r/x:2".into()]));
        assert_eq!(t.platforms.as_ref().map(Vec::len), Some(2));
        assert_eq!(t.no_cache, Some(true));
        assert_eq!(t.annotations, Some(vec!["k=v".into(), "a=b".into()]));
        let mut other = Target {
            name: "db".into(),
            ..Default::default()
        };
        apply(&mut other, &sets).unwrap();
        assert!(other.args.is_empty());
    }

    #[test]
    fn bad_overrides_say_why() {
        assert!(parse_override("app")
            .unwrap_err()
            .contains("TARGET.KEY=VALUE"));
        assert!(parse_override("app.args=1")
            .unwrap_err()
            .contains("needs a name"));
        assert!(parse_override("app.network=host")
            .unwrap_err()
            .contains("does not honour network"));
        assert!(parse_override("app.bogus=1")
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse_override("app.tags")
            .unwrap_err()
            .contains("needs =VALUE"));
    }
}
