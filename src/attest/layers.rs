//! The scanners' edge: a layer's entries, as a layer writer produces them or
//! as a stored blob's tar stream gives them, reduced to [`LayerFacts`] by a
//! [`Collector`] (an image's layers are then merged by [`scan::merge`]).
//! Only metadata files are held, each up to [`scan::MAX_FILE`];
//! a layer's other bytes stream past.

use super::scan::{self, LayerFacts};
use std::collections::HashMap;
use std::io::{self, Read};

/// A tar entry's path as the scanners see it: relative, no `./`, no trailing `/`.
fn clean(raw: &str) -> &str {
    raw.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
}

/// Whether a file or link at `path` could stand where lower layers had a
/// directory of metadata files (`site-packages`, a package in `node_modules`,
/// `var/lib/dpkg`, …), so that what was under it is gone.
fn could_hide_metadata(path: &str) -> bool {
    const FIXED: &[&str] = &[
        "etc",
        "lib",
        "lib/apk",
        "lib/apk/db",
        "usr",
        "usr/lib",
        "usr/share",
        "usr/share/doc",
        "var",
        "var/lib",
        "var/lib/dpkg",
        "var/lib/dpkg/status.d",
    ];
    let name = path.rsplit('/').next().unwrap_or(path);
    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
    let parent_name = parent.rsplit('/').next().unwrap_or(parent);
    FIXED.contains(&path)
        || parent == "usr/share/doc"
        || name.ends_with(".dist-info")
        || name.ends_with(".egg-info")
        || matches!(name, "site-packages" | "dist-packages" | "node_modules")
        || parent_name == "node_modules"
        || (parent_name.starts_with('@') && parent.contains("node_modules"))
}

/// What kind of entry a layer holds at a path, for [`Collector::entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// A regular file that is not a metadata file (or was not read).
    File,
    Symlink,
    /// Any other non-directory entry (device, FIFO).
    Other,
}

impl Entry {
    /// The kind of a tar entry that is no hard link.
    pub fn of(ty: tar::EntryType) -> Entry {
        if ty.is_dir() {
            Entry::Dir
        } else if ty.is_file() {
            Entry::File
        } else if ty.is_symlink() {
            Entry::Symlink
        } else {
            Entry::Other
        }
    }
}

/// Reduces one layer's entries, in order, to its [`LayerFacts`].
#[derive(Debug, Default)]
pub struct Collector {
    facts: LayerFacts,
    /// Metadata files read in this layer, by path: a hard link to one reads the same.
    read_here: HashMap<String, usize>,
}

impl Collector {
    /// Whether the file at `path` is one the scanners read: the writer then
    /// hands its bytes to [`Collector::metadata`].
    pub fn wants(path: &str) -> bool {
        scan::interest(clean(path)).is_some()
    }

    /// A regular file of `size` bytes (whatever else is said of it), for the
    /// layer hints.
    pub fn file_size(&mut self, path: &str, size: u64) {
        self.facts.usage.file(clean(path), size);
    }

    /// A metadata file's bytes (the whole file, at most [`scan::MAX_FILE`]).
    pub fn metadata(&mut self, path: &str, bytes: &[u8]) {
        let path = clean(path);
        if let Some(kind) = scan::interest(path) {
            self.read_here
                .insert(path.to_string(), self.facts.files.len());
            self.facts.files.push(scan::parse(kind, path, bytes));
        }
    }

    /// A metadata file left unread because it is over [`scan::MAX_FILE`].
    pub fn too_big(&mut self, path: &str) {
        self.facts.too_big.push(clean(path).to_string());
    }

    /// `dir/.wh.name`, or `dir/.wh..wh..opq`: what a whiteout hides.
    /// Returns false when `path` is no whiteout.
    pub fn whiteout(&mut self, path: &str) -> bool {
        let path = clean(path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n),
            None => (String::new(), path),
        };
        if name == ".wh..wh..opq" {
            self.facts.opaque.push(parent);
            return true;
        }
        let Some(gone) = name.strip_prefix(".wh.") else {
            return false;
        };
        self.facts.removed.push(if parent.is_empty() {
            gone.to_string()
        } else {
            format!("{parent}/{gone}")
        });
        true
    }

    /// Whether a regular file's bytes are to be watched as they stream by: an
    /// executable for a Go program's build information, a Java archive for
    /// its Maven coordinates (a metadata file is read whole instead).
    pub fn watches(path: &str, mode: u32, size: u64) -> Option<Watching> {
        if Self::wants(path) {
            return None;
        }
        let go = mode & 0o111 != 0 && size >= scan::gobin::MIN_SIZE;
        let java = scan::java::is_archive(path) && size >= scan::java::MIN_SIZE;
        (go || java).then_some(Watching { go, java, size })
    }

    /// What a watched file turned out to hold: its packages, or nothing,
    /// which still replaces what a lower layer's file at `path` held.
    pub fn program(&mut self, path: &str, found: Vec<scan::Found>) {
        let path = clean(path).to_string();
        if found.is_empty() {
            self.facts.removed.push(path);
        } else {
            self.facts.files.push(scan::FileFacts {
                path,
                packages: found,
                os: None,
                licenses: vec![],
                unread: None,
            });
        }
    }

    /// A hard link at `path` to `target` (an earlier entry of this layer).
    pub fn hardlink(&mut self, path: &str, target: &str) {
        let path = clean(path);
        match self.read_here.get(clean(target)) {
            Some(&i) if scan::interest(path).is_some() => {
                let mut copy = self.facts.files[i].clone();
                copy.path = path.to_string();
                self.read_here
                    .insert(path.to_string(), self.facts.files.len());
                self.facts.files.push(copy);
            }
            _ => self.entry(path, Entry::File),
        }
    }

    /// Any other entry: what it puts at `path` may replace a metadata file, or
    /// a directory that held some.
    pub fn entry(&mut self, path: &str, kind: Entry) {
        if kind == Entry::Dir {
            return;
        }
        let path = clean(path);
        let replaces = scan::interest(path).is_some()
            || kind == Entry::Symlink
            || kind == Entry::Other
            || could_hide_metadata(path);
        if replaces {
            self.facts.removed.push(path.to_string());
        }
    }

    pub fn finish(self) -> LayerFacts {
        self.facts
    }
}

/// Which watchers a file's bytes go to: an executable's to the Go and the
/// cargo-auditable ones, a Java archive's to the Java one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watching {
    pub go: bool,
    pub java: bool,
    /// The file's size.
    pub size: u64,
}

/// A reader that shows the bytes it passes to the watchers: a Go program's
/// build information, a Rust program's cargo-auditable section, a Java
/// archive's entries.
pub struct Watch<R> {
    inner: R,
    go: Option<scan::gobin::Stream>,
    cargo: Option<scan::cargo::Stream>,
    java: Option<scan::java::Stream>,
}

impl<R: Read> Watch<R> {
    pub fn new(inner: R, w: Watching) -> Watch<R> {
        Watch {
            inner,
            go: w.go.then(Default::default),
            cargo: w.go.then(|| scan::cargo::Stream::new(w.size)),
            java: w.java.then(Default::default),
        }
    }

    pub fn finish(self) -> Vec<scan::Found> {
        let mut out = self.go.map(|g| g.finish()).unwrap_or_default();
        out.extend(self.cargo.map(|c| c.finish()).unwrap_or_default());
        out.extend(self.java.map(|j| j.finish()).unwrap_or_default());
        out
    }
}

impl<R: Read> Read for Watch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(g) = &mut self.go {
            g.feed(&buf[..n]);
        }
        if let Some(c) = &mut self.cargo {
            c.feed(&buf[..n]);
        }
        if let Some(j) = &mut self.java {
            j.feed(&buf[..n]);
        }
        Ok(n)
    }
}

/// What one layer's tar stream says.
pub fn scan_tar(tar: impl Read) -> io::Result<LayerFacts> {
    let mut c = Collector::default();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        if c.whiteout(&path) {
            continue;
        }
        let ty = entry.header().entry_type();
        let (mode, size) = (entry.header().mode()?, entry.header().size()?);
        if ty.is_file() {
            c.file_size(&path, size);
        }
        let watching = if ty.is_file() {
            Collector::watches(&path, mode, size)
        } else {
            None
        };
        if let Some(w) = watching {
            let mut watch = Watch::new(&mut entry, w);
            io::copy(&mut watch, &mut io::sink())?;
            c.program(&path, watch.finish());
        } else if ty.is_file() && Collector::wants(&path) {
            let size = entry.header().size()?;
            if size > scan::MAX_FILE {
                c.too_big(&path);
                continue;
            }
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut entry).take(scan::MAX_FILE).read_to_end(&mut bytes)?;
            c.metadata(&path, &bytes);
        } else if ty.is_hard_link() {
            let target = entry
                .link_name()?
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            c.hardlink(&path, &target);
        } else {
            c.entry(&path, Entry::of(ty));
        }
    }
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_layer_reads_metadata_whiteouts_and_replacements() {
        use tar::EntryType::*;
        let meta: &[u8] = b"Name: six\nVersion: 1.16.0\n";
        let lower = tar_of(&[
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Regular,
                meta,
                "",
            ),
            (
                "app/node_modules/ms/package.json",
                Regular,
                br#"{"name":"ms","version":"2.1.3"}"#,
                "",
            ),
            (
                "app/node_modules/left-pad/package.json",
                Regular,
                br#"{"name":"left-pad","version":"1.3.0"}"#,
                "",
            ),
            ("usr/bin/big", Regular, &[0u8; 4096], ""),
        ]);
        let f0 = scan_tar(&lower[..]).unwrap();
        assert_eq!(f0.files.len(), 3);
        assert!(f0.removed.is_empty(), "{:?}", f0.removed);
        let upper = tar_of(&[
            ("./app/node_modules/.wh.ms", Regular, b"", ""),
            ("usr/lib/python3/dist-packages", Symlink, b"", "/elsewhere"),
            (
                "app/node_modules/left-pad",
                Regular,
                b"not a dir any more",
                "",
            ),
            (
                "srv/site-packages/x-1.dist-info/METADATA",
                Regular,
                b"Name: x\nVersion: 1\n",
                "",
            ),
            (
                "srv/site-packages/y-1.dist-info/METADATA",
                Link,
                b"",
                "srv/site-packages/x-1.dist-info/METADATA",
            ),
            ("usr/bin/other", Regular, b"plain", ""),
        ]);
        let f1 = scan_tar(&upper[..]).unwrap();
        assert_eq!(
            f1.removed,
            [
                "app/node_modules/ms",
                "usr/lib/python3/dist-packages",
                "app/node_modules/left-pad"
            ]
        );
        assert_eq!(f1.files.len(), 2, "the hard link is read as its target");
        let inv = scan::merge([&f0, &f1]);
        let got: Vec<(&str, usize)> = inv
            .packages
            .iter()
            .map(|p| (p.path.as_str(), p.layer))
            .collect();
        assert_eq!(
            got,
            [
                ("srv/site-packages/x-1.dist-info/METADATA", 1),
                ("srv/site-packages/y-1.dist-info/METADATA", 1)
            ]
        );
    }
}
