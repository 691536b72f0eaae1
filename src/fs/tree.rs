//! Copying a directory tree as it is (types, modes, owners, mtimes, symlinks as
//! links), for the private copies `RUN --mount` needs where mount(2) is refused
//! or where a step's writes must not reach the source.
//!
//! A copy never follows a symlink of the source and never writes outside its
//! destination, which must not exist yet: a source that is hostile (a stage a
//! step built) can at worst make the copy wrong, not reach the host.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Copy `src` (a directory, file or symlink) to `dst`, which must not exist.
/// `skip(rel)` leaves an entry out (and, for a directory, all below it); `rel`
/// is the path below `src`, without a leading `/`. Sockets and devices are left
/// out. Owners are kept where kiln may chown. Returns the bytes of file content
/// copied.
pub fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&str) -> bool) -> io::Result<u64> {
    let mut bytes = 0u64;
    // Directories get their mtimes after their content is in.
    let mut dirs: Vec<(std::path::PathBuf, fs::Metadata)> = Vec::new();
    let mut it = walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    while let Some(e) = it.next() {
        let e = e.map_err(|e| io::Error::other(e.to_string()))?;
        let rel = e
            .path()
            .strip_prefix(src)
            .map_err(|_| io::Error::other("walked out of the source"))?;
        let rel_s = rel.to_string_lossy();
        if !rel_s.is_empty() && skip(&rel_s) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let to = if rel_s.is_empty() {
            dst.to_path_buf()
        } else {
            dst.join(rel)
        };
        let md = e.path().symlink_metadata()?;
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            fs::set_permissions(&to, fs::Permissions::from_mode(md.mode() & 0o7777))?;
            dirs.push((to.clone(), md.clone()));
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &to)?;
        } else if ft.is_file() {
            // The content (the kernel may share extents) and the mode bits;
            // setuid bits cleared by the chown below are put back there.
            bytes += fs::copy(e.path(), &to)?;
        } else if ft.is_fifo() {
            nix::unistd::mkfifo(
                &to,
                nix::sys::stat::Mode::from_bits_truncate(md.mode() & 0o7777),
            )
            .map_err(io::Error::from)?;
        } else {
            continue;
        }
        keep_owner(&to, &md);
        if !ft.is_dir() {
            set_mtime(&to, &md, ft.is_symlink());
        }
    }
    for (d, md) in dirs.iter().rev() {
        set_mtime(d, md, false);
    }
    Ok(bytes)
}

fn keep_owner(p: &Path, md: &fs::Metadata) {
    if super::privileged() {
        // An id this user namespace cannot map stays kiln's own: the copy is
        // only ever shown to a step.
        let _ = std::os::unix::fs::lchown(p, Some(md.uid()), Some(md.gid()));
        if !md.file_type().is_symlink() && !md.is_dir() && md.mode() & 0o6000 != 0 {
            // chown clears setuid/setgid: put them back.
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(md.mode() & 0o7777));
        }
    }
}

/// Set the mtime of `p` (not following a link) to that of `md`; atime untouched.
pub fn set_mtime(p: &Path, md: &fs::Metadata, is_link: bool) {
    set_mtime_to(p, (md.mtime(), md.mtime_nsec()), is_link);
}

/// Set the mtime of `p` (not following a link with `is_link`); atime untouched.
pub fn set_mtime_to(p: &Path, mtime: (i64, i64), is_link: bool) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let omit = TimeSpec::UTIME_OMIT;
    let m = TimeSpec::new(mtime.0, mtime.1);
    let flags = if is_link {
        UtimensatFlags::NoFollowSymlink
    } else {
        UtimensatFlags::FollowSymlink
    };
    if let Err(e) = utimensat(nix::fcntl::AT_FDCWD, p, &omit, &m, flags) {
        tracing::debug!("cannot set the mtime of {}: {e}", p.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_types_modes_and_links_and_skips_what_it_is_told() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/f"), b"data").unwrap();
        fs::set_permissions(src.join("a/b/f"), fs::Permissions::from_mode(0o751)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("a/link")).unwrap();
        fs::write(src.join("secret.log"), b"x").unwrap();
        let dst = t.path().join("dst");
        let n = copy_tree(&src, &dst, &|rel| rel.ends_with(".log")).unwrap();
        assert_eq!(n, 4);
        assert_eq!(fs::read(dst.join("a/b/f")).unwrap(), b"data");
        let mode = fs::metadata(dst.join("a/b/f")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o751);
        assert_eq!(
            fs::read_link(dst.join("a/link")).unwrap(),
            Path::new("/etc/passwd"),
            "a link is copied as a link, not followed"
        );
        assert!(!dst.join("secret.log").exists(), "skipped");
        let (s, d) = (
            fs::metadata(src.join("a")).unwrap(),
            fs::metadata(dst.join("a")).unwrap(),
        );
        assert_eq!(s.mtime(), d.mtime(), "directory mtimes are kept");
        assert!(
            copy_tree(&src, &dst, &|_| false).is_err(),
            "the destination must not exist"
        );
    }
}
