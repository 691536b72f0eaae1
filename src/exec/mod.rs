//! Running a RUN step's command inside a stage's rootfs, without privileges beyond
//! what the job already has.
//!
//! Every mode enters the rootfs with `chroot(2)`, changes to the WORKDIR, and drops
//! to the step's uid, gid and supplementary groups before `exec`:
//!
//! - **namespaces** (root, and the kernel allows `unshare`): new mount and PID
//!   namespaces; real `/proc`, the host's `/dev` and `/sys` bind-mounted, the host's
//!   `resolv.conf` and `hosts` bind-mounted. Everything the step started dies with it.
//! - **chroot** (an unprivileged GitLab Docker-executor job: root, Docker's default
//!   capabilities, seccomp refusing `unshare`/`mount`): no namespaces; `/dev` gets
//!   `null zero full random urandom tty` through `mknod`, `resolv.conf`/`hosts` are
//!   copied in and restored afterwards. There is no `/proc`: tools that read it
//!   (`ps`, `top`, some `/proc/self/...` users, some JVM and Node setups) fail.
//!   The step runs in its own session and its process group is killed when it ends.
//! - **rootless** (not root): with `/etc/subuid`/`/etc/subgid` ranges and
//!   `newuidmap`, kiln re-executes itself in a user namespace holding them (see
//!   [`userns`]) and runs steps as in `namespaces` from there. Without ranges, a user
//!   namespace mapping only the caller's uid and gid to 0, plus mount and PID
//!   namespaces; only uid 0 exists inside, so a USER other than root is refused.
//!
//! The step sees only the environment it is given: kiln's own environment
//! (`CI_JOB_TOKEN` and the rest) is never passed on.

pub mod userns;

use std::ffi::CString;
use std::io::{self, BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Isolation {
    /// The first mode that works here: namespaces, then chroot (root), or rootless.
    #[default]
    Auto,
    Namespaces,
    Chroot,
    Rootless,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Namespaces,
    Chroot,
    Rootless,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Namespaces => "namespaces",
            Mode::Chroot => "chroot",
            Mode::Rootless => "rootless",
        })
    }
}

/// Pick the isolation mode, probing what the kernel and seccomp profile allow.
pub fn choose(want: Isolation) -> Result<Mode, String> {
    let root = nix::unistd::Uid::effective().is_root();
    // Re-executed in a user namespace with the user's ranges (see `userns`): kiln is
    // root there, and rootless means whatever works as that root.
    let want = match want {
        Isolation::Rootless if userns::inside().is_some() => Isolation::Auto,
        w => w,
    };
    match want {
        Isolation::Auto if root => Ok(if probe(Mode::Namespaces) {
            Mode::Namespaces
        } else {
            Mode::Chroot
        }),
        Isolation::Auto => {
            if probe(Mode::Rootless) {
                Ok(Mode::Rootless)
            } else {
                Err("RUN needs root (chroot) or user namespaces (rootless), and neither is available here".into())
            }
        }
        Isolation::Namespaces if !root => {
            Err("--isolation namespaces needs root; use --isolation rootless".into())
        }
        Isolation::Namespaces => {
            if probe(Mode::Namespaces) {
                Ok(Mode::Namespaces)
            } else {
                Err("--isolation namespaces: creating mount/PID namespaces is not permitted here (seccomp or missing CAP_SYS_ADMIN); use --isolation chroot".into())
            }
        }
        Isolation::Chroot if !root => {
            Err("--isolation chroot needs root (CAP_SYS_CHROOT); use --isolation rootless".into())
        }
        Isolation::Chroot => Ok(Mode::Chroot),
        Isolation::Rootless => {
            if probe(Mode::Rootless) {
                Ok(Mode::Rootless)
            } else {
                Err("--isolation rootless: user namespaces are not available (kernel.unprivileged_userns_clone=0 or seccomp)".into())
            }
        }
    }
}

/// Try the namespace setup of `mode` in a throwaway child (`kiln --version`).
fn probe(mode: Mode) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let plan = match NsPlan::new(mode) {
        Ok(p) => p,
        Err(_) => return false,
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls on buffers prepared before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || plan.enter(false));
    }
    matches!(cmd.status(), Ok(s) if s.success())
}

/// Namespace setup prepared before fork.
struct NsPlan {
    flags: libc::c_int,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl NsPlan {
    fn new(mode: Mode) -> io::Result<NsPlan> {
        let uid = nix::unistd::Uid::effective().as_raw();
        let gid = nix::unistd::Gid::effective().as_raw();
        Ok(NsPlan {
            flags: match mode {
                Mode::Chroot => 0,
                Mode::Namespaces => libc::CLONE_NEWNS | libc::CLONE_NEWPID,
                Mode::Rootless => libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID,
            },
            uid_map: format!("0 {uid} 1\n").into_bytes(),
            gid_map: format!("0 {gid} 1\n").into_bytes(),
        })
    }

    /// In the child: unshare, map ids, make mounts private. With `fork_pid1`, fork
    /// so that the rest runs as PID 1 of the new PID namespace, the intermediate
    /// process waiting and passing on the exit status.
    fn enter(&self, fork_pid1: bool) -> io::Result<()> {
        if self.flags == 0 {
            return Ok(());
        }
        // SAFETY: plain syscalls with valid arguments; buffers outlive the calls.
        unsafe {
            if libc::unshare(self.flags) != 0 {
                return Err(io::Error::last_os_error());
            }
            if self.flags & libc::CLONE_NEWUSER != 0 {
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if fork_pid1 {
                let pid = libc::fork();
                if pid < 0 {
                    return Err(io::Error::last_os_error());
                }
                if pid > 0 {
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
        }
        Ok(())
    }
}

/// Write `data` to `path` with raw syscalls (usable between fork and exec).
///
/// # Safety
/// Only makes open/write/close syscalls.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated and `data` is a valid buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory inside the rootfs (absolute).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

#[derive(Debug)]
pub struct Outcome {
    /// Exit code; 128+N when killed by signal N.
    pub code: i32,
    /// The last lines of output.
    pub tail: Vec<String>,
}

const TAIL: usize = 15;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with NUL byte"))
}

/// Find `prog` along the PATH of `env`, inside the rootfs.
fn find_program(rootfs: &Path, prog: &str, env: &[(String, String)]) -> Option<String> {
    let executable = |inside: &str| -> bool {
        let Ok(rel) =
            crate::fs::resolve::resolve(rootfs, inside, true, crate::fs::resolve::Confine::Clamp)
        else {
            return false;
        };
        std::fs::metadata(crate::fs::resolve::host_path(rootfs, &rel))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        return Some(prog.to_string());
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{prog}", d.trim_end_matches('/')))
        .find(|c| executable(c))
}

/// Files and nodes kiln put into the rootfs for one step, to take out afterwards.
#[derive(Default)]
struct Injected {
    created: Vec<PathBuf>,
    restore: Vec<(PathBuf, Saved)>,
}

enum Saved {
    Absent,
    File(Vec<u8>, std::fs::Metadata),
    Symlink(PathBuf),
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

    fn mkdir(&mut self, p: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(p).is_err() {
            std::fs::create_dir(p)?;
            self.created.push(p.to_path_buf());
        }
        Ok(())
    }

    fn cleanup(self) {
        for (p, saved) in self.restore.into_iter().rev() {
            let _ = std::fs::remove_file(&p);
            let r = match saved {
                Saved::Absent => Ok(()),
                Saved::Symlink(t) => std::os::unix::fs::symlink(t, &p),
                Saved::File(data, md) => std::fs::write(&p, data).and_then(|_| {
                    use std::os::unix::fs::MetadataExt;
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
        for p in self.created.into_iter().rev() {
            let _ = if p.is_dir() {
                std::fs::remove_dir(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Make `/dev`, `/proc`, `/sys`, `/etc/resolv.conf` and `/etc/hosts` ready for `mode`.
fn prepare(rootfs: &Path, mode: Mode) -> io::Result<Injected> {
    let mut inj = Injected::default();
    let etc = rootfs.join("etc");
    inj.mkdir(&etc)?;
    inj.mkdir(&rootfs.join("dev"))?;
    for name in ["resolv.conf", "hosts"] {
        let target = etc.join(name);
        inj.save(&target)?;
        let _ = std::fs::remove_file(&target);
        match mode {
            // Copied in: there is no bind mount without namespaces.
            Mode::Chroot => std::fs::write(
                &target,
                std::fs::read(Path::new("/etc").join(name)).unwrap_or_default(),
            )?,
            // A mount point for the bind mount of the host's file.
            _ => std::fs::write(&target, b"")?,
        }
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
    }
    match mode {
        Mode::Chroot => {
            use nix::sys::stat::{makedev, mknod, Mode as M, SFlag};
            for (name, major, minor) in [
                ("null", 1, 3),
                ("zero", 1, 5),
                ("full", 1, 7),
                ("random", 1, 8),
                ("urandom", 1, 9),
                ("tty", 5, 0),
            ] {
                let p = rootfs.join("dev").join(name);
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
                    Err(e) => tracing::warn!(
                        "cannot create /dev/{name} ({e}): steps that need it will fail"
                    ),
                }
            }
        }
        Mode::Namespaces | Mode::Rootless => {
            inj.mkdir(&rootfs.join("proc"))?;
            inj.mkdir(&rootfs.join("sys"))?;
        }
    }
    Ok(inj)
}

/// Everything the child needs after fork, prepared before it.
struct ChildPlan {
    ns: NsPlan,
    mode: Mode,
    root: CString,
    cwd: CString,
    proc_: CString,
    dev: CString,
    sys: CString,
    resolv: CString,
    hosts: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

impl ChildPlan {
    fn run_in_child(&self) -> io::Result<()> {
        // SAFETY: raw syscalls between fork and exec, on buffers prepared before the
        // fork; nothing allocates or takes a lock.
        unsafe {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            self.ns.enter(true)?;
            if self.mode != Mode::Chroot {
                let bind = |src: &std::ffi::CStr, dst: &CString, extra: libc::c_ulong| {
                    libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | extra,
                        std::ptr::null(),
                    )
                };
                if libc::mount(
                    c"proc".as_ptr(),
                    self.proc_.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if bind(c"/dev", &self.dev, libc::MS_REC) != 0
                    || bind(c"/sys", &self.sys, libc::MS_REC) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // Best effort: the host may have no resolv.conf or hosts.
                bind(c"/etc/resolv.conf", &self.resolv, 0);
                bind(c"/etc/hosts", &self.hosts, 0);
            }
            if libc::chroot(self.root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::chdir(self.cwd.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if self.mode != Mode::Rootless {
                if libc::setgroups(self.groups.len(), self.groups.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(self.gid) != 0 || libc::setuid(self.uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// Run `spec` in `rootfs`, streaming each output line to `on_line`.
pub fn run(
    rootfs: &Path,
    mode: Mode,
    spec: &RunSpec,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<Outcome> {
    let Some(argv0) = spec.argv.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "RUN has an empty command",
        ));
    };
    let program = find_program(rootfs, argv0, &spec.env).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{argv0}: executable file not found in $PATH inside the image"),
        )
    })?;
    if mode == Mode::Rootless && spec.uid != 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "rootless isolation maps only root here; USER uid {} needs subordinate ids: {}",
                spec.uid,
                userns::plan()
                    .err()
                    .unwrap_or_else(|| "run kiln build again so it can use them".into())
            ),
        ));
    }
    let cwd_rel =
        crate::fs::resolve::resolve(rootfs, &spec.cwd, true, crate::fs::resolve::Confine::Clamp)
            .map_err(|e| io::Error::other(e.to_string()))?;
    std::fs::create_dir_all(crate::fs::resolve::host_path(rootfs, &cwd_rel))?;
    let injected = prepare(rootfs, mode)?;
    let result = spawn(rootfs, mode, spec, &program, on_line);
    injected.cleanup();
    result
}

fn spawn(
    rootfs: &Path,
    mode: Mode,
    spec: &RunSpec,
    program: &str,
    on_line: &mut dyn FnMut(&str),
) -> io::Result<Outcome> {
    let plan = ChildPlan {
        ns: NsPlan::new(mode)?,
        mode,
        root: cstr(rootfs)?,
        cwd: CString::new(spec.cwd.as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "WORKDIR with NUL byte"))?,
        proc_: cstr(&rootfs.join("proc"))?,
        dev: cstr(&rootfs.join("dev"))?,
        sys: cstr(&rootfs.join("sys"))?,
        resolv: cstr(&rootfs.join("etc/resolv.conf"))?,
        hosts: cstr(&rootfs.join("etc/hosts"))?,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.groups.clone(),
    };
    let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
    let mut cmd = Command::new(program);
    cmd.arg0(argv0_of(spec))
        .args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end.try_clone()?))
        .stderr(Stdio::from(write_end));
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls on buffers prepared above (see ChildPlan::run_in_child).
    unsafe {
        cmd.pre_exec(move || plan.run_in_child());
    }
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("could not start the step in {mode} isolation: {e}"),
        )
    })?;
    drop(cmd); // closes our copies of the pipe's write end
    let pid = child.id() as libc::pid_t;
    // A waiter reaps the step and kills what it left running in its session, so
    // the pipe reaches EOF; this thread streams the output meanwhile.
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        // SAFETY: killpg on the step's own process group (it called setsid).
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
        status
    });
    let mut tail: std::collections::VecDeque<String> =
        std::collections::VecDeque::with_capacity(TAIL);
    for line in BufReader::new(std::fs::File::from(read_end)).split(b'\n') {
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
    let status = waiter
        .join()
        .map_err(|_| io::Error::other("waiting for the step failed"))??;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(Outcome {
        code,
        tail: tail.into_iter().collect(),
    })
}

fn argv0_of(spec: &RunSpec) -> &str {
    spec.argv.first().map(String::as_str).unwrap_or("")
}
