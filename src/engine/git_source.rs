//! `ADD <git repository>`: `git@host:path`, `ssh://…`, `git://…`, or an
//! `http(s)://…/repo.git` URL, each with an optional `#ref[:subdir]`, as
//! BuildKit takes them. kiln runs the job's `git` binary (with the company CAs
//! kiln trusts, and no prompt), keys the step by the commit the ref names, and
//! checks the commit out only on a cache miss. `.git` is left out unless
//! `--keep-git-dir`.

use super::plan::Plan;
use super::session::Session;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    pub url: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
}

/// A git source for the provenance: the repository (`git+URL`, the ref it
/// named as an annotation) at the commit it resolved to.
pub fn material(g: &GitRef, commit: &str) -> crate::attest::provenance::Material {
    use crate::attest::provenance::{Material, Resource};
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(r) = &g.reference {
        annotations.insert("ref".to_string(), r.clone());
    }
    Material {
        platform: None,
        resource: Resource {
            name: None,
            uri: format!("git+{}", crate::attest::provenance::public_uri(&g.url)),
            digest: std::collections::BTreeMap::from([(
                "gitCommit".to_string(),
                commit.to_string(),
            )]),
            annotations,
        },
    }
}

/// The repository an ADD source names, or None when it is not one.
pub fn parse(src: &str) -> Option<GitRef> {
    let (base, fragment) = match src.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (src, None),
    };
    let scp = base.starts_with("git@") && base.contains(':');
    let scheme = base.starts_with("ssh://") || base.starts_with("git://");
    let http = (base.starts_with("https://") || base.starts_with("http://"))
        && base.trim_end_matches('/').ends_with(".git");
    if !(scp || scheme || http) {
        return None;
    }
    let (reference, subdir) = match fragment {
        Some(f) => match f.split_once(':') {
            Some((r, d)) => (Some(r.to_string()), Some(d.to_string())),
            None => (Some(f.to_string()), None),
        },
        None => (None, None),
    };
    Some(GitRef {
        url: base.to_string(),
        reference: reference.filter(|r| !r.is_empty()),
        subdir: subdir.filter(|d| !d.is_empty()),
    })
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// `git` with the job's environment, no prompts, and the CAs kiln trusts.
fn git(sess: &Session<'_>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("git");
    c.env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null());
    if let Some(bundle) = sess.client.ca_bundle(sess.work_path()) {
        c.env("GIT_SSL_CAINFO", bundle);
    }
    c
}

async fn run_git(
    sess: &Session<'_>,
    plan: &Plan,
    line: usize,
    url: &str,
    args: &[&str],
) -> Result<String> {
    let out = git(sess).args(args).output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            plan.err(
                line,
                format!("ADD {url}: cloning a git repository needs the git binary, and this job has none (use a job image with git, or ADD an archive over https://)"),
            )
        } else {
            plan.err(line, format!("ADD {url}: cannot run git: {e}"))
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(plan.err(line, format!("ADD {url}: git {}: {last}", args[0])));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The commit `g` names now (`git ls-remote`; a full SHA names itself).
pub async fn resolve(sess: &Session<'_>, plan: &Plan, line: usize, g: &GitRef) -> Result<String> {
    let r = g.reference.as_deref().unwrap_or("HEAD");
    if is_sha(r) {
        return Ok(r.to_ascii_lowercase());
    }
    let out = run_git(sess, plan, line, &g.url, &["ls-remote", &g.url, r]).await?;
    // A tag's peeled commit (`^{}`) wins over the tag object.
    let mut found: Option<String> = None;
    for l in out.lines() {
        let Some((sha, name)) = l.split_once('\t') else {
            continue;
        };
        let exact =
            name == r || name == format!("refs/heads/{r}") || name == format!("refs/tags/{r}");
        if name.ends_with("^{}") && name.trim_end_matches("^{}") == format!("refs/tags/{r}") {
            return Ok(sha.to_string());
        }
        if exact && found.is_none() {
            found = Some(sha.to_string());
        }
    }
    found.ok_or_else(|| plan.err(line, format!("ADD {}: no branch or tag {r:?} there", g.url)))
}

/// Check `commit` of `g` out into a new directory of the work dir; returns
/// the directory to copy (the subdir, when one is named).
pub async fn checkout(
    sess: &Session<'_>,
    plan: &Plan,
    line: usize,
    g: &GitRef,
    commit: &str,
    keep_git_dir: bool,
) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("git-")
        .tempdir_in(sess.work_path())?
        .keep();
    let d = dir.to_string_lossy().into_owned();
    let url = &g.url;
    run_git(sess, plan, line, url, &["init", "-q", &d]).await?;
    // A shallow fetch of the ref, else (a server that cannot, dumb HTTP) all of it.
    let wanted = match &g.reference {
        Some(r) if !is_sha(r) => r.clone(),
        _ => commit.to_string(),
    };
    let shallow = run_git(
        sess,
        plan,
        line,
        url,
        &["-C", &d, "fetch", "-q", "--depth", "1", url, &wanted],
    )
    .await;
    if shallow.is_err() {
        run_git(
            sess,
            plan,
            line,
            url,
            &["-C", &d, "fetch", "-q", url, &wanted],
        )
        .await?;
    }
    run_git(sess, plan, line, url, &["-C", &d, "checkout", "-q", commit]).await?;
    if !keep_git_dir {
        std::fs::remove_dir_all(dir.join(".git"))?;
    }
    match &g.subdir {
        None => Ok(dir),
        Some(sub) => {
            let rel =
                crate::fs::resolve::resolve(&dir, sub, true, crate::fs::resolve::Confine::Clamp)
                    .map_err(|e| plan.err(line, format!("ADD {url}#…:{sub}: {e}")))?;
            let p = crate::fs::resolve::host_path(&dir, &rel);
            if !p.is_dir() {
                return Err(plan.err(
                    line,
                    format!("ADD {url}: no directory {sub:?} in the repository"),
                ));
            }
            Ok(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_forms() {
        let g = parse("git@gitlab.example:group/app.git#v1.2:src").unwrap();
        assert_eq!(g.url, "git@gitlab.example:group/app.git");
        assert_eq!(g.reference.as_deref(), Some("v1.2"));
        assert_eq!(g.subdir.as_deref(), Some("src"));
        let g = parse("https://gitlab.example/group/app.git").unwrap();
        assert_eq!((g.reference, g.subdir), (None, None));
        assert!(parse("ssh://git@host/app").is_some());
        assert!(parse("https://example.com/tool.tar.gz").is_none());
        assert!(parse("src/").is_none());
    }
}
