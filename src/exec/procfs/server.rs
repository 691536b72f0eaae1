//! The notification loop: one thread per step, answering each path syscall of
//! the step's processes (see the parent module for what and why).

use super::filter::{self, AddFd, Call, Nofollow, Notif, Resp};
use super::policy::{self, Target};
use super::shadow::Shadow;

mod answer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A running server; [`Server::stop`] it when the step's processes are gone.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Polls without sleeping after an answer before the server blocks (about a
/// millisecond of one core).
const SPIN_POLLS: u32 = 3000;

enum Reply {
    Continue,
    Errno(i32),
    Value(i64),
    Fd(OwnedFd, bool),
    /// The caller is gone: nothing to answer.
    Gone,
}

struct Ctx {
    listener: OwnedFd,
    /// The rootfs as the job's /proc shows paths in it (canonical).
    root: PathBuf,
    shadow: Shadow,
    me: u32,
    mounts: String,
    mountinfo: String,
    /// Open /proc/<tid>/mem of recent callers. A descriptor stays bound to the
    /// memory it was opened on: after an exec, or for a new task with a reused
    /// tid, reading it fails and it is opened again.
    mems: RefCell<HashMap<u32, (File, u32)>>,
    /// The ptys the step made through /dev/ptmx: the only ones it may open.
    ptys: RefCell<Vec<u32>>,
}

impl Server {
    /// Serve `listener` (the step's filter) for the stage root `rootfs`.
    pub fn start(listener: OwnedFd, rootfs: &Path) -> io::Result<Server> {
        let root = std::fs::canonicalize(rootfs)?;
        let mounts = policy::mounts(false);
        let mountinfo = policy::mounts(true);
        let ctx = Ctx {
            listener,
            shadow: Shadow::open(&root, &mounts, &mountinfo),
            root,
            me: std::process::id(),
            mounts,
            mountinfo,
            mems: RefCell::new(HashMap::new()),
            ptys: RefCell::new(Vec::new()),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kiln-proc".into())
            .spawn(move || ctx.serve(&flag))?;
        Ok(Server {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop serving (every process of the step has exited or been killed) and
    /// empty the rootfs's /proc again.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn cpath(p: &str) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// A NUL-terminated string at `addr` in the memory behind `mem`.
fn read_cstr(mem: &File, addr: u64) -> io::Result<Vec<u8>> {
    const MAX: usize = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < MAX {
        // Never read across a page: the next one may be unmapped.
        let page_left = 4096 - (at % 4096) as usize;
        let mut buf = vec![0u8; page_left.min(MAX - out.len())];
        let n = mem.read_at(&mut buf, at)?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        if let Some(z) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

/// A small /proc file in one read (std's `read` grows its buffer from 32 bytes,
/// which is six syscalls for a `stat` file; this is on every /proc answer).
fn read_small(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut f = File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    Some(buf)
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = read_small(&format!("/proc/{pid}/stat"))?;
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = String::from_utf8_lossy(&stat[close + 1..]).into_owned();
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Who a thread is: its process id and the ids its /proc files are checked against.
struct Caller {
    tgid: u32,
    /// The uid and gid when real, effective, saved and fs ids agree; None when
    /// they differ (a process part-way through a uid change).
    ids: Option<(u32, u32)>,
}

fn caller(tid: u32) -> Option<Caller> {
    let status = String::from_utf8(read_small(&format!("/proc/{tid}/status"))?).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
    let same = |name: &str| -> Option<u32> {
        let ids: Vec<u32> = field(name)?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        (ids.len() == 4 && ids.iter().all(|i| *i == ids[0])).then(|| ids[0])
    };
    Some(Caller {
        tgid: field("Tgid:")?.trim().parse().ok()?,
        ids: same("Uid:").zip(same("Gid:")),
    })
}

/// The server thread's filesystem ids, switched to a caller's for one answer
/// (per thread, so kiln's other threads keep theirs): /proc/<pid>/mem of a
/// process of another uid opens only for that uid without CAP_SYS_PTRACE, and
/// what kiln opens for the step is checked as the step's user. Restored on drop.
struct AsCaller {
    switched: bool,
}

impl AsCaller {
    fn new(ids: (u32, u32)) -> AsCaller {
        if ids == (0, 0) {
            return AsCaller { switched: false };
        }
        // SAFETY: setfsgid/setfsuid change this thread's fs ids only.
        unsafe {
            libc::setfsgid(ids.1);
            libc::setfsuid(ids.0);
        }
        AsCaller { switched: true }
    }
}

/// Run `f` with root's fs ids (the shadow directories are root's), then go back
/// to the ids the thread had.
fn as_root<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid/setfsgid with an invalid id change nothing and return
    // the current one; then this thread's fs ids only.
    let (uid, gid) = unsafe { (libc::setfsuid(u32::MAX), libc::setfsgid(u32::MAX)) };
    if uid == 0 && gid == 0 {
        return f();
    }
    // SAFETY: as above.
    unsafe {
        libc::setfsuid(0);
        libc::setfsgid(0);
    }
    let r = f();
    // SAFETY: as above.
    unsafe {
        libc::setfsgid(gid as u32);
        libc::setfsuid(uid as u32);
    }
    r
}

impl Drop for AsCaller {
    fn drop(&mut self) {
        if self.switched {
            // SAFETY: as above; back to root's fs ids (CAP_SETUID is kept).
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
            }
        }
    }
}

/// A memfd holding `content`, positioned at its start.
fn memfd(content: &str) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static C string.
    let fd = unsafe { libc::memfd_create(c"kiln-proc".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor we own.
    let f = unsafe { File::from_raw_fd(fd) };
    f.write_all_at(content.as_bytes(), 0)?;
    Ok(OwnedFd::from(f))
}

fn open_host(path: &str, flags: i32) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: open with a valid C string; the descriptor is ours.
    let fd = unsafe { libc::open(c.as_ptr(), (flags & !libc::O_CREAT) | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn host_stat(path: &str, nofollow: bool) -> io::Result<libc::stat> {
    let c = cpath(path)?;
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = if nofollow {
        libc::AT_SYMLINK_NOFOLLOW
    } else {
        0
    };
    // SAFETY: fstatat with a valid C string and stat buffer.
    if unsafe { libc::fstatat(libc::AT_FDCWD, c.as_ptr(), &mut st, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: a plain-old-data kernel struct viewed as its bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

impl Ctx {
    fn serve(&self, stop: &AtomicBool) {
        // This thread opens the job's /proc for the step: it holds the step's
        // capabilities, no more (a chroot step has Docker's set less SYS_CHROOT),
        // so /proc/kmsg and the like stay as closed as in a container.
        // SAFETY: capget/capset of this thread only.
        let step_caps = crate::exec::child::ChildPlan::caps_for(crate::exec::Mode::Chroot);
        // SAFETY: as above.
        let limited = unsafe { crate::exec::child::keep_only_caps(step_caps) };
        if !limited {
            tracing::warn!(
                "the /proc server could not drop its capabilities: the step gets no /proc"
            );
        }
        let fd = self.listener.as_raw_fd();
        // Path syscalls come in bursts (a dpkg unpack, a find). Waking a sleeping
        // thread costs tens of microseconds on a VM, so after each answer the
        // thread keeps polling without sleeping for a moment before it blocks.
        let mut idle = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = if idle < SPIN_POLLS { 0 } else { 100 };
            // SAFETY: poll on one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout) };
            if r <= 0 {
                idle = idle.saturating_add(1);
                continue;
            }
            idle = 0;
            if pfd.revents & libc::POLLIN == 0 {
                // POLLHUP: no process uses the filter any more.
                break;
            }
            let mut n = Notif::default();
            // SAFETY: NOTIF_RECV fills a zeroed seccomp_notif.
            if unsafe { libc::ioctl(fd, filter::NOTIF_RECV, &mut n as *mut Notif) } != 0 {
                continue;
            }
            let reply = if limited {
                self.handle(&n)
            } else {
                Reply::Continue
            };
            self.reply(n.id, reply);
        }
        self.shadow.clear();
    }

    fn reply(&self, id: u64, reply: Reply) {
        let fd = self.listener.as_raw_fd();
        let mut resp = Resp {
            id,
            ..Default::default()
        };
        match reply {
            Reply::Gone => return,
            Reply::Continue => resp.flags = filter::USER_NOTIF_FLAG_CONTINUE,
            Reply::Errno(e) => resp.error = -e,
            Reply::Value(v) => resp.val = v,
            Reply::Fd(src, cloexec) => {
                let add = AddFd {
                    id,
                    flags: filter::ADDFD_FLAG_SEND,
                    srcfd: src.as_raw_fd() as u32,
                    newfd: 0,
                    newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
                };
                // SAFETY: ADDFD with a valid struct; on success the syscall of the
                // target returns the new descriptor and no reply follows.
                if unsafe { libc::ioctl(fd, filter::NOTIF_ADDFD, &add as *const AddFd) } >= 0 {
                    return;
                }
                resp.error = -errno(&io::Error::last_os_error());
            }
        }
        // SAFETY: NOTIF_SEND with a valid response; an error means the caller died.
        unsafe { libc::ioctl(fd, filter::NOTIF_SEND, &mut resp as *mut Resp) };
    }

    /// The path at `addr` of thread `tid`, read with kiln's own ids, and the
    /// thread's process id. Reading with kiln's ids works for root threads only
    /// (the server has no CAP_SYS_PTRACE), so such a caller's ids are all 0.
    fn read_path(&self, tid: u32, addr: u64) -> io::Result<(Vec<u8>, u32)> {
        let mut mems = self.mems.borrow_mut();
        if let Some((m, tgid)) = mems.get(&tid) {
            if let Ok(raw) = read_cstr(m, addr) {
                return Ok((raw, *tgid));
            }
            mems.remove(&tid);
        }
        let m = File::open(format!("/proc/{tid}/mem"))?;
        let raw = read_cstr(&m, addr)?;
        let tgid = caller(tid)
            .map(|c| c.tgid)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
        if mems.len() >= 256 {
            mems.clear();
        }
        mems.insert(tid, (m, tgid));
        Ok((raw, tgid))
    }

    fn id_valid(&self, id: u64) -> bool {
        // SAFETY: NOTIF_ID_VALID reads one u64.
        unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                filter::NOTIF_ID_VALID,
                &id as *const u64,
            ) == 0
        }
    }

    /// A path of the job's /proc that shows a path in the root, as the step sees it.
    fn inside(&self, p: &Path) -> Option<String> {
        let rel = p.strip_prefix(&self.root).ok()?;
        Some(format!("/{}", rel.as_os_str().to_string_lossy()))
    }

    /// Whether `pid` is one of the step's processes (or threads): a descendant
    /// of kiln. kiln itself and everything else of the job are not.
    fn in_tree(&self, pid: u32) -> bool {
        let mut p = pid;
        for _ in 0..256 {
            if p == self.me || p <= 1 {
                return false;
            }
            match ppid(p) {
                Some(pp) if pp == self.me => return true,
                Some(pp) => p = pp,
                None => return false,
            }
        }
        false
    }

    fn handle(&self, n: &Notif) -> Reply {
        let Some(call) = filter::call(n.data.nr as i64) else {
            return Reply::Continue;
        };
        let args = n.data.args;
        let (dirfd, path_arg) = match call {
            Call::Open { dirfd, path, .. }
            | Call::Stat { dirfd, path, .. }
            | Call::Readlink { dirfd, path, .. }
            | Call::Access { dirfd, path, .. } => (dirfd, path),
            Call::Openat2 | Call::Statx => (Some(0), 1),
        };
        // Root callers (most of a build) are read with kiln's own ids, through a
        // cached /proc/<tid>/mem; another uid with its own fs ids. A process kiln
        // cannot read at all (part-way through a uid change, or not dumpable after
        // one) resolves its paths in the root, as without the server.
        let (raw, who, mut as_caller) = match self.read_path(n.pid, args[path_arg]) {
            Ok((raw, tgid)) => {
                let who = Caller {
                    tgid,
                    ids: Some((0, 0)),
                };
                (raw, who, None)
            }
            Err(_) => {
                let Some(c) = caller(n.pid) else {
                    return Reply::Continue;
                };
                let Some(ids) = c.ids else {
                    return Reply::Continue;
                };
                let switched = AsCaller::new(ids);
                let mem = File::open(format!("/proc/{}/mem", n.pid));
                match mem.and_then(|m| read_cstr(&m, args[path_arg])) {
                    Ok(raw) => (raw, c, Some(switched)),
                    Err(_) => return Reply::Continue,
                }
            }
        };
        let Ok(path) = String::from_utf8(raw) else {
            return Reply::Continue;
        };
        if path.is_empty() {
            return Reply::Continue;
        }
        let inroot = if path.starts_with('/') {
            policy::normalize(&path)
        } else {
            let fd = dirfd.map(|i| args[i] as i32).unwrap_or(libc::AT_FDCWD);
            let link = if fd == libc::AT_FDCWD {
                format!("/proc/{}/cwd", n.pid)
            } else {
                format!("/proc/{}/fd/{fd}", n.pid)
            };
            let Some(base) = std::fs::read_link(link).ok().and_then(|b| self.inside(&b)) else {
                return Reply::Continue;
            };
            policy::join(&base, &path)
        };
        if !(inroot.starts_with("/proc") || inroot.starts_with("/dev/")) {
            return Reply::Continue;
        }
        // /dev/stdout and friends are links in the root, as in Docker's /dev: only
        // what follows them is served.
        let on_link = matches!(call, Call::Readlink { .. })
            || matches!(
                call,
                Call::Stat {
                    nofollow: Nofollow::Always,
                    ..
                }
            );
        if inroot.starts_with("/dev/") && on_link {
            return Reply::Continue;
        }
        // Before acting on the path: it was read from the caller, not from a
        // process that took over its pid. (Letting a call continue needs no such
        // check: the kernel resolves it in the root.)
        if !self.id_valid(n.id) {
            return Reply::Gone;
        }
        // What kiln opens for the caller is checked as the caller's user.
        if as_caller.is_none() {
            match who.ids {
                Some(ids) => as_caller = Some(AsCaller::new(ids)),
                None => return Reply::Continue,
            }
        }
        let _as = as_caller;
        let target = policy::classify(&inroot, who.tgid, n.pid);
        if target == Target::Native {
            return Reply::Continue;
        }
        if let Target::Host { pid: Some(p), .. } = &target {
            if !self.in_tree(*p) {
                return Reply::Errno(libc::ENOENT);
            }
        }
        match call {
            Call::Open { flags, .. } => self.open(target, args[flags] as i32),
            Call::Openat2 => {
                let mut how = [0u8; 8];
                let mem = File::open(format!("/proc/{}/mem", n.pid));
                match mem.and_then(|m| m.read_at(&mut how, args[2])) {
                    Ok(8) => self.open(target, u64::from_ne_bytes(how) as i32),
                    _ => Reply::Errno(libc::EFAULT),
                }
            }
            Call::Stat { buf, nofollow, .. } => {
                let nofollow = match nofollow {
                    Nofollow::Never => false,
                    Nofollow::Always => true,
                    Nofollow::Flag(i) => args[i] as i32 & libc::AT_SYMLINK_NOFOLLOW != 0,
                };
                match self
                    .host_of(&target, nofollow)
                    .and_then(|h| host_stat(&h, nofollow))
                {
                    Ok(st) => self.write_back(n, args[buf], bytes_of(&st), 0),
                    Err(e) => Reply::Errno(errno(&e)),
                }
            }
            Call::Statx => self.statx(n, &target),
            Call::Readlink { buf, size, .. } => self.readlink(n, &target, args[buf], args[size]),
            Call::Access { mode, flags, .. } => {
                let flags = flags.map(|i| args[i] as i32).unwrap_or(0)
                    & (libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW);
                let host = self.host_of(&target, flags & libc::AT_SYMLINK_NOFOLLOW != 0);
                match host.and_then(|h| cpath(&h)) {
                    // SAFETY: faccessat with a valid C string.
                    Ok(c) => match unsafe {
                        libc::faccessat(libc::AT_FDCWD, c.as_ptr(), args[mode] as i32, flags)
                    } {
                        0 => Reply::Value(0),
                        _ => Reply::Errno(errno(&io::Error::last_os_error())),
                    },
                    Err(e) => Reply::Errno(errno(&e)),
                }
            }
        }
    }
}

/// Receive the listener the child sent over `sock` (non-blocking: the child has
/// sent it before `execve`, or failed).
pub fn receive_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let mut cbuf = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: recvmsg into the buffers above.
    let r = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages recvmsg wrote.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::other("the step sent no seccomp listener"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const RawFd);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
