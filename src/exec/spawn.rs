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

/// Fork the step described by `plan`, stream its output lines to `on_line` while
/// it runs, and wait for it.
pub fn spawn(plan: &ChildPlan, on_line: &mut dyn FnMut(&str)) -> io::Result<Outcome> {
    let (out_r, out_w) = cloexec_pipe()?;
    let (err_r, err_w) = cloexec_pipe()?;
    let stdin: OwnedFd = std::fs::File::open("/dev/null")?.into();
    let ptrs = plan.ptrs();
    let fds = Fds {
        stdin: stdin.as_raw_fd(),
        output: out_w.as_raw_fd(),
        error: err_w.as_raw_fd(),
    };
    // SAFETY: fork in a multithreaded process; the child only runs
    // `child::start`, which makes raw syscalls on buffers prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { child::start(plan, &ptrs, &fds) }
    }
    drop((out_w, err_w, stdin));
    // The error pipe closes on exec; before that, the child may report why it
    // could not start.
    let mut msg = Vec::new();
    std::fs::File::from(err_r).read_to_end(&mut msg)?;
    if msg.len() >= 8 {
        let _ = wait(pid);
        let code = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
        let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
        let what = Stage::from_code(code).map_or("starting the step", Stage::describe);
        return Err(io::Error::other(format!(
            "could not start the step in {} isolation: {what}: {}",
            plan.mode,
            io::Error::from_raw_os_error(errno)
        )));
    }
    // A waiter reaps the step; in chroot mode it also kills what the step left in
    // its session, so that the pipe reaches EOF. With a PID namespace the kernel
    // ends everything in it when PID 1 exits. This thread streams meanwhile.
    let mode = plan.mode;
    let waiter = std::thread::spawn(move || {
        let code = wait(pid);
        if mode == Mode::Chroot {
            // SAFETY: killpg on the step's own process group (it called setsid).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
        code
    });
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
    Ok(Outcome {
        code,
        tail: tail.into_iter().collect(),
    })
}
