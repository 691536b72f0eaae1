//! A COPY or ADD step: what its words mean with the stage's variables (sources,
//! heredoc files, the absolute destination, `--chmod`, `--chown`, `--from`), and
//! running it against the stage's rootfs with [`copy`](super::copy), which knows
//! Docker's copy rules but no Dockerfile.
//!
//! It owns the step's preparation and the owner lookup in the stage's
//! /etc/passwd. Resolving `--from` to a stage or image is the engine's job.

use super::copy;
use super::plan::Plan;
use super::session::Session;
use super::stage::Stage;
use crate::dockerfile::parse::{CopyArgs, Form, Instruction};
use crate::layer::BuiltLayer;
use anyhow::{anyhow, Result};

/// A COPY/ADD as planned, before `--from` is resolved.
pub struct CopyPrep {
    pub spec: copy::CopySpec,
    /// `--chown` as written, after expansion (resolved in the rootfs when run).
    pub chown: Option<String>,
    /// `--from`, after expansion.
    pub from: Option<String>,
    /// ADD's URL sources (`spec.sources` holds the local ones beside them).
    pub urls: Vec<String>,
    /// ADD `--checksum`, expanded.
    pub checksum: Option<String>,
    /// The directory the URLs were fetched into and the files' names, when
    /// they were fetched to key the step.
    pub fetched: Option<(std::path::PathBuf, Vec<String>)>,
    /// ADD of a git repository, and the commit its ref named when keyed.
    pub git: Option<(super::git_source::GitRef, Option<String>)>,
    /// ADD `--keep-git-dir`.
    pub keep_git_dir: bool,
}

/// Plan a COPY/ADD: expand its arguments with the stage state at this point.
pub fn prepare(
    sess: &Session,
    plan: &Plan,
    stage: &Stage,
    ins: &Instruction,
    c: &CopyArgs,
    is_add: bool,
) -> Result<CopyPrep> {
    let line = ins.line;
    let kw = if is_add { "ADD" } else { "COPY" };
    let vars = stage.vars();
    let mut words = match &c.args {
        Form::Exec(v) => v
            .iter()
            .map(|w| plan.word(line, w, &vars))
            .collect::<Result<Vec<_>>>()?,
        Form::Shell(s) => plan.words(line, s, &vars)?,
    };
    let dest_raw = words
        .pop()
        .ok_or_else(|| plan.err(line, format!("{kw} needs a destination")))?;
    let mut sources = words;
    let is_url = |s: &str| s.starts_with("http://") || s.starts_with("https://");
    let git_sources: Vec<super::git_source::GitRef> = sources
        .iter()
        .filter_map(|s| super::git_source::parse(s))
        .collect();
    let git = match (git_sources.len(), sources.len(), is_add) {
        (0, _, _) => None,
        (1, 1, true) => Some((git_sources[0].clone(), None)),
        (_, _, false) => {
            return Err(plan.err(line, "COPY does not clone git repositories; use ADD"))
        }
        _ => {
            return Err(plan.err(
                line,
                "ADD of a git repository takes that one source: put other sources in an ADD of their own",
            ))
        }
    };
    if git.is_some() {
        sources.clear();
    }
    for s in &sources {
        if s.contains("://") && !(is_add && is_url(s)) {
            return Err(plan.err(
                line,
                if is_add {
                    format!("ADD {s}: only http:// and https:// URLs can be fetched")
                } else {
                    format!("COPY {s}: COPY does not fetch URLs; use ADD")
                },
            ));
        }
    }
    // URLs and local files may share an ADD, as in BuildKit: each is copied
    // into the destination.
    let urls: Vec<String> = sources.iter().filter(|s| is_url(s)).cloned().collect();
    sources.retain(|s| !is_url(s));
    let checksum = match &c.checksum {
        Some(v) => Some(plan.word(line, v, &vars)?),
        None => None,
    };
    if let Some(sum) = &checksum {
        let ok = sum
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(plan.err(
                line,
                format!("ADD --checksum={sum}: use sha256:<64 hex digits>"),
            ));
        }
        if urls.len() != 1 {
            return Err(plan.err(line, "ADD --checksum needs exactly one URL source"));
        }
    }
    let heredocs = c
        .heredocs
        .iter()
        .map(|h| {
            // An unquoted delimiter expands the body with the here-document rules.
            let content = if h.expand {
                plan.lexer
                    .heredoc(&h.content, &vars)
                    .map_err(|e| plan.err(line, e))
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
            super::chmod::Chmod::parse(&plan.word(line, m, &vars)?)
                .map_err(|e| plan.err(line, format!("{kw} --chmod: {e}")))?,
        ),
    };
    let chown = match &c.chown {
        None => None,
        Some(spec) => Some(plan.word(line, spec, &vars)?),
    };
    let from = match &c.from {
        None => None,
        Some(f) => Some(plan.word(line, f, &vars)?),
    };
    // A fetched file is copied as it is, a local archive unpacked, unless
    // --unpack says otherwise.
    let spec = copy::CopySpec {
        sources,
        heredocs,
        fetched: vec![],
        unpack_fetched: c.unpack == Some(true),
        dest,
        chown: None,
        chmod,
        is_add: is_add && c.unpack.unwrap_or(true),
        exclude: c
            .exclude
            .iter()
            .map(|e| plan.word(line, e, &vars))
            .collect::<Result<Vec<_>>>()?,
        parents: c.parents,
        clamp_mtime: sess.req.source_date_epoch,
        default_mtime: sess.now_secs,
    };
    Ok(CopyPrep {
        spec,
        chown,
        from,
        urls,
        checksum,
        fetched: None,
        git,
        keep_git_dir: c.keep_git_dir,
    })
}

/// An ADD URL for the provenance, by its content's digest.
pub fn material(url: &str, digest: &str) -> crate::attest::provenance::Material {
    use crate::attest::provenance::{Material, Resource};
    Material {
        platform: None,
        resource: Resource {
            name: None,
            uri: crate::attest::provenance::public_uri(url),
            digest: Resource::digest_of(digest),
            annotations: Default::default(),
        },
    }
}

/// Fetch ADD's URLs into a new directory of the work dir, as Docker names and
/// dates them (Content-Disposition or the URL's last segment; Last-Modified),
/// mode 0600; checks `--checksum`. Returns the directory and the names.
pub async fn fetch_urls(
    sess: &Session<'_>,
    plan: &Plan,
    line: usize,
    prep: &CopyPrep,
) -> Result<(std::path::PathBuf, Vec<String>)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("add-")
        .tempdir_in(sess.work_path())?
        .keep();
    let mut names = Vec::new();
    for url in &prep.urls {
        let part = dir.join(".part");
        let f = sess
            .client
            .fetch_url(url, &part)
            .await
            .map_err(|e| plan.err(line, format!("ADD {e}")))?;
        if let Some(want) = &prep.checksum {
            if !f.digest.eq_ignore_ascii_case(want) {
                return Err(plan.err(
                    line,
                    format!("ADD {url}: --checksum does not match: the file is {}, the Dockerfile wants {want}", f.digest),
                ));
            }
        }
        sess.materials.record(material(url, &f.digest));
        if names.contains(&f.name) {
            return Err(plan.err(
                line,
                format!("ADD: two URLs give the same file name {:?}", f.name),
            ));
        }
        let target = dir.join(&f.name);
        std::fs::rename(&part, &target)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))?;
        if let Some(m) = f.mtime {
            crate::fs::tree::set_mtime_to(&target, (m as i64, 0), false);
        }
        names.push(f.name);
    }
    Ok((dir, names))
}

/// Build a planned COPY/ADD: the layer, from the rootfs as it is at this step.
/// With `apply`, the copied files are also written into the rootfs as the layer
/// is built (a later step needs the filesystem).
///
/// `source` is the stage or image of `--from`; `named_dir` a named context's
/// directory (neither: the build context).
#[allow(clippy::too_many_arguments)]
pub async fn perform(
    sess: &Session<'_>,
    plan: &Plan,
    stage: &mut Stage,
    source: Option<&mut Stage>,
    named_dir: Option<std::path::PathBuf>,
    line: usize,
    prep: &CopyPrep,
    apply: bool,
) -> Result<Option<BuiltLayer>> {
    sess.materialize(stage).await?;
    let mut spec = prep.spec.clone();
    let git_dir = match &prep.git {
        Some((g, Some(commit))) => {
            let dir =
                super::git_source::checkout(sess, plan, line, g, commit, prep.keep_git_dir).await?;
            spec.sources = vec![".".into()];
            Some(dir)
        }
        Some((_, None)) => {
            return Err(plan.err(line, "ADD: the repository's commit was not resolved"))
        }
        None => None,
    };
    // ADD URLs: fetched when the step was keyed, or now (keyed by --checksum).
    if !prep.urls.is_empty() {
        let (dir, names) = match &prep.fetched {
            Some(f) => f.clone(),
            None => fetch_urls(sess, plan, line, prep).await?,
        };
        spec.fetched = names.iter().map(|n| (n.clone(), dir.join(n))).collect();
    }
    spec.chown = match &prep.chown {
        None => None,
        Some(c) => Some(resolve_owner(plan, line, stage, c, "--chown")?),
    };
    let src_rootfs = match source {
        Some(s) => {
            sess.materialize(s).await?;
            Some((
                s.rootfs
                    .take()
                    .ok_or_else(|| anyhow!("source rootfs missing"))?,
                s,
            ))
        }
        None => None,
    };
    let store = sess.store.clone();
    let level = sess.codec();
    // .dockerignore is the main context's; a named directory is taken whole.
    let (context, ignore) = match (git_dir, named_dir) {
        (Some(dir), _) | (None, Some(dir)) => (dir, crate::dockerfile::Ignore::default()),
        (None, None) => (sess.req.context.clone(), sess.ignore.clone()),
    };
    let mut dst = stage
        .rootfs
        .take()
        .ok_or_else(|| anyhow!("rootfs missing"))?;
    let (src_rootfs, src_stage) = match src_rootfs {
        Some((r, s)) => (Some(r), Some(s)),
        None => (None, None),
    };
    let t = std::time::Instant::now();
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
    let bytes = out
        .as_ref()
        .ok()
        .and_then(|o| o.as_ref())
        .map_or(0, |l| l.size);
    sess.report.phase("copy layer", t.elapsed(), bytes);
    stage.rootfs = Some(dst);
    if let (Some(s), Some(r)) = (src_stage, src_rootfs) {
        s.rootfs = Some(r);
    }
    out.map_err(|e| plan.err(line, e))
}

/// `user[:group]` (`--chown`, or USER for WORKDIR), names resolved in the
/// stage's /etc/passwd and /etc/group; `what` names the flag in errors.
pub fn resolve_owner(
    plan: &Plan,
    line: usize,
    stage: &Stage,
    spec: &str,
    what: &str,
) -> Result<(u32, u32)> {
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
            plan.err(
                line,
                format!("{what}: no user {user:?} in the stage's /etc/passwd"),
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
                plan.err(
                    line,
                    format!("{what}: no group {g:?} in the stage's /etc/group"),
                )
            })?,
        },
    };
    Ok((uid, gid))
}
