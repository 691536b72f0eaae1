//! Starting a step and supervising it: fork, stream its output while it runs,
//! reap it, and make sure nothing it started outlives it.

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};

use super::child::{self, ChildPlan, Fds, Stage};
use super::{Mode, Outcome};

const TAIL: usize = 15;

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Wait for `pid`, retrying on EINTR; the exit code (128+N for signal N).
fn wait(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}

/// Wait for the step `pid` while reaping, as an init does, the orphans of its
/// process tree that the kernel re-parents to kiln (chroot mode: kiln is their
/// subreaper), so that none stays a zombie until the step ends. kiln's own
/// other children (helpers it runs) are left to whoever waits for them: they
/// share kiln's session, and no process of the step does (the step starts a
/// session of its own).
fn wait_reaping(pid: libc::pid_t) -> io::Result<i32> {
    // SAFETY: getsid(0) has no pointer arguments.
    let kiln_session = unsafe { libc::getsid(0) };
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid siginfo pointer; WNOWAIT leaves the
        // child waitable, so kiln's own children stay their owners' to reap.
        let r = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled the siginfo of a child state change.
        let child = unsafe { info.si_pid() };
        if child == pid {
            return wait(pid);
        }
        // SAFETY: getsid on a child's pid (a zombie keeps its session).
        if unsafe { libc::getsid(child) } != kiln_session {
            let mut status = 0;
            // SAFETY: waitpid on our own exited child, without blocking.
            unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        } else {
            // One of kiln's helpers: its owner reaps it in a moment.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Become the subreaper of what steps leave behind (chroot mode): an orphaned
/// process of a step is re-parented to kiln instead of the job's PID 1.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// (pid, state, ppid) of every process in /proc.
fn processes() -> Vec<(libc::pid_t, u8, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(close) = stat.iter().rposition(|b| *b == b')') else {
            continue;
        };
        let rest = String::from_utf8_lossy(&stat[close + 1..]).to_string();
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.bytes().next()).unwrap_or(b'?');
        let Some(ppid) = f.next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        out.push((pid, state, ppid));
    }
    out
}

/// Kill and reap every descendant of kiln: what the last step left running.
/// Repeats until none is left, since a process may fork while it is killed.
fn kill_leftovers() {
    // SAFETY: getpid has no arguments.
    let me = unsafe { libc::getpid() };
    for _ in 0..100 {
        let all = processes();
        let mut tree = vec![me];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(all.iter().filter(|p| p.2 == parent).map(|p| p.0));
            i += 1;
        }
        let found: Vec<&(libc::pid_t, u8, libc::pid_t)> = all
            .iter()
            .filter(|p| p.0 != me && tree.contains(&p.0))
            .collect();
        if found.is_empty() {
            return;
        }
        for (pid, state, ppid) in found {
            if *state != b'Z' {
                // SAFETY: kill on a descendant's pid.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            if *ppid == me {
                let mut status = 0;
                // SAFETY: waitpid on our own child, without blocking.
                unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tracing::warn!("processes left by the step are still running after being killed");
}

/// Fork the step described by `plan`, stream its output lines to `on_line` while
/// it runs, and wait for it. With `tracer`, the fork happens on a thread of its
/// own, which traces the step's processes (see [`super::emulate::tracer`])
/// while it waits for them.
pub fn spawn(
    plan: &ChildPlan,
    rootfs: &std::path::Path,
    tracer: Option<&super::emulate::tracer::Tracer>,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<Outcome> {
    let (out_r, out_w) = cloexec_pipe()?;
    let (err_r, err_w) = cloexec_pipe()?;
    let stdin: OwnedFd = std::fs::File::open("/dev/null")?.into();
    // The child sends its /proc filter's listener back over this pair.
    let notify = if !plan.notify {
        None
    } else {
        Some(nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::SeqPacket,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )?)
    };
    let fds = Fds {
        stdin: stdin.as_raw_fd(),
        output: out_w.as_raw_fd(),
        error: err_w.as_raw_fd(),
        notify: notify.as_ref().map_or(-1, |(_, child)| child.as_raw_fd()),
    };
    let mode = plan.mode;
    std::thread::scope(|scope| {
        // The waiter reaps the step. In chroot mode it then kills everything the
        // step left running (kiln is their subreaper, so even a daemon that
        // called setsid and double-forked is still its descendant), as the end
        // of a PID namespace does, so that the pipe reaches EOF at once.
        let finish = move |code: io::Result<i32>| {
            if mode == Mode::Chroot {
                kill_leftovers();
            }
            code
        };
        let waiter = match tracer {
            None => {
                let pid = fork_child(plan, &fds)?;
                scope.spawn(move || {
                    if mode != Mode::Chroot {
                        return wait(pid);
                    }
                    finish(wait_reaping(pid))
                })
            }
            Some(t) => {
                // ptrace stops go to the thread that forked: it forks and serves.
                let (tx, rx) = std::sync::mpsc::channel();
                let fds = &fds;
                let waiter = scope.spawn(move || {
                    let pid = fork_child(plan, fds);
                    let ok = pid.as_ref().ok().copied();
                    let _ = tx.send(pid);
                    let Some(pid) = ok else {
                        return Err(io::Error::other("fork failed"));
                    };
                    finish(t.supervise(pid))
                });
                // The child exists (its pid is the waiter's) before our ends close.
                rx.recv()
                    .map_err(|_| io::Error::other("the tracer thread ended"))??;
                waiter
            }
        };
        drop((out_w, err_w, stdin));
        let kiln_end = notify.map(|(ours, child_end)| {
            drop(child_end);
            ours
        });
        // The error pipe closes on exec; before that, the child may report why it
        // could not start.
        let mut msg = Vec::new();
        std::fs::File::from(err_r).read_to_end(&mut msg)?;
        if msg.len() >= 8 {
            let _ = waiter.join();
            let code = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
            let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
            let what = Stage::from_code(code).map_or("starting the step", Stage::describe);
            return Err(io::Error::other(format!(
                "could not start the step in {} isolation: {what}: {}",
                plan.mode,
                io::Error::from_raw_os_error(errno)
            )));
        }
        // The child sent the listener before execve; serve /proc from now on.
        let server = match &kiln_end {
            Some(sock) => {
                let listener = super::procfs::server_receive(sock.as_raw_fd());
                match listener.and_then(|l| super::procfs::Server::start(l, rootfs)) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("cannot serve /proc to the step: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let mut tail: std::collections::VecDeque<String> =
            std::collections::VecDeque::with_capacity(TAIL);
        for line in BufReader::new(std::fs::File::from(out_r)).split(b'\n') {
            let Ok(l) = line else { break };
            let l = String::from_utf8_lossy(&l)
                .trim_end_matches('\r')
                .to_string();
            on_line(&l);
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(l);
        }
        let code = waiter
            .join()
            .map_err(|_| io::Error::other("waiting for the step failed"))??;
        if let Some(s) = server {
            s.stop();
        }
        Ok(Outcome {
            code,
            tail: tail.into_iter().collect(),
            touched: vec![],
        })
    })
}

/// Fork the child that becomes the step (see [`child::start`]).
fn fork_child(plan: &ChildPlan, fds: &Fds) -> io::Result<libc::pid_t> {
    let ptrs = plan.ptrs();
    // SAFETY: fork in a multithreaded process; the child only runs
    // `child::start`, which makes raw syscalls on buffers prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { child::start(plan, &ptrs, fds) }
    }
    Ok(pid)
}
