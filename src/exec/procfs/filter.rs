//! The seccomp side of the /proc server: the BPF program a chroot-mode step
//! installs before `execve` (path syscalls go to kiln as user notifications,
//! everything else runs as usual) and the kernel's notification ABI.
//!
//! It owns the constants and structs of `seccomp(2)`'s user notification
//! interface (Linux ≥ 5.14 for `SECCOMP_ADDFD_FLAG_SEND`). What kiln answers is
//! the server's job.

/// `seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, …)`.
pub const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
pub const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// x32 syscalls carry this bit; they are left alone (resolved in the root).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

pub const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
pub const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
pub const NOTIF_ID_VALID: libc::c_ulong = 0x4008_2102;
pub const NOTIF_ADDFD: libc::c_ulong = 0x4018_2103;
pub const USER_NOTIF_FLAG_CONTINUE: u32 = 1;
pub const ADDFD_FLAG_SEND: u32 = 1 << 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SeccompData {
    pub nr: i32,
    pub arch: u32,
    pub ip: u64,
    pub args: [u64; 6],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Notif {
    pub id: u64,
    pub pid: u32,
    pub flags: u32,
    pub data: SeccompData,
}

#[repr(C)]
#[derive(Debug, Default)]
pub struct Resp {
    pub id: u64,
    pub val: i64,
    pub error: i32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Debug, Default)]
pub struct AddFd {
    pub id: u64,
    pub flags: u32,
    pub srcfd: u32,
    pub newfd: u32,
    pub newfd_flags: u32,
}

/// The path syscalls kiln answers (x86-64 numbers), with where their arguments are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// (dirfd arg or None for AT_FDCWD, path arg, flags arg)
    Open {
        dirfd: Option<usize>,
        path: usize,
        flags: usize,
    },
    /// `openat2(dirfd, path, how, size)`: flags in `how`.
    Openat2,
    /// (dirfd, path, buffer, follow: None = flags arg for AT_SYMLINK_NOFOLLOW)
    Stat {
        dirfd: Option<usize>,
        path: usize,
        buf: usize,
        nofollow: Nofollow,
    },
    Statx,
    Readlink {
        dirfd: Option<usize>,
        path: usize,
        buf: usize,
        size: usize,
    },
    Access {
        dirfd: Option<usize>,
        path: usize,
        mode: usize,
        flags: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nofollow {
    Never,
    Always,
    /// AT_SYMLINK_NOFOLLOW in this argument.
    Flag(usize),
}

/// What each notified syscall is.
pub fn call(nr: i64) -> Option<Call> {
    use Call::*;
    Some(match nr {
        libc::SYS_open => Open {
            dirfd: None,
            path: 0,
            flags: 1,
        },
        libc::SYS_openat => Open {
            dirfd: Some(0),
            path: 1,
            flags: 2,
        },
        libc::SYS_openat2 => Openat2,
        libc::SYS_stat => Stat {
            dirfd: None,
            path: 0,
            buf: 1,
            nofollow: Nofollow::Never,
        },
        libc::SYS_lstat => Stat {
            dirfd: None,
            path: 0,
            buf: 1,
            nofollow: Nofollow::Always,
        },
        libc::SYS_newfstatat => Stat {
            dirfd: Some(0),
            path: 1,
            buf: 2,
            nofollow: Nofollow::Flag(3),
        },
        libc::SYS_statx => Statx,
        libc::SYS_readlink => Readlink {
            dirfd: None,
            path: 0,
            buf: 1,
            size: 2,
        },
        libc::SYS_readlinkat => Readlink {
            dirfd: Some(0),
            path: 1,
            buf: 2,
            size: 3,
        },
        libc::SYS_access => Access {
            dirfd: None,
            path: 0,
            mode: 1,
            flags: None,
        },
        libc::SYS_faccessat => Access {
            dirfd: Some(0),
            path: 1,
            mode: 2,
            flags: None,
        },
        libc::SYS_faccessat2 => Access {
            dirfd: Some(0),
            path: 1,
            mode: 2,
            flags: Some(3),
        },
        _ => return None,
    })
}

const NOTIFIED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_readlink,
    libc::SYS_readlinkat,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
];

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The filter: x86-64 path syscalls notify kiln; everything else is allowed. A
/// syscall of another ABI (i386, x32) is allowed too: the kernel resolves its
/// path in the chroot, where /proc is an empty directory, as without the server.
pub fn program() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let n = NOTIFIED.len();
    // Layout: 0 ld arch, 1 jeq, 2 ld nr, 3 jge x32, 4.. jeq each, then allow, notify.
    let allow = 4 + n;
    let notify = allow + 1;
    let mut p = vec![
        stmt(LD_W_ABS, 4),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 0, (allow - 2) as u8),
        stmt(LD_W_ABS, 0),
        jump(JGE_K, X32_SYSCALL_BIT, (allow - 4) as u8, 0),
    ];
    for (i, nr) in NOTIFIED.iter().enumerate() {
        let at = 4 + i;
        p.push(jump(JEQ_K, *nr as u32, (notify - at - 1) as u8, 0));
    }
    p.push(stmt(RET_K, SECCOMP_RET_ALLOW));
    p.push(stmt(RET_K, SECCOMP_RET_USER_NOTIF));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notified_syscall_is_decoded_and_jumps_land_on_returns() {
        for nr in NOTIFIED {
            assert!(
                call(*nr).is_some(),
                "syscall {nr} is notified but not decoded"
            );
        }
        let p = program();
        let allow = p.len() - 2;
        let notify = p.len() - 1;
        assert_eq!(1 + 1 + p[1].jf as usize, allow);
        assert_eq!(3 + 1 + p[3].jt as usize, allow);
        for (i, ins) in p.iter().enumerate().take(notify - 1).skip(4) {
            assert_eq!(i + 1 + ins.jt as usize, notify, "instruction {i}");
        }
    }
}
