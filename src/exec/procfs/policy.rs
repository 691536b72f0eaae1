//! Which /proc (and /dev/fd, /dev/std*) path a chroot-mode step asked for, and
//! what it gets: pure functions of the path inside the root and the caller's ids,
//! unit-tested without a kernel.
//!
//! It owns the mapping (`self`, `thread-self`, `/dev/stdout`), Docker's masked and
//! read-only parts, and the synthetic mount tables. Whether a pid belongs to the
//! step is the server's question (it needs the live /proc).

/// Docker masks these with /dev/null (in namespaces mode, `exec` binds it over them).
pub const MASKED_FILES: &[&str] = &[
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
/// Docker masks these with an empty read-only tmpfs.
pub const MASKED_DIRS: &[&str] = &["acpi", "asound", "scsi"];

/// What a path means for the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Not a path kiln serves: the kernel resolves it in the root.
    Native,
    /// A path of the job's /proc (`host`), opened for the step. `pid` is the
    /// process it belongs to, which must be the step's; `writable` says whether
    /// it may be opened for writing (only a process's own entries may).
    Host {
        host: String,
        pid: Option<u32>,
        writable: bool,
    },
    /// `mounts` or `mountinfo` of any process: kiln's table of the step's mounts.
    Mounts { info: bool },
    /// A masked file: it reads as empty (/dev/null).
    Null,
    /// A masked directory: empty.
    EmptyDir,
    /// `/proc/self` or `/proc/thread-self` itself: a link to the caller.
    Link(String),
    /// `/dev/ptmx` (or `/dev/pts/ptmx`): a new pty from the job's devpts.
    Ptmx,
    /// `/dev/pts/N`: the pty N, which the step must have made.
    Pts(u32),
}

/// `path` without `.`, `..` and repeated slashes (`..` at the root stays there).
pub fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Join a relative path to the directory it is relative to (both inside the root).
pub fn join(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        normalize(rel)
    } else {
        normalize(&format!("{base}/{rel}"))
    }
}

/// What `path` (absolute, normalized, inside the root) is for a caller with
/// thread id `tid` in process `tgid`.
pub fn classify(path: &str, tgid: u32, tid: u32) -> Target {
    let fd_path = match path {
        "/dev/stdin" => Some("0".to_string()),
        "/dev/stdout" => Some("1".to_string()),
        "/dev/stderr" => Some("2".to_string()),
        "/dev/fd" => Some(String::new()),
        p => p.strip_prefix("/dev/fd/").map(str::to_string),
    };
    if path == "/dev/ptmx" || path == "/dev/pts/ptmx" {
        return Target::Ptmx;
    }
    if let Some(n) = path.strip_prefix("/dev/pts/").and_then(|n| n.parse().ok()) {
        return Target::Pts(n);
    }
    if let Some(rest) = fd_path {
        let host = if rest.is_empty() {
            format!("/proc/{tgid}/fd")
        } else {
            format!("/proc/{tgid}/fd/{rest}")
        };
        return Target::Host {
            host,
            pid: Some(tgid),
            writable: true,
        };
    }
    let rest = match path.strip_prefix("/proc") {
        Some("") => "",
        Some(r) if r.starts_with('/') => &r[1..],
        _ => return Target::Native,
    };
    let mut comps: Vec<String> = rest
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    match comps.first().map(String::as_str) {
        None => {
            return Target::Host {
                host: "/proc".into(),
                pid: None,
                writable: false,
            }
        }
        Some("self") if comps.len() == 1 => return Target::Link(tgid.to_string()),
        Some("thread-self") if comps.len() == 1 => {
            return Target::Link(format!("{tgid}/task/{tid}"))
        }
        Some("self") => comps[0] = tgid.to_string(),
        Some("thread-self") => {
            comps.splice(0..1, [tgid.to_string(), "task".into(), tid.to_string()]);
        }
        Some(first) if comps.len() == 1 && MASKED_FILES.contains(&first) => return Target::Null,
        Some(first) if MASKED_DIRS.contains(&first) => return Target::EmptyDir,
        Some("mounts") if comps.len() == 1 => return Target::Mounts { info: false },
        _ => {}
    }
    let pid: Option<u32> = comps[0].parse().ok();
    if pid.is_some() {
        // /proc/<pid>/mounts, /proc/<pid>/task/<tid>/mountinfo, ...
        match comps.last().map(String::as_str) {
            Some("mounts") | Some("mountinfo")
                if comps.len() == 2 || (comps.len() == 4 && comps[1] == "task") =>
            {
                return Target::Mounts {
                    info: comps.last().is_some_and(|c| c == "mountinfo"),
                }
            }
            _ => {}
        }
    }
    Target::Host {
        host: format!("/proc/{}", comps.join("/")),
        pid,
        writable: pid.is_some() && comps.len() > 1,
    }
}

/// The step's mounts as `/proc/<pid>/mounts` shows them: what a container has,
/// so that `mountpoint -q /proc`, `df` and `mount` agree with Docker.
pub fn mounts(info: bool) -> String {
    const TABLE: &[(&str, &str, &str, &str)] = &[
        ("overlay", "/", "overlay", "rw,relatime"),
        ("proc", "/proc", "proc", "rw,nosuid,nodev,noexec,relatime"),
        ("tmpfs", "/dev", "tmpfs", "rw,nosuid,size=65536k,mode=755"),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            "rw,nosuid,nodev,noexec,relatime,size=65536k",
        ),
    ];
    let mut out = String::new();
    for (i, (src, target, fstype, opts)) in TABLE.iter().enumerate() {
        if info {
            let id = 100 + i;
            let parent = if i == 0 { 99 } else { 100 };
            let mnt_opts = opts.split(',').take(2).collect::<Vec<_>>().join(",");
            out.push_str(&format!(
                "{id} {parent} 0:{} / {target} {mnt_opts} - {fstype} {src} {opts}\n",
                40 + i
            ));
        } else {
            out.push_str(&format!("{src} {target} {fstype} {opts} 0 0\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, pid: Option<u32>, writable: bool) -> Target {
        Target::Host {
            host: h.into(),
            pid,
            writable,
        }
    }

    #[test]
    fn paths_are_normalized_inside_the_root() {
        assert_eq!(normalize("/proc/./self//fd/"), "/proc/self/fd");
        assert_eq!(normalize("/../../proc"), "/proc");
        assert_eq!(join("/proc/12", "../self/exe"), "/proc/self/exe");
        assert_eq!(join("/usr", "/proc"), "/proc");
        assert_eq!(join("/", "proc/cpuinfo"), "/proc/cpuinfo");
    }

    #[test]
    fn self_and_thread_self_are_the_caller() {
        assert_eq!(classify("/proc/self", 7, 9), Target::Link("7".into()));
        assert_eq!(
            classify("/proc/thread-self", 7, 9),
            Target::Link("7/task/9".into())
        );
        assert_eq!(
            classify("/proc/self/exe", 7, 9),
            host("/proc/7/exe", Some(7), true)
        );
        assert_eq!(
            classify("/proc/thread-self/comm", 7, 9),
            host("/proc/7/task/9/comm", Some(7), true)
        );
    }

    #[test]
    fn dev_fd_and_std_streams_are_the_callers_descriptors() {
        assert_eq!(
            classify("/dev/stdout", 7, 9),
            host("/proc/7/fd/1", Some(7), true)
        );
        assert_eq!(
            classify("/dev/stdin", 7, 9),
            host("/proc/7/fd/0", Some(7), true)
        );
        assert_eq!(classify("/dev/fd", 7, 9), host("/proc/7/fd", Some(7), true));
        assert_eq!(
            classify("/dev/fd/5", 7, 9),
            host("/proc/7/fd/5", Some(7), true)
        );
        assert_eq!(classify("/dev/null", 7, 9), Target::Native);
        assert_eq!(classify("/dev/fdx", 7, 9), Target::Native);
    }

    #[test]
    fn ptys_come_from_the_jobs_devpts() {
        assert_eq!(classify("/dev/ptmx", 7, 9), Target::Ptmx);
        assert_eq!(classify("/dev/pts/ptmx", 7, 9), Target::Ptmx);
        assert_eq!(classify("/dev/pts/3", 7, 9), Target::Pts(3));
        assert_eq!(classify("/dev/pts", 7, 9), Target::Native);
        assert_eq!(classify("/dev/pts/x", 7, 9), Target::Native);
    }

    #[test]
    fn other_pids_carry_their_pid_for_the_tree_check() {
        assert_eq!(
            classify("/proc/1/environ", 7, 9),
            host("/proc/1/environ", Some(1), true)
        );
        assert_eq!(classify("/proc/1", 7, 9), host("/proc/1", Some(1), false));
        assert_eq!(classify("/proc", 7, 9), host("/proc", None, false));
    }

    #[test]
    fn global_files_are_read_only_and_masks_hold() {
        assert_eq!(
            classify("/proc/cpuinfo", 7, 9),
            host("/proc/cpuinfo", None, false)
        );
        assert_eq!(
            classify("/proc/sys/kernel/hostname", 7, 9),
            host("/proc/sys/kernel/hostname", None, false)
        );
        assert_eq!(classify("/proc/kcore", 7, 9), Target::Null);
        assert_eq!(classify("/proc/acpi/x", 7, 9), Target::EmptyDir);
        assert_eq!(classify("/procfoo", 7, 9), Target::Native);
        assert_eq!(classify("/usr/proc/self", 7, 9), Target::Native);
    }

    #[test]
    fn mount_tables_are_kilns() {
        assert_eq!(
            classify("/proc/mounts", 7, 9),
            Target::Mounts { info: false }
        );
        assert_eq!(
            classify("/proc/self/mounts", 7, 9),
            Target::Mounts { info: false }
        );
        assert_eq!(
            classify("/proc/self/mountinfo", 7, 9),
            Target::Mounts { info: true }
        );
        assert_eq!(
            classify("/proc/thread-self/mountinfo", 7, 9),
            Target::Mounts { info: true }
        );
        let m = mounts(false);
        assert!(m.lines().any(|l| l.starts_with("proc /proc proc ")), "{m}");
        let mi = mounts(true);
        assert!(mi.lines().all(|l| l.split(' ').count() == 10), "{mi}");
        assert!(mi.contains(" / /proc rw,nosuid - proc proc "), "{mi}");
    }
}
