//! Path resolution confined to a root directory, as if the root were `/`.
//!
//! Symlinks are followed by hand, one component at a time: an absolute link target
//! restarts at the root and `..` never climbs above it. This is what makes layer
//! extraction safe against symlinks planted earlier in the same archive, and what
//! lets COPY resolve destinations inside a stage's rootfs the way a container would.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How to treat a path that tries to leave the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confine {
    /// Clamp at the root, like the kernel does inside a chroot (rootfs semantics).
    Clamp,
    /// Report an escape as an error (build-context semantics).
    Refuse,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path} leads outside {root}")]
    Escapes { path: String, root: String },
    #[error("too many levels of symbolic links resolving {0}")]
    Loop(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Split a slash path into its normal components, keeping `..`.
pub fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Resolve `path` inside `root`. Returns the resolved path relative to the root,
/// as normal components joined by `/` (empty for the root itself). The last
/// component is followed only when `follow_last` is set. Components that do not
/// exist are kept as they are.
pub fn resolve(
    root: &Path,
    path: &str,
    follow_last: bool,
    confine: Confine,
) -> Result<String, ResolveError> {
    let mut todo: VecDeque<String> = components(path).into_iter().map(str::to_string).collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    let escape = |p: &str| ResolveError::Escapes {
        path: p.to_string(),
        root: root.display().to_string(),
    };
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if cur.pop().is_none() && confine == Confine::Refuse {
                return Err(escape(path));
            }
            continue;
        }
        let is_last = todo.is_empty();
        let mut host = root.to_path_buf();
        for c in &cur {
            host.push(c);
        }
        host.push(&part);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() && (!is_last || follow_last) => {
                links += 1;
                if links > 255 {
                    return Err(ResolveError::Loop(path.to_string()));
                }
                let target = fs::read_link(&host)?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    if confine == Confine::Refuse {
                        return Err(escape(path));
                    }
                    cur.clear();
                }
                for c in components(&target).into_iter().rev() {
                    todo.push_front(c.to_string());
                }
            }
            Ok(_) => cur.push(part),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                cur.push(part)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cur.join("/"))
}

/// `root` joined with a relative path returned by [`resolve`].
pub fn host_path(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn confined_resolution() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("real/dir")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../etc", r.join("up")).unwrap();
        symlink("real/dir", r.join("rel")).unwrap();
        symlink("loop", r.join("loop")).unwrap();

        assert_eq!(
            resolve(r, "/abs/dir/x", true, Confine::Clamp).unwrap(),
            "real/dir/x"
        );
        assert_eq!(
            resolve(r, "up/passwd", true, Confine::Clamp).unwrap(),
            "etc/passwd"
        );
        assert_eq!(resolve(r, "rel", false, Confine::Clamp).unwrap(), "rel");
        assert_eq!(resolve(r, "rel", true, Confine::Clamp).unwrap(), "real/dir");
        assert_eq!(resolve(r, "../../x", true, Confine::Clamp).unwrap(), "x");
        assert!(matches!(
            resolve(r, "up/passwd", true, Confine::Refuse),
            Err(ResolveError::Escapes { .. })
        ));
        assert!(matches!(
            resolve(r, "abs", true, Confine::Refuse),
            Err(ResolveError::Escapes { .. })
        ));
        assert!(matches!(
            resolve(r, "../x", true, Confine::Refuse),
            Err(ResolveError::Escapes { .. })
        ));
        assert!(matches!(
            resolve(r, "loop", true, Confine::Clamp),
            Err(ResolveError::Loop(_))
        ));
    }
}
