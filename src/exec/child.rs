//! What runs between `fork` and `execve` of a RUN step.
//!
//! kiln is multithreaded, so the forked child may only make raw syscalls on
//! buffers prepared before the fork: no allocation, no locks, no panics. Every
//! string the child needs is in a [`ChildPlan`] built by the parent. A failure is
//! reported to the parent as a `(stage, errno)` pair on a close-on-exec pipe; the
//! parent turns it into a message.
//!
//! In `namespaces` and `rootless` mode the child unshares mount and PID namespaces
//! (and a user namespace for single-uid rootless), forks once more so that the step
//! is PID 1 there, and that PID 1 builds the step's view of the world before it
//! `pivot_root`s into the stage root and detaches the old root:
//!
//! - the rootfs is a bind mount of itself with `nodev`: device nodes a step makes
//!   with `mknod` cannot be opened;
//! - a fresh `/proc` for the PID namespace, with Docker's read-only and masked paths;
//! - `/dev` as Docker makes it: a `nodev` tmpfs with the standard character devices
//!   bind-mounted from the host one by one, a private `devpts`, a `shm` tmpfs and the
//!   `fd`/`stdin`/`stdout`/`stderr` links;
//! - `/sys` read-only (a fresh sysfs, or the host's made read-only recursively);
//! - the host's `resolv.conf` and `hosts`, bind-mounted read-only.
//!
//! In every mode the step's capability bounding set is Docker's default set, and in
//! `chroot` mode without CAP_SYS_CHROOT, so a nested `chroot` cannot climb out of
//! the stage root. The step gets only stdin (`/dev/null`), stdout and stderr; every
//! other descriptor is closed on exec. It dies with kiln (`PR_SET_PDEATHSIG`).

use std::ffi::{c_char, CString};

use super::mountsys::{
    bind_read_only, mount, set_attr, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
};
use super::Mode;

/// Docker's default capabilities: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
/// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD,
/// AUDIT_WRITE, SETFCAP.
pub const DOCKER_CAPS: u64 = 0xa804_25fb;
const CAP_SYS_CHROOT: u32 = 18;

const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_CLEAR_ALL: libc::c_ulong = 4;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Where the child stopped, for the parent's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Setup = 1,
    Unshare,
    IdMaps,
    Fork,
    BindRoot,
    Proc,
    Dev,
    Mounts,
    PivotRoot,
    Workdir,
    Capabilities,
    Ids,
    Seccomp,
    Trace,
    Exec,
}

impl Stage {
    pub fn from_code(code: u32) -> Option<Stage> {
        use Stage::*;
        [
            Setup,
            Unshare,
            IdMaps,
            Fork,
            BindRoot,
            Proc,
            Dev,
            Mounts,
            PivotRoot,
            Workdir,
            Capabilities,
            Ids,
            Seccomp,
            Trace,
            Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == code)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stage::Setup => "setting up the step's process",
            Stage::Unshare => "creating the step's namespaces",
            Stage::IdMaps => "writing the user namespace's id maps",
            Stage::Fork => "starting the step as PID 1",
            Stage::BindRoot => "mounting the stage root",
            Stage::Proc => "mounting /proc",
            Stage::Dev => "making /dev",
            Stage::Mounts => "making the RUN --mount mounts",
            Stage::PivotRoot => "entering the stage root",
            Stage::Workdir => "changing to the WORKDIR",
            Stage::Capabilities => "dropping capabilities",
            Stage::Ids => "switching to the USER's ids",
            Stage::Seccomp => "installing the /proc filter (seccomp user notification)",
            Stage::Trace => "attaching kiln's exec tracer (ptrace and its seccomp filter)",
            Stage::Exec => "executing the command",
        }
    }
}

/// Paths inside the stage root (host paths, resolved by the confined resolver
/// before the fork) and everything else the child needs.
pub struct ChildPlan {
    pub mode: Mode,
    /// unshare flags; 0 in chroot mode.
    pub ns_flags: libc::c_int,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub root: CString,
    pub proc_: CString,
    pub dev: CString,
    pub sys: CString,
    /// (host source, target in the rootfs) for resolv.conf and hosts.
    pub etc_binds: Vec<(CString, CString)>,
    /// Proc paths made read-only, and masked files and directories.
    pub proc_ro: Vec<CString>,
    pub proc_mask_files: Vec<CString>,
    pub proc_mask_dirs: Vec<CString>,
    /// (host device, file in the new /dev) for each bind-mounted device.
    pub devices: Vec<(CString, CString)>,
    pub dev_pts: CString,
    pub dev_shm: CString,
    /// More directories in the new /dev (kiln's emulator links).
    pub dev_dirs: Vec<CString>,
    /// (link target, link path) in the new /dev.
    pub dev_links: Vec<(CString, CString)>,
    /// `RUN --mount`s (namespaces and rootless modes).
    pub mounts: Vec<super::mounts::ChildMount>,
    pub cwd: CString,
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub groups: Vec<libc::gid_t>,
    /// kiln's pid: the child dies with it.
    pub parent: libc::pid_t,
    /// The capabilities the step may keep.
    pub caps: u64,
    /// The /proc server's filter, installed just before `execve` (chroot mode);
    /// empty when kiln does not serve /proc to this step.
    pub filter: Vec<libc::sock_filter>,
    /// The filter hands kiln a listener (the /proc server); else it only refuses.
    pub notify: bool,
    /// The exec tracer's filter (a foreign step under kiln's emulator): the
    /// child is traced by the thread that forks it, and installs this before
    /// anything of the step runs. Empty: not traced.
    pub trace: Vec<libc::sock_filter>,
}

/// Descriptors the child uses.
pub struct Fds {
    pub stdin: libc::c_int,
    pub output: libc::c_int,
    pub error: libc::c_int,
    /// Where the child sends the seccomp listener (-1: no filter).
    pub notify: libc::c_int,
}

/// Null-terminated pointer arrays over `CString`s, built before the fork.
pub struct Ptrs {
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ChildPlan {
    pub fn ptrs(&self) -> Ptrs {
        let list = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        Ptrs {
            argv: list(&self.argv),
            envp: list(&self.envp),
        }
    }

    pub fn caps_for(mode: Mode) -> u64 {
        match mode {
            Mode::Chroot => DOCKER_CAPS & !(1u64 << CAP_SYS_CHROOT),
            Mode::Namespaces | Mode::Rootless => DOCKER_CAPS,
        }
    }
}

/// Report `stage` and the current errno to the parent, then exit.
///
/// # Safety
/// Only write and _exit syscalls.
unsafe fn fail(fds: &Fds, stage: Stage) -> ! {
    // SAFETY: errno location is thread-local and valid; the buffer is on the stack.
    unsafe {
        let errno = *libc::__errno_location();
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
        msg[4..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(fds.error, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Die with `parent` (SIGKILL when it exits). Credential changes clear this
/// setting, so it is called again after each of them.
///
/// # Safety
/// prctl and getppid only.
unsafe fn die_with(parent: libc::pid_t) -> bool {
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == 0
            && (parent == 0 || libc::getppid() == parent)
    }
}

/// The child's whole life after `fork`. Never returns.
///
/// # Safety
/// Must be called in a freshly forked child; it only makes raw syscalls on the
/// plan's buffers.
pub unsafe fn start(plan: &ChildPlan, ptrs: &Ptrs, fds: &Fds) -> ! {
    // SAFETY: see the function's contract; every pointer comes from the plan.
    unsafe {
        if libc::setsid() < 0 || !die_with(plan.parent) {
            fail(fds, Stage::Setup);
        }
        if !plan.trace.is_empty() && !super::emulate::tracer::child_attach() {
            fail(fds, Stage::Trace);
        }
        if libc::dup2(fds.stdin, 0) < 0
            || libc::dup2(fds.output, 1) < 0
            || libc::dup2(fds.output, 2) < 0
        {
            fail(fds, Stage::Setup);
        }
        // Nothing of kiln's but stdio reaches the step.
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            for fd in 3..65536 {
                if fd != fds.error {
                    libc::close(fd);
                }
            }
        }
        if plan.ns_flags != 0 {
            enter_namespaces(plan, fds);
            build_root(plan, fds);
        } else {
            if libc::chroot(plan.root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                fail(fds, Stage::PivotRoot);
            }
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            fail(fds, Stage::Workdir);
        }
        // While the namespaces' root still has CAP_SYS_ADMIN (else with
        // no_new_privs): every exec from here on stops for the tracer.
        if !plan.trace.is_empty() && !super::emulate::tracer::child_install(&plan.trace) {
            fail(fds, Stage::Trace);
        }
        for cap in 0..64u32 {
            if plan.caps & (1u64 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && *libc::__errno_location() != libc::EINVAL
            {
                fail(fds, Stage::Capabilities);
            }
        }
        libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        if plan.mode != Mode::Rootless
            && (libc::setgroups(plan.groups.len(), plan.groups.as_ptr()) != 0
                || libc::setgid(plan.gid) != 0
                || libc::setuid(plan.uid) != 0)
        {
            fail(fds, Stage::Ids);
        }
        // What a root step keeps after exec is bounded above; clear what kiln
        // itself holds beyond it (inheritable included) for a step run as uid 0.
        if !keep_only_caps(plan.caps) {
            fail(fds, Stage::Capabilities);
        }
        // The PID 1 of a namespace has no parent it can see; its parent, the
        // waiting process, has the death signal.
        let parent = if plan.ns_flags != 0 { 0 } else { plan.parent };
        if !die_with(parent) {
            fail(fds, Stage::Setup);
        }
        if !plan.filter.is_empty() {
            install_filter(plan, fds);
        }
        libc::execve(
            plan.program.as_ptr(),
            ptrs.argv.as_ptr(),
            ptrs.envp.as_ptr(),
        );
        fail(fds, Stage::Exec)
    }
}

/// Limit the calling thread's effective and permitted capabilities to `keep`,
/// and clear its inheritable set. Capabilities are per thread: kiln's /proc
/// server uses this to hold no more than the step it serves.
///
/// # Safety
/// Raw capget/capset on the stack only (usable between fork and exec).
pub unsafe fn keep_only_caps(keep: u64) -> bool {
    let mut hdr = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget/capset with a valid header and two data structs.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            data.as_mut_ptr(),
        ) != 0
        {
            return false;
        }
        for (i, d) in data.iter_mut().enumerate() {
            let k = (keep >> (32 * i)) as u32;
            d.effective &= k;
            d.permitted &= k;
            d.inheritable = 0;
        }
        libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) == 0
    }
}

/// Install the /proc server's filter (no_new_privs first: the job has no
/// CAP_SYS_ADMIN) and send its listener to kiln over `fds.notify`.
///
/// # Safety
/// Raw syscalls on the plan's buffers and the stack only.
unsafe fn install_filter(plan: &ChildPlan, fds: &Fds) {
    // SAFETY: prctl, seccomp, sendmsg and close on the plan's buffers and
    // stack-allocated message structures.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(fds, Stage::Seccomp);
        }
        let prog = libc::sock_fprog {
            len: plan.filter.len() as u16,
            filter: plan.filter.as_ptr() as *mut libc::sock_filter,
        };
        // With a listener: SECCOMP_FILTER_FLAG_NEW_LISTENER, and (Linux ≥ 5.19)
        // WAIT_KILLABLE_RECV: once kiln has a notification, only a fatal signal
        // interrupts the wait, so a SIGCHLD does not turn an open(2) into EINTR.
        // Refusals only (`--network=none`): no flags, no listener to hand over.
        let listens = plan.notify && fds.notify >= 0;
        let tries: &[libc::c_ulong] = if listens { &[8 | 32, 8] } else { &[0] };
        let mut listener = -1;
        for &flags in tries {
            listener = libc::syscall(
                libc::SYS_seccomp,
                1 as libc::c_ulong, // SECCOMP_SET_MODE_FILTER
                flags,
                &prog as *const libc::sock_fprog,
            ) as libc::c_int;
            if listener >= 0 || *libc::__errno_location() != libc::EINVAL {
                break;
            }
        }
        if listener < 0 {
            fail(fds, Stage::Seccomp);
        }
        if !listens {
            return;
        }
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr() as *mut libc::c_void,
            iov_len: 1,
        };
        let mut cbuf = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, listener);
        if libc::sendmsg(fds.notify, &msg, 0) < 0 {
            fail(fds, Stage::Seccomp);
        }
        libc::close(listener);
        libc::close(fds.notify);
    }
}

/// Unshare `flags`, write the single-uid maps when a user namespace is among
/// them, and make every mount private. On failure, errno says why.
///
/// # Safety
/// Raw syscalls only (usable between fork and exec).
pub unsafe fn unshare_private(
    flags: libc::c_int,
    uid_map: &[u8],
    gid_map: &[u8],
) -> Result<(), Stage> {
    // SAFETY: raw syscalls on valid buffers.
    unsafe {
        if flags & libc::CLONE_NEWUSER != 0 {
            // kiln is not dumpable, which would make /proc/self/uid_map root's.
            libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        }
        if libc::unshare(flags) != 0 {
            return Err(Stage::Unshare);
        }
        if flags & libc::CLONE_NEWUSER != 0
            && (write_file(c"/proc/self/setgroups", b"deny").is_err()
                || write_file(c"/proc/self/uid_map", uid_map).is_err()
                || write_file(c"/proc/self/gid_map", gid_map).is_err())
        {
            return Err(Stage::IdMaps);
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(Stage::Unshare);
        }
    }
    Ok(())
}

/// Unshare, write id maps, make mounts private, and fork: the caller continues as
/// PID 1 of the new PID namespace, while this process waits for it and exits with
/// its status.
///
/// # Safety
/// Forked child only.
unsafe fn enter_namespaces(plan: &ChildPlan, fds: &Fds) {
    // SAFETY: raw syscalls on the plan's buffers.
    unsafe {
        if let Err(stage) = unshare_private(plan.ns_flags, &plan.uid_map, &plan.gid_map) {
            fail(fds, stage);
        }
        let pid = libc::fork();
        if pid < 0 {
            fail(fds, Stage::Fork);
        }
        if pid == 0 {
            if !die_with(0) {
                fail(fds, Stage::Fork);
            }
            return;
        }
        // The waiting process: it holds no descriptor the step could need, and
        // passes on PID 1's status. When it dies (with kiln), PID 1 gets SIGKILL
        // and the kernel ends everything else in the namespace.
        libc::close(fds.error);
        libc::close(fds.output);
        libc::close(fds.stdin);
        libc::close(0);
        libc::close(1);
        libc::close(2);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::_exit(128 + libc::WTERMSIG(status));
    }
}

/// Write `data` to `path` with raw syscalls.
///
/// # Safety
/// open/write/close only.
pub unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), ()> {
    // SAFETY: `path` is NUL-terminated and `data` is a valid buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if n < 0 {
            return Err(());
        }
    }
    Ok(())
}

/// In PID 1 of the new namespaces: mount the step's root, `/proc`, `/dev`, `/sys`
/// and the host files, then `pivot_root` into it with the old root detached.
///
/// # Safety
/// Forked child only.
unsafe fn build_root(plan: &ChildPlan, fds: &Fds) {
    let none = std::ptr::null::<c_char>();
    // SAFETY: raw syscalls on the plan's NUL-terminated buffers.
    unsafe {
        // pivot_root needs the new root to be a mount point.
        if !mount(
            plan.root.as_ptr(),
            &plan.root,
            none,
            libc::MS_BIND | libc::MS_REC,
            none,
        ) || !set_attr(&plan.root, MOUNT_ATTR_NODEV, false)
        {
            fail(fds, Stage::BindRoot);
        }
        let kernel_fs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        let ms_kernel = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if !mount(
            c"proc".as_ptr(),
            &plan.proc_,
            c"proc".as_ptr(),
            ms_kernel,
            none,
        ) {
            fail(fds, Stage::Proc);
        }
        // Docker's protections of the kernel's global knobs. A path this kernel
        // lacks is skipped.
        for p in &plan.proc_ro {
            if libc::access(p.as_ptr(), libc::F_OK) == 0 && !bind_read_only(p, p) {
                fail(fds, Stage::Proc);
            }
        }
        for p in &plan.proc_mask_files {
            if libc::access(p.as_ptr(), libc::F_OK) == 0
                && !mount(c"/dev/null".as_ptr(), p, none, libc::MS_BIND, none)
            {
                fail(fds, Stage::Proc);
            }
        }
        for p in &plan.proc_mask_dirs {
            if libc::access(p.as_ptr(), libc::F_OK) == 0
                && !mount(
                    c"tmpfs".as_ptr(),
                    p,
                    c"tmpfs".as_ptr(),
                    libc::MS_RDONLY | ms_kernel,
                    c"size=0".as_ptr(),
                )
            {
                fail(fds, Stage::Proc);
            }
        }
        // /dev: nothing of the host's but the standard character devices.
        if !mount(
            c"tmpfs".as_ptr(),
            &plan.dev,
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=755,size=65536k".as_ptr(),
        ) {
            fail(fds, Stage::Dev);
        }
        for (host, file) in &plan.devices {
            let fd = libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd < 0 {
                fail(fds, Stage::Dev);
            }
            libc::close(fd);
            if !mount(host.as_ptr(), file, none, libc::MS_BIND, none) {
                fail(fds, Stage::Dev);
            }
        }
        if libc::mkdir(plan.dev_pts.as_ptr(), 0o755) != 0
            || libc::mkdir(plan.dev_shm.as_ptr(), 0o1777) != 0
            || plan
                .dev_dirs
                .iter()
                .any(|d| libc::mkdir(d.as_ptr(), 0o755) != 0)
        {
            fail(fds, Stage::Dev);
        }
        let pts_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        let pts = |opts: &std::ffi::CStr| {
            mount(
                c"devpts".as_ptr(),
                &plan.dev_pts,
                c"devpts".as_ptr(),
                pts_flags,
                opts.as_ptr(),
            )
        };
        // gid 5 (tty) exists only where the namespace maps it.
        if !pts(c"newinstance,ptmxmode=0666,mode=0620,gid=5")
            && !pts(c"newinstance,ptmxmode=0666,mode=0620")
        {
            fail(fds, Stage::Dev);
        }
        if !mount(
            c"shm".as_ptr(),
            &plan.dev_shm,
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=1777,size=65536k".as_ptr(),
        ) {
            fail(fds, Stage::Dev);
        }
        for (target, link) in &plan.dev_links {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                fail(fds, Stage::Dev);
            }
        }
        // /sys read-only: a fresh sysfs where the namespace owns the network
        // namespace, else the host's made read-only all the way down, else none.
        if !mount(
            c"sysfs".as_ptr(),
            &plan.sys,
            c"sysfs".as_ptr(),
            libc::MS_RDONLY | ms_kernel,
            none,
        ) && mount(
            c"/sys".as_ptr(),
            &plan.sys,
            none,
            libc::MS_BIND | libc::MS_REC,
            none,
        ) && !set_attr(&plan.sys, MOUNT_ATTR_RDONLY | kernel_fs, true)
        {
            libc::umount2(plan.sys.as_ptr(), libc::MNT_DETACH);
        }
        // The host's name resolution, read-only; best effort, as the host may
        // have neither file.
        for (src, dst) in &plan.etc_binds {
            if mount(src.as_ptr(), dst, none, libc::MS_BIND, none) {
                set_attr(dst, MOUNT_ATTR_RDONLY, false);
            }
        }
        for m in &plan.mounts {
            let ok = match m {
                super::mounts::ChildMount::Bind { src, dst, ro } => {
                    let attrs = MOUNT_ATTR_NODEV | if *ro { MOUNT_ATTR_RDONLY } else { 0 };
                    mount(src.as_ptr(), dst, none, libc::MS_BIND | libc::MS_REC, none)
                        && set_attr(dst, attrs, true)
                }
                super::mounts::ChildMount::Tmpfs { dst, opts } => mount(
                    c"tmpfs".as_ptr(),
                    dst,
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    opts.as_ptr(),
                ),
            };
            if !ok {
                fail(fds, Stage::Mounts);
            }
        }
        // Enter the root; the old root is stacked on it by pivot_root(".", ".")
        // and detached, so nothing of the host stays reachable.
        if libc::chdir(plan.root.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            fail(fds, Stage::PivotRoot);
        }
    }
}
