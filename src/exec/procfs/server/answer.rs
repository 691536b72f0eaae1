//! The answers that act on a path of the job's /proc: opening (files, shadow
//! directories, ptys, the mount tables), `stat`, `statx` and `readlink`, and
//! writing results back into the caller's memory.
//!
//! It owns what each answer does once the server has decided the caller may
//! have it; the decision is the server's and the policy's.

use super::*;

impl Ctx {
    /// The job's path that answers `stat`/`access` on a target.
    pub(super) fn host_of(&self, target: &Target, nofollow: bool) -> io::Result<String> {
        Ok(match target {
            Target::Native => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
            Target::Host { host, .. } => host.clone(),
            Target::Mounts { .. } => "/proc/self/mounts".into(),
            Target::Null => "/dev/null".into(),
            Target::EmptyDir => "/proc/self/fdinfo".into(),
            Target::Link(_) if nofollow => "/proc/self".into(),
            Target::Link(l) => format!("/proc/{l}"),
            Target::Ptmx => "/dev/ptmx".into(),
            Target::Pts(n) if self.ptys.borrow().contains(n) => format!("/dev/pts/{n}"),
            Target::Pts(_) => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        })
    }

    pub(super) fn open(&self, target: Target, flags: i32) -> Reply {
        let cloexec = flags & libc::O_CLOEXEC != 0;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        let fd = match target {
            Target::Native => return Reply::Continue,
            Target::Link(l) => self.open_host(&format!("/proc/{l}"), true, flags, writes),
            Target::Host { host, writable, .. } => self.open_host(&host, writable, flags, writes),
            Target::Mounts { info } => memfd(if info { &self.mountinfo } else { &self.mounts }),
            Target::Null => open_host("/dev/null", flags),
            Target::EmptyDir => as_root(|| self.shadow.empty(&["kiln-empty".to_string()], flags)),
            Target::Ptmx => self.new_pty(flags),
            Target::Pts(n) if self.ptys.borrow().contains(&n) => {
                open_host(&format!("/dev/pts/{n}"), flags & !libc::O_CLOEXEC)
            }
            Target::Pts(_) => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        };
        match fd {
            Ok(fd) => Reply::Fd(fd, cloexec),
            Err(e) => Reply::Errno(errno(&e)),
        }
    }

    pub(super) fn open_host(
        &self,
        host: &str,
        writable: bool,
        flags: i32,
        writes: bool,
    ) -> io::Result<OwnedFd> {
        if writes && !writable {
            // Docker mounts /proc/sys and friends read-only; the rest is not the
            // step's to change.
            return Err(io::Error::from_raw_os_error(
                if host.starts_with("/proc/sys") {
                    libc::EROFS
                } else {
                    libc::EACCES
                },
            ));
        }
        let nofollow = flags & libc::O_NOFOLLOW != 0;
        let st = host_stat(host, nofollow)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            // A directory of the job's /proc is never handed over: its shadow is.
            let comps: Vec<String> = host
                .trim_start_matches("/proc")
                .split('/')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
            // Only the step's processes are listed in /proc itself.
            let keep = |name: &str| match name.parse::<u32>() {
                Ok(pid) if comps.is_empty() => self.in_tree(pid),
                _ => true,
            };
            return as_root(|| self.shadow.refresh(&comps, host, &keep, flags));
        }
        let fd = open_host(host, flags & !libc::O_CLOEXEC)?;
        // A /proc/<pid>/fd/N can be pointed at a directory between the stat and
        // the open: never hand over a directory of the job's.
        // SAFETY: an all-zero stat is a valid value to be overwritten.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on a descriptor we own.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0
            || st.st_mode & libc::S_IFMT == libc::S_IFDIR
        {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        Ok(fd)
    }

    /// A pty from the job's devpts (where the job has one); its number is
    /// remembered so the step can open its other end, and no other pty.
    pub(super) fn new_pty(&self, flags: i32) -> io::Result<OwnedFd> {
        let fd = open_host("/dev/ptmx", flags & !libc::O_CLOEXEC)?;
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes the pty number into `n`.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut n) } == 0 {
            self.ptys.borrow_mut().push(n);
        }
        Ok(fd)
    }

    pub(super) fn statx(&self, n: &Notif, target: &Target) -> Reply {
        let args = n.data.args;
        let flags = args[2] as i32;
        let nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
        let host = match self.host_of(target, nofollow).and_then(|h| cpath(&h)) {
            Ok(h) => h,
            Err(e) => return Reply::Errno(errno(&e)),
        };
        // SAFETY: an all-zero statx is a valid value to be overwritten.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: statx with a valid C string and buffer.
        let r = unsafe {
            libc::statx(
                libc::AT_FDCWD,
                host.as_ptr(),
                flags & !libc::AT_EMPTY_PATH,
                args[3] as u32,
                &mut stx,
            )
        };
        if r != 0 {
            return Reply::Errno(errno(&io::Error::last_os_error()));
        }
        self.write_back(n, args[4], bytes_of(&stx), 0)
    }

    pub(super) fn readlink(&self, n: &Notif, target: &Target, buf: u64, size: u64) -> Reply {
        let answer = match target {
            Target::Link(l) => l.clone(),
            Target::Host { host, .. } => match std::fs::read_link(host) {
                Ok(t) => match self.inside(&t) {
                    Some(inside) => inside,
                    None => t.as_os_str().to_string_lossy().into_owned(),
                },
                Err(e) => return Reply::Errno(errno(&e)),
            },
            _ => return Reply::Errno(libc::EINVAL),
        };
        let bytes = answer.as_bytes();
        let len = bytes.len().min(size as usize);
        self.write_back(n, buf, &bytes[..len], len as i64)
    }

    /// Write `data` at `addr` in the caller's memory, then answer `value`.
    pub(super) fn write_back(&self, n: &Notif, addr: u64, data: &[u8], value: i64) -> Reply {
        let Ok(mem) = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/mem", n.pid))
        else {
            return Reply::Errno(libc::EFAULT);
        };
        if !self.id_valid(n.id) {
            return Reply::Gone;
        }
        match mem.write_all_at(data, addr) {
            Ok(()) => Reply::Value(value),
            Err(_) => Reply::Errno(libc::EFAULT),
        }
    }
}
