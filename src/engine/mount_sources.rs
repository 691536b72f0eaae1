//! What each `RUN --mount` shows, found for one step: a path of the build
//! context or of another stage's root, the cache dir of a cache id, a secret
//! given with `--secret`, the ssh agent given with `--ssh`.
//!
//! It owns where cache mounts live (`<cache dir>/mounts/`), the rule that a bind
//! of the context shows what `.dockerignore` leaves (a filtered private copy when
//! it excludes something there), and the errors of a missing secret or agent.
//! Putting the mounts in place is `exec::mounts`'.

use super::mounts::{Kind, MountSpec};
use super::plan::Plan;
use super::session::Session;
use super::stage::{SourceKey, Sources};
use crate::exec::mounts::{Mount, SecretEnv, Source};
use crate::fs::resolve::{host_path, resolve, Confine};
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};

/// The root directory of each mount's `from` stage or image, materialized.
pub async fn source_roots(
    sess: &Session<'_>,
    sources: &mut Sources,
    keys: &[Option<SourceKey>],
) -> Result<Vec<Option<PathBuf>>> {
    let mut out = Vec::new();
    for k in keys {
        let Some(k) = k else {
            out.push(None);
            continue;
        };
        if let SourceKey::Dir(n) = k {
            let dir = sess
                .req
                .build_contexts
                .iter()
                .find_map(|(name, c)| match c {
                    super::request::NamedContext::Dir(d) if name == n => Some(d.clone()),
                    _ => None,
                });
            out.push(Some(dir.ok_or_else(|| {
                anyhow!("build context {n} is not a directory")
            })?));
            continue;
        }
        let mut s = sources
            .take(k)
            .ok_or_else(|| anyhow!("RUN --mount from= source missing"))?;
        let r = sess.materialize(&mut s).await;
        let dir = s.rootfs.as_ref().map(|r| r.dir().to_path_buf());
        sources.put(k, s);
        r?;
        out.push(dir);
    }
    Ok(out)
}

/// A cache id as a directory name: readable, and unique by its hash.
fn cache_name(id: &str) -> String {
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    let readable: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let readable = readable.trim_matches(|c| c == '_' || c == '.');
    let tail: String = readable
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}-{}", &h[..16])
}

/// The mounts of a step, and the secrets it gets as environment variables.
pub fn resolve_mounts(
    sess: &Session<'_>,
    plan: &Plan,
    line: usize,
    specs: &[MountSpec],
    roots: &[Option<PathBuf>],
) -> Result<(Vec<Mount>, SecretEnv)> {
    let mut mounts = Vec::new();
    let mut env = SecretEnv::default();
    let err =
        |m: &MountSpec, msg: String| plan.err(line, format!("RUN --mount at {}: {msg}", m.target));
    for (n, (m, root)) in specs.iter().zip(roots).enumerate() {
        let source = match &m.kind {
            Kind::Bind { from, source, rw } => {
                let (host, owned) = match root {
                    Some(r) => (in_root(r, source).map_err(|e| err(m, e))?, false),
                    None => context_source(sess, source, n).map_err(|e| err(m, e))?,
                };
                if from.is_some() && !host.exists() {
                    return Err(err(
                        m,
                        format!(
                            "{source} does not exist in {}",
                            from.as_deref().unwrap_or("")
                        ),
                    ));
                }
                Source::Tree {
                    host,
                    owned,
                    rw: *rw,
                }
            }
            Kind::Cache {
                id,
                source,
                sharing,
                ro,
                mode,
                uid,
                gid,
                ..
            } => {
                let base = sess.req.cache_dir.join("mounts");
                private_dir(&base)
                    .map_err(|e| err(m, format!("cannot create {}: {e}", base.display())))?;
                let seed = match root {
                    Some(r) => Some(in_root(r, source).map_err(|e| err(m, e))?),
                    None => None,
                };
                Source::Cache(crate::exec::mounts::Cache {
                    dir: base.join(cache_name(id)),
                    sharing: *sharing,
                    ro: *ro,
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    seed,
                })
            }
            Kind::Tmpfs { size } => Source::Tmpfs { size: *size },
            Kind::Secret {
                id,
                env: var,
                file,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some((_, value)) = sess.req.secrets.iter().find(|(i, _)| i == id) else {
                    if *required {
                        return Err(plan.err(
                            line,
                            format!("RUN --mount=type=secret,id={id}: the secret {id:?} is required and was not given; pass --secret id={id},src=FILE or --secret id={id},env=VAR"),
                        ));
                    }
                    tracing::info!("RUN --mount=type=secret,id={id}: no such --secret; the step runs without it");
                    continue;
                };
                if let Some(var) = var {
                    let v = String::from_utf8(value.0.clone()).map_err(|_| {
                        plan.err(line, format!("RUN --mount=type=secret,id={id},env={var}: the secret is not UTF-8 text, so it cannot be an environment variable"))
                    })?;
                    env.0.push((var.clone(), v));
                }
                if !*file {
                    continue;
                }
                Source::Secret {
                    data: value.0.clone(),
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                }
            }
            Kind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some((_, agent)) = sess.req.ssh.iter().find(|(i, _)| i == id) else {
                    if *required {
                        return Err(plan.err(
                            line,
                            format!("RUN --mount=type=ssh,id={id}: no ssh agent {id:?} was given; pass --ssh {id} (the agent at $SSH_AUTH_SOCK) or --ssh {id}=SOCKET"),
                        ));
                    }
                    sess.report.line(&format!(
                        "warning: RUN --mount=type=ssh (line {line}): no --ssh {id} given, so the step has no ssh agent"
                    ));
                    continue;
                };
                Source::Ssh {
                    agent: agent.clone(),
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                }
            }
        };
        mounts.push(Mount {
            target: m.target.clone(),
            source,
        });
    }
    Ok((mounts, env))
}

/// `source` inside a stage's root, as the stage sees it.
/// Create `dir` (and its parents) and make it 0700. Cache mounts hold what
/// steps wrote as root, setuid binaries included: on a shared machine (a
/// shell-executor runner) no other local user may reach them, during the build
/// or after it. A dir made by an older kiln is tightened.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn in_root(root: &Path, source: &str) -> Result<PathBuf, String> {
    let rel = resolve(root, source, true, Confine::Clamp).map_err(|e| e.to_string())?;
    Ok(host_path(root, &rel))
}

/// A path of the build context, as a bind mount shows it: the path itself, or,
/// when `.dockerignore` leaves something out below it, a private copy without
/// it in the work dir (`owned`).
fn context_source(sess: &Session<'_>, source: &str, n: usize) -> Result<(PathBuf, bool), String> {
    let ctx = &sess.req.context;
    let rel = resolve(ctx, source, true, Confine::Clamp).map_err(|e| e.to_string())?;
    let host = host_path(ctx, &rel);
    if !host.exists() {
        return Err(format!("{source} does not exist in the build context"));
    }
    let ignore = &sess.ignore;
    if ignore.is_empty() {
        return Ok((host, false));
    }
    let full = |inner: &str| -> String {
        match (rel.is_empty(), inner.is_empty()) {
            (true, _) => inner.to_string(),
            (false, true) => rel.clone(),
            (false, false) => format!("{rel}/{inner}"),
        }
    };
    if !rel.is_empty() && ignore.is_ignored(&rel) {
        return Err(format!("{source} is excluded by .dockerignore"));
    }
    let any_ignored = walkdir::WalkDir::new(&host)
        .min_depth(1)
        .into_iter()
        .filter_map(|e| e.ok())
        .any(|e| {
            let inner = e.path().strip_prefix(&host).unwrap_or(e.path());
            ignore.is_ignored(&full(&inner.to_string_lossy()))
        });
    if !any_ignored {
        return Ok((host, false));
    }
    let copy = sess
        .work_path()
        .join(format!("bind-{n}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    crate::fs::tree::copy_tree(&host, &copy, &|inner| ignore.is_ignored(&full(inner)))
        .map_err(|e| format!("cannot copy {source} from the build context: {e}"))?;
    Ok((copy, true))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cache_names_are_readable_and_distinct() {
        let a = super::cache_name("/root/.cache/pip");
        let b = super::cache_name("/root/.cache/pip/");
        assert!(a.starts_with("root_.cache_pip-"), "{a}");
        assert_ne!(a, b);
        assert!(!super::cache_name("../../etc").contains('/'));
    }
}
