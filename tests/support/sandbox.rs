//! Simulate an unprivileged GitLab Docker-executor job around a command: root, only
//! Docker's default capabilities in the bounding set, and a seccomp filter that
//! refuses `unshare`, `setns`, `mount`, `umount2`, `pivot_root` and `clone` with any
//! `CLONE_NEW*` flag with EPERM, and `clone3` with ENOSYS (as Docker's profile does).
#![allow(dead_code)]

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Docker's default capabilities (capability numbers).
const DOCKER_CAPS: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

const CLONE_NEW: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

fn arch() -> seccompiler::TargetArch {
    std::env::consts::ARCH
        .try_into()
        .expect("supported architecture")
}

fn filters() -> (BpfProgram, BpfProgram) {
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for sc in [
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
    ] {
        eperm.insert(sc, vec![]);
    }
    let clone_rules = CLONE_NEW
        .iter()
        .map(|f| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*f),
                *f,
            )
            .expect("condition")])
            .expect("rule")
        })
        .collect();
    eperm.insert(libc::SYS_clone, clone_rules);
    let f1 = SeccompFilter::new(
        eperm,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch(),
    )
    .expect("filter");
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    enosys.insert(libc::SYS_clone3, vec![]);
    let f2 = SeccompFilter::new(
        enosys,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch(),
    )
    .expect("filter");
    (f1.try_into().expect("bpf"), f2.try_into().expect("bpf"))
}

/// Make `cmd` start inside the simulated GitLab job sandbox.
pub fn gitlab_job(cmd: &mut Command) -> &mut Command {
    let (f1, f2) = filters();
    // SAFETY: runs in the forked child before exec: prctl and seccomp syscalls on
    // BPF programs built before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for cap in 0..=63u32 {
                if !DOCKER_CAPS.contains(&cap)
                    && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
            seccompiler::apply_filter(&f1).map_err(|e| std::io::Error::other(e.to_string()))?;
            seccompiler::apply_filter(&f2).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(())
        });
    }
    cmd
}
