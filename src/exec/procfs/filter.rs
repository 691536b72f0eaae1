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

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Offsets in `seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG0_LOW: u32 = 16;

/// Where a jump goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum L {
    Next,
    Allow,
    UnixAllow,
    Notify,
    Foreign,
    Socket,
    Eacces,
    Enosys,
}

/// A tiny assembler: instructions with symbolic jump targets, resolved at the end.
struct Asm {
    ins: Vec<(u16, u32, L, L)>,
    labels: Vec<(L, usize)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32, jt: L, jf: L) {
        self.ins.push((code, k, jt, jf));
    }
    fn label(&mut self, l: L) {
        self.labels.push((l, self.ins.len()));
    }
    fn finish(self) -> Vec<libc::sock_filter> {
        let at = |l: L, i: usize| -> u8 {
            match l {
                L::Next => 0,
                l => {
                    // Every target is placed after its jumps (classic BPF jumps
                    // forward only); an unplaced one is never jumped to.
                    let to = self
                        .labels
                        .iter()
                        .find(|(x, _)| *x == l)
                        .map_or(i + 1, |p| p.1);
                    to.saturating_sub(i + 1) as u8
                }
            }
        };
        self.ins
            .iter()
            .enumerate()
            .map(|(i, (code, k, jt, jf))| libc::sock_filter {
                code: *code,
                jt: at(*jt, i),
                jf: at(*jf, i),
                k: *k,
            })
            .collect()
    }
}

/// The step's filter. With `notify`, x86-64 path syscalls notify kiln's /proc
/// server; a syscall of another ABI (i386, x32) is left alone then: the kernel
/// resolves its path in the chroot, where /proc is an empty directory. With
/// `no_network` (`RUN --network=none` in chroot mode, where there is no network
/// namespace to give the step), sockets other than AF_UNIX fail with EACCES,
/// `io_uring_setup` (whose sockets seccomp cannot see) and every syscall of
/// another ABI with ENOSYS. Empty when neither is asked for.
pub fn program(notify: bool, no_network: bool) -> Vec<libc::sock_filter> {
    if !notify && !no_network {
        return Vec::new();
    }
    let mut a = Asm {
        ins: Vec::new(),
        labels: Vec::new(),
    };
    a.op(LD_W_ABS, ARCH, L::Next, L::Next);
    a.op(JEQ_K, AUDIT_ARCH_X86_64, L::Next, L::Foreign);
    a.op(LD_W_ABS, NR, L::Next, L::Next);
    a.op(JGE_K, X32_SYSCALL_BIT, L::Foreign, L::Next);
    if no_network {
        a.op(JEQ_K, libc::SYS_socket as u32, L::Socket, L::Next);
        a.op(JEQ_K, libc::SYS_io_uring_setup as u32, L::Enosys, L::Next);
    }
    if notify {
        for nr in NOTIFIED {
            a.op(JEQ_K, *nr as u32, L::Notify, L::Next);
        }
    }
    a.label(L::Allow);
    a.op(RET_K, SECCOMP_RET_ALLOW, L::Next, L::Next);
    a.label(L::Notify);
    a.op(RET_K, SECCOMP_RET_USER_NOTIF, L::Next, L::Next);
    // Classic BPF jumps forward only: the socket check has its own allow.
    a.label(L::Socket);
    a.op(LD_W_ABS, ARG0_LOW, L::Next, L::Next);
    a.op(JEQ_K, libc::AF_UNIX as u32, L::UnixAllow, L::Eacces);
    a.label(L::UnixAllow);
    a.op(RET_K, SECCOMP_RET_ALLOW, L::Next, L::Next);
    a.label(L::Eacces);
    a.op(
        RET_K,
        SECCOMP_RET_ERRNO | libc::EACCES as u32,
        L::Next,
        L::Next,
    );
    a.label(L::Enosys);
    a.op(
        RET_K,
        SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        L::Next,
        L::Next,
    );
    a.label(L::Foreign);
    a.op(
        RET_K,
        if no_network {
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        } else {
            SECCOMP_RET_ALLOW
        },
        L::Next,
        L::Next,
    );
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel would do with the program: a small classic-BPF
    /// interpreter for the instructions it uses.
    fn run(p: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let word = |off: u32| match off {
            NR => nr,
            ARCH => arch,
            ARG0_LOW => arg0,
            o => panic!("load at {o}"),
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = p[pc];
            match i.code {
                LD_W_ABS => {
                    acc = word(i.k);
                    pc += 1;
                }
                JEQ_K => pc += 1 + if acc == i.k { i.jt } else { i.jf } as usize,
                JGE_K => pc += 1 + if acc >= i.k { i.jt } else { i.jf } as usize,
                RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    const X86: u32 = AUDIT_ARCH_X86_64;
    const I386: u32 = 0x4000_0003;
    const EACCES: u32 = SECCOMP_RET_ERRNO | libc::EACCES as u32;
    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn every_notified_syscall_is_decoded() {
        for nr in NOTIFIED {
            assert!(
                call(*nr).is_some(),
                "syscall {nr} is notified but not decoded"
            );
        }
    }

    #[test]
    fn the_proc_filter_notifies_path_syscalls_only() {
        let p = program(true, false);
        for nr in NOTIFIED {
            assert_eq!(run(&p, X86, *nr as u32, 0), SECCOMP_RET_USER_NOTIF);
        }
        assert_eq!(run(&p, X86, libc::SYS_read as u32, 0), SECCOMP_RET_ALLOW);
        assert_eq!(run(&p, X86, libc::SYS_socket as u32, 2), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&p, I386, 5, 0),
            SECCOMP_RET_ALLOW,
            "i386 open stays in the root"
        );
        assert_eq!(run(&p, X86, X32_SYSCALL_BIT | 2, 0), SECCOMP_RET_ALLOW);
    }

    #[test]
    fn no_network_allows_unix_sockets_only() {
        for notify in [false, true] {
            let p = program(notify, true);
            let socket = libc::SYS_socket as u32;
            assert_eq!(
                run(&p, X86, socket, libc::AF_UNIX as u32),
                SECCOMP_RET_ALLOW
            );
            for af in [
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
                libc::AF_PACKET,
            ] {
                assert_eq!(run(&p, X86, socket, af as u32), EACCES, "family {af}");
            }
            assert_eq!(run(&p, X86, libc::SYS_io_uring_setup as u32, 0), ENOSYS);
            assert_eq!(run(&p, I386, 102, 0), ENOSYS, "i386 socketcall");
            assert_eq!(run(&p, X86, X32_SYSCALL_BIT | 41, 2), ENOSYS, "x32 socket");
            assert_eq!(run(&p, X86, libc::SYS_read as u32, 0), SECCOMP_RET_ALLOW);
            let open = run(&p, X86, libc::SYS_openat as u32, 0);
            let want = if notify {
                SECCOMP_RET_USER_NOTIF
            } else {
                SECCOMP_RET_ALLOW
            };
            assert_eq!(open, want);
        }
        assert!(program(false, false).is_empty());
    }
}
