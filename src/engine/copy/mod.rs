//! COPY and ADD: turn sources (build context, another stage's rootfs, an image) into
//! one layer, with Docker's rules:
//!
//! - a source directory contributes its contents, not itself;
//! - several things to copy need a directory destination; a wildcard that
//!   matches one file is one, one that matches nothing copies nothing;
//! - a destination without a trailing `/` is a file, unless it is an existing directory;
//! - a symlink source is copied as its target's content under its own name;
//! - owners become 0:0 from the context, are kept from a stage or an image, and
//!   are `--chown`'s when given; modes are kept unless `--chmod`;
//! - missing parent directories are created (0755, or `--chmod`'s mode; owned
//!   like the copied files); existing ones keep the metadata the image gives them;
//! - destinations resolve through symlinks in the rootfs, as inside a container;
//! - ADD of a local tar archive (plain, gzip, zstd, bzip2, xz) unpacks it.
//!
//! Entries are written sorted by path, so the layer depends only on its inputs.
//!
//! It knows no Dockerfile: `copy_step` turns a COPY/ADD line into a [`CopySpec`].

use super::chmod::Chmod;
use crate::dockerfile::Ignore;
use crate::fs::resolve::{resolve, Confine, ResolveError};
use crate::fs::Rootfs;
use crate::layer::{BuiltLayer, LayerWriter, Meta};
use crate::report::busy::{self, Work};
use crate::store::Store;

mod digest;
pub use digest::{context_digest, Selection};
use globset::GlobBuilder;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where sources are read from.
pub enum Source<'a> {
    Context {
        dir: &'a Path,
        ignore: &'a Ignore,
    },
    Rootfs(&'a Rootfs),
    /// No source at all: a copy of nothing into a directory destination is
    /// `mkdir -p` (WORKDIR).
    Nothing,
}

#[derive(Debug, Clone)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub heredocs: Vec<(String, String)>, // (name, content)
    /// ADD's fetched URLs: (file name, where it is on the host).
    pub fetched: Vec<(String, PathBuf)>,
    /// ADD `--unpack=true`: fetched archives are unpacked too.
    pub unpack_fetched: bool,
    /// Absolute destination in the image, as written (a trailing `/` matters).
    pub dest: String,
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    pub is_add: bool,
    /// `--exclude` patterns (`.dockerignore` syntax, relative to each source).
    pub exclude: Vec<String>,
    /// `--parents`: each source keeps its path (below a `/./` pivot, if any).
    pub parents: bool,
    /// Clamp file mtimes to this (reproducible builds).
    pub clamp_mtime: Option<u64>,
    /// mtime for directories kiln creates.
    pub default_mtime: u64,
}

enum Content {
    Dir,
    File { path: PathBuf, size: u64 },
    Inline(Vec<u8>),
    Symlink(String),
}

struct Item {
    content: Content,
    meta: Meta,
}

fn user_err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// One source as found: its host path, its path relative to its root, its metadata.
struct Found {
    host: PathBuf,
    /// The path resolved (a symlink source is read through its target).
    rel: String,
    /// The name the source is copied as: its own, even when it is a symlink
    /// (BuildKit follows the link for the content, not for the name).
    name: String,
    md: fs::Metadata,
    /// With `--parents`: the path the source keeps under the destination.
    keep: Option<String>,
}

/// `--exclude` patterns, compiled.
pub struct Exclude(Option<Ignore>);

impl Exclude {
    pub fn new(patterns: &[String]) -> io::Result<Exclude> {
        if patterns.is_empty() {
            return Ok(Exclude(None));
        }
        Ignore::parse("--exclude", &patterns.join("\n"))
            .map(|i| Exclude(Some(i)))
            .map_err(|e| user_err(e.to_string()))
    }

    fn skips(&self, rel: &str) -> bool {
        !rel.is_empty() && self.0.as_ref().is_some_and(|i| i.is_ignored(rel))
    }
}

/// The sources one pattern selects, less `--exclude`d ones, with the path each
/// keeps under `--parents`.
fn select(
    src: &Source,
    pattern: &str,
    kw: &str,
    exclude: &Exclude,
    parents: bool,
) -> io::Result<Vec<Found>> {
    let pivot = pattern
        .split_once("/./")
        .map(|(a, _)| crate::dockerfile::ignore::clean(a.trim_start_matches('/')))
        .filter(|p| p != ".");
    let mut found = find_sources(src, pattern, kw)?;
    found.retain(|f| !exclude.skips(&f.rel));
    if parents {
        for f in &mut found {
            let keep = match &pivot {
                Some(p) => f
                    .rel
                    .strip_prefix(p.as_str())
                    .map(|r| r.trim_start_matches('/').to_string())
                    .unwrap_or_else(|| f.rel.clone()),
                None => f.rel.clone(),
            };
            f.keep = Some(keep);
        }
    }
    Ok(found)
}

fn find_sources(src: &Source, pattern: &str, kw: &str) -> io::Result<Vec<Found>> {
    let (root, confine, ignore) = match src {
        Source::Context { dir, ignore } => (*dir, Confine::Refuse, Some(*ignore)),
        Source::Rootfs(r) => (r.dir(), Confine::Clamp, None),
        Source::Nothing => return Ok(vec![]),
    };
    let cleaned = crate::dockerfile::ignore::clean(pattern.trim_start_matches('/'));
    if cleaned == ".." || cleaned.starts_with("../") {
        return Err(user_err(format!(
            "{kw} source {pattern:?} is outside the build context"
        )));
    }
    if has_glob(&cleaned) {
        let glob = GlobBuilder::new(&cleaned)
            .literal_separator(true)
            .build()
            .map_err(|e| user_err(format!("{kw} source {pattern:?}: bad wildcard: {e}")))?
            .compile_matcher();
        let mut out = Vec::new();
        let depth = cleaned.split('/').count();
        for e in walkdir::WalkDir::new(root)
            .min_depth(1)
            .max_depth(depth)
            .sort_by_file_name()
        {
            let e = e.map_err(|e| user_err(format!("reading {}: {e}", root.display())))?;
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            if glob.is_match(&rel) && !ignore.is_some_and(|i| i.is_ignored(&rel)) {
                out.push(found(root, &rel, confine, kw, pattern)?);
            }
        }
        // A wildcard that matches nothing copies nothing (BuildKit allows
        // empty wildcards); a plain path that is missing is an error below.
        return Ok(out);
    }
    if cleaned != "." && ignore.is_some_and(|i| i.is_ignored(&cleaned)) {
        return Err(user_err(format!(
            "{kw} source {pattern:?} is excluded by .dockerignore"
        )));
    }
    Ok(vec![found(root, &cleaned, confine, kw, pattern)?])
}

fn found(root: &Path, rel: &str, confine: Confine, kw: &str, pattern: &str) -> io::Result<Found> {
    let resolved = match resolve(root, if rel == "." { "" } else { rel }, true, confine) {
        Ok(r) => r,
        Err(ResolveError::Escapes { .. }) => {
            return Err(user_err(format!(
                "{kw} source {pattern:?} is a symlink that leads outside the build context"
            )))
        }
        Err(ResolveError::Loop(p)) => {
            return Err(user_err(format!(
                "{kw} source {p:?}: too many levels of symlinks"
            )))
        }
        Err(ResolveError::Io(e)) => return Err(e),
    };
    let name = Path::new(rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host = crate::fs::resolve::host_path(root, &resolved);
    let md = fs::metadata(&host).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            user_err(format!("{kw} source {pattern:?} not found"))
        } else {
            e
        }
    })?;
    Ok(Found {
        host,
        rel: resolved,
        name,
        md,
        keep: None,
    })
}

/// A tar archive, plain or compressed (gzip, zstd, bzip2, xz), as ADD unpacks:
/// its first header, once decompressed, says `ustar`. Anything else is copied
/// as a file, as BuildKit does.
fn is_archive(path: &Path) -> bool {
    // A small buffer: this looks at the start of every file ADD names.
    let Ok(mut tar) = fs::File::open(path)
        .and_then(|f| crate::layer::tar_reader(io::BufReader::with_capacity(8 << 10, f)))
    else {
        return false;
    };
    let mut head = [0u8; 262];
    tar.read_exact(&mut head).is_ok() && &head[257..262] == b"ustar"
}

/// Build the layer of a COPY/ADD into `dst`. With `apply`, the same tar stream is
/// also extracted onto `dst` while the layer is written (one read of the sources,
/// no decompression afterwards), and the layer counts as applied. None when
/// there is nothing to copy (wildcards that matched nothing).
pub fn copy_layer(
    store: &Store,
    codec: crate::layer::Codec,
    src: &Source,
    spec: &CopySpec,
    dst: &mut Rootfs,
    apply: bool,
) -> io::Result<Option<BuiltLayer>> {
    let kw = if spec.is_add { "ADD" } else { "COPY" };
    let exclude = Exclude::new(&spec.exclude)?;
    let mut found = Vec::new();
    for s in &spec.sources {
        found.extend(select(src, s, kw, &exclude, spec.parents)?);
    }
    let others = spec.heredocs.len() + spec.fetched.len();
    if found.is_empty() && others == 0 && !spec.sources.is_empty() {
        // Only wildcards that matched nothing: nothing to copy, no layer.
        return Ok(None);
    }
    // A wildcard that matches one file copies it like a plain path would
    // (`COPY fo? /foo2` writes the file /foo2).
    let many = found.len() + others > 1;
    let dest_is_dir_syntax =
        spec.dest.ends_with('/') || spec.dest.ends_with("/.") || spec.dest == "/";
    let dest_rel = dst.resolve(&spec.dest, true)?;
    let dest_exists_dir = dst.stat(&dest_rel).is_some_and(|(md, _)| md.is_dir());
    let into_dir = dest_is_dir_syntax
        || dest_exists_dir
        || spec.parents
        || found.iter().any(|f| f.md.is_dir());
    if many && !(dest_is_dir_syntax || dest_exists_dir) {
        return Err(user_err(format!(
            "{kw} with more than one source needs a directory destination ending in '/': {}",
            spec.dest
        )));
    }
    let owner = spec.chown.unwrap_or((0, 0));
    let mtime = |m: i64| -> u64 {
        let m = m.max(0) as u64;
        spec.clamp_mtime.map_or(m, |c| m.min(c))
    };
    // Files from the build context become 0:0; from a stage or an image they
    // keep the owner they have there (BuildKit's copy keeps it; only the
    // context's transfer resets it). `--chown` sets it in both cases.
    let owner_of = |md: &fs::Metadata, host: &Path| -> (u32, u32) {
        match (spec.chown, src) {
            (Some(o), _) => o,
            (None, Source::Rootfs(r)) => {
                let rel = host.strip_prefix(r.dir()).unwrap_or(host);
                r.owner(&rel.to_string_lossy(), md.uid(), md.gid())
            }
            (None, Source::Context { .. } | Source::Nothing) => (0, 0),
        }
    };
    let meta_of = |md: &fs::Metadata, host: &Path| {
        let (uid, gid) = owner_of(md, host);
        Meta {
            mode: mode_of(spec.chmod.as_ref(), md),
            uid,
            gid,
            mtime: mtime(md.mtime()),
            // Kept unless the epoch clamp moved the second.
            mtime_nsec: if mtime(md.mtime()) == md.mtime().max(0) as u64 {
                md.mtime_nsec() as u32
            } else {
                0
            },
        }
    };
    let join = |dir: &str, name: &str| {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    };

    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut archives: Vec<(PathBuf, String)> = Vec::new();
    for f in &found {
        let base = &f.name;
        if f.md.is_dir() {
            let dest = match &f.keep {
                Some(k) if !k.is_empty() => join(&dest_rel, k),
                _ => dest_rel.clone(),
            };
            if dest != dest_rel {
                items.insert(
                    dest.clone(),
                    Item {
                        content: Content::Dir,
                        meta: meta_of(&f.md, &f.host),
                    },
                );
            }
            walk_dir(src, f, &dest, &meta_of, &exclude, &mut items)?;
        } else if spec.is_add && is_archive(&f.host) {
            archives.push((f.host.clone(), dest_rel.clone()));
        } else if f.md.is_file() {
            let target = match &f.keep {
                Some(k) => join(&dest_rel, k),
                None if into_dir => join(&dest_rel, base),
                None => dest_rel.clone(),
            };
            items.insert(
                target,
                Item {
                    content: Content::File {
                        path: f.host.clone(),
                        size: f.md.len(),
                    },
                    meta: meta_of(&f.md, &f.host),
                },
            );
        } else {
            return Err(user_err(format!(
                "{kw} source {:?} is not a regular file or directory",
                f.rel
            )));
        }
    }
    for (name, host) in &spec.fetched {
        if spec.unpack_fetched && is_archive(host) {
            archives.push((host.clone(), dest_rel.clone()));
            continue;
        }
        let md = fs::metadata(host)?;
        let target = if into_dir {
            join(&dest_rel, name)
        } else {
            dest_rel.clone()
        };
        items.insert(
            target,
            Item {
                content: Content::File {
                    path: host.clone(),
                    size: md.len(),
                },
                meta: meta_of(&md, host),
            },
        );
    }
    for (name, content) in &spec.heredocs {
        let target = if into_dir {
            join(&dest_rel, name)
        } else {
            dest_rel.clone()
        };
        let meta = Meta {
            mode: spec.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false)),
            uid: owner.0,
            gid: owner.1,
            mtime: spec.default_mtime,
            mtime_nsec: 0,
        };
        items.insert(
            target,
            Item {
                content: Content::Inline(content.clone().into_bytes()),
                meta,
            },
        );
    }
    if into_dir && !dest_rel.is_empty() && !items.contains_key(&dest_rel) {
        // The destination directory itself: existing metadata, or a new 0755 dir.
        ensure_dir(dst, &dest_rel, owner, spec, &mut items);
    }
    // Parents of everything, from the rootfs when they exist.
    let parents: BTreeSet<String> = items
        .keys()
        .flat_map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            (1..parts.len()).map(move |i| parts[..i].join("/"))
        })
        .chain(
            archives
                .iter()
                .map(|(_, d)| d.clone())
                .filter(|d| !d.is_empty()),
        )
        .collect();
    for p in parents {
        if !items.contains_key(&p) {
            ensure_dir(dst, &p, owner, spec, &mut items);
        }
    }

    crate::fs::pwalk::release_free_memory();
    let mut w = LayerWriter::new(store, codec)?;
    if !apply {
        write_items(&mut w, &items, archives, spec)?;
        return w.finish().map(Some);
    }
    let (tx, rx) = crate::layer::tee::channel();
    w.tee(tx);
    std::thread::scope(|s| {
        let extracting = s.spawn(move || {
            let done = dst.apply_stream(rx);
            busy::add(Work::Extract, busy::thread_cpu());
            done
        });
        let built = match write_items(&mut w, &items, archives, spec) {
            Ok(()) => w.finish(),
            Err(e) => {
                drop(w); // ends the stream, so the extraction can stop
                Err(e)
            }
        };
        let applied = extracting
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("extraction thread panicked")));
        match (built, applied) {
            (Ok(b), Ok(())) => Ok(Some(b)),
            // The extraction's own error says more than the broken pipe it caused.
            (_, Err(e)) => Err(io::Error::new(
                e.kind(),
                format!("cannot write the copied files into the stage's filesystem: {e}"),
            )),
            (Err(e), Ok(())) => Err(e),
        }
    })
}

fn write_items(
    w: &mut LayerWriter,
    items: &BTreeMap<String, Item>,
    archives: Vec<(PathBuf, String)>,
    spec: &CopySpec,
) -> io::Result<()> {
    for (path, item) in items {
        match &item.content {
            Content::Dir => w.dir(path, &item.meta)?,
            Content::File { path: host, size } => {
                let f = busy::time(Work::Read, || fs::File::open(host))?;
                // The buffer reads the file itself (`File` fills it without
                // zeroing it first; a wrapper without `read_buf` below it had std
                // zero 256 KiB per file), and `Timed` counts what is read from it.
                w.file(
                    path,
                    &item.meta,
                    *size,
                    Timed(io::BufReader::with_capacity(256 << 10, f)),
                )?
            }
            Content::Inline(b) => w.file(path, &item.meta, b.len() as u64, &b[..])?,
            Content::Symlink(t) => w.symlink(path, t, &item.meta)?,
        }
    }
    for (archive, dest) in archives {
        unpack_into(w, &archive, &dest, spec)?;
    }
    Ok(())
}

/// A file whose reads count as [`Work::Read`].
struct Timed<R>(R);

impl<R: io::Read> io::Read for Timed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        busy::time(Work::Read, || self.0.read(buf))
    }
}

/// A copied entry's mode: its own, or what `--chmod` makes of it.
fn mode_of(chmod: Option<&Chmod>, md: &fs::Metadata) -> u32 {
    let own = md.mode() & 0o7777;
    chmod.map_or(own, |c| c.apply(own, md.is_dir()))
}

fn ensure_dir(
    dst: &Rootfs,
    rel: &str,
    owner: (u32, u32),
    spec: &CopySpec,
    items: &mut BTreeMap<String, Item>,
) {
    let meta = match dst.stat(rel) {
        Some((md, m)) if md.is_dir() => m,
        // New directories get `--chmod` too, as BuildKit >= 0.21 gives them.
        _ => Meta {
            mode: spec.chmod.as_ref().map_or(0o755, |c| c.apply(0o755, true)),
            uid: owner.0,
            gid: owner.1,
            mtime: spec.default_mtime,
            mtime_nsec: 0,
        },
    };
    items.insert(
        rel.to_string(),
        Item {
            content: Content::Dir,
            meta,
        },
    );
}

/// Walk the contents of a directory source on every core, skipping what
/// `.dockerignore` excludes: `visit(path inside the source dir, its path, its
/// lstat metadata)` for each entry, in no set order; the results come back sorted
/// by the path inside the source dir. The layer and the cache key both walk through here, so they always
/// agree on what is selected.
fn walk_found<T: Send>(
    f: &Found,
    ignore: Option<&Ignore>,
    exclude: &Exclude,
    visit: &(dyn Fn(&str, &Path, &fs::Metadata) -> io::Result<T> + Sync),
) -> io::Result<Vec<T>> {
    use crate::fs::pwalk::{self, Take};
    let ignore = ignore.filter(|i| !i.is_empty());
    let take = |inner: &str, is_dir: bool| {
        if let Some(ig) = ignore {
            let ignored = if f.rel.is_empty() {
                ig.is_ignored(inner)
            } else {
                ig.is_ignored(&format!("{}/{inner}", f.rel))
            };
            if ignored {
                // An exception (`!pattern`) may take back something below it.
                return if is_dir && ig.has_exclusions() {
                    Take::Below
                } else {
                    Take::No
                };
            }
        }
        if exclude.skips(inner) {
            return Take::No;
        }
        Take::Yes
    };
    let mut found = pwalk::walk(&f.host, &take, &|inner, path, md| {
        let v = visit(&inner, path, &md);
        (inner, v)
    })
    .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", f.host.display())))?;
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.into_iter().map(|(_, v)| v).collect()
}

fn walk_dir(
    src: &Source,
    f: &Found,
    dest_rel: &str,
    meta_of: &(dyn Fn(&fs::Metadata, &Path) -> Meta + Sync),
    exclude: &Exclude,
    items: &mut BTreeMap<String, Item>,
) -> io::Result<()> {
    let ignore = match src {
        Source::Context { ignore, .. } => Some(*ignore),
        Source::Rootfs(_) | Source::Nothing => None,
    };
    let found = walk_found(f, ignore, exclude, &|inner, path, md| {
        let target = if dest_rel.is_empty() {
            inner.to_string()
        } else {
            format!("{dest_rel}/{inner}")
        };
        let ft = md.file_type();
        let content = if ft.is_dir() {
            Content::Dir
        } else if ft.is_file() {
            Content::File {
                path: path.to_path_buf(),
                size: md.len(),
            }
        } else if ft.is_symlink() {
            Content::Symlink(fs::read_link(path)?.to_string_lossy().into_owned())
        } else {
            tracing::warn!(
                "skipping {} (not a file, directory or symlink)",
                path.display()
            );
            return Ok(None);
        };
        let mut meta = meta_of(md, path);
        if ft.is_symlink() {
            meta.mode = 0o777;
        }
        Ok(Some((target, Item { content, meta })))
    })?;
    items.extend(found.into_iter().flatten());
    Ok(())
}

/// ADD of a local archive: its entries, under `dest`, in archive order.
fn unpack_into(w: &mut LayerWriter, archive: &Path, dest: &str, spec: &CopySpec) -> io::Result<()> {
    let mut ar = tar::Archive::new(crate::layer::open_tar(archive)?);
    for e in ar.entries()? {
        let e = e?;
        let raw = e.path()?.to_string_lossy().into_owned();
        let parts = crate::fs::resolve::components(&raw);
        if parts.contains(&"..") {
            return Err(user_err(format!(
                "ADD: archive {} has an entry that leaves its directory: {raw}",
                archive.display()
            )));
        }
        if parts.is_empty() {
            continue;
        }
        let path = if dest.is_empty() {
            parts.join("/")
        } else {
            format!("{dest}/{}", parts.join("/"))
        };
        let mut h = e.header().clone();
        if let Some((u, g)) = spec.chown {
            h.set_uid(u as u64);
            h.set_gid(g as u64);
        }
        if let Some(c) = spec.clamp_mtime {
            h.set_mtime(h.mtime().unwrap_or(0).min(c));
        }
        let link_target = if matches!(h.entry_type(), tar::EntryType::Link) {
            // Hardlink targets are archive paths: move them under dest too.
            e.link_name()?.map(|l| {
                let l = l.to_string_lossy().into_owned();
                let lp = crate::fs::resolve::components(&l).join("/");
                if dest.is_empty() {
                    lp
                } else {
                    format!("{dest}/{lp}")
                }
            })
        } else {
            None
        };
        if let Some(t) = link_target {
            w.hardlink(
                &path,
                &t,
                &Meta {
                    mode: h.mode().unwrap_or(0o644),
                    uid: h.uid().unwrap_or(0) as u32,
                    gid: h.gid().unwrap_or(0) as u32,
                    mtime: h.mtime().unwrap_or(0),
                    mtime_nsec: 0,
                },
            )?;
        } else {
            w.raw(&h, &path, e)?;
        }
    }
    Ok(())
}
