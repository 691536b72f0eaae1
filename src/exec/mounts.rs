//! `RUN --mount`s: put in place for one step, and taken out after it so that
//! nothing of them reaches the layer.
//!
//! - **namespaces / rootless**: real mounts, made by the step's PID 1 before it
//!   enters the root: read-only binds of the source (a private copy for `rw`),
//!   the cache dir bound read-write, a tmpfs, a secret file and kiln's ssh socket
//!   bound read-only from kiln's work dir.
//! - **chroot** (mount(2) refused): the cache dir is renamed into place and back
//!   (no copy when the cache dir and the work dir share a filesystem), bind
//!   sources are privately copied (writes are discarded with the copy), a tmpfs is
//!   an empty directory removed afterwards, a secret is a file written for the
//!   step and removed, and the ssh socket is one kiln serves inside the root.
//!
//! What a target displaces (an existing directory of the image) is moved aside
//! and put back. Directories and files kiln creates for a target are removed
//! when still empty, and the mtimes of the directories it touched are put back
//! unless the step changed them, so a step leaves the same trace as under
//! BuildKit: none. Every path is resolved again, confined to the root, before it
//! is touched afterwards (see [`super::prepare`]).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Mode;
use crate::fs::resolve::{host_path, resolve, Confine};
use crate::fs::tree::{copy_tree, set_mtime_to};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// A persistent cache directory, created with `mode`, `uid`, `gid` (and the
/// content of `seed`) on first use.
#[derive(Clone)]
pub struct Cache {
    pub dir: PathBuf,
    pub sharing: Sharing,
    pub ro: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub seed: Option<PathBuf>,
}

impl Cache {
    /// Lock the cache as its sharing says (always exclusively with
    /// `exclusive`) and make sure it exists. None: a private cache another build
    /// holds; the step gets a fresh directory instead.
    fn take(&self, exclusive: bool) -> io::Result<Option<File>> {
        let Some(lock) = lock(&self.dir, self.sharing, exclusive)? else {
            return Ok(None);
        };
        ensure_cache(
            &self.dir,
            self.mode,
            self.uid,
            self.gid,
            self.seed.as_deref(),
        )?;
        Ok(Some(lock))
    }

    /// An empty directory with the cache's mode, for a private cache in use.
    fn fresh(&self, p: &Path) -> io::Result<()> {
        fs::create_dir(p)?;
        fs::set_permissions(p, fs::Permissions::from_mode(self.mode & 0o7777))
    }
}

/// What a mount shows at its target.
#[derive(Clone)]
pub enum Source {
    /// A directory or file of the host: the build context or another stage's
    /// root. `owned`: a private copy kiln made for this step, moved in and
    /// removed afterwards.
    Tree {
        host: PathBuf,
        owned: bool,
        rw: bool,
    },
    Cache(Cache),
    Tmpfs {
        size: Option<u64>,
    },
    Secret {
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        agent: PathBuf,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Tree { host, owned, rw } => {
                write!(f, "Tree({}, owned={owned}, rw={rw})", host.display())
            }
            Source::Cache(c) => write!(f, "Cache({}, {:?})", c.dir.display(), c.sharing),
            Source::Tmpfs { size } => write!(f, "Tmpfs({size:?})"),
            // Never the value.
            Source::Secret { data, .. } => write!(f, "Secret({} bytes)", data.len()),
            Source::Ssh { .. } => write!(f, "Ssh"),
        }
    }
}

/// Environment variables of a step that hold secrets (`type=secret,env=`):
/// never printed.
#[derive(Clone, Default)]
pub struct SecretEnv(pub Vec<(String, String)>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "SecretEnv({names:?})")
    }
}

#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute path in the image.
    pub target: String,
    pub source: Source,
}

/// A mount the step's PID 1 makes (namespaces and rootless modes).
pub enum ChildMount {
    Bind {
        src: std::ffi::CString,
        dst: std::ffi::CString,
        ro: bool,
    },
    Tmpfs {
        dst: std::ffi::CString,
        opts: std::ffi::CString,
    },
}

enum Undo {
    /// The cache dir was moved (or, across filesystems, copied) to `rel`.
    CacheBack {
        rel: String,
        home: PathBuf,
        copied: bool,
    },
    /// Remove what is at `rel`.
    Remove { rel: String },
    /// Put back what the target displaced.
    Restore { aside: PathBuf, rel: String },
}

struct Times {
    rel: String,
    before: (i64, i64),
    /// After kiln placed the mounts; None: always put back.
    placed: Option<(i64, i64)>,
}

/// What [`place`] did, to undo after the step.
pub struct Placed {
    rootfs: PathBuf,
    /// kiln's private dir for this step (copies, secrets, sockets, what
    /// targets displaced), beside the rootfs in the work dir.
    own: PathBuf,
    undo: Vec<Undo>,
    stubs: Vec<String>,
    times: Vec<Times>,
    locks: Vec<File>,
    proxies: Vec<super::sshproxy::Proxy>,
    /// Private copies kiln made for the step, bound in (removed afterwards).
    copies: Vec<PathBuf>,
    pub child: Vec<ChildMount>,
    /// `SSH_AUTH_SOCK` for an ssh mount.
    pub env: Vec<(String, String)>,
    /// Paths (relative to the root) whose ctime kiln changed: not a change of
    /// the step's when nothing else about them changed.
    pub touched: Vec<String>,
}

fn mtime(p: &Path) -> Option<(i64, i64)> {
    let md = fs::symlink_metadata(p).ok()?;
    Some((md.mtime(), md.mtime_nsec()))
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Placed {
    fn again(&self, rel: &str) -> Option<PathBuf> {
        let r = resolve(&self.rootfs, &format!("/{rel}"), false, Confine::Clamp).ok()?;
        if r.is_empty() {
            return None;
        }
        Some(host_path(&self.rootfs, &r))
    }

    /// Note the mtime of `rel` before kiln changes its entries (once).
    fn note_times(&mut self, rel: &str, always: bool) {
        if self.times.iter().any(|t| t.rel == rel) {
            return;
        }
        let p = host_path(&self.rootfs, rel);
        if let Some(before) = mtime(&p) {
            self.times.push(Times {
                rel: rel.to_string(),
                before,
                placed: if always { None } else { Some((0, 0)) },
            });
            self.touched.push(rel.to_string());
        }
    }

    /// Create the missing directories above `rel`, noting the times of the
    /// directory whose entries change.
    fn parents(&mut self, rel: &str) -> io::Result<()> {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut cur = String::new();
        for part in &parts[..parts.len() - 1] {
            let next = if cur.is_empty() {
                part.to_string()
            } else {
                format!("{cur}/{part}")
            };
            let p = host_path(&self.rootfs, &next);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(other(format!(
                        "/{next} is not a directory, so nothing can be mounted below it"
                    )))
                }
                Err(_) => {
                    self.note_times(&cur, false);
                    fs::create_dir(&p)?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
                    self.stubs.push(next.clone());
                }
            }
            cur = next;
        }
        self.note_times(&cur, false);
        Ok(())
    }

    /// Take everything out again, restoring what was there.
    pub fn undo(mut self) {
        self.proxies.clear();
        // Which mtimes the step left alone, judged before kiln moves anything.
        let times: Vec<(String, (i64, i64), bool)> = std::mem::take(&mut self.times)
            .into_iter()
            .map(|t| {
                let p = self.again(&t.rel).unwrap_or_else(|| self.rootfs.clone());
                let keep = t.placed.is_none() || mtime(&p) == t.placed;
                (t.rel, t.before, keep)
            })
            .collect();
        let undo = std::mem::take(&mut self.undo);
        for u in undo.into_iter().rev() {
            match u {
                Undo::CacheBack { rel, home, copied } => self.cache_back(&rel, &home, copied),
                Undo::Remove { rel } => {
                    if let Some(p) = self.again(&rel) {
                        remove_any(&p);
                    }
                }
                Undo::Restore { aside, rel } => {
                    let Some(p) = self.again(&rel) else { continue };
                    remove_any(&p);
                    if let Err(e) = fs::rename(&aside, &p) {
                        tracing::warn!("cannot put /{rel} back after the step's mount: {e}");
                    }
                }
            }
        }
        for rel in std::mem::take(&mut self.stubs).iter().rev() {
            let Some(p) = self.again(rel) else { continue };
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {
                    let _ = fs::remove_dir(&p);
                }
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = fs::remove_file(&p);
                }
                _ => {}
            }
        }
        // Deepest first: putting a directory's time back does not touch its parent's.
        for (rel, before, keep) in times.into_iter().rev() {
            let p = if rel.is_empty() {
                Some(self.rootfs.clone())
            } else {
                self.again(&rel)
            };
            // A stub kiln created and removed has no time to put back.
            if let (Some(p), true) = (p, keep) {
                if fs::symlink_metadata(&p).is_ok() {
                    set_mtime_to(&p, before, false);
                }
            }
        }
        // Only now may another build take the caches.
        self.locks.clear();
        for c in &self.copies {
            remove_any(c);
        }
        let _ = fs::remove_dir_all(&self.own);
    }

    fn cache_back(&self, rel: &str, home: &Path, copied: bool) {
        let Some(p) = self.again(rel) else { return };
        let is_dir = fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
        if !is_dir {
            tracing::warn!(
                "the step removed its cache mount /{rel}: the cache starts empty next time"
            );
            remove_any(&p);
            return;
        }
        let r = if copied {
            let new = sibling(home, "new");
            let old = sibling(home, "old");
            remove_any(&new);
            copy_tree(&p, &new, &|_| false)
                .and_then(|_| {
                    remove_any(&old);
                    if home.exists() {
                        fs::rename(home, &old)?;
                    }
                    fs::rename(&new, home)
                })
                .map(|_| remove_any(&old))
        } else {
            fs::rename(&p, home)
        };
        if let Err(e) = r {
            tracing::warn!("cannot keep the cache mount /{rel}: {e}");
        }
        remove_any(&p);
    }
}

/// `dir` with `.suffix` appended to its name.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = fs::remove_file(p);
        }
        Err(_) => {}
    }
}

fn cstr(p: &Path) -> io::Result<std::ffi::CString> {
    super::cstr(p)
}

/// Take the cache's lock as `sharing` says; None: a private cache is busy.
fn lock(dir: &Path, sharing: Sharing, exclusive: bool) -> io::Result<Option<File>> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(sibling(dir, "lock"))?;
    let shared = sharing == Sharing::Shared && !exclusive;
    let got = if shared {
        f.try_lock_shared()
    } else {
        f.try_lock()
    };
    match got {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) if sharing == Sharing::Private => Ok(None),
        Err(fs::TryLockError::WouldBlock) => {
            tracing::info!(
                "waiting for the cache mount {} (another build holds it)",
                dir.display()
            );
            if shared {
                f.lock_shared()?
            } else {
                f.lock()?
            }
            Ok(Some(f))
        }
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Create the cache dir on first use (atomically: a killed build leaves none).
fn ensure_cache(dir: &Path, mode: u32, uid: u32, gid: u32, seed: Option<&Path>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let tmp = sibling(dir, &format!("tmp{}", std::process::id()));
    remove_any(&tmp);
    match seed {
        Some(s) if s.is_dir() => {
            copy_tree(s, &tmp, &|_| false)?;
        }
        Some(s) => {
            return Err(other(format!(
                "the cache mount's from/source {} is not a directory",
                s.display()
            )))
        }
        None => fs::create_dir(&tmp)?,
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode & 0o7777))?;
    if crate::fs::privileged() {
        let _ = std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid));
    }
    fs::rename(&tmp, dir)
}

fn write_secret(p: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(data)?;
    if crate::fs::privileged() {
        let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
    }
    f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
}

/// Put `mounts` in place in `rootfs` for a step in `mode`. On error, what was
/// done is undone.
pub fn place(rootfs: &Path, mode: Mode, mounts: &[Mount]) -> io::Result<Placed> {
    let leaf = rootfs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let own = rootfs
        .parent()
        .unwrap_or(rootfs)
        .join(format!("{leaf}.mounts"));
    let mut placed = Placed {
        rootfs: rootfs.to_path_buf(),
        own,
        undo: vec![],
        stubs: vec![],
        times: vec![],
        locks: vec![],
        proxies: vec![],
        copies: vec![],
        child: vec![],
        env: vec![],
        touched: vec![],
    };
    if mounts.is_empty() {
        return Ok(placed);
    }
    for (i, a) in mounts.iter().enumerate() {
        for b in &mounts[i + 1..] {
            if nested(&a.target, &b.target) || nested(&b.target, &a.target) {
                return Err(other(format!(
                    "RUN --mount targets {} and {} overlap: one mount inside another is not supported",
                    a.target, b.target
                )));
            }
        }
    }
    let order: Vec<&Mount> = mounts.iter().collect();
    let r = fs::create_dir(&placed.own).and_then(|_| {
        for (i, m) in order.iter().enumerate() {
            place_one(&mut placed, mode, i, m)?;
        }
        Ok(())
    });
    if let Err(e) = r {
        placed.undo();
        return Err(e);
    }
    // The mtimes the step is compared with.
    for t in &mut placed.times {
        if t.placed.is_some() {
            t.placed = mtime(&host_path(&placed.rootfs, &t.rel));
        }
    }
    Ok(placed)
}

/// `inner` is `outer` or below it.
fn nested(outer: &str, inner: &str) -> bool {
    let o = crate::fs::resolve::components(outer);
    let i = crate::fs::resolve::components(inner);
    i.len() >= o.len() && i[..o.len()] == o[..]
}

fn place_one(pl: &mut Placed, mode: Mode, i: usize, m: &Mount) -> io::Result<()> {
    let rel =
        resolve(&pl.rootfs, &m.target, true, Confine::Clamp).map_err(|e| other(e.to_string()))?;
    let top = rel.split('/').next().unwrap_or("");
    if rel.is_empty() || matches!(top, "proc" | "dev" | "sys") {
        return Err(other(format!(
            "cannot mount at {}: kiln does not mount over /, /proc, /dev or /sys",
            m.target
        )));
    }
    let p = host_path(&pl.rootfs, &rel);
    let file_mount = match &m.source {
        Source::Secret { .. } | Source::Ssh { .. } => true,
        Source::Tree { host, .. } => fs::metadata(host).is_ok_and(|md| !md.is_dir()),
        _ => false,
    };
    pl.parents(&rel)?;
    let exists = fs::symlink_metadata(&p).ok();
    if mode == Mode::Chroot {
        if exists.is_some() {
            let aside = pl.own.join(format!("aside-{i}"));
            pl.note_times(&rel, true);
            fs::rename(&p, &aside)?;
            pl.undo.push(Undo::Restore {
                aside,
                rel: rel.clone(),
            });
        }
        return place_chroot(pl, m, &rel, &p);
    }
    match exists {
        None => {
            if file_mount {
                File::create(&p)?;
            } else {
                fs::create_dir(&p)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
            }
            pl.stubs.push(rel.clone());
        }
        Some(md) if md.is_dir() == file_mount => {
            return Err(other(format!(
                "cannot mount a {} at {}: the image has a {} there",
                if file_mount { "file" } else { "directory" },
                m.target,
                if md.is_dir() { "directory" } else { "file" }
            )))
        }
        Some(_) => {}
    }
    place_bound(pl, i, m, &p)
}

/// Chroot mode: the content itself at `p` (which is free).
fn place_chroot(pl: &mut Placed, m: &Mount, rel: &str, p: &Path) -> io::Result<()> {
    let rel = rel.to_string();
    match &m.source {
        Source::Tree { host, owned, .. } => {
            let moved = *owned && fs::rename(host, p).is_ok();
            if !moved {
                copy_tree(host, p, &|_| false)?;
            }
            pl.undo.push(Undo::Remove { rel });
        }
        Source::Cache(c) => {
            let Some(lock) = c.take(true)? else {
                c.fresh(p)?;
                pl.undo.push(Undo::Remove { rel });
                return Ok(());
            };
            pl.locks.push(lock);
            let dir = &c.dir;
            if c.ro {
                copy_tree(dir, p, &|_| false)?;
                pl.undo.push(Undo::Remove { rel });
                return Ok(());
            }
            let copied = match fs::rename(dir, p) {
                Ok(()) => false,
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    tracing::warn!(
                        "cache mount {}: the cache dir and the work dir are on different filesystems, so the cache is copied in and out (give --work-dir on the cache dir's filesystem)",
                        m.target
                    );
                    copy_tree(dir, p, &|_| false)?;
                    true
                }
                Err(e) => return Err(e),
            };
            pl.undo.push(Undo::CacheBack {
                rel,
                home: dir.clone(),
                copied,
            });
        }
        Source::Tmpfs { .. } => {
            fs::create_dir(p)?;
            fs::set_permissions(p, fs::Permissions::from_mode(0o1777))?;
            pl.undo.push(Undo::Remove { rel });
        }
        Source::Secret {
            data,
            mode,
            uid,
            gid,
        } => {
            pl.undo.push(Undo::Remove { rel });
            write_secret(p, data, *mode, *uid, *gid)?;
        }
        Source::Ssh {
            agent,
            mode,
            uid,
            gid,
        } => {
            let (dir, name) = split(p)?;
            pl.undo.push(Undo::Remove { rel });
            pl.proxies.push(super::sshproxy::serve(
                dir,
                name,
                agent.clone(),
                *mode,
                *uid,
                *gid,
            )?);
            ssh_env(pl, &m.target);
        }
    }
    Ok(())
}

fn split(p: &Path) -> io::Result<(&Path, &str)> {
    match (p.parent(), p.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => Ok((d, n)),
        _ => Err(other(format!("bad mount target {}", p.display()))),
    }
}

fn ssh_env(pl: &mut Placed, target: &str) {
    if !pl.env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
        pl.env.push(("SSH_AUTH_SOCK".into(), target.to_string()));
    }
}

/// Namespaces and rootless modes: a mount of the step's PID 1 at `p` (a
/// mount point now).
fn place_bound(pl: &mut Placed, i: usize, m: &Mount, p: &Path) -> io::Result<()> {
    let dst = cstr(p)?;
    let bind = |src: &Path, ro: bool| -> io::Result<ChildMount> {
        Ok(ChildMount::Bind {
            src: cstr(src)?,
            dst: dst.clone(),
            ro,
        })
    };
    let mount = match &m.source {
        Source::Tree { host, owned, rw } => {
            if *rw && !*owned {
                // Writes are discarded: they go to a copy.
                let copy = pl.own.join(format!("copy-{i}"));
                copy_tree(host, &copy, &|_| false)?;
                bind(&copy, false)?
            } else {
                if *owned {
                    pl.copies.push(host.clone());
                }
                bind(host, !*rw)?
            }
        }
        Source::Cache(c) => match c.take(false)? {
            Some(lock) => {
                pl.locks.push(lock);
                bind(&c.dir, c.ro)?
            }
            None => {
                let fresh = pl.own.join(format!("cache-{i}"));
                c.fresh(&fresh)?;
                bind(&fresh, c.ro)?
            }
        },
        Source::Tmpfs { size } => {
            let opts = match size {
                Some(s) => format!("mode=1777,size={s}"),
                None => "mode=1777".to_string(),
            };
            ChildMount::Tmpfs {
                dst: dst.clone(),
                opts: std::ffi::CString::new(opts).map_err(|e| other(e.to_string()))?,
            }
        }
        Source::Secret {
            data,
            mode,
            uid,
            gid,
        } => {
            let f = pl.own.join(format!("secret-{i}"));
            write_secret(&f, data, *mode, *uid, *gid)?;
            bind(&f, true)?
        }
        Source::Ssh {
            agent,
            mode,
            uid,
            gid,
        } => {
            let name = format!("ssh-{i}");
            pl.proxies.push(super::sshproxy::serve(
                &pl.own,
                &name,
                agent.clone(),
                *mode,
                *uid,
                *gid,
            )?);
            ssh_env(pl, &m.target);
            bind(&pl.own.join(name), false)?
        }
    };
    pl.child.push(mount);
    Ok(())
}
