//! Safe extraction of a layer onto a root directory.
//!
//! - Whiteouts: `.wh.<name>` deletes `<name>` from lower layers; `.wh..wh..opq` empties
//!   its directory of lower-layer content (entries of the same layer are kept).
//! - No escapes: entries with `..` are refused; parents are resolved with
//!   [`crate::fs::resolve`] clamped at the root, so a symlink planted earlier (even in
//!   the same archive) cannot redirect a write outside the root.
//! - Hardlinks resolve inside the root; symlinks are written as they are.
//! - Owners are applied when running as root; otherwise owner and mode are recorded
//!   in `recorded` so later steps still see what the image says.
//! - Device nodes are created when allowed, skipped with a warning when not.
//! - Directory mtimes are applied last, once their children exist.

use crate::fs::resolve::{components, host_path, resolve, Confine};
use crate::layer::writer::Meta;
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

#[derive(Debug, Default)]
pub struct ExtractStats {
    pub entries: u64,
    pub skipped_devices: u64,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Apply the tar stream `tar` onto `root`.
pub fn extract(
    tar: impl Read,
    root: &Path,
    privileged: bool,
    recorded: &mut HashMap<String, Meta>,
) -> io::Result<ExtractStats> {
    let mut archive = tar::Archive::new(tar);
    let mut stats = ExtractStats::default();
    let mut this_layer: HashSet<String> = HashSet::new();
    let mut dir_times: Vec<(String, u64, u32)> = Vec::new();
    // Resolved parent directories (raw parent path -> path inside the root), known
    // to exist as real directories. Entries come parents-first, so most lookups
    // hit. Anything that can change how a path resolves (a symlink, a whiteout, a
    // replaced entry) clears it.
    let mut parents: HashMap<String, String> = HashMap::new();
    // One buffer for every file's data (not a zeroed 64 KiB per file).
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        // Each entry's failure names the entry, escaped: the name comes from a
        // hostile layer and may hold control bytes meant for a CI log.
        let applied = (|| -> io::Result<()> {
            let parts = components(&raw);
            if parts.contains(&"..") {
                return Err(bad(format!("layer entry {raw:?} tries to leave the root")));
            }
            let Some((name, parent)) = parts.split_last() else {
                return Ok(()); // the root itself
            };
            let parent_raw = parent.join("/");
            let parent_rel = match parents.get(&parent_raw) {
                Some(r) => r.clone(),
                None => {
                    let r = resolve(root, &parent_raw, true, Confine::Clamp).map_err(to_io)?;
                    fs::create_dir_all(host_path(root, &r))?;
                    parents.insert(parent_raw, r.clone());
                    r
                }
            };
            let parent_host = host_path(root, &parent_rel);
            let rel = if parent_rel.is_empty() {
                name.to_string()
            } else {
                format!("{parent_rel}/{name}")
            };

            if name.starts_with(".wh.") {
                parents.clear();
            }
            if *name == ".wh..wh..opq" {
                if let Ok(rd) = fs::read_dir(&parent_host) {
                    for child in rd {
                        let child = child?;
                        let crel = format!(
                            "{}{}",
                            prefix(&parent_rel),
                            child.file_name().to_string_lossy()
                        );
                        if !this_layer.contains(&crel) {
                            remove_any(&child.path())?;
                            forget(recorded, &crel);
                        }
                    }
                }
                return Ok(());
            }
            if let Some(victim) = name.strip_prefix(".wh.") {
                // `.wh..` or `.wh...` would name the parent directory (or the work
                // dir around the root): only plain names can be deleted.
                if victim.is_empty() || victim == "." || victim == ".." {
                    return Err(bad("a whiteout that names no file".into()));
                }
                let vrel = format!("{}{}", prefix(&parent_rel), victim);
                remove_any(&parent_host.join(victim))?;
                forget(recorded, &vrel);
                return Ok(());
            }

            let target = parent_host.join(name);
            let header = entry.header().clone();
            let meta = Meta {
                // Some writers leave numeric fields blank: read those as 0.
                mode: header.mode().unwrap_or(0o644) & 0o7777,
                uid: header.uid().unwrap_or(0) as u32,
                gid: header.gid().unwrap_or(0) as u32,
                mtime: header.mtime().unwrap_or(0),
                mtime_nsec: pax_mtime_nsec(&mut entry),
            };
            let kind = header.entry_type();
            let is_file = matches!(
                kind,
                tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse
            );
            // A file where nothing is yet (a COPY into a new directory: most entries)
            // is created with O_EXCL, which stands for the lstat and never follows a
            // symlink; what is there already takes the general path.
            let fresh = if is_file {
                match create_new(&target) {
                    Ok(f) => Some(f),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let existing = match fresh {
                Some(_) => None,
                None => fs::symlink_metadata(&target).ok(),
            };
            // Replacing anything but a directory by a directory can change how later
            // paths resolve.
            let keeps_dir =
                kind == tar::EntryType::Directory && existing.as_ref().is_none_or(|m| m.is_dir());
            if kind == tar::EntryType::Symlink || (existing.is_some() && !keeps_dir) {
                parents.clear();
            }
            let clear = |target: &Path| -> io::Result<()> {
                match &existing {
                    None => Ok(()),
                    Some(m) if m.is_dir() => fs::remove_dir_all(target),
                    Some(_) => fs::remove_file(target),
                }
            };
            // The file just written: its owner, mode and times go through its
            // descriptor (no path lookup per call).
            let mut written: Option<fs::File> = None;
            match kind {
                tar::EntryType::Directory => {
                    if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                        clear(&target)?;
                        fs::create_dir(&target)?;
                    }
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let mut f = match fresh {
                        Some(f) => f,
                        None => {
                            clear(&target)?;
                            create_new(&target)?
                        }
                    };
                    copy_sparse(&mut entry, &mut f, &mut buf)?;
                    written = Some(f);
                }
                tar::EntryType::Symlink => {
                    clear(&target)?;
                    let link = entry
                        .link_name()?
                        .ok_or_else(|| bad(format!("symlink {raw:?} has no target")))?;
                    symlink(link, &target)?;
                }
                tar::EntryType::Link => {
                    let link = entry
                        .link_name()?
                        .ok_or_else(|| bad(format!("hardlink {raw:?} has no target")))?;
                    let link = link.to_string_lossy().into_owned();
                    if components(&link).contains(&"..") {
                        return Err(bad(format!("hardlink {raw:?} points outside the root")));
                    }
                    let src_rel = resolve(root, &link, false, Confine::Clamp).map_err(to_io)?;
                    clear(&target)?;
                    fs::hard_link(host_path(root, &src_rel), &target)?;
                    if let Some(m) = recorded.get(&src_rel).copied() {
                        recorded.insert(rel.clone(), m);
                    }
                    this_layer.insert(rel);
                    stats.entries += 1;
                    return Ok(());
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    let sflag = match kind {
                        tar::EntryType::Char => SFlag::S_IFCHR,
                        tar::EntryType::Block => SFlag::S_IFBLK,
                        _ => SFlag::S_IFIFO,
                    };
                    // GNU tar and Python leave a FIFO's device fields blank, which
                    // the tar crate reports as unparsable: a FIFO needs none.
                    let dev = if kind == tar::EntryType::Fifo {
                        0
                    } else {
                        nix::sys::stat::makedev(
                            header.device_major()?.unwrap_or(0) as u64,
                            header.device_minor()?.unwrap_or(0) as u64,
                        )
                    };
                    clear(&target)?;
                    if let Err(e) = mknod(&target, sflag, Mode::from_bits_truncate(meta.mode), dev)
                    {
                        tracing::warn!("skipping device node /{rel}: {e} (not permitted here)");
                        stats.skipped_devices += 1;
                        return Ok(());
                    }
                }
                _ => {
                    tracing::debug!("skipping unsupported tar entry type {:?} at {raw}", kind);
                    return Ok(());
                }
            }

            let is_symlink = kind == tar::EntryType::Symlink;
            if privileged {
                let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
                let owned = match &written {
                    Some(f) => nix::unistd::fchown(f, uid, gid),
                    None => nix::unistd::fchownat(
                        nix::fcntl::AT_FDCWD,
                        &target,
                        uid,
                        gid,
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    ),
                };
                match owned {
                    Ok(()) => {
                        recorded.remove(&rel);
                    }
                    // Root of a user namespace that does not map this id: keep the
                    // image's owner on record instead.
                    Err(nix::errno::Errno::EINVAL) => {
                        recorded.insert(rel.clone(), meta);
                    }
                    Err(e) => return Err(io::Error::from(e)),
                }
            } else {
                recorded.insert(rel.clone(), meta);
            }
            if !is_symlink {
                // Unprivileged, directories stay writable for the owner so later
                // layers can be applied; the real mode is in `recorded`.
                let mode = if !privileged && kind == tar::EntryType::Directory {
                    meta.mode | 0o700
                } else {
                    meta.mode
                };
                let perms = fs::Permissions::from_mode(mode);
                match &written {
                    Some(f) => f.set_permissions(perms)?,
                    None => fs::set_permissions(&target, perms)?,
                }
            }
            // File capabilities and other xattrs (PAX SCHILY.xattr.*), when allowed;
            // after chown and chmod, which would clear security.capability.
            if privileged {
                if let Some(exts) = entry.pax_extensions()? {
                    for ext in exts.flatten() {
                        if let Ok(key) = ext.key() {
                            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                                if let Err(e) = xattr::set(&target, name, ext.value_bytes()) {
                                    tracing::warn!("cannot set xattr {name} on /{rel}: {e}");
                                }
                            }
                        }
                    }
                }
            }
            if kind == tar::EntryType::Directory {
                dir_times.push((rel.clone(), meta.mtime, meta.mtime_nsec));
            } else if let Some(f) = &written {
                let t = time(meta.mtime, meta.mtime_nsec);
                nix::sys::stat::futimens(f, &t, &t)?;
            } else {
                set_mtime(&target, meta.mtime, meta.mtime_nsec)?;
            }
            this_layer.insert(rel);
            stats.entries += 1;
            Ok(())
        })();
        applied.map_err(|e| io::Error::new(e.kind(), format!("layer entry {raw:?}: {e}")))?;
    }
    for (rel, mtime, nsec) in dir_times.into_iter().rev() {
        let p = host_path(root, &rel);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            set_mtime(&p, mtime, nsec)?;
        }
    }
    Ok(stats)
}

/// Copy `from` into `to`, leaving holes where whole blocks are zero, so a small
/// layer that declares a huge sparse file (or a file of zeros) does not fill the
/// disk. The content read back is the same.
fn copy_sparse(from: &mut impl Read, to: &mut fs::File, buf: &mut [u8]) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut total = 0u64;
    let mut hole = false;
    loop {
        let n = match from.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == buf.len() && all_zero(buf) {
            to.seek(SeekFrom::Current(n as i64))?;
            hole = true;
        } else {
            to.write_all(&buf[..n])?;
            hole = false;
        }
        total += n as u64;
    }
    if hole {
        to.set_len(total)?;
    }
    Ok(total)
}

/// Whether every byte is zero: 4 KiB at a time, each folded (which vectorises),
/// stopping at the first block that is not.
fn all_zero(buf: &[u8]) -> bool {
    buf.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

fn prefix(parent_rel: &str) -> String {
    if parent_rel.is_empty() {
        String::new()
    } else {
        format!("{parent_rel}/")
    }
}

fn forget(recorded: &mut HashMap<String, Meta>, rel: &str) {
    if recorded.is_empty() {
        return;
    }
    let below = format!("{rel}/");
    recorded.retain(|k, _| k != rel && !k.starts_with(&below));
}

fn to_io(e: crate::fs::resolve::ResolveError) -> io::Error {
    match e {
        crate::fs::resolve::ResolveError::Io(e) => e,
        other => bad(other.to_string()),
    }
}

/// Remove whatever is at `p` (file, link or tree); absent is fine.
pub fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The sub-second part of a PAX `mtime` record (`secs.fraction`), or 0.
fn pax_mtime_nsec<R: io::Read>(entry: &mut tar::Entry<R>) -> u32 {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return 0;
    };
    for ext in exts.flatten() {
        if ext.key() == Ok("mtime") {
            let v = String::from_utf8_lossy(ext.value_bytes()).into_owned();
            if let Some((_, frac)) = v.split_once('.') {
                let digits: String = frac.chars().take(9).filter(char::is_ascii_digit).collect();
                return format!("{digits:0<9}").parse().unwrap_or(0);
            }
        }
    }
    0
}

/// A new file, owner-only until its mode is applied; fails if anything (even a
/// dangling symlink) is at `p`.
fn create_new(p: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
}

fn time(mtime: u64, nsec: u32) -> TimeSpec {
    TimeSpec::new(mtime as i64, i64::from(nsec.min(999_999_999)))
}

fn set_mtime(p: &Path, mtime: u64, nsec: u32) -> io::Result<()> {
    let t = time(mtime, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_mtime(1000);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ if path.contains("..") => {
                    // The tar crate refuses to write such names: set the raw bytes.
                    h.set_size(data.len() as u64);
                    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
                    h.set_cksum();
                    b.append(&h, data.as_bytes()).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        use tar::EntryType::*;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut rec = HashMap::new();
        let lower = tar_of(&[
            ("a/", Directory, ""),
            ("a/x", Regular, "x"),
            ("b/", Directory, ""),
            ("b/y", Regular, "y"),
            ("c", Regular, "c"),
        ]);
        extract(&lower[..], root, false, &mut rec).unwrap();
        let upper = tar_of(&[
            ("b/", Directory, ""),
            ("b/new", Regular, "n"),
            ("b/.wh..wh..opq", Regular, ""),
            ("a/.wh.x", Regular, ""),
            (".wh.c", Regular, ""),
        ]);
        extract(&upper[..], root, false, &mut rec).unwrap();
        assert!(!root.join("a/x").exists());
        assert!(root.join("a").is_dir());
        assert!(!root.join("b/y").exists(), "opaque dir hides lower content");
        assert!(
            root.join("b/new").exists(),
            "same-layer content survives the opaque marker"
        );
        assert!(!root.join("c").exists());
        assert!(!rec.contains_key("c"));
    }

    #[test]
    fn planted_symlink_cannot_redirect_writes() {
        use tar::EntryType::*;
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let evil = tar_of(&[
            ("escape", Symlink, outside.path().to_str().unwrap()),
            ("escape/pwned", Regular, "x"),
            ("rel", Symlink, "../../../../../../"),
            ("rel/pwned2", Regular, "x"),
        ]);
        extract(&evil[..], root, false, &mut HashMap::new()).unwrap();
        assert!(!outside.path().join("pwned").exists());
        assert!(root
            .join(outside.path().strip_prefix("/").unwrap())
            .join("pwned")
            .exists());
        assert!(
            root.join("pwned2").exists(),
            "relative escape is clamped at the root"
        );
        let dotdot = tar_of(&[("../x", Regular, "x")]);
        assert!(extract(&dotdot[..], root, false, &mut HashMap::new()).is_err());
    }

    #[test]
    fn a_directory_replaced_by_a_symlink_is_resolved_again() {
        use tar::EntryType::*;
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        // "a" is resolved (and remembered) as a directory for "a/x", then replaced by
        // a symlink out of the root: "a/y" must not follow it out.
        let evil = tar_of(&[
            ("a/", Directory, ""),
            ("a/x", Regular, "x"),
            ("a", Symlink, outside.path().to_str().unwrap()),
            ("a/y", Regular, "y"),
        ]);
        extract(&evil[..], root, false, &mut HashMap::new()).unwrap();
        assert!(
            !outside.path().join("y").exists(),
            "wrote through the symlink"
        );
        assert!(root
            .join(outside.path().strip_prefix("/").unwrap())
            .join("y")
            .exists());
    }

    #[test]
    fn hardlinks_and_type_changes() {
        use tar::EntryType::*;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut rec = HashMap::new();
        extract(
            &tar_of(&[
                ("f", Regular, "data"),
                ("h", Link, "f"),
                ("d/", Directory, ""),
                ("d/z", Regular, "z"),
            ])[..],
            root,
            false,
            &mut rec,
        )
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(root.join("f")).unwrap().ino(),
            fs::metadata(root.join("h")).unwrap().ino()
        );
        // A directory replaced by a file, and a file by a directory.
        extract(
            &tar_of(&[("d", Regular, "now a file"), ("f/", Directory, "")])[..],
            root,
            false,
            &mut rec,
        )
        .unwrap();
        assert!(root.join("d").is_file());
        assert!(root.join("f").is_dir());
    }

    #[test]
    fn whiteouts_that_name_no_file_are_refused_and_delete_nothing() {
        use tar::EntryType::*;
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        fs::write(work.path().join("kilns-own"), "x").unwrap();
        for wh in [".wh...", ".wh..", "sub/.wh...", "sub/.wh.."] {
            let t = tar_of(&[
                ("sub/", Directory, ""),
                ("sub/f", Regular, "f"),
                (wh, Regular, ""),
            ]);
            let e = extract(&t[..], &root, false, &mut HashMap::new()).unwrap_err();
            assert!(e.to_string().contains("names no file"), "{wh}: {e}");
            assert!(
                work.path().join("kilns-own").exists(),
                "{wh}: the work dir survives"
            );
            assert!(root.join("sub/f").exists(), "{wh}: the parent survives");
        }
    }

    #[test]
    fn fifos_with_blank_device_fields_are_made() {
        let d = tempfile::tempdir().unwrap();
        for (i, fill) in [0u8, b' '].into_iter().enumerate() {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Fifo);
            h.set_mode(0o644);
            h.set_size(0);
            h.set_path(format!("fifo{i}")).unwrap();
            let u = h.as_ustar_mut().unwrap();
            u.dev_major = [fill; 8];
            u.dev_minor = [fill; 8];
            h.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&h, &[][..]).unwrap();
            let t = b.into_inner().unwrap();
            extract(&t[..], d.path(), false, &mut HashMap::new()).unwrap();
            use std::os::unix::fs::FileTypeExt;
            assert!(fs::symlink_metadata(d.path().join(format!("fifo{i}")))
                .unwrap()
                .file_type()
                .is_fifo());
        }
    }

    #[test]
    fn new_and_replaced_files_get_their_mode_times_and_content() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("app")).unwrap();
        // Already there: a file with another mode, and a link out of the root.
        fs::write(root.join("app/old"), "before").unwrap();
        fs::set_permissions(root.join("app/old"), fs::Permissions::from_mode(0o600)).unwrap();
        let outside = d.path().join("outside");
        fs::write(&outside, "host").unwrap();
        symlink(&outside, root.join("app/link")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (path, mode, mtime, data) in [
            ("app/new", 0o751, 1_000_000_000, "fresh"),
            ("app/old", 0o644, 1_100_000_000, "after"),
            ("app/link", 0o640, 1_200_000_000, "replaced"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, data.as_bytes()).unwrap();
        }
        let mut recorded = HashMap::new();
        extract(&b.into_inner().unwrap()[..], &root, false, &mut recorded).unwrap();
        for (name, mode, mtime, data) in [
            ("new", 0o751, 1_000_000_000, "fresh"),
            ("old", 0o644, 1_100_000_000, "after"),
            ("link", 0o640, 1_200_000_000, "replaced"),
        ] {
            let p = root.join("app").join(name);
            let m = fs::symlink_metadata(&p).unwrap();
            assert!(m.is_file(), "{name} is a regular file");
            assert_eq!(m.mode() & 0o7777, mode, "{name}'s mode");
            assert_eq!(m.mtime(), mtime, "{name}'s mtime");
            assert_eq!(fs::read_to_string(&p).unwrap(), data);
            assert_eq!(recorded[&format!("app/{name}")].mode, mode);
        }
        assert_eq!(
            fs::read_to_string(&outside).unwrap(),
            "host",
            "the link's target is untouched"
        );
    }

    #[test]
    fn sparse_files_stay_sparse() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir(&src).unwrap();
        // A 1 GiB hole, archived by GNU tar --sparse:
        // the archive is a few KB.
        let f = fs::File::create(src.join("huge")).unwrap();
        f.set_len(1 << 30).unwrap();
        drop(f);
        let t = d.path().join("sparse.tar");
        let ok = std::process::Command::new("tar")
            .args(["--sparse", "-cf"])
            .arg(&t)
            .arg("-C")
            .arg(&src)
            .arg("huge")
            .status()
            .unwrap();
        assert!(ok.success());
        assert!(fs::metadata(&t).unwrap().len() < 64 * 1024);
        let root = d.path().join("root");
        fs::create_dir(&root).unwrap();
        extract(
            fs::File::open(&t).unwrap(),
            &root,
            false,
            &mut HashMap::new(),
        )
        .unwrap();
        let m = fs::metadata(root.join("huge")).unwrap();
        assert_eq!(m.len(), 1 << 30);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "written sparse: {} blocks",
            m.blocks()
        );
    }

    #[test]
    fn errors_name_the_entry_with_control_bytes_escaped() {
        use tar::EntryType::*;
        let d = tempfile::tempdir().unwrap();
        let t = tar_of(&[("evil\x1b[2Jname", Link, "missing-target")]);
        let e = extract(&t[..], d.path(), false, &mut HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer entry \"evil\\u{1b}[2Jname\""), "{e}");
        assert!(!e.contains('\x1b'), "no raw control byte: {e:?}");
    }
}
