//! The Merkle digest of COPY/ADD sources that enters their cache key: it walks
//! the same selection as the copy itself (`select`, `walk_found`), so the key
//! and the layer always agree on what is copied.

use super::{mode_of, select, walk_found, Exclude, Source};
use crate::dockerfile::Ignore;
use crate::engine::chmod::Chmod;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The sha256 of each file, on every core: a cold build reads the whole context
/// once for its cache keys, and one core cannot keep up with the disk cache.
fn hash_files(files: &[&Path]) -> io::Result<Vec<String>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let parts: Vec<io::Result<Vec<(usize, String)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else {
                            return Ok(done);
                        };
                        done.push((i, crate::digest::sha256_file(path)?));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(io::Error::other("hashing thread panicked")))
            })
            .collect()
    });
    let mut out = vec![String::new(); files.len()];
    for part in parts {
        for (i, d) in part? {
            out[i] = d;
        }
    }
    Ok(out)
}

/// What a COPY/ADD selects from its source, for [`context_digest`].
pub struct Selection<'a> {
    pub sources: &'a [String],
    pub chmod: Option<&'a Chmod>,
    pub is_add: bool,
    pub exclude: &'a [String],
}

/// The Merkle digest of COPY/ADD sources in the build context, for the cache key:
/// for every selected entry (after `.dockerignore`), in sorted order, its path
/// relative to the context, its type, its mode (after `--chmod`), and the sha256 of its
/// content or its link target. mtimes and on-disk owners are left out (COPY writes
/// 0:0 or `--chown`, which is part of the key by itself).
pub fn context_digest(
    dir: &Path,
    ignore: &Ignore,
    sel: &Selection,
    mut digests: Option<&mut crate::engine::cache::FileDigests>,
) -> io::Result<String> {
    let (sources, chmod, is_add) = (sel.sources, sel.chmod, sel.is_add);
    let exclude = Exclude::new(sel.exclude)?;
    use sha2::Digest as _;
    let kw = if is_add { "ADD" } else { "COPY" };
    let src = Source::Context { dir, ignore };
    let mut entries: BTreeMap<String, String> = BTreeMap::new();
    let mut to_hash: Vec<(String, PathBuf, fs::Metadata, u32)> = Vec::new();
    let mut describe = |rel: String, path: &Path, md: &fs::Metadata| -> io::Result<()> {
        let ft = md.file_type();
        let mode = if ft.is_symlink() {
            0o777
        } else {
            mode_of(chmod, md)
        };
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("link:{}", fs::read_link(path)?.to_string_lossy())
        } else if ft.is_file() {
            match digests.as_deref().and_then(|c| c.cached(path, md)) {
                Some(d) => format!("file:{d}"),
                None => {
                    // Hashed below, in parallel; the mode is filled in then.
                    to_hash.push((rel, path.to_path_buf(), md.clone(), mode));
                    return Ok(());
                }
            }
        } else {
            return Ok(());
        };
        entries.insert(rel, format!("{what}:{mode:o}"));
        Ok(())
    };
    for s in sources {
        for f in select(&src, s, kw, &exclude, false)? {
            // The name it is copied as too: a symlink source keeps its own.
            describe(format!("{}\0{}", f.rel, f.name), &f.host, &f.md)?;
            if f.md.is_dir() {
                walk_found(&f, Some(ignore), &exclude, |inner, e| {
                    let rel = if f.rel.is_empty() {
                        inner
                    } else {
                        format!("{}/{inner}", f.rel)
                    };
                    describe(rel, e.path(), &e.path().symlink_metadata()?)
                })?;
            }
        }
    }
    let paths: Vec<&Path> = to_hash.iter().map(|(_, p, _, _)| p.as_path()).collect();
    let hashed = hash_files(&paths)?;
    for ((rel, path, md, mode), d) in to_hash.into_iter().zip(hashed) {
        if let Some(cache) = digests.as_deref_mut() {
            cache.remember(&path, &md, &d);
        }
        entries.insert(rel, format!("file:{d}:{mode:o}"));
    }
    let mut h = sha2::Sha256::new();
    for (path, what) in &entries {
        for field in [path.as_bytes(), what.as_bytes()] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field);
        }
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}
