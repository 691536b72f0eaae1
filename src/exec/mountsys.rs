//! Thin wrappers over mount(2) and mount_setattr(2) for the forked child: raw
//! syscalls on NUL-terminated buffers prepared before the fork, nothing else.

use std::ffi::c_char;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// # Safety
/// Raw mount syscall on NUL-terminated strings (null pointers allowed).
pub unsafe fn mount(
    src: *const c_char,
    dst: &std::ffi::CStr,
    fstype: *const c_char,
    flags: libc::c_ulong,
    data: *const c_char,
) -> bool {
    // SAFETY: the caller passes valid or null pointers.
    unsafe { libc::mount(src, dst.as_ptr(), fstype, flags, data.cast()) == 0 }
}

/// Add mount attributes to the mount at `path` (and below it with `recursive`),
/// keeping every other flag, including those locked by a user namespace.
///
/// # Safety
/// Raw syscalls on a NUL-terminated path.
pub unsafe fn set_attr(path: &std::ffi::CStr, attrs: u64, recursive: bool) -> bool {
    // SAFETY: the attribute struct lives on the stack for the call.
    unsafe {
        let attr = MountAttr {
            attr_set: attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
        if libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) == 0
        {
            return true;
        }
        if *libc::__errno_location() != libc::ENOSYS {
            return false;
        }
        // Before Linux 5.12: a remount of the top mount, with the flags it had.
        // glibc fills f_flag from statfs(2), which kernels have set since 2.6.36.
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut st) != 0 {
            return false;
        }
        let mut ms = (st.f_flag as libc::c_ulong)
            & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
        for (a, m) in [
            (MOUNT_ATTR_RDONLY, libc::MS_RDONLY),
            (MOUNT_ATTR_NOSUID, libc::MS_NOSUID),
            (MOUNT_ATTR_NODEV, libc::MS_NODEV),
            (MOUNT_ATTR_NOEXEC, libc::MS_NOEXEC),
        ] {
            if attrs & a != 0 {
                ms |= m;
            }
        }
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | ms,
            std::ptr::null(),
        ) == 0
    }
}

/// Bind `path` onto itself and make it read-only.
///
/// # Safety
/// Raw syscalls.
pub unsafe fn bind_read_only(src: &std::ffi::CStr, dst: &std::ffi::CStr) -> bool {
    // SAFETY: valid NUL-terminated strings.
    unsafe {
        mount(
            src.as_ptr(),
            dst,
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) && set_attr(dst, MOUNT_ATTR_RDONLY, true)
    }
}
