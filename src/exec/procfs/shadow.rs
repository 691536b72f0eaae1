//! The rootfs's own `/proc` directory while the server runs: a shadow of the
//! directories a step lists (`ls /proc`, `ps`, `/proc/self/fd`), with an empty
//! placeholder for each entry of the job's /proc it may see. A step that opens
//! a directory under /proc gets a descriptor of its shadow, which lives inside
//! the root: `..` from it stays in the root, and what it opens through it comes
//! back to the server, which maps it to the job's /proc.
//!
//! It owns creating, refreshing and emptying the shadow, always through
//! descriptors opened with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a link the
//! step plants under /proc never leads kiln out of the root. Which entries a step
//! may see is decided by the caller's filter.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `openat2(dir, name, flags)` beneath `dir`, following no symlink.
fn open_beneath(dir: RawFd, name: &str, flags: i32) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
        mode: 0,
        resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    };
    let name = cstr(name)?;
    // SAFETY: openat2 with a valid C string and a correctly sized `how`.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn open_dir(dir: RawFd, name: &str) -> io::Result<OwnedFd> {
    open_beneath(dir, name, libc::O_DIRECTORY | libc::O_RDONLY)
}

/// Remove `name` in `dir`, and everything under it, without following links.
fn remove_all(dir: RawFd, name: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: unlinkat on a valid descriptor and C string.
    if unsafe { libc::unlinkat(dir, c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let sub = open_dir(dir, name)?;
    for e in list(sub.as_raw_fd())? {
        remove_all(sub.as_raw_fd(), &e.0)?;
    }
    // SAFETY: as above.
    if unsafe { libc::unlinkat(dir, c.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// (name, is a directory) of each entry of the directory `fd`.
fn list(fd: RawFd) -> io::Result<Vec<(String, bool)>> {
    // Through /proc/self/fd: read_dir needs a path, and the descriptor pins the
    // directory itself.
    let path = format!("/proc/self/fd/{fd}");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&path)? {
        let e = e?;
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        out.push((e.file_name().to_string_lossy().into_owned(), is_dir));
    }
    Ok(out)
}

/// The rootfs's /proc, as a descriptor. None when the step replaced it with
/// something that is not a directory.
pub struct Shadow {
    proc_dir: Option<OwnedFd>,
}

impl Shadow {
    /// Open `<rootfs>/proc` (kiln made sure it is a directory before the step) and
    /// put in the mount tables that links such as `/etc/mtab` reach natively.
    pub fn open(rootfs: &Path, mounts: &str, mountinfo: &str) -> Shadow {
        let root = match std::fs::File::open(rootfs) {
            Ok(f) => OwnedFd::from(f),
            Err(_) => return Shadow { proc_dir: None },
        };
        let proc_dir = open_dir(root.as_raw_fd(), "proc").ok();
        let s = Shadow { proc_dir };
        if let Some(d) = &s.proc_dir {
            let _ = write_file(d.as_raw_fd(), "mounts", mounts);
            if let Ok(selfdir) = s.dir_at(&["self".to_string()]) {
                let _ = write_file(selfdir.as_raw_fd(), "mounts", mounts);
                let _ = write_file(selfdir.as_raw_fd(), "mountinfo", mountinfo);
            }
        }
        s
    }

    /// The shadow directory at `comps` under /proc, created as needed.
    fn dir_at(&self, comps: &[String]) -> io::Result<OwnedFd> {
        let base = self
            .proc_dir
            .as_ref()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let mut cur = open_dir(base.as_raw_fd(), ".")?;
        for c in comps {
            let next = match open_dir(cur.as_raw_fd(), c) {
                Ok(fd) => fd,
                Err(_) => {
                    // Missing, or not a directory (a link the step made): replace it.
                    let _ = remove_all(cur.as_raw_fd(), c);
                    let name = cstr(c)?;
                    // SAFETY: mkdirat on a valid descriptor and C string.
                    unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o555) };
                    open_dir(cur.as_raw_fd(), c)?
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Make the shadow of `comps` (a directory of the job's /proc at `host`)
    /// list what `keep` lets through, and open it for the step with `flags`.
    pub fn refresh(
        &self,
        comps: &[String],
        host: &str,
        keep: &dyn Fn(&str) -> bool,
        flags: i32,
    ) -> io::Result<OwnedFd> {
        let dir = self.dir_at(comps)?;
        let mut wanted: Vec<(String, bool)> = Vec::new();
        if !host.is_empty() {
            for e in std::fs::read_dir(host)? {
                let Ok(e) = e else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep(&name) {
                    continue;
                }
                // `self` and friends are links: the step's own view is a directory.
                let is_dir = std::fs::metadata(e.path())
                    .map(|m| m.is_dir())
                    .unwrap_or(false);
                wanted.push((name, is_dir));
            }
        }
        let present = list(dir.as_raw_fd())?;
        for (name, is_dir) in &present {
            let keep_it = wanted.iter().any(|(n, d)| n == name && d == is_dir)
                || (comps.is_empty() && matches!(name.as_str(), "mounts" | "self"));
            if !keep_it {
                let _ = remove_all(dir.as_raw_fd(), name);
            }
        }
        for (name, is_dir) in &wanted {
            if present.iter().any(|(n, d)| n == name && d == is_dir) {
                continue;
            }
            let c = cstr(name)?;
            // SAFETY: mkdirat/openat on a valid descriptor and C string; the new
            // descriptor is closed at once.
            unsafe {
                if *is_dir {
                    libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o555);
                } else {
                    let fd = libc::openat(
                        dir.as_raw_fd(),
                        c.as_ptr(),
                        libc::O_CREAT
                            | libc::O_EXCL
                            | libc::O_WRONLY
                            | libc::O_NOFOLLOW
                            | libc::O_CLOEXEC,
                        0o444,
                    );
                    if fd >= 0 {
                        libc::close(fd);
                    }
                }
            }
        }
        let flags = flags & (libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_PATH) | libc::O_RDONLY;
        open_beneath(dir.as_raw_fd(), ".", flags | libc::O_DIRECTORY)
    }

    /// An empty directory for a masked path, opened for the step.
    pub fn empty(&self, comps: &[String], flags: i32) -> io::Result<OwnedFd> {
        self.refresh(comps, "", &|_| false, flags)
    }

    /// Take everything out of the rootfs's /proc (it never reaches a layer).
    pub fn clear(&self) {
        if let Some(d) = &self.proc_dir {
            if let Ok(entries) = list(d.as_raw_fd()) {
                for (name, _) in entries {
                    let _ = remove_all(d.as_raw_fd(), &name);
                }
            }
        }
    }
}

fn write_file(dir: RawFd, name: &str, content: &str) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: openat on a valid descriptor and C string; O_NOFOLLOW keeps it off
    // a link the step may have planted.
    let fd = unsafe {
        libc::openat(
            dir,
            c.as_ptr(),
            libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o444,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let f = unsafe { std::fs::File::from_raw_fd(fd) };
    use std::io::Write;
    (&f).write_all(content.as_bytes())
}
