//! Snapshot diffs: what a RUN changed in a rootfs, as a layer.
//!
//! A snapshot is one metadata walk (lstat, no reads): type, mode, owner, size, mtime,
//! ctime, inode. After a RUN, a second walk is compared with the first:
//!
//! - a path that is new, or whose metadata differs, is written whole (ctime changes on
//!   every write, chmod, chown, xattr or link change and cannot be set by a process,
//!   so an unchanged ctime and inode mean unchanged content; no hashing is needed);
//! - a path that is gone becomes a whiteout (`.wh.<name>`), only at the top of a
//!   deleted subtree;
//! - a directory that was removed and created again (new inode) becomes an opaque
//!   directory (`.wh..wh..opq`) holding its new content;
//! - files sharing an inode stay hardlinks in the layer;
//! - `security.capability` and `user.*` xattrs are carried as PAX records;
//! - parents of changed paths are included with their current metadata.
//!
//! The after-walk becomes the next baseline, so consecutive RUNs cost one walk each
//! plus the bytes of what changed.

use crate::layer::{LayerWriter, Meta};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
}

impl Stat {
    fn of(md: &fs::Metadata) -> Stat {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_char_device() {
            Kind::Char
        } else if ft.is_block_device() {
            Kind::Block
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else {
            Kind::File
        };
        Stat {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
            ino: md.ino(),
            nlink: md.nlink(),
            rdev: md.rdev(),
        }
    }
}

/// Paths (relative, no leading `/`) to their metadata.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entries: HashMap<String, Stat>,
    /// Paths whose ctime kiln itself moved since the walk before (putting a RUN
    /// mount or /etc/resolv.conf in and out): a ctime change alone is not a
    /// change of the step's there.
    pub kiln_touched: std::collections::HashSet<String>,
}

/// Paths never snapshotted: kernel filesystems and files kiln injects for RUN.
pub fn excluded(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    matches!(top, "dev" | "proc" | "sys") || rel == "etc/resolv.conf" || rel == "etc/hosts"
}

/// One metadata walk of `root`, on every core.
pub fn walk(root: &Path) -> io::Result<Snapshot> {
    use super::pwalk::Take;
    let take = |rel: &str, _| if excluded(rel) { Take::No } else { Take::Yes };
    let found = super::pwalk::walk(root, &take, &|rel, _, md| (rel, Stat::of(&md)))?;
    Ok(Snapshot {
        entries: found.into_iter().collect(),
        kiln_touched: Default::default(),
    })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DiffStats {
    pub written: usize,
    pub whiteouts: usize,
    pub opaque: usize,
}

impl DiffStats {
    pub fn is_empty(&self) -> bool {
        self.written == 0 && self.whiteouts == 0 && self.opaque == 0
    }
}

enum Item {
    Path,
    Whiteout,
    Opaque,
}

fn same_but_ctime(b: &Stat, a: &Stat) -> bool {
    let mut b = b.clone();
    b.ctime = a.ctime;
    b == *a
}

fn parent(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(d, _)| d)
}

/// The changes from `before` to `after` (both walks of `root`), or `None` when nothing changed.
fn changes(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, Item> {
    let mut items = BTreeMap::new();
    let mut opaque: Vec<String> = Vec::new();
    for (p, a) in &after.entries {
        match before.entries.get(p) {
            None => {
                items.insert(p.clone(), Item::Path);
            }
            Some(b) if b.kind == Kind::Dir && a.kind == Kind::Dir && b.ino != a.ino => {
                opaque.push(p.clone());
                items.insert(p.clone(), Item::Path);
                items.insert(format!("{p}/.wh..wh..opq"), Item::Opaque);
            }
            Some(b) if b != a && !(after.kiln_touched.contains(p) && same_but_ctime(b, a)) => {
                items.insert(p.clone(), Item::Path);
            }
            Some(_) => {}
        }
    }
    let under_opaque = |p: &str| opaque.iter().any(|o| p.starts_with(&format!("{o}/")));
    for p in before.entries.keys() {
        if after.entries.contains_key(p) || under_opaque(p) {
            continue;
        }
        // Only the top of a deleted subtree needs a whiteout.
        let parent_gone = parent(p)
            .is_some_and(|d| before.entries.contains_key(d) && !after.entries.contains_key(d));
        if !parent_gone {
            let wh = match p.rsplit_once('/') {
                Some((d, n)) => format!("{d}/.wh.{n}"),
                None => format!(".wh.{p}"),
            };
            items.insert(wh, Item::Whiteout);
        }
    }
    // Parents of everything, with their current metadata.
    let keys: Vec<String> = items.keys().cloned().collect();
    for k in keys {
        let mut cur = parent(&k);
        while let Some(d) = cur {
            if after.entries.contains_key(d) && !items.contains_key(d) {
                items.insert(d.to_string(), Item::Path);
            }
            cur = parent(d);
        }
    }
    items
}

fn xattrs_of(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(names) = xattr::list(path) else {
        return vec![];
    };
    let mut out: Vec<(String, Vec<u8>)> = names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n == "security.capability" || n.starts_with("user."))
        .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n, v)))
        .collect();
    out.sort();
    out
}

/// Write the difference between `before` and `after` into `w`.
/// `owner` maps an on-disk (uid, gid) and path to the image's (uid, gid).
pub fn write_diff(
    root: &Path,
    before: &Snapshot,
    after: &Snapshot,
    w: &mut LayerWriter,
    owner: &dyn Fn(&str, u32, u32) -> (u32, u32),
    clamp_mtime: Option<u64>,
) -> io::Result<DiffStats> {
    let items = changes(before, after);
    let mut stats = DiffStats::default();
    let mut first_link: HashMap<u64, String> = HashMap::new();
    for (p, item) in &items {
        match item {
            Item::Whiteout => {
                let (d, n) = match p.rsplit_once('/') {
                    Some((d, n)) => (Some(d), n),
                    None => (None, p.as_str()),
                };
                let victim = n.trim_start_matches(".wh.");
                w.whiteout(&match d {
                    Some(d) => format!("{d}/{victim}"),
                    None => victim.to_string(),
                })?;
                stats.whiteouts += 1;
            }
            Item::Opaque => {
                w.opaque(parent(p).unwrap_or(""))?;
                stats.opaque += 1;
            }
            Item::Path => {
                let Some(st) = after.entries.get(p) else {
                    continue;
                };
                let host = root.join(p);
                let (uid, gid) = owner(p, st.uid, st.gid);
                let mtime = st.mtime.0.max(0) as u64;
                let meta = Meta {
                    mode: st.mode,
                    uid,
                    gid,
                    mtime: clamp_mtime.map_or(mtime, |c| mtime.min(c)),
                    mtime_nsec: if clamp_mtime.is_some_and(|c| mtime > c) {
                        0
                    } else {
                        st.mtime.1.max(0) as u32
                    },
                };
                match st.kind {
                    Kind::Dir => {
                        w.xattrs(&xattrs_of(&host))?;
                        w.dir(p, &meta)?
                    }
                    Kind::File => {
                        if st.nlink > 1 {
                            if let Some(first) = first_link.get(&st.ino) {
                                w.hardlink(p, first, &meta)?;
                                stats.written += 1;
                                continue;
                            }
                            first_link.insert(st.ino, p.clone());
                        }
                        w.xattrs(&xattrs_of(&host))?;
                        let f = fs::File::open(&host)?;
                        w.file(
                            p,
                            &meta,
                            st.size,
                            io::BufReader::with_capacity(256 << 10, f),
                        )?
                    }
                    Kind::Symlink => {
                        let target = fs::read_link(&host)?;
                        w.symlink(p, &target.to_string_lossy(), &meta)?
                    }
                    Kind::Char | Kind::Block | Kind::Fifo => {
                        let kind = match st.kind {
                            Kind::Char => tar::EntryType::Char,
                            Kind::Block => tar::EntryType::Block,
                            _ => tar::EntryType::Fifo,
                        };
                        let (major, minor) = (
                            nix::sys::stat::major(st.rdev) as u32,
                            nix::sys::stat::minor(st.rdev) as u32,
                        );
                        w.device(p, kind, major, minor, &meta)?
                    }
                    Kind::Socket => continue,
                }
                stats.written += 1;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::io::Read;

    fn names(store: &Store, digest: &str) -> Vec<String> {
        let mut tar = Vec::new();
        crate::layer::open_tar(&store.blob_path(digest).unwrap())
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let kind = match e.header().entry_type() {
                    tar::EntryType::Link => " (link)",
                    _ => "",
                };
                format!("{}{kind}", e.path().unwrap().to_string_lossy())
            })
            .collect()
    }

    #[test]
    fn adds_modifications_deletions_opaque_and_hardlinks() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        for dir in ["etc", "keep", "gone/sub", "redo/old", "dev"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("etc/conf"), "a").unwrap();
        fs::write(root.join("keep/same"), "s").unwrap();
        fs::write(root.join("gone/sub/x"), "x").unwrap();
        fs::write(root.join("redo/old/y"), "y").unwrap();
        let before = walk(&root).unwrap();

        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(root.join("etc/conf"), "changed").unwrap();
        fs::write(root.join("etc/new"), "n").unwrap();
        fs::remove_dir_all(root.join("gone")).unwrap();
        fs::remove_dir_all(root.join("redo")).unwrap();
        fs::create_dir_all(root.join("redo")).unwrap();
        fs::write(root.join("redo/fresh"), "f").unwrap();
        fs::hard_link(root.join("etc/new"), root.join("etc/new-link")).unwrap();
        fs::write(root.join("dev/ignored"), "i").unwrap();
        let after = walk(&root).unwrap();

        let store = Store::open(&d.path().join("store")).unwrap();
        let mut w = LayerWriter::new(&store, 1).unwrap();
        let stats = write_diff(&root, &before, &after, &mut w, &|_, u, g| (u, g), None).unwrap();
        let layer = w.finish().unwrap();
        let got = names(&store, &layer.digest);
        assert!(got.contains(&"etc/conf".to_string()));
        assert!(got.contains(&"etc/new".to_string()));
        assert!(
            got.contains(&"etc/new-link (link)".to_string()),
            "hardlinks stay hardlinks: {got:?}"
        );
        assert!(got.contains(&".wh.gone".to_string()), "{got:?}");
        assert!(
            !got.iter().any(|n| n.contains("gone/sub")),
            "only the top of a deleted tree: {got:?}"
        );
        // A recreated directory is opaque when it got a new inode; when the
        // filesystem reused the inode, its old content is whited out instead.
        assert!(
            got.contains(&"redo/.wh..wh..opq".to_string())
                || got.contains(&"redo/.wh.old".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"redo/fresh".to_string()));
        assert!(
            !got.iter().any(|n| n.contains("keep/same")),
            "unchanged files are not written: {got:?}"
        );
        assert!(
            !got.iter().any(|n| n.starts_with("dev")),
            "kernel filesystems are excluded: {got:?}"
        );
        assert_eq!(stats.whiteouts + stats.opaque, 2, "{stats:?}");

        // Extended attributes travel with changed files (when the filesystem has them).
        let xa = root.join("etc/xattr-file");
        fs::write(&xa, "x").unwrap();
        let with_xattr = xattr::set(&xa, "user.kiln.test", b"v1").is_ok();
        let after2 = walk(&root).unwrap();
        let mut w = LayerWriter::new(&store, 1).unwrap();
        write_diff(&root, &after, &after2, &mut w, &|_, u, g| (u, g), None).unwrap();
        let layer2 = w.finish().unwrap();
        if with_xattr {
            let extracted = d.path().join("extracted");
            fs::create_dir_all(&extracted).unwrap();
            let tar = crate::layer::open_tar(&store.blob_path(&layer2.digest).unwrap()).unwrap();
            let privileged = nix::unistd::Uid::effective().is_root();
            crate::layer::extract::extract(tar, &extracted, privileged, &mut HashMap::new())
                .unwrap();
            if privileged {
                assert_eq!(
                    xattr::get(extracted.join("etc/xattr-file"), "user.kiln.test").unwrap(),
                    Some(b"v1".to_vec())
                );
            }
        }
        let after = after2;

        // No change: nothing to write.
        let again = walk(&root).unwrap();
        let mut w = LayerWriter::new(&store, 1).unwrap();
        assert!(
            write_diff(&root, &after, &again, &mut w, &|_, u, g| (u, g), None)
                .unwrap()
                .is_empty()
        );
    }
}
