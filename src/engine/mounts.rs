//! `RUN --mount`: Docker's mount options, read as BuildKit reads them (a CSV
//! list of `key=value` fields, each value expanded with the stage's variables),
//! and what each contributes to the step's cache key.
//!
//! It owns the options' meaning and defaults. Finding the sources (the context,
//! a stage, an image, a secret, the ssh agent) is the RUN step's job; putting
//! them in place is `exec::mounts`'.

use crate::exec::mounts::Sharing;

/// A secret's value (`--secret`): never printed.
#[derive(Clone, Default)]
pub struct SecretValue(pub Vec<u8>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bind {
        from: Option<String>,
        source: String,
        rw: bool,
    },
    Cache {
        id: String,
        from: Option<String>,
        source: String,
        sharing: Sharing,
        ro: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret {
        id: String,
        env: Option<String>,
        /// A file at the target (false: `env=` alone).
        file: bool,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute, in the image.
    pub target: String,
    pub kind: Kind,
}

impl MountSpec {
    /// The `from` a bind or cache mount reads.
    pub fn from(&self) -> Option<&str> {
        match &self.kind {
            Kind::Bind { from, .. } | Kind::Cache { from, .. } => from.as_deref(),
            _ => None,
        }
    }

    /// The path a bind or cache mount reads in its `from`.
    pub fn bind_source(&self) -> Option<&str> {
        match &self.kind {
            Kind::Bind { source, .. } | Kind::Cache { source, .. } => Some(source.as_str()),
            _ => None,
        }
    }

    /// What the mount adds to the step's cache key: its options, never a
    /// secret's value or a cache's content (BuildKit keys them the same way).
    /// The content of a bind mount's source is keyed by the caller.
    pub fn key(&self) -> String {
        format!("{}={:?}", self.target, self.kind)
    }
}

/// Split a CSV record as Go's encoding/csv does: `"` quotes a field, `""` is a
/// quote inside one.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
                continue;
            }
            c => cur.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(format!("unterminated quote in {s:?}"));
    }
    out.push(cur);
    Ok(out)
}

fn parse_bool(key: &str, v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(format!("invalid value for {key}: {other:?}")),
    }
}

fn parse_octal(key: &str, v: &str) -> Result<u32, String> {
    u32::from_str_radix(v, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid {key} {v:?}: use an octal mode such as 0755"))
}

fn parse_id(key: &str, v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("invalid {key} {v:?}: use a number"))
}

/// A size such as `64m` (k, m, g; powers of 1024), as `units.RAMInBytes`.
fn parse_size(v: &str) -> Result<u64, String> {
    let t = v.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {v:?}"))?;
    if n < 0.0 {
        return Err(format!("invalid size {v:?}"));
    }
    Ok((n * mult as f64) as u64)
}

/// The target as an absolute, cleaned path (as BuildKit joins and cleans it),
/// so `/x/` and `/x` are one target, and one cache when the id defaults to it.
fn absolute(target: &str, workdir: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("/{workdir}/{target}")
    };
    match crate::dockerfile::ignore::clean(&joined).as_str() {
        "." => "/".to_string(),
        c => format!("/{c}"),
    }
}

/// Parse one `--mount` value. `expand` expands a field's value with the
/// stage's variables; `workdir` anchors a relative target; `ssh_index` numbers
/// ssh mounts for their default socket path.
pub fn parse(
    value: &str,
    workdir: &str,
    ssh_index: usize,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<MountSpec, String> {
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for f in csv_fields(value)? {
        if f.is_empty() {
            continue;
        }
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(expand(v)?)),
            None => (f.trim().to_ascii_lowercase(), None),
        };
        fields.push((k, v));
    }
    let ty = fields
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.clone().unwrap_or_default())
        .unwrap_or_else(|| "bind".into());
    let mut target: Option<String> = None;
    let (mut id, mut from, mut source, mut env) = (None, None, None, None);
    let (mut rw, mut ro, mut required) = (false, false, false);
    let mut sharing = Sharing::Shared;
    let (mut mode, mut uid, mut gid, mut size) = (None, 0u32, 0u32, None);
    for (k, v) in &fields {
        let val = || {
            v.clone()
                .ok_or_else(|| format!("--mount {k} needs a value ({k}=...)"))
        };
        let allowed: &[&str] = match ty.as_str() {
            "bind" => &["from", "source", "src", "rw", "readwrite", "ro", "readonly"],
            "cache" => &[
                "id",
                "from",
                "source",
                "src",
                "sharing",
                "mode",
                "uid",
                "gid",
                "ro",
                "readonly",
                "rw",
                "readwrite",
            ],
            "tmpfs" => &["size"],
            "secret" => &[
                "id", "env", "required", "mode", "uid", "gid", "source", "src",
            ],
            "ssh" => &["id", "required", "mode", "uid", "gid"],
            other => {
                return Err(format!(
                    "unknown mount type {other:?}: use bind, cache, tmpfs, secret or ssh"
                ))
            }
        };
        match k.as_str() {
            "type" => continue,
            "target" | "dst" | "destination" => {
                target = Some(val()?);
                continue;
            }
            key if !allowed.contains(&key) => {
                return Err(format!("--mount type={ty} has no option {key:?}"))
            }
            _ => {}
        }
        match k.as_str() {
            "id" => id = Some(val()?),
            // A secret's `source` is its id, as BuildKit accepts.
            "source" | "src" if ty == "secret" => id = Some(val()?),
            "source" | "src" => source = Some(val()?),
            "from" => from = Some(val()?),
            "env" => env = Some(val()?),
            "rw" | "readwrite" => rw = parse_bool(k, v.as_deref())?,
            "ro" | "readonly" => ro = parse_bool(k, v.as_deref())?,
            "required" => required = parse_bool(k, v.as_deref())?,
            "mode" => mode = Some(parse_octal(k, &val()?)?),
            "uid" => uid = parse_id(k, &val()?)?,
            "gid" => gid = parse_id(k, &val()?)?,
            "size" => size = Some(parse_size(&val()?)?),
            "sharing" => {
                sharing = match val()?.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    o => {
                        return Err(format!(
                            "invalid sharing {o:?}: use shared, private or locked"
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    let target = target
        .filter(|t| !t.is_empty())
        .map(|t| absolute(&t, workdir));
    let need_target = || {
        target
            .clone()
            .ok_or_else(|| format!("--mount type={ty} needs a target (target=/path)"))
    };
    let spec = match ty.as_str() {
        "bind" => MountSpec {
            target: need_target()?,
            kind: Kind::Bind {
                from,
                source: source.unwrap_or_else(|| "/".into()),
                rw: rw && !ro,
            },
        },
        "cache" => {
            let target = need_target()?;
            MountSpec {
                kind: Kind::Cache {
                    id: id.unwrap_or_else(|| target.clone()),
                    from,
                    source: source.unwrap_or_else(|| "/".into()),
                    sharing,
                    ro: ro && !rw,
                    mode: mode.unwrap_or(0o755),
                    uid,
                    gid,
                },
                target,
            }
        }
        "tmpfs" => MountSpec {
            target: need_target()?,
            kind: Kind::Tmpfs { size },
        },
        "secret" => {
            let id = match (id, &target) {
                (Some(i), _) => i,
                (None, Some(t)) => t.rsplit('/').next().unwrap_or("").to_string(),
                (None, None) => {
                    return Err("--mount type=secret needs an id (id=NAME) or a target".into())
                }
            };
            if id.is_empty() {
                return Err("--mount type=secret needs an id (id=NAME)".into());
            }
            let file = target.is_some() || env.is_none();
            MountSpec {
                target: target.unwrap_or_else(|| format!("/run/secrets/{id}")),
                kind: Kind::Secret {
                    id,
                    env,
                    file,
                    required,
                    mode: mode.unwrap_or(0o400),
                    uid,
                    gid,
                },
            }
        }
        "ssh" => MountSpec {
            target: target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}")),
            kind: Kind::Ssh {
                id: id.unwrap_or_else(|| "default".into()),
                required,
                mode: mode.unwrap_or(0o600),
                uid,
                gid,
            },
        },
        other => {
            return Err(format!(
                "unknown mount type {other:?}: use bind, cache, tmpfs, secret or ssh"
            ))
        }
    };
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<MountSpec, String> {
        parse(v, "/work", 0, &|s| Ok(s.replace("$ID", "pip")))
    }

    #[test]
    fn cache_defaults_and_options() {
        let m = p("type=cache,target=/root/.cache").unwrap();
        assert_eq!(
            m.kind,
            Kind::Cache {
                id: "/root/.cache".into(),
                from: None,
                source: "/".into(),
                sharing: Sharing::Shared,
                ro: false,
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );
        let m = p("type=cache,id=$ID,dst=.cache,sharing=locked,mode=0700,uid=1000,gid=1000,ro")
            .unwrap();
        assert_eq!(m.target, "/work/.cache", "relative to WORKDIR");
        // A trailing slash or a dot names the same target, and the same cache.
        for t in ["/root/.cache/", "/root/./.cache", "/root//.cache/"] {
            let m = p(&format!("type=cache,target={t}")).unwrap();
            assert_eq!(m.target, "/root/.cache", "{t}");
            assert!(matches!(m.kind, Kind::Cache { ref id, .. } if id == "/root/.cache"));
        }
        assert!(matches!(
            m.kind,
            Kind::Cache { ref id, sharing: Sharing::Locked, ro: true, mode: 0o700, uid: 1000, gid: 1000, .. } if id == "pip"
        ));
    }

    #[test]
    fn secret_defaults_env_and_id_from_target() {
        let m = p("type=secret,id=npmrc").unwrap();
        assert_eq!(m.target, "/run/secrets/npmrc");
        assert!(matches!(
            m.kind,
            Kind::Secret {
                file: true,
                required: false,
                mode: 0o400,
                ..
            }
        ));
        let m = p("type=secret,id=tok,env=TOKEN").unwrap();
        assert!(
            matches!(m.kind, Kind::Secret { file: false, ref env, .. } if env.as_deref() == Some("TOKEN"))
        );
        let m = p("type=secret,target=/root/.npmrc,required").unwrap();
        assert!(matches!(m.kind, Kind::Secret { ref id, required: true, .. } if id == ".npmrc"));
        assert!(p("type=secret").is_err());
    }

    #[test]
    fn bind_ssh_tmpfs_and_quoting() {
        let m = p(r#"type=bind,"source=a,b",target=/src,rw"#).unwrap();
        assert_eq!(
            m.kind,
            Kind::Bind {
                from: None,
                source: "a,b".into(),
                rw: true
            }
        );
        let m = parse("type=ssh", "/", 2, &|s| Ok(s.to_string())).unwrap();
        assert_eq!(m.target, "/run/buildkit/ssh_agent.2");
        let m = p("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(
            m.kind,
            Kind::Tmpfs {
                size: Some(64 << 20)
            }
        );
        assert_eq!(
            p("target=/x").unwrap().kind,
            Kind::Bind {
                from: None,
                source: "/".into(),
                rw: false
            },
            "bind is the default type"
        );
    }

    #[test]
    fn bad_options_are_errors() {
        for bad in [
            "type=cache",
            "type=nfs,target=/x",
            "type=bind,target=/x,uid=1",
            "type=cache,target=/x,sharing=sometimes",
            "type=cache,target=/x,mode=999",
            "type=tmpfs,target=/x,size=lots",
            r#"type=bind,"target=/x"#,
        ] {
            assert!(p(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_key_holds_options_but_never_a_secret_value() {
        let a = p("type=secret,id=tok").unwrap().key();
        assert!(a.contains("tok"));
        let b = p("type=cache,target=/c,id=one").unwrap().key();
        let c = p("type=cache,target=/c,id=two").unwrap().key();
        assert_ne!(b, c);
    }
}
