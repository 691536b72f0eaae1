//! kiln's own exec interception, for a foreign step where the host has no
//! binfmt_misc handler: the step's processes install a seccomp filter that
//! sends `execve` and `execveat` (and nothing else) to kiln as ptrace stops, as
//! PRoot does. For each one kiln reads the file the call names (as the
//! process would resolve it, in its own root and cwd), follows `#!` lines as
//! the kernel does, and when the program at the end is an ELF of the emulated
//! architecture, rewrites the call in place to run qemu-user on it
//! (`/dev/.kiln-emulator -0 ARGV0 PATH ARGS...`), with the strings written
//! below the process's stack pointer. Everything else execs untouched.
//!
//! Only exec calls stop; forks and signals are passed through. Docker's
//! default seccomp profile allows `ptrace` (Linux ≥ 4.8) but not
//! `process_vm_writev`, so memory goes through `/proc/<pid>/mem`, or
//! `PTRACE_PEEKDATA`/`POKEDATA` where that is refused (a non-dumpable process).
//! x86-64 hosts only, like the chroot mode's /proc.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::elf::{classify, host_runs, Exe, HEAD};
use super::rewrite::{layout, Arg, Exec};

/// Where the step finds the emulator (kiln puts a copy there for the step).
pub const IN_STEP: &str = "/dev/.kiln-emulator";
/// The file name of that copy in the step's /dev.
pub const DEV_NAME: &str = ".kiln-emulator";
/// A directory beside it of links to it, one per program name: the kernel
/// names a process (`/proc/PID/comm`, what `ps`, `pgrep` and `killall` see)
/// after the file its exec was given, so each program runs the emulator
/// through a link of its own name, as binfmt_misc keeps the program's name.
pub const LINKS_DEV_NAME: &str = ".kiln-emulator.d";
/// What a link in [`LINKS_DEV_NAME`] points at.
pub const LINK_TARGET: &str = "../.kiln-emulator";

/// The link that runs the emulator under the name the kernel would give a
/// process that execs `path` (its last component), or None for a name no
/// link can have.
pub fn link_for(path: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let name = path.rsplit(|&b| b == b'/').next()?;
    if name.is_empty() || name == b"." || name == b".." || name.len() > 255 {
        return None;
    }
    let mut full = format!("/dev/{LINKS_DEV_NAME}/").into_bytes();
    full.extend_from_slice(name);
    Some((name.to_vec(), full))
}

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x86-64's red zone: what a leaf function may keep below its stack pointer.
const RED_ZONE: u64 = 128;
/// The most `#!` interpreters in a row the kernel follows.
const MAX_SCRIPTS: usize = 4;
const MAX_ARGS: usize = 1 << 20;

/// The step's filter: the host ABI's `execve` and `execveat` stop for kiln.
/// Empty where kiln has no tracer (not x86-64).
pub fn filter() -> Vec<libc::sock_filter> {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    vec![
        op(ld, 0, 0, 4), // arch
        op(jeq, 0, 3, AUDIT_ARCH_X86_64),
        op(ld, 0, 0, 0),    // nr
        op(jeq, 2, 0, 59),  // execve
        op(jeq, 1, 0, 322), // execveat
        op(ret, 0, 0, SECCOMP_RET_ALLOW),
        op(ret, 0, 0, SECCOMP_RET_TRACE),
    ]
}

/// In the forked child, first thing: be traced by the forking thread, and
/// stop until it has set its options.
///
/// # Safety
/// Raw syscalls only (usable between fork and exec).
pub unsafe fn child_attach() -> bool {
    // SAFETY: ptrace(TRACEME) and kill take no pointers.
    unsafe {
        libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0
            && libc::kill(libc::getpid(), libc::SIGSTOP) == 0
    }
}

/// In the child, before exec: install [`filter`]. Without CAP_SYS_ADMIN (a
/// Docker job) that needs no_new_privs, as chroot mode's /proc filter does.
///
/// # Safety
/// Raw syscalls on `filter` only (usable between fork and exec).
pub unsafe fn child_install(filter: &[libc::sock_filter]) -> bool {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: seccomp and prctl with a valid program pointer.
    unsafe {
        let set = || {
            libc::syscall(
                libc::SYS_seccomp,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                &prog,
            ) == 0
        };
        set()
            || (*libc::__errno_location() == libc::EACCES
                && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && set())
    }
}

/// What the tracer puts in front of which programs.
pub struct Tracer {
    /// qemu's name of the architecture it emulates (`aarch64`).
    pub arch: &'static str,
    /// The step's root as kiln sees it, where every process of the step has it
    /// (chroot mode: the step cannot chroot further). Without CAP_SYS_PTRACE
    /// kiln cannot open `/proc/<pid>/root` of a process that is not dumpable
    /// (kiln's own child before its first exec, a program that changed its
    /// uid), so absolute paths of such a process resolve here.
    pub root: Option<std::path::PathBuf>,
}

fn cont(pid: libc::pid_t, sig: i32) {
    // SAFETY: PTRACE_CONT on a tracee in a ptrace stop; no pointers.
    unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, sig as libc::c_long) };
}

fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

impl Tracer {
    /// On the thread that forked `top` (its tracer): set the options at its
    /// first stop, then serve every stop of its process tree until `top`
    /// exits; its exit code (128+N for signal N). Other children of kiln
    /// (helpers in kiln's own session) are left to their owners.
    pub fn supervise(&self, top: libc::pid_t) -> io::Result<i32> {
        let status = wait_for(top)?;
        if !libc::WIFSTOPPED(status) {
            return Ok(code_of(status));
        }
        let opts = libc::PTRACE_O_TRACESECCOMP
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_TRACEEXEC
            | libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_EXITKILL;
        // SAFETY: PTRACE_SETOPTIONS on our stopped tracee; no pointers.
        if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, top, 0, opts as libc::c_long) } != 0 {
            let e = io::Error::last_os_error();
            // SAFETY: kill on our own child.
            unsafe { libc::kill(top, libc::SIGKILL) };
            let _ = wait_for(top);
            return Err(e);
        }
        cont(top, 0);
        // SAFETY: getsid(0) has no pointer arguments.
        let kiln_session = unsafe { libc::getsid(0) };
        let mut state = State {
            seen: HashSet::from([top]),
            kiln_copies: HashSet::from([top]),
            ..Default::default()
        };
        loop {
            // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid with a valid siginfo pointer; WNOWAIT only looks.
            // Ptrace stops are reported to the tracer without WSTOPPED.
            let r = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT | libc::__WALL,
                )
            };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: waitid filled the siginfo of a child state change.
            let pid = unsafe { info.si_pid() };
            let trapped = info.si_code == libc::CLD_TRAPPED;
            // SAFETY: getsid on a child's or tracee's pid.
            if !trapped && pid != top && unsafe { libc::getsid(pid) } == kiln_session {
                // One of kiln's helpers: its owner reaps it in a moment.
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            let mut status = 0;
            // SAFETY: waitpid on the pid waitid reported, without blocking.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL | libc::WNOHANG) };
            if r != pid {
                continue;
            }
            if !libc::WIFSTOPPED(status) {
                state.forget(pid);
                if pid == top {
                    return Ok(code_of(status));
                }
                continue;
            }
            self.on_stop(pid, status, &mut state);
        }
    }

    fn on_stop(&self, pid: libc::pid_t, status: i32, state: &mut State) {
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        if sig == libc::SIGTRAP && event != 0 {
            match event {
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE
                    if state.kiln_copies.contains(&pid) =>
                {
                    let mut child: libc::c_ulong = 0;
                    // SAFETY: PTRACE_GETEVENTMSG into a c_ulong, at an event stop.
                    if unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut child) } == 0 {
                        state.kiln_copies.insert(child as libc::pid_t);
                    }
                }
                libc::PTRACE_EVENT_EXEC => {
                    state.kiln_copies.remove(&pid);
                }
                _ => {}
            }
            if event == libc::PTRACE_EVENT_SECCOMP {
                match self.on_exec(pid, state) {
                    Ok(Resume::Syscall) => return resume_to_exit(pid),
                    Ok(Resume::Cont) => {}
                    Err(e) => tracing::debug!("exec of process {pid} left as it is: {e}"),
                }
            }
            return cont(pid, 0);
        }
        if sig == libc::SIGTRAP | 0x80 {
            // The end of the syscall put in front of an exec: the exec again.
            if let Some(saved) = state.injected.remove(&pid) {
                if let Err(e) = regs::set(pid, &regs::rewind(&saved)) {
                    tracing::debug!("process {pid}: its exec could not be restarted: {e}");
                }
            }
            return cont(pid, 0);
        }
        if sig == libc::SIGSTOP && state.seen.insert(pid) {
            // A new process's first stop, as ptrace attaches it: not a signal.
            return cont(pid, 0);
        }
        // SAFETY: an all-zero siginfo_t is valid; PTRACE_GETSIGINFO fills it.
        let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETSIGINFO on a stopped tracee into `si`.
        let r = unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, pid, 0, &mut si) };
        // A group stop (no siginfo) is not kept: a build has no job control.
        cont(pid, if r == 0 { sig } else { 0 });
    }

    /// At the seccomp stop of an exec call: rewrite it when the program it
    /// ends at is an ELF of the emulated architecture.
    ///
    /// A process that changed its uid (`su`, `setpriv`, `gosu`) is not
    /// dumpable until its exec, and without CAP_SYS_PTRACE (a Docker job) not
    /// even its tracer may read its memory then. Such a call is first
    /// turned into `prctl(PR_SET_DUMPABLE, 1)`, which the exec would have
    /// done a moment later, and then made again. Never for a copy of kiln (its
    /// child before its first exec), whose memory holds kiln's: that exec was
    /// decided before the fork.
    fn on_exec(&self, pid: libc::pid_t, state: &mut State) -> io::Result<Resume> {
        let mut regs = regs::get(pid)?;
        let call = regs::call(&regs);
        let mem = Mem::open(pid);
        let path = match mem.read_cstr(call.path) {
            Ok(p) => {
                state.retried.remove(&pid);
                p
            }
            Err(e) if !state.kiln_copies.contains(&pid) && state.retried.insert(pid) => {
                tracing::debug!("process {pid}: made dumpable to read its exec call ({e})");
                state.injected.insert(pid, regs);
                regs::make_dumpable(&mut regs);
                regs::set(pid, &regs)?;
                return Ok(Resume::Syscall);
            }
            Err(e) => return Err(e),
        };
        let mut argv = Vec::new();
        let mut at = call.argv;
        while at != 0 && argv.len() < MAX_ARGS {
            let p = mem.read_u64(at)?;
            if p == 0 {
                break;
            }
            argv.push(Arg::At(p));
            at += 8;
        }
        let empty_path = path.is_empty() && call.flags & libc::AT_EMPTY_PATH != 0;
        let shown_path = if call.dirfd == libc::AT_FDCWD || path.first() == Some(&b'/') {
            Arg::At(call.path)
        } else if empty_path {
            Arg::New(format!("/dev/fd/{}", call.dirfd).into_bytes())
        } else {
            let mut p = format!("/dev/fd/{}/", call.dirfd).into_bytes();
            p.extend_from_slice(&path);
            Arg::New(p)
        };
        let shown = match &shown_path {
            Arg::New(p) => p.clone(),
            Arg::At(_) => path.clone(),
        };
        let mut exec = Exec {
            path: shown_path,
            argv,
        };
        let root = self.root.as_deref();
        let mut file = open_in(pid, root, call.dirfd, &path, call.flags, empty_path)?;
        for _ in 0..=MAX_SCRIPTS {
            let Some(f) = file else {
                return Ok(Resume::Cont);
            };
            let mut head = [0u8; HEAD];
            // Past a short file's end the buffer stays zero, as the kernel's does.
            f.read_at(&mut head, 0)?;
            match classify(&head) {
                Exe::Elf(Some(arch)) if arch == self.arch && !host_runs(arch) => {
                    let named = match link_for(&shown) {
                        Some((name, full)) if self.ensure_link(pid, &name, state) => full,
                        _ => IN_STEP.as_bytes().to_vec(),
                    };
                    exec = exec.under_emulator(&named);
                    let top = regs::stack(&regs).saturating_sub(RED_ZONE);
                    let l = layout(&exec, top).ok_or_else(|| io::Error::other("no room"))?;
                    mem.write(l.base, &l.bytes)?;
                    regs::set_call(&mut regs, &call, l.path, l.argv);
                    regs::set(pid, &regs)?;
                    return Ok(Resume::Cont);
                }
                Exe::Script { interp, arg } => {
                    exec = exec.through_script(&interp, arg.as_deref());
                    file = open_in(pid, root, libc::AT_FDCWD, &interp, 0, false)?;
                }
                Exe::Elf(_) | Exe::Other => return Ok(Resume::Cont),
            }
        }
        Ok(Resume::Cont)
    }
}

impl Tracer {
    /// Make the link `name` to the emulator in the step's /dev (as the step
    /// sees it, never following a link the step made); whether it is there.
    fn ensure_link(&self, pid: libc::pid_t, name: &[u8], state: &mut State) -> bool {
        if state.links.contains(name) {
            return true;
        }
        let dir = open_path(&format!("/proc/{pid}/root"))
            .or_else(|e| match &self.root {
                Some(r) => open_path(&r.to_string_lossy()),
                None => Err(e),
            })
            .and_then(|root| {
                let at = format!("dev/{LINKS_DEV_NAME}");
                openat2(
                    &root,
                    at.as_bytes(),
                    O_DIR,
                    libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS,
                )
            });
        let made = dir.and_then(|d| {
            let name = CString::new(name).map_err(|_| io::Error::other("NUL in name"))?;
            let target = CString::new(LINK_TARGET).map_err(|_| io::Error::other("NUL"))?;
            // SAFETY: symlinkat with NUL-terminated strings and a directory fd.
            let r = unsafe { libc::symlinkat(target.as_ptr(), d.as_raw_fd(), name.as_ptr()) };
            if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
        match made {
            Ok(()) => {
                state.links.insert(name.to_vec());
                true
            }
            Err(e) => {
                tracing::debug!("no link for {}: {e}", String::from_utf8_lossy(name));
                false
            }
        }
    }
}

/// What the tracer keeps about the step's processes.
#[derive(Default)]
struct State {
    /// Processes that are still copies of kiln (its child, and in namespaces
    /// mode that child's child) until their first exec: never made dumpable.
    kiln_copies: HashSet<libc::pid_t>,
    /// Processes whose first (attach) stop has been seen.
    seen: HashSet<libc::pid_t>,
    /// Processes made dumpable for their exec call, once per call.
    retried: HashSet<libc::pid_t>,
    /// The registers of an exec call replaced by a `prctl` for the moment.
    injected: std::collections::HashMap<libc::pid_t, regs::Regs>,
    /// The program names linked to the emulator so far.
    links: HashSet<Vec<u8>>,
}

impl State {
    fn forget(&mut self, pid: libc::pid_t) {
        self.seen.remove(&pid);
        self.kiln_copies.remove(&pid);
        self.retried.remove(&pid);
        self.injected.remove(&pid);
    }
}

/// How a process goes on after its seccomp stop.
enum Resume {
    Cont,
    /// Into the (replaced) syscall, stopping at its end.
    Syscall,
}

fn resume_to_exit(pid: libc::pid_t) {
    // SAFETY: PTRACE_SYSCALL on a tracee in a ptrace stop; no pointers.
    unsafe { libc::ptrace(libc::PTRACE_SYSCALL, pid, 0, 0) };
}

/// The exec call's arguments, whichever of the two it is.
pub struct Call {
    dirfd: i32,
    path: u64,
    argv: u64,
    flags: i32,
    execveat: bool,
}

#[cfg(target_arch = "x86_64")]
mod regs {
    use super::Call;
    use std::io;

    pub type Regs = libc::user_regs_struct;

    pub fn get(pid: libc::pid_t) -> io::Result<Regs> {
        // SAFETY: an all-zero user_regs_struct is valid; GETREGS fills it.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        // SAFETY: PTRACE_GETREGS on a stopped tracee into `r`.
        if unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r)
    }

    pub fn set(pid: libc::pid_t, r: &Regs) -> io::Result<()> {
        // SAFETY: PTRACE_SETREGS on a stopped tracee from `r`.
        if unsafe { libc::ptrace(libc::PTRACE_SETREGS, pid, 0, r) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn call(r: &Regs) -> Call {
        if r.orig_rax == libc::SYS_execveat as u64 {
            Call {
                dirfd: r.rdi as i32,
                path: r.rsi,
                argv: r.rdx,
                flags: r.r8 as i32,
                execveat: true,
            }
        } else {
            Call {
                dirfd: libc::AT_FDCWD,
                path: r.rdi,
                argv: r.rsi,
                flags: 0,
                execveat: false,
            }
        }
    }

    pub fn stack(r: &Regs) -> u64 {
        r.rsp
    }

    /// The stopped syscall becomes `prctl(PR_SET_DUMPABLE, 1)`.
    pub fn make_dumpable(r: &mut Regs) {
        r.orig_rax = libc::SYS_prctl as u64;
        r.rdi = libc::PR_SET_DUMPABLE as u64;
        r.rsi = 1;
    }

    /// The registers `saved` at a syscall's entry, set back one `syscall`
    /// instruction (two bytes) so that the process makes the call again.
    pub fn rewind(saved: &Regs) -> Regs {
        let mut r = *saved;
        r.rip -= 2;
        r.rax = saved.orig_rax;
        r
    }

    /// The same call, on the new path and argv (the environment stays).
    pub fn set_call(r: &mut Regs, c: &Call, path: u64, argv: u64) {
        if c.execveat {
            r.rdi = libc::AT_FDCWD as i64 as u64;
            r.rsi = path;
            r.rdx = argv;
            r.r8 = 0;
        } else {
            r.rdi = path;
            r.rsi = argv;
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod regs {
    use super::Call;
    use std::io;

    #[derive(Clone, Copy)]
    pub struct Regs;

    fn none() -> io::Error {
        io::Error::other("kiln's exec tracer runs on x86-64 hosts only")
    }
    pub fn get(_: libc::pid_t) -> io::Result<Regs> {
        Err(none())
    }
    pub fn set(_: libc::pid_t, _: &Regs) -> io::Result<()> {
        Err(none())
    }
    pub fn call(_: &Regs) -> Call {
        Call {
            dirfd: 0,
            path: 0,
            argv: 0,
            flags: 0,
            execveat: false,
        }
    }
    pub fn stack(_: &Regs) -> u64 {
        0
    }
    pub fn make_dumpable(_: &mut Regs) {}
    pub fn rewind(r: &Regs) -> Regs {
        *r
    }
    pub fn set_call(_: &mut Regs, _: &Call, _: u64, _: u64) {}
}

/// A tracee's memory: `/proc/<pid>/mem`, else word by word through ptrace.
struct Mem {
    pid: libc::pid_t,
    file: Option<File>,
}

impl Mem {
    fn open(pid: libc::pid_t) -> Mem {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .ok();
        Mem { pid, file }
    }

    fn peek(&self, addr: u64) -> io::Result<u64> {
        // SAFETY: errno is thread-local; cleared to tell a -1 word from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: PTRACE_PEEKDATA on a stopped tracee; no pointers of ours.
        let w = unsafe { libc::ptrace(libc::PTRACE_PEEKDATA, self.pid, addr, 0) };
        // SAFETY: as above.
        if w == -1 && unsafe { *libc::__errno_location() } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(w as u64)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(f) = &self.file {
            if let Ok(n) = f.read_at(buf, addr) {
                return Ok(n);
            }
        }
        let w = self.peek(addr)?.to_ne_bytes();
        let n = buf.len().min(8);
        buf[..n].copy_from_slice(&w[..n]);
        Ok(n)
    }

    fn read_u64(&self, addr: u64) -> io::Result<u64> {
        let mut b = [0u8; 8];
        let mut got = 0;
        while got < 8 {
            let n = self.read(addr + got as u64, &mut b[got..])?;
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
            got += n;
        }
        Ok(u64::from_ne_bytes(b))
    }

    /// A NUL-terminated string of at most PATH_MAX bytes.
    fn read_cstr(&self, addr: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 256];
        while out.len() < libc::PATH_MAX as usize {
            let n = self.read(addr + out.len() as u64, &mut chunk)?;
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EFAULT));
            }
            if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
    }

    fn write(&self, addr: u64, data: &[u8]) -> io::Result<()> {
        if let Some(f) = &self.file {
            if f.write_all_at(data, addr).is_ok() {
                return Ok(());
            }
        }
        for (i, chunk) in data.chunks(8).enumerate() {
            let at = addr + 8 * i as u64;
            let mut w = self.peek(at)?.to_ne_bytes();
            w[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: PTRACE_POKEDATA on a stopped tracee; the word is a value.
            let r =
                unsafe { libc::ptrace(libc::PTRACE_POKEDATA, self.pid, at, u64::from_ne_bytes(w)) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn open_path(path: &str) -> io::Result<OwnedFd> {
    let c = CString::new(path).map_err(|_| io::Error::other("NUL in path"))?;
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open flags: a file to read, and a directory to make links in.
const O_READ: i32 = libc::O_RDONLY | libc::O_CLOEXEC;
const O_DIR: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;

/// openat2 of `path` under `dir` with open `flags` and `resolve` flags.
fn openat2(dir: &OwnedFd, path: &[u8], flags: i32, resolve: u64) -> io::Result<File> {
    let c = CString::new(path).map_err(|_| io::Error::other("NUL in path"))?;
    // SAFETY: an all-zero open_how is valid; the fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = resolve;
    // SAFETY: openat2 with a valid dirfd, path and open_how of the size given.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    } as i32;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The file an exec call of `pid` names, opened for reading as that process
/// would find it: absolute paths in its root, relative ones from its cwd (or
/// `dirfd`), never leaving its root. None when it is not an executable
/// regular file (the kernel then refuses the call itself), or when it cannot
/// be found as the process would (a relative path of a process kiln may not
/// look into).
fn open_in(
    pid: libc::pid_t,
    known_root: Option<&std::path::Path>,
    dirfd: i32,
    path: &[u8],
    flags: i32,
    empty_path: bool,
) -> io::Result<Option<File>> {
    let nofollow = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
        O_READ | libc::O_NOFOLLOW
    } else {
        O_READ
    };
    let in_root = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    let file = if empty_path {
        File::open(format!("/proc/{pid}/fd/{dirfd}"))
    } else if path.first() == Some(&b'/') {
        let root = open_path(&format!("/proc/{pid}/root")).or_else(|e| match known_root {
            Some(r) => open_path(&r.to_string_lossy()),
            None => Err(e),
        })?;
        openat2(&root, path, nofollow, in_root)
    } else if dirfd == libc::AT_FDCWD {
        let root = std::fs::read_link(format!("/proc/{pid}/root"))?;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))?;
        match cwd.strip_prefix(&root) {
            // The cwd as the process sees it, so `..` and absolute links
            // resolve as they would for it.
            Ok(rel) => {
                let mut full = b"/".to_vec();
                full.extend_from_slice(rel.as_os_str().as_bytes());
                full.push(b'/');
                full.extend_from_slice(path);
                openat2(
                    &open_path(&format!("/proc/{pid}/root"))?,
                    &full,
                    nofollow,
                    in_root,
                )
            }
            Err(_) => openat2(
                &open_path(&format!("/proc/{pid}/cwd"))?,
                path,
                nofollow,
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
            ),
        }
    } else {
        openat2(
            &open_path(&format!("/proc/{pid}/fd/{dirfd}"))?,
            path,
            nofollow,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        )
    };
    let Ok(file) = file else { return Ok(None) };
    let md = file.metadata()?;
    Ok((md.is_file() && md.mode() & 0o111 != 0).then_some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_program_runs_the_emulator_through_a_link_of_its_name() {
        assert_eq!(
            link_for(b"/usr/bin/python3.11"),
            Some((
                b"python3.11".to_vec(),
                b"/dev/.kiln-emulator.d/python3.11".to_vec()
            ))
        );
        assert_eq!(link_for(b"ls").unwrap().0, b"ls");
        assert_eq!(link_for(b"/dev/fd/3").unwrap().0, b"3");
        for none in [&b"/usr/bin/"[..], b"", b"/a/..", b"."] {
            assert_eq!(link_for(none), None, "{:?}", String::from_utf8_lossy(none));
        }
    }

    #[test]
    fn the_filter_traps_exec_calls_of_the_host_abi_only() {
        let f = filter();
        if f.is_empty() {
            return;
        }
        // A tiny interpreter for the filter's instructions.
        let run = |arch: u32, nr: u32| -> u32 {
            let mut pc = 0usize;
            let mut acc = 0u32;
            loop {
                let i = f[pc];
                match u32::from(i.code) {
                    c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                        acc = if i.k == 4 { arch } else { nr };
                        pc += 1;
                    }
                    c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                        pc += 1 + usize::from(if acc == i.k { i.jt } else { i.jf });
                    }
                    _ => return i.k,
                }
            }
        };
        assert_eq!(run(AUDIT_ARCH_X86_64, 59), SECCOMP_RET_TRACE);
        assert_eq!(run(AUDIT_ARCH_X86_64, 322), SECCOMP_RET_TRACE);
        assert_eq!(run(AUDIT_ARCH_X86_64, 57), SECCOMP_RET_ALLOW);
        assert_eq!(run(AUDIT_ARCH_X86_64, 0x4000_0000 | 520), SECCOMP_RET_ALLOW);
        // i386's execve (11) on x86-64 is another ABI: left alone.
        assert_eq!(run(0x4000_0003, 11), SECCOMP_RET_ALLOW);
    }
}
