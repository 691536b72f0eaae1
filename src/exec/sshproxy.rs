//! `RUN --mount=type=ssh`: a socket kiln serves for one step and relays to the
//! job's ssh agent (`SSH_AUTH_SOCK`).
//!
//! The step never sees the agent's own path. In chroot mode the socket is bound
//! inside the stage root, where a step reaches it without any mount; in
//! namespaces mode it is bound in kiln's work dir and bind-mounted at the target.
//! The relay ends with the step: kiln stops accepting, and connections end when
//! the step's processes (all dead by then) close them.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct Proxy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Serve a socket named `name` in directory `dir`, relaying each connection to
/// `agent`. The socket gets `mode` and, where kiln may chown, `uid`:`gid`.
pub fn serve(
    dir: &Path,
    name: &str,
    agent: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
) -> io::Result<Proxy> {
    // sun_path holds 108 bytes; a deep work dir would not fit, so bind through
    // a descriptor of the directory.
    let d = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
    let listener = UnixListener::bind(&short)?;
    let path = dir.join(name);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
    if super::super::fs::privileged() {
        let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
    }
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("kiln-ssh-relay".into())
        .spawn(move || accept_loop(listener, agent, flag))?;
    Ok(Proxy {
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: UnixListener, agent: PathBuf, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, _)) => {
                let _ = conn.set_nonblocking(false);
                match UnixStream::connect(&agent) {
                    Ok(up) => relay(conn, up),
                    Err(e) => tracing::warn!(
                        "RUN --mount=type=ssh: cannot reach the ssh agent at {}: {e}",
                        agent.display()
                    ),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(e) => {
                tracing::debug!("ssh relay: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
        }
    }
}

/// Copy both ways until either side closes.
fn relay(a: UnixStream, b: UnixStream) {
    let pair = (a.try_clone(), b.try_clone());
    let (Ok(a2), Ok(b2)) = pair else {
        return;
    };
    let one = move |mut from: UnixStream, mut to: UnixStream| {
        move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        }
    };
    let _ = std::thread::Builder::new()
        .name("kiln-ssh-relay".into())
        .spawn(one(a, b2));
    let _ = std::thread::Builder::new()
        .name("kiln-ssh-relay".into())
        .spawn(one(b, a2));
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
