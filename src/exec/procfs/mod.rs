//! A `/proc` for chroot-mode steps, served by kiln through seccomp user
//! notifications: no mount, no ptrace, no privilege the job lacks.
//!
//! The step installs [`filter::program`] (with no_new_privs) just before `execve`
//! and hands kiln the listener. For each path syscall (`open*`, `stat*`,
//! `readlink*`, `access*`) kiln reads the path from the caller's memory
//! (`/proc/<tid>/mem`, which Docker's default seccomp profile allows where it
//! refuses `process_vm_readv`), resolves it against the caller's cwd or dirfd,
//! and:
//!
//! - anything outside `/proc`, `/dev/fd` and `/dev/std*` continues as usual: the
//!   kernel resolves it in the root, where /proc is an ordinary directory, so a
//!   path swapped after the check reaches nothing of the job's;
//! - a file of the job's /proc that belongs to the step (its own processes, or
//!   the global read-only files) is opened by kiln and its descriptor injected
//!   (`SECCOMP_ADDFD_FLAG_SEND`); `stat` and `readlink` answers are written back,
//!   links stripped of the rootfs prefix;
//! - directories are served from the [`shadow`] inside the root, so `..` and
//!   relative lookups never leave it;
//! - any other process's entries (kiln's, whose environment holds
//!   `CI_JOB_TOKEN`, the job's shell, PID 1) do not exist for the step.
//!
//! Each answer is given with the caller's own uid and gid as the server thread's
//! filesystem ids, so a `USER app` process is served and checked as `app`.
//! Limits: a process part-way through a uid change, or made non-dumpable by one,
//! cannot be read without CAP_SYS_PTRACE and sees the root's empty /proc;
//! `execve("/proc/self/exe")` resolves in the shadow. Linux ≥ 5.14, x86-64.

#[cfg(target_arch = "x86_64")]
pub mod filter;
pub mod policy;
#[cfg(target_arch = "x86_64")]
mod server;
#[cfg(target_arch = "x86_64")]
mod shadow;

#[cfg(target_arch = "x86_64")]
pub use server::{receive_fd as server_receive, Server};

/// Whether steps get a /proc in chroot mode here, and why not.
pub fn available() -> Result<(), String> {
    if std::env::var("KILN_RUN_PROC").is_ok_and(|v| v == "off") {
        return Err("KILN_RUN_PROC=off".into());
    }
    if !cfg!(target_arch = "x86_64") {
        return Err("served on x86-64 only".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    if (major, minor) < (5, 14) {
        return Err(format!("Linux {major}.{minor} is older than 5.14"));
    }
    Ok(())
}

/// The filter a step installs: /proc notifications and/or `--network=none`
/// (empty off x86-64, and when neither is wanted).
pub fn program(notify: bool, no_network: bool) -> Vec<libc::sock_filter> {
    #[cfg(target_arch = "x86_64")]
    {
        filter::program(notify, no_network)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (notify, no_network);
        Vec::new()
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub struct Server;

#[cfg(not(target_arch = "x86_64"))]
impl Server {
    pub fn start(_: std::os::fd::OwnedFd, _: &std::path::Path) -> std::io::Result<Server> {
        Err(std::io::Error::other("/proc is served on x86-64 only"))
    }
    pub fn stop(self) {}
}

#[cfg(not(target_arch = "x86_64"))]
pub fn server_receive(_: std::os::fd::RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    Err(std::io::Error::other("/proc is served on x86-64 only"))
}
