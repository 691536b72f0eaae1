//! Simulate an unprivileged GitLab Docker-executor job around a command: root, only
//! Docker's default capabilities in the bounding set, and **Docker's real default
//! seccomp profile**, read from Debian's copy of moby's `default.json`
//! (golang-github-docker-docker-dev) and compiled as dockerd compiles it for
//! x86-64 with the default capabilities. Like Docker, it does not set
//! no_new_privs on the job: the filter is installed with CAP_SYS_ADMIN, before
//! the bounding set drops it.
#![allow(dead_code)]

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

/// Docker's default profile, as Debian ships moby's source; `ci/test` extracts
/// it and names it in `KILN_DOCKER_SECCOMP_PROFILE`.
const DEBIAN_PROFILE: &str =
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json";

fn profile_path() -> String {
    if let Ok(p) = std::env::var("KILN_DOCKER_SECCOMP_PROFILE") {
        return p;
    }
    if std::path::Path::new(DEBIAN_PROFILE).exists() {
        return DEBIAN_PROFILE.to_string();
    }
    // Where ci/test keeps it, for a `cargo test` run after one ci/test.
    format!(
        "{}/target/docker-seccomp/default.json",
        env!("CARGO_MANIFEST_DIR")
    )
}
/// The x86-64 syscall numbers (linux-libc-dev).
const UNISTD: &str = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

/// Docker's default capabilities (number, name).
const DOCKER_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

fn syscall_numbers() -> HashMap<String, i64> {
    let text = std::fs::read_to_string(UNISTD)
        .unwrap_or_else(|e| panic!("{UNISTD}: {e} (ci/test installs linux-libc-dev)"));
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "#define").then_some(())?;
            let name = w.next()?.strip_prefix("__NR_")?;
            Some((name.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

fn kernel() -> (u64, u64) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r.trim().split(['.', '-']).map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn version(s: &str) -> (u64, u64) {
    let mut it = s.split('.').map(|p| p.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a syscall group of the profile applies to an amd64 container with
/// the default capabilities on this kernel (dockerd's `includes`/`excludes`).
fn applies(group: &Value) -> bool {
    let caps: Vec<&str> = DOCKER_CAPS.iter().map(|c| c.1).collect();
    let inc = group.get("includes");
    let exc = group.get("excludes");
    let field = |v: Option<&Value>, k: &str| strings(v.and_then(|v| v.get(k)));
    let inc_arches = field(inc, "arches");
    if !inc_arches.is_empty() && !inc_arches.iter().any(|a| a == "amd64") {
        return false;
    }
    if field(exc, "arches").iter().any(|a| a == "amd64") {
        return false;
    }
    if !field(inc, "caps")
        .iter()
        .all(|c| caps.contains(&c.as_str()))
    {
        return false;
    }
    if field(exc, "caps")
        .iter()
        .any(|c| caps.contains(&c.as_str()))
    {
        return false;
    }
    if let Some(min) = inc.and_then(|v| v.get("minKernel")).and_then(Value::as_str) {
        if kernel() < version(min) {
            return false;
        }
    }
    true
}

fn condition(arg: &Value) -> SeccompCondition {
    let index = arg["index"].as_u64().expect("arg index") as u8;
    let value = arg["value"].as_u64().expect("arg value");
    let two = arg["valueTwo"].as_u64().unwrap_or(0);
    let (op, v) = match arg["op"].as_str().expect("arg op") {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, value),
        // (arg & value) == valueTwo
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(value), two),
        other => panic!("Docker profile: unknown comparison {other}"),
    };
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, v).expect("condition")
}

/// The rules of a group's `args`: one rule with every condition (AND), or, when
/// an argument is compared twice, one rule per condition (OR), as runc does.
fn rules(args: &[Value]) -> Vec<SeccompRule> {
    let mut seen = Vec::new();
    let repeated = args.iter().any(|a| {
        let i = a["index"].as_u64();
        let dup = seen.contains(&i);
        seen.push(i);
        dup
    });
    if repeated {
        args.iter()
            .map(|a| SeccompRule::new(vec![condition(a)]).expect("rule"))
            .collect()
    } else {
        vec![SeccompRule::new(args.iter().map(condition).collect()).expect("rule")]
    }
}

/// Per syscall: None when it matches unconditionally, else the rules (OR).
type Rules = BTreeMap<i64, Option<Vec<SeccompRule>>>;

fn add(map: &mut Rules, nr: i64, r: Option<Vec<SeccompRule>>) {
    match (map.get_mut(&nr), r) {
        (None, r) => {
            map.insert(nr, r);
        }
        (Some(slot), None) => *slot = None,
        (Some(Some(v)), Some(r)) => v.extend(r),
        (Some(None), Some(_)) => {}
    }
}

fn compile(map: Rules, mismatch: SeccompAction, matched: SeccompAction) -> BpfProgram {
    let rules = map
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();
    SeccompFilter::new(rules, mismatch, matched, seccompiler::TargetArch::x86_64)
        .expect("filter")
        .try_into()
        .expect("bpf")
}

/// The profile as BPF programs, installed in order: the allow list (everything
/// else fails with the default errno), then one program per explicit errno
/// (the most recent filter's errno wins among equal actions).
fn docker_filters() -> Vec<BpfProgram> {
    let path = profile_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e} (run the suite with ci/test, which fetches Docker's default profile)")
    });
    let profile: Value = serde_json::from_str(&text).expect("profile JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO", "{path}");
    let default_errno = profile["defaultErrnoRet"]
        .as_u64()
        .unwrap_or(libc::EPERM as u64);
    let numbers = syscall_numbers();
    let mut allow = Rules::new();
    let mut errnos: BTreeMap<u32, Rules> = BTreeMap::new();
    for group in profile["syscalls"].as_array().expect("syscalls") {
        if !applies(group) {
            continue;
        }
        let args = group["args"].as_array().cloned().unwrap_or_default();
        let r = (!args.is_empty()).then(|| rules(&args));
        let target = match group["action"].as_str() {
            Some("SCMP_ACT_ALLOW") => &mut allow,
            Some("SCMP_ACT_ERRNO") => {
                let e = group["errnoRet"].as_u64().unwrap_or(default_errno) as u32;
                errnos.entry(e).or_default()
            }
            other => panic!("{path}: unhandled action {other:?}"),
        };
        // Names of other architectures are not syscalls here (libseccomp skips them).
        for name in strings(group.get("names")) {
            if let Some(nr) = numbers.get(&name) {
                add(target, *nr, r.clone());
            }
        }
    }
    let mut out = vec![compile(
        allow,
        SeccompAction::Errno(default_errno as u32),
        SeccompAction::Allow,
    )];
    for (e, map) in errnos {
        out.push(compile(map, SeccompAction::Allow, SeccompAction::Errno(e)));
    }
    out
}

fn filters() -> &'static [BpfProgram] {
    static F: OnceLock<Vec<BpfProgram>> = OnceLock::new();
    F.get_or_init(docker_filters)
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const seccompiler::sock_filter,
}

/// Make `cmd` start inside the simulated GitLab job sandbox.
pub fn gitlab_job(cmd: &mut Command) -> &mut Command {
    let progs: Vec<BpfProgram> = filters().to_vec();
    // SAFETY: runs in the forked child before exec: prctl and seccomp syscalls on
    // BPF programs built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // The filters first, while CAP_SYS_ADMIN allows them without
            // no_new_privs (as dockerd's runc does); then the bounding set.
            for p in &progs {
                let fprog = SockFprog {
                    len: p.len() as u16,
                    filter: p.as_ptr(),
                };
                if libc::syscall(
                    libc::SYS_seccomp,
                    1, // SECCOMP_SET_MODE_FILTER
                    0,
                    &fprog as *const SockFprog,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for cap in 0..=63u32 {
                if !DOCKER_CAPS.iter().any(|c| c.0 == cap)
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
            Ok(())
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_profile_compiles() {
        assert!(!super::filters().is_empty());
    }
}
