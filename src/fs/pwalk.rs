//! A metadata walk of a tree on every core: directories go to a shared queue,
//! each thread lists one and stats its entries relative to the directory (no
//! path lookup from the root per entry). A RUN's snapshot walks a whole rootfs
//! twice, and a walk is system calls, which threads overlap well.
//!
//! The order of visits is not defined; callers that need one sort.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Directories waiting to be listed, and how many threads are listing one
/// (the walk ends when both are zero).
struct Queue {
    dirs: Vec<(PathBuf, String)>,
    busy: usize,
    failed: Option<io::Error>,
}

/// What a walk does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Visit it (and walk a directory's contents).
    Yes,
    /// Leave it out, but walk a directory's contents.
    Below,
    /// Leave it and everything under it out.
    No,
}

/// Every entry under `root` (not `root` itself), visited with its path relative
/// to `root`, its own path and its lstat metadata; `take(rel, is_dir)` says which.
/// Entries that vanish during the walk are left out; any other error ends it.
pub fn walk<T: Send>(
    root: &Path,
    take: &(dyn Fn(&str, bool) -> Take + Sync),
    visit: &(dyn Fn(String, &Path, fs::Metadata) -> T + Sync),
) -> io::Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let queue = Mutex::new(Queue {
        dirs: vec![(root.to_path_buf(), String::new())],
        busy: 0,
        failed: None,
    });
    let ready = Condvar::new();
    let parts: Vec<std::thread::Result<Vec<T>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| worker(&queue, &ready, take, visit)))
            .collect();
        workers.into_iter().map(|w| w.join()).collect()
    });
    let q = queue.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = q.failed {
        return Err(e);
    }
    let mut all = Vec::new();
    for part in parts {
        all.extend(part.map_err(|_| io::Error::other("a walk thread panicked"))?);
    }
    Ok(all)
}

/// Held while a thread lists a directory. If the thread panics, the walk fails
/// and the others are woken, rather than waiting forever for its subdirectories.
struct Listing<'a> {
    queue: &'a Mutex<Queue>,
    ready: &'a Condvar,
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.busy -= 1;
            q.failed
                .get_or_insert_with(|| io::Error::other("a walk thread panicked"));
            self.ready.notify_all();
        }
    }
}

fn worker<T>(
    queue: &Mutex<Queue>,
    ready: &Condvar,
    take: &(dyn Fn(&str, bool) -> Take + Sync),
    visit: &(dyn Fn(String, &Path, fs::Metadata) -> T + Sync),
) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        let (dir, rel) = {
            let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if q.failed.is_some() {
                    return out;
                }
                if let Some(d) = q.dirs.pop() {
                    q.busy += 1;
                    break d;
                }
                if q.busy == 0 {
                    return out;
                }
                q = ready.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut found = Vec::new();
        let guard = Listing { queue, ready };
        let listed = list(&dir, &rel, take, visit, &mut out, &mut found);
        std::mem::forget(guard);
        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
        q.busy -= 1;
        match listed {
            Ok(()) => q.dirs.extend(found),
            Err(e) => {
                q.failed.get_or_insert(e);
            }
        }
        ready.notify_all();
    }
}

/// Give the allocator's free memory back to the system. A walk of a large tree
/// leaves megabytes of small freed allocations on the heap, which the large
/// buffers that follow (compression, uploads) do not reuse: they are mapped
/// separately, so without this the walk's peak adds to theirs.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages of glibc's heap to the
    // system; it takes no pointers and leaves live allocations alone.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Visit the entries of one directory; subdirectories go to `found`.
fn list<T>(
    dir: &Path,
    rel: &str,
    take: &(dyn Fn(&str, bool) -> Take + Sync),
    visit: &(dyn Fn(String, &Path, fs::Metadata) -> T + Sync),
    out: &mut Vec<T>,
    found: &mut Vec<(PathBuf, String)>,
) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
        };
        let name = e.file_name();
        let name = name.to_string_lossy();
        let child = if rel.is_empty() {
            name.into_owned()
        } else {
            format!("{rel}/{name}")
        };
        // Relative to the directory's descriptor: no walk from the root.
        let md = match e.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let is_dir = md.is_dir();
        match take(&child, is_dir) {
            Take::No => {}
            Take::Below if is_dir => found.push((e.path(), child)),
            Take::Below => {}
            Take::Yes if is_dir => {
                let path = e.path();
                out.push(visit(child.clone(), &path, md));
                found.push((path, child));
            }
            Take::Yes => out.push(visit(child, &e.path(), md)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn visits_every_entry_once_and_skips_whole_subtrees() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for i in 0..40 {
            let sub = r.join(format!("a/b{i}/c"));
            fs::create_dir_all(&sub).unwrap();
            fs::write(sub.join("f"), b"x").unwrap();
        }
        fs::create_dir_all(r.join("skip/deep")).unwrap();
        fs::write(r.join("skip/deep/g"), b"y").unwrap();
        std::os::unix::fs::symlink("/nowhere", r.join("link")).unwrap();
        fs::create_dir_all(r.join("below/kept")).unwrap();
        let take = |rel: &str, _| match rel {
            "skip" => Take::No,
            "below" => Take::Below,
            _ => Take::Yes,
        };
        let seen = walk(r, &take, &|rel, p, md| {
            assert!(p.ends_with(&rel));
            (rel, md.is_dir())
        })
        .unwrap();
        let names: BTreeSet<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(seen.len(), names.len(), "each entry once");
        // a, 40 × (b, c, f), link, below/kept
        assert_eq!(seen.len(), 1 + 40 * 3 + 1 + 1);
        assert!(names.contains("below/kept") && !names.contains("below"));
        assert!(names.contains("a/b7/c/f") && names.contains("link"));
        assert!(!names.iter().any(|n| n.starts_with("skip")));
        assert!(seen.iter().any(|(r, dir)| r == "a/b0/c" && *dir));
        assert!(
            seen.iter().any(|(r, dir)| r == "link" && !*dir),
            "a symlink is not followed"
        );
    }

    #[test]
    fn a_panicking_visit_fails_the_walk_instead_of_hanging_it() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..20 {
            fs::create_dir_all(d.path().join(format!("d{i}/e"))).unwrap();
        }
        let r = std::panic::catch_unwind(|| {
            walk(d.path(), &|_, _| Take::Yes, &|rel, _, _| {
                assert!(rel != "d3/e", "boom");
                rel
            })
        });
        // The panic either reaches the caller or becomes the walk's error.
        assert!(r.is_err() || r.is_ok_and(|w| w.is_err()));
    }

    #[test]
    fn an_unreadable_directory_fails_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let all = |_: &str, _| Take::Yes;
        assert!(walk(&d.path().join("missing-is-fine"), &all, &|r, _, _| r).is_ok());
        fs::write(d.path().join("file"), b"").unwrap();
        // Listing a file as a directory is an error other than NotFound.
        assert!(walk(&d.path().join("file"), &all, &|r, _, _| r).is_err());
    }
}
