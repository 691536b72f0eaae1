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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// The BLAKE3 digest of each file, on every core, hashed while the walk that
/// finds them goes on: a cold build (and a new runner) reads the whole context
/// for its cache keys, one core cannot keep up with the disk cache, and the walk
/// alone takes a third of the time of the hashing.
struct HashPool {
    jobs: Option<mpsc::Sender<(usize, PathBuf, u64)>>,
    workers: Vec<std::thread::JoinHandle<io::Result<Hashed>>>,
    stop: Arc<AtomicBool>,
    submitted: AtomicUsize,
}

impl HashPool {
    fn new() -> HashPool {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = mpsc::channel::<(usize, PathBuf, u64)>();
        let rx = Arc::new(Mutex::new(rx));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let (rx, stop) = (rx.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let job = rx
                            .lock()
                            .map_err(|_| io::Error::other("hashing queue"))?
                            .recv();
                        let Ok((i, path, size)) = job else {
                            return Ok(done);
                        };
                        if stop.load(Ordering::Relaxed) {
                            return Ok(done);
                        }
                        match crate::digest::blake3_file(&path, size) {
                            Ok(d) => done.push((i, d)),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        HashPool {
            jobs: Some(tx),
            workers,
            stop,
            submitted: AtomicUsize::new(0),
        }
    }

    /// Queue a file of `size` bytes (as the walk saw it); its digest comes back at
    /// the returned index of [`Self::finish`].
    fn submit(&self, path: PathBuf, size: u64) -> io::Result<usize> {
        let i = self.submitted.fetch_add(1, Ordering::Relaxed);
        self.jobs
            .as_ref()
            .and_then(|j| j.send((i, path, size)).ok())
            .ok_or_else(|| io::Error::other("hashing threads stopped"))?;
        Ok(i)
    }

    /// Every submitted file's digest, in submission order (the first error if one failed).
    fn finish(mut self) -> io::Result<Vec<String>> {
        self.jobs = None;
        let mut out = vec![String::new(); self.submitted.load(Ordering::Relaxed)];
        let mut first_err = None;
        for w in self.workers.drain(..) {
            match w.join() {
                Ok(Ok(done)) => done.into_iter().for_each(|(i, d)| out[i] = d),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(io::Error::other("hashing thread panicked"));
                }
            }
        }
        first_err.map_or(Ok(out), Err)
    }
}

impl Drop for HashPool {
    /// A walk that failed leaves its queue unhashed.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
    }
}

/// What one hashing thread did: (index, digest) of each file.
type Hashed = Vec<(usize, String)>;

/// One selected entry, as the key's walk finds it.
enum Described {
    /// Its path and what the key says of it.
    Known(String, String),
    /// A file being hashed: path, host path, metadata, mode, index in the pool.
    Hash(String, PathBuf, fs::Metadata, u32, usize),
    /// Neither file, directory nor symlink: not copied, not keyed.
    Nothing,
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
/// relative to the context, its type, its mode (after `--chmod`), and the BLAKE3 digest of
/// its content or its link target. mtimes and on-disk owners are left out (COPY writes
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
    let mut to_hash: Vec<(String, PathBuf, fs::Metadata, u32, usize)> = Vec::new();
    let pool = HashPool::new();
    {
        let memo = digests.as_deref();
        // Runs on the walk's threads: files the memo does not know go to the
        // hashing threads at once.
        let describe = |rel: String, path: &Path, md: &fs::Metadata| -> io::Result<Described> {
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
                match memo.and_then(|c| c.cached(path, md)) {
                    Some(d) => format!("file:{d}"),
                    None => {
                        let i = pool.submit(path.to_path_buf(), md.len())?;
                        return Ok(Described::Hash(
                            rel,
                            path.to_path_buf(),
                            md.clone(),
                            mode,
                            i,
                        ));
                    }
                }
            } else {
                return Ok(Described::Nothing);
            };
            Ok(Described::Known(rel, format!("{what}:{mode:o}")))
        };
        let mut take = |d: Described| match d {
            Described::Known(rel, what) => {
                entries.insert(rel, what);
            }
            Described::Hash(rel, path, md, mode, i) => to_hash.push((rel, path, md, mode, i)),
            Described::Nothing => {}
        };
        for s in sources {
            for f in select(&src, s, kw, &exclude, false)? {
                // The name it is copied as too: a symlink source keeps its own.
                take(describe(format!("{}\0{}", f.rel, f.name), &f.host, &f.md)?);
                if f.md.is_dir() {
                    let found = walk_found(&f, Some(ignore), &exclude, &|inner, path, md| {
                        let rel = if f.rel.is_empty() {
                            inner.to_string()
                        } else {
                            format!("{}/{inner}", f.rel)
                        };
                        describe(rel, path, md)
                    })?;
                    found.into_iter().for_each(&mut take);
                }
            }
        }
    }
    let hashed = pool.finish()?;
    crate::fs::pwalk::release_free_memory();
    for (rel, path, md, mode, i) in to_hash {
        let d = hashed
            .get(i)
            .ok_or_else(|| io::Error::other("a file's digest is missing"))?;
        if let Some(cache) = digests.as_deref_mut() {
            cache.remember(&path, &md, d);
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
