//! Running a RUN step's command inside a stage's rootfs, without privileges beyond
//! what the job already has. A step is untrusted code: in every mode it must not
//! reach kiln's memory or environment, the job's files or the host's devices.
//!
//! - **namespaces** (root, and the kernel allows `unshare`): new mount and PID
//!   namespaces; the step `pivot_root`s into the stage root with the old root
//!   detached, and gets a fresh `/proc`, a Docker-like `/dev` and a read-only
//!   `/sys` (see [`child`]). It is PID 1, and everything it started dies with it.
//! - **chroot** (an unprivileged GitLab Docker-executor job: root, Docker's default
//!   capabilities, seccomp refusing `unshare`/`mount`): `chroot(2)` without
//!   CAP_SYS_CHROOT for the step, so a nested chroot cannot climb out; `/dev` gets
//!   `null zero full random urandom tty` by `mknod`, `shm` and `pts`;
//!   `resolv.conf`/`hosts` are copied in and restored afterwards. kiln serves root
//!   steps a `/proc` of their own processes (see [`procfs`]) and, as their
//!   subreaper, kills what a step leaves running. kiln is not dumpable, so the
//!   step (same uid) cannot ptrace it or read its memory.
//! - **rootless** (not root): with `/etc/subuid`/`/etc/subgid` ranges and
//!   `newuidmap`, kiln re-executes itself in a user namespace holding them (see
//!   [`userns`]) and runs steps as in `namespaces` from there. Without ranges, a user
//!   namespace mapping only the caller's uid and gid to 0, plus mount and PID
//!   namespaces; only uid 0 exists inside, so a USER other than root is refused.
//!
//! In every mode the step's capability bounding set is Docker's default set (less
//! CAP_SYS_CHROOT in chroot mode), it gets no descriptor but its stdio, dies with
//! kiln, and sees only the environment it is given: kiln's own environment
//! (`CI_JOB_TOKEN` and the rest) is never passed on.

pub mod ca;
pub(crate) mod child;
pub mod emulate;
pub mod mounts;
mod mountsys;
mod prepare;
pub mod procfs;
mod spawn;
mod sshproxy;
pub mod userns;

pub use child::DOCKER_CAPS;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
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

/// unshare flags for `mode`.
fn ns_flags(mode: Mode) -> libc::c_int {
    match mode {
        Mode::Chroot => 0,
        Mode::Namespaces => libc::CLONE_NEWNS | libc::CLONE_NEWPID,
        Mode::Rootless => libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID,
    }
}

/// The single-uid user namespace maps: the caller's uid and gid to 0.
fn own_maps() -> (Vec<u8>, Vec<u8>) {
    let uid = nix::unistd::Uid::effective().as_raw();
    let gid = nix::unistd::Gid::effective().as_raw();
    (
        format!("0 {uid} 1\n").into_bytes(),
        format!("0 {gid} 1\n").into_bytes(),
    )
}

/// Try the namespace setup of `mode` in a throwaway child (`kiln --version`).
fn probe(mode: Mode) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let flags = ns_flags(mode);
    let (uid_map, gid_map) = own_maps();
    let mut cmd = Command::new(exe);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls on buffers prepared before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            child::unshare_private(flags, &uid_map, &gid_map)
                .map_err(|_| io::Error::last_os_error())
        });
    }
    matches!(cmd.status(), Ok(s) if s.success())
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
    /// Company CAs (PEM) the step trusts besides the image's roots (see [`ca`]).
    pub ca: Option<String>,
    /// `RUN --network=none`: no network but the loopback of a new network
    /// namespace, or, in chroot mode, no socket but AF_UNIX.
    pub network_none: bool,
    /// `RUN --mount`s.
    pub mounts: Vec<mounts::Mount>,
    /// Secrets given to the step as environment variables.
    pub secret_env: mounts::SecretEnv,
    /// A foreign step run by kiln's exec tracer: qemu's name of its
    /// architecture and the static emulator (see [`emulate`]).
    pub emulator: Option<(&'static str, std::path::PathBuf)>,
}

#[derive(Debug)]
pub struct Outcome {
    /// Exit code; 128+N when killed by signal N.
    pub code: i32,
    /// The last lines of output.
    pub tail: Vec<String>,
    /// Paths (relative to the root) whose ctime kiln's own changes moved, for
    /// the snapshot (see [`mounts::Placed::touched`]).
    pub touched: Vec<String>,
}

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
    if mode == Mode::Chroot {
        // Without a PID namespace, what a step leaves running must still end with it.
        spawn::become_subreaper()?;
    }
    // Chroot mode has no /proc of its own: kiln serves one.
    let serve = mode == Mode::Chroot && procfs::available().is_ok();
    let ca_files = spec
        .ca
        .as_deref()
        .map(|pem| ca::files(rootfs, pem, &spec.env));
    let mut env = spec.env.clone();
    if spec.ca.is_some() {
        ca::set_env(&mut env);
    }
    let emulator = spec.emulator.as_ref().map(|(_, e)| e.as_path());
    let (injected, places) = prepare::prepare(rootfs, mode, serve, ca_files.as_deref(), emulator)?;
    let mut placed = match mounts::place(rootfs, mode, &spec.mounts) {
        Ok(p) => p,
        Err(e) => {
            injected.cleanup();
            return Err(e);
        }
    };
    for (k, v) in placed.env.iter().chain(spec.secret_env.0.iter()) {
        env.retain(|(e, _)| e != k);
        env.push((k.clone(), v.clone()));
    }
    let mut touched = placed.touched.clone();
    touched.extend(injected.touched());
    // A foreign program as the step's own command: under the emulator from
    // the start (see `emulate::first_exec`).
    let first = spec
        .emulator
        .as_ref()
        .and_then(|(arch, _)| emulate::first_exec(rootfs, &spec.cwd, &program, &spec.argv, arch));
    let (program, argv, link) = match first {
        Some(f) => (f.program, f.argv, f.link),
        None => (program, spec.argv.clone(), None),
    };
    let result = plan(rootfs, mode, spec, &env, &program, &argv, &places).and_then(|mut plan| {
        if let Some(name) = &link {
            let at = places.dev.join(emulate::tracer::LINKS_DEV_NAME).join(name);
            let target = emulate::tracer::LINK_TARGET;
            if mode == Mode::Chroot {
                std::os::unix::fs::symlink(target, &at)?;
            } else {
                plan.dev_links.push((CString::new(target)?, cstr(&at)?));
            }
        }
        plan.mounts = std::mem::take(&mut placed.child);
        let no_net = spec.network_none && mode == Mode::Chroot;
        plan.filter = procfs::program(serve, no_net);
        plan.notify = serve && !plan.filter.is_empty();
        if spec.emulator.is_some() {
            plan.trace = emulate::tracer::filter();
        }
        if no_net && plan.filter.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "RUN --network=none in chroot mode is enforced by a seccomp filter kiln builds for x86-64 only; remove the flag or build on x86-64",
            ));
        }
        let tracer = spec
            .emulator
            .as_ref()
            .map(|(arch, _)| emulate::tracer::Tracer {
                arch,
                root: (mode == Mode::Chroot).then(|| rootfs.to_path_buf()),
            });
        spawn::spawn(&plan, rootfs, tracer.as_ref(), on_line)
    });
    placed.undo();
    injected.cleanup();
    result.map(|mut out| {
        out.touched = touched;
        out
    })
}

/// Docker's read-only paths under /proc (the masked ones are `procfs::policy`'s).
const PROC_READ_ONLY: &[&str] = &["bus", "fs", "irq", "sys", "sysrq-trigger"];
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Docker's links in /dev: (target, name).
const DEV_LINKS: &[(&str, &str)] = &[
    ("pts/ptmx", "ptmx"),
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

fn cstrs<'a>(base: &Path, names: impl IntoIterator<Item = &'a str>) -> io::Result<Vec<CString>> {
    names.into_iter().map(|n| cstr(&base.join(n))).collect()
}

/// Everything the child needs, as C strings, before the fork.
fn plan(
    rootfs: &Path,
    mode: Mode,
    spec: &RunSpec,
    env: &[(String, String)],
    program: &str,
    argv: &[String],
    places: &prepare::Places,
) -> io::Result<child::ChildPlan> {
    let nul = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} with a NUL byte"),
        )
    };
    let c = |s: &str, what: &str| CString::new(s.as_bytes()).map_err(|_| nul(what));
    let (uid_map, gid_map) = own_maps();
    Ok(child::ChildPlan {
        mode,
        ns_flags: ns_flags(mode)
            | if spec.network_none && mode != Mode::Chroot {
                libc::CLONE_NEWNET
            } else {
                0
            },
        uid_map,
        gid_map,
        root: cstr(rootfs)?,
        proc_: cstr(&places.proc_)?,
        dev: cstr(&places.dev)?,
        sys: cstr(&places.sys)?,
        etc_binds: places
            .etc
            .iter()
            .map(|(host, target)| Ok((cstr(host)?, cstr(target)?)))
            .collect::<io::Result<_>>()?,
        proc_ro: cstrs(&places.proc_, PROC_READ_ONLY.iter().copied())?,
        proc_mask_files: cstrs(&places.proc_, procfs::policy::MASKED_FILES.iter().copied())?,
        proc_mask_dirs: cstrs(&places.proc_, procfs::policy::MASKED_DIRS.iter().copied())?,
        devices: DEVICES
            .iter()
            .map(|d| {
                Ok((
                    cstr(&Path::new("/dev").join(d))?,
                    cstr(&places.dev.join(d))?,
                ))
            })
            .chain(
                places
                    .dev_files
                    .iter()
                    .map(|(host, name)| Ok((cstr(host)?, cstr(&places.dev.join(name))?))),
            )
            .collect::<io::Result<_>>()?,
        dev_pts: cstr(&places.dev.join("pts"))?,
        dev_shm: cstr(&places.dev.join("shm"))?,
        dev_dirs: match (mode, spec.emulator.is_some()) {
            (Mode::Namespaces | Mode::Rootless, true) => {
                vec![cstr(&places.dev.join(emulate::tracer::LINKS_DEV_NAME))?]
            }
            _ => Vec::new(),
        },
        dev_links: DEV_LINKS
            .iter()
            .map(|(target, name)| Ok((c(target, "link")?, cstr(&places.dev.join(name))?)))
            .collect::<io::Result<_>>()?,
        cwd: c(&spec.cwd, "WORKDIR")?,
        program: c(program, "the command")?,
        argv: argv
            .iter()
            .map(|a| c(a, "an argument"))
            .collect::<io::Result<_>>()?,
        envp: env
            .iter()
            .map(|(k, v)| c(&format!("{k}={v}"), "an environment variable"))
            .collect::<io::Result<_>>()?,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.groups.clone(),
        parent: std::process::id() as libc::pid_t,
        mounts: Vec::new(),
        caps: child::ChildPlan::caps_for(mode),
        filter: Vec::new(),
        notify: false,
        trace: Vec::new(),
    })
}
