//! What kiln puts into a stage root for one step, and takes out afterwards.
//!
//! Every path is resolved through the confined resolver first, so a base image
//! whose `/etc` or `/dev` is a symlink out of the root cannot make kiln write on
//! the host: a link's target is followed as the step would see it, inside the
//! root. `/dev`, `/proc` and `/sys` must lead to directories (or to nothing,
//! and then they are created): they are mount points or hold device nodes.

use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Mode;
use crate::fs::resolve::{host_path, resolve, Confine};

/// Host paths of the step's special places, all inside the rootfs.
pub struct Places {
    pub dev: PathBuf,
    pub proc_: PathBuf,
    pub sys: PathBuf,
    /// (host file, its stand-in inside the rootfs) for resolv.conf and hosts.
    pub etc: Vec<(PathBuf, PathBuf)>,
    /// (host file, name in the new /dev) bound in by namespaces/rootless mode.
    pub dev_files: Vec<(PathBuf, &'static str)>,
}

/// Files and nodes kiln put into the rootfs, to take out afterwards.
///
/// The step may have replaced any directory on their paths with a symlink (to
/// `/etc` of the host, say), so every path is resolved again, confined to the
/// rootfs, before it is touched: cleanup never follows a link the step made.
#[derive(Default)]
pub struct Injected {
    rootfs: PathBuf,
    created: Vec<PathBuf>,
    /// Files kiln wrote in its own work dir for the step (removed as they are).
    own: Vec<PathBuf>,
    restore: Vec<(PathBuf, Saved)>,
    /// The image's /etc, its mtime before kiln changed its entries, and after.
    etc_times: Option<(PathBuf, Mtime, Option<Mtime>)>,
}

/// (seconds, nanoseconds).
type Mtime = (i64, i64);

fn mtime_of(p: &Path) -> Option<Mtime> {
    let md = std::fs::symlink_metadata(p).ok()?;
    Some((md.mtime(), md.mtime_nsec()))
}

#[derive(Clone)]
enum Saved {
    Absent,
    File(Vec<u8>, std::fs::Metadata),
    Symlink(PathBuf),
}

fn inside(rootfs: &Path, path: &str, follow_last: bool) -> io::Result<PathBuf> {
    let rel = resolve(rootfs, path, follow_last, Confine::Clamp)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(host_path(rootfs, &rel))
}

impl Injected {
    fn save(&mut self, p: &Path) -> io::Result<()> {
        let saved = match std::fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Saved::Symlink(std::fs::read_link(p)?),
            Ok(m) if m.is_file() => Saved::File(std::fs::read(p)?, m),
            Ok(_) => return Err(io::Error::other(format!("{} is not a file", p.display()))),
            Err(_) => Saved::Absent,
        };
        self.restore.push((p.to_path_buf(), saved));
        Ok(())
    }

    /// A directory that must be a real one: `name` at the top of the rootfs.
    /// When the image makes it a symlink (even one out of the root), the link
    /// is followed as the step would follow it, inside the root, and what it
    /// leads to is used, created (and taken out again) when missing.
    fn top_dir(&mut self, rootfs: &Path, name: &str) -> io::Result<PathBuf> {
        let p = rootfs.join(name);
        let target = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => return Ok(p),
            Ok(m) if m.file_type().is_symlink() => {
                inside(rootfs, &format!("/{name}"), true).map_err(|e| {
                    io::Error::other(format!(
                        "the image's /{name} is a symlink that leads nowhere usable ({e}); RUN needs a directory there"
                    ))
                })?
            }
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "the image's /{name} is a file; RUN needs a directory there"
                )))
            }
            Err(_) => p,
        };
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "the image's /{name} leads to a file; RUN needs a directory there"
                )))
            }
            Err(_) => {
                // Each missing directory on the way, inside the root (the
                // resolver followed every link there is).
                let rel = target.strip_prefix(rootfs).map_err(io::Error::other)?;
                let mut at = rootfs.to_path_buf();
                for c in rel.components() {
                    at.push(c);
                    if std::fs::symlink_metadata(&at).is_err() {
                        std::fs::create_dir(&at)?;
                        self.created.push(at.clone());
                    }
                }
            }
        }
        Ok(target)
    }

    /// Where `p` (a host path kiln chose inside the rootfs) is now, resolved
    /// inside the rootfs; None when it is not under it.
    fn again(&self, p: &Path) -> Option<PathBuf> {
        let rel = p.strip_prefix(&self.rootfs).ok()?;
        inside(&self.rootfs, &format!("/{}", rel.display()), false).ok()
    }

    /// Paths (relative to the root) whose ctime kiln changed for the step.
    pub fn touched(&self) -> Vec<String> {
        self.etc_times
            .iter()
            .filter_map(|(p, _, _)| p.strip_prefix(&self.rootfs).ok())
            .map(|r| r.to_string_lossy().into_owned())
            .collect()
    }

    /// Take out everything, restoring what was there before.
    pub fn cleanup(self) {
        // Whether the step left /etc's mtime alone, judged before kiln's own
        // removals below move it again.
        let etc_untouched = self
            .etc_times
            .as_ref()
            .is_some_and(|(etc, _, placed)| placed.is_some() && mtime_of(etc) == *placed);
        let restore: Vec<(PathBuf, Saved)> = self
            .restore
            .iter()
            .rev()
            .filter_map(|(p, s)| Some((self.again(p)?, s.clone())))
            .collect();
        let created: Vec<PathBuf> = self
            .created
            .iter()
            .rev()
            .filter_map(|p| self.again(p))
            .collect();
        for (p, saved) in restore {
            let _ = std::fs::remove_file(&p);
            let r = match saved {
                Saved::Absent => Ok(()),
                Saved::Symlink(t) => std::os::unix::fs::symlink(t, &p),
                Saved::File(data, md) => std::fs::write(&p, data).and_then(|_| {
                    std::fs::set_permissions(
                        &p,
                        std::fs::Permissions::from_mode(md.mode() & 0o7777),
                    )?;
                    let _ = nix::unistd::chown(
                        &p,
                        Some(nix::unistd::Uid::from_raw(md.uid())),
                        Some(nix::unistd::Gid::from_raw(md.gid())),
                    );
                    Ok(())
                }),
            };
            if let Err(e) = r {
                tracing::warn!("could not restore {}: {e}", p.display());
            }
        }
        for p in &self.own {
            let _ = std::fs::remove_file(p);
        }
        // /etc's entries were replaced and put back: its mtime too, unless the
        // step changed it.
        if let (Some((etc, before, _)), true) = (&self.etc_times, etc_untouched) {
            crate::fs::tree::set_mtime_to(etc, *before, false);
        }
        for p in created {
            let _ = match std::fs::symlink_metadata(&p) {
                // What a step left in /dev/shm goes with it, as with Docker's tmpfs.
                Ok(m)
                    if m.is_dir()
                        && p.file_name().is_some_and(|n| {
                            n == "shm" || n == super::emulate::tracer::LINKS_DEV_NAME
                        }) =>
                {
                    std::fs::remove_dir_all(&p)
                }
                Ok(m) if m.is_dir() => std::fs::remove_dir(&p),
                _ => std::fs::remove_file(&p),
            };
        }
    }
}

/// Make `/dev`, `/proc`, `/sys`, `/etc/resolv.conf` and `/etc/hosts` ready for
/// `mode`. On error, what was already injected is taken out again.
/// With `served`, kiln serves /proc to the step (chroot mode): /proc must be a
/// real directory, and /dev gets Docker's `fd` and `std*` links into it.
/// `dev_files` (name, content) go into the step's /dev: written there in chroot
/// mode, bound in from kiln's work dir otherwise; so does a copy of `emulator`
/// (kiln's exec tracer runs it from there).
pub fn prepare(
    rootfs: &Path,
    mode: Mode,
    served: bool,
    dev_files: Option<&[(&'static str, Vec<u8>)]>,
    emulator: Option<&Path>,
) -> io::Result<(Injected, Places)> {
    let mut inj = Injected {
        rootfs: rootfs.to_path_buf(),
        ..Default::default()
    };
    let files = dev_files.unwrap_or(&[]);
    match prepare_into(&mut inj, rootfs, mode, served, files, emulator) {
        Ok(places) => Ok((inj, places)),
        Err(e) => {
            inj.cleanup();
            Err(e)
        }
    }
}

fn prepare_into(
    inj: &mut Injected,
    rootfs: &Path,
    mode: Mode,
    served: bool,
    files: &[(&'static str, Vec<u8>)],
    emulator: Option<&Path>,
) -> io::Result<Places> {
    let dev = inj.top_dir(rootfs, "dev")?;
    let (proc_, sys) = match mode {
        Mode::Chroot if served => (inj.top_dir(rootfs, "proc")?, rootfs.join("sys")),
        Mode::Chroot => (rootfs.join("proc"), rootfs.join("sys")),
        Mode::Namespaces | Mode::Rootless => {
            (inj.top_dir(rootfs, "proc")?, inj.top_dir(rootfs, "sys")?)
        }
    };
    // /etc may be a symlink to a place that does not exist yet (inside the root).
    let etc = inside(rootfs, "/etc", true)?;
    let missing: Vec<PathBuf> = etc
        .ancestors()
        .take_while(|p| *p != rootfs && std::fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect();
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(&dir)?;
        inj.created.push(dir);
    }
    let mut binds = Vec::new();
    if let Some(m) = mtime_of(&etc) {
        inj.etc_times = Some((etc.clone(), m, None));
    }
    for name in ["resolv.conf", "hosts"] {
        // The entry itself (a symlink stays a symlink to restore), confined.
        let target = inside(rootfs, &format!("/etc/{name}"), false)?;
        inj.save(&target)?;
        let _ = std::fs::remove_file(&target);
        let host = Path::new("/etc").join(name);
        let content = match mode {
            // Copied in: there is no bind mount without namespaces.
            Mode::Chroot => std::fs::read(&host).unwrap_or_default(),
            // A mount point for the read-only bind mount of the host's file.
            _ => Vec::new(),
        };
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&target)?
            .write_all(&content)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        binds.push((host, target));
    }
    if let Some((etc, _, placed)) = &mut inj.etc_times {
        *placed = mtime_of(etc);
    }
    if mode == Mode::Chroot {
        make_nodes(inj, &dev)?;
        if served {
            for (target, name) in super::DEV_LINKS {
                let p = dev.join(name);
                if std::fs::symlink_metadata(&p).is_err() {
                    std::os::unix::fs::symlink(target, &p)?;
                    inj.created.push(p);
                }
            }
        }
    }
    let mut dev_files = Vec::new();
    let sources = files
        .iter()
        .map(|(name, content)| (*name, Content::Bytes(content)))
        .chain(emulator.map(|e| (super::emulate::tracer::DEV_NAME, Content::Copy(e))));
    for (name, content) in sources {
        let target = if mode == Mode::Chroot {
            dev.join(name)
        } else {
            // Beside the rootfs, in kiln's own work dir: bound into the step's /dev.
            let parent = rootfs.parent().unwrap_or(rootfs);
            let leaf = rootfs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            parent.join(format!("{leaf}.{name}"))
        };
        let _ = std::fs::remove_file(&target);
        match content {
            Content::Bytes(bytes) => {
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&target)?
                    .write_all(bytes)?;
            }
            // The step's own copy: what it does to it reaches no other step.
            Content::Copy(from) => {
                std::fs::copy(from, &target)?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        if mode == Mode::Chroot && matches!(content, Content::Copy(_)) {
            // Beside it, the directory of its links (made by the child in
            // the /dev of the other modes).
            let links = dev.join(super::emulate::tracer::LINKS_DEV_NAME);
            let _ = std::fs::remove_dir_all(&links);
            std::fs::create_dir(&links)?;
            inj.created.push(links);
        }
        if mode == Mode::Chroot {
            inj.created.push(target);
        } else {
            inj.own.push(target.clone());
            dev_files.push((target, name));
        }
    }
    Ok(Places {
        dev,
        proc_,
        sys,
        etc: binds,
        dev_files,
    })
}

/// What goes into a file kiln puts in the step's /dev.
enum Content<'a> {
    Bytes(&'a [u8]),
    Copy(&'a Path),
}

/// Chroot mode: the standard character devices by `mknod`, and Docker's
/// `/dev/shm` (world-writable and sticky: POSIX shared memory and semaphores,
/// Python's multiprocessing) and `/dev/pts` directories.
fn make_nodes(inj: &mut Injected, dev: &Path) -> io::Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode as M, SFlag};
    for (name, mode) in [("shm", 0o1777), ("pts", 0o755)] {
        let p = dev.join(name);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir(&p)?;
            inj.created.push(p.clone());
        }
        if std::fs::symlink_metadata(&p)?.is_dir() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match mknod(
            &p,
            SFlag::S_IFCHR,
            M::from_bits_truncate(0o666),
            makedev(major, minor),
        ) {
            Ok(()) => {
                // mknod honours the umask: set the mode explicitly.
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666))?;
                inj.created.push(p);
            }
            Err(e) => {
                tracing::warn!("cannot create /dev/{name} ({e}): steps that need it will fail")
            }
        }
    }
    Ok(())
}
