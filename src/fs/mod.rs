//! Stage root filesystems: a directory in kiln's work dir, built by applying the
//! stage's layers in order, only when a step needs to look inside.

pub mod pwalk;
pub mod resolve;
pub mod snapshot;
pub mod tree;
pub mod workdir;

use crate::layer::{extract, open_tar, BuiltLayer, LayerWriter, Meta};
use crate::store::Store;
use resolve::{host_path, Confine};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// True when kiln may chown and mknod (root, or root in a user namespace).
pub fn privileged() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    privileged: bool,
    /// Owner and mode as the image says, for entries kiln could not chown (unprivileged).
    recorded: HashMap<String, Meta>,
    /// How many of the stage's layers have been applied.
    pub applied: usize,
    /// Metadata walk taken before the next RUN (see [`snapshot`]).
    baseline: Option<snapshot::Snapshot>,
    /// Paths whose ctime kiln moved during the RUN being committed.
    kiln_touched: std::collections::HashSet<String>,
}

impl Rootfs {
    pub fn create(dir: &Path) -> io::Result<Rootfs> {
        fs::create_dir_all(dir)?;
        Ok(Rootfs {
            dir: dir.to_path_buf(),
            privileged: privileged(),
            recorded: HashMap::new(),
            applied: 0,
            baseline: None,
            kiln_touched: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Apply one layer blob (any supported compression).
    pub fn apply(&mut self, blob: &Path) -> io::Result<()> {
        self.apply_stream(open_tar(blob)?)
    }

    /// Apply a base image's layer, checking while it streams that its content is
    /// the `diff_id` its image config claims: an image whose diffIDs lie is
    /// refused (containerd refuses it too), rather than copied into kiln's output.
    pub fn apply_verified(&mut self, blob: &Path, diff_id: &str) -> io::Result<()> {
        let mut tar = crate::digest::HashReader::new(open_tar(blob)?);
        self.apply_stream(&mut tar)?;
        let got = tar.digest();
        if got != diff_id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("its content is {got}, but the image config says diffID {diff_id}"),
            ));
        }
        Ok(())
    }

    /// Apply one layer from its uncompressed tar stream, read to the end.
    pub fn apply_stream(&mut self, mut tar: impl io::Read) -> io::Result<()> {
        self.baseline = None;
        let stats = extract::extract(&mut tar, &self.dir, self.privileged, &mut self.recorded)?;
        // The archive's end-of-archive padding: drain it so a writer feeding this
        // stream never finds the reader gone.
        io::copy(&mut tar, &mut io::sink())?;
        if stats.skipped_devices > 0 {
            tracing::warn!(
                "{} device node(s) skipped: not permitted here",
                stats.skipped_devices
            );
        }
        self.applied += 1;
        Ok(())
    }

    /// Apply a layer over the baseline taken before it, so that the next
    /// [`Rootfs::commit_changes`] diffs against what was there before it
    /// (`--single-snapshot`: every step's layer in one).
    pub fn apply_over_baseline(&mut self, blob: &Path) -> io::Result<()> {
        let baseline = self.baseline.take();
        self.apply(blob)?;
        self.baseline = baseline;
        Ok(())
    }

    /// Take the metadata walk a RUN's changes are compared with (kept from the
    /// previous RUN when nothing was applied since).
    pub fn ensure_baseline(&mut self) -> io::Result<()> {
        if self.baseline.is_none() {
            self.baseline = Some(snapshot::walk(&self.dir)?);
        }
        Ok(())
    }

    /// Paths (relative to the root) whose ctime kiln itself moved while a RUN
    /// ran, for the next [`Rootfs::commit_changes`].
    pub fn kiln_touched(&mut self, paths: &[String]) {
        self.kiln_touched.extend(paths.iter().cloned());
    }

    /// Turn what changed since [`Rootfs::ensure_baseline`] into a layer; `None`
    /// when nothing changed. The rootfs already holds the change, so the layer
    /// counts as applied.
    pub fn commit_changes(
        &mut self,
        store: &Store,
        codec: crate::layer::Codec,
        clamp_mtime: Option<u64>,
    ) -> io::Result<Option<BuiltLayer>> {
        let before = match self.baseline.take() {
            Some(b) => b,
            None => {
                return Err(io::Error::other(
                    "no baseline snapshot was taken before RUN",
                ))
            }
        };
        let mut after = snapshot::walk(&self.dir)?;
        after.kiln_touched = std::mem::take(&mut self.kiln_touched);
        let owner = |p: &str, uid: u32, gid: u32| self.owner(p, uid, gid);
        let mut w = LayerWriter::new(store, codec)?;
        let stats = snapshot::write_diff(&self.dir, &before, &after, &mut w, &owner, clamp_mtime)?;
        self.baseline = Some(after);
        if stats.is_empty() {
            return Ok(None);
        }
        let layer = w.finish()?;
        self.applied += 1;
        Ok(Some(layer))
    }

    /// The owner the image gives `rel` (relative to the root), whose owner on
    /// disk is `uid:gid`.
    pub fn owner(&self, rel: &str, uid: u32, gid: u32) -> (u32, u32) {
        let me = nix::unistd::Uid::effective().as_raw();
        match self.recorded.get(rel) {
            // Privileged, the record holds only ids the namespace cannot map; a
            // step that chowned such a file changed its owner on disk.
            Some(_) if self.privileged && uid != me => (uid, gid),
            Some(m) => (m.uid, m.gid),
            None if self.privileged => (uid, gid),
            // Unprivileged (user namespace): our own uid is root inside.
            None if uid == me => (0, 0),
            None => (uid, gid),
        }
    }

    /// Resolve an absolute image path as a container would see it.
    pub fn resolve(&self, path: &str, follow_last: bool) -> io::Result<String> {
        resolve::resolve(&self.dir, path, follow_last, Confine::Clamp).map_err(|e| match e {
            resolve::ResolveError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    }

    pub fn host(&self, rel: &str) -> PathBuf {
        host_path(&self.dir, rel)
    }

    /// Metadata of a resolved path: the file type from disk, owner and mode as the
    /// image says.
    pub fn stat(&self, rel: &str) -> Option<(fs::Metadata, Meta)> {
        let md = fs::symlink_metadata(self.host(rel)).ok()?;
        let meta = self.recorded.get(rel).copied().unwrap_or(Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime().max(0) as u64,
            mtime_nsec: md.mtime_nsec() as u32,
        });
        Some((md, meta))
    }

    fn read_etc(&self, path: &str) -> String {
        self.resolve(path, true)
            .ok()
            .and_then(|rel| fs::read_to_string(self.host(&rel)).ok())
            .unwrap_or_default()
    }

    /// The `/etc/passwd` entry for a name or numeric uid: (name, uid, gid, home).
    pub fn passwd_entry(&self, user: &str) -> Option<(String, u32, u32, String)> {
        self.read_etc("/etc/passwd").lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            let uid: u32 = f[2].parse().ok()?;
            if f[0] == user || user.parse::<u32>().ok() == Some(uid) {
                Some((f[0].to_string(), uid, f[3].parse().ok()?, f[5].to_string()))
            } else {
                None
            }
        })
    }

    /// Groups in `/etc/group` that list `user` as a member.
    pub fn supplementary_groups(&self, user: &str) -> Vec<u32> {
        self.read_etc("/etc/group")
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                if f.len() >= 4 && f[3].split(',').any(|m| m.trim() == user) {
                    f[2].parse().ok()
                } else {
                    None
                }
            })
            .collect()
    }

    /// Look a user name up in the rootfs's `/etc/passwd`: (uid, primary gid).
    pub fn lookup_user(&self, name: &str) -> Option<(u32, u32)> {
        self.read_etc("/etc/passwd").lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[0] == name {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    }

    /// Primary gid of a uid in `/etc/passwd`.
    pub fn primary_gid(&self, uid: u32) -> Option<u32> {
        self.read_etc("/etc/passwd").lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[2].parse::<u32>().ok()? == uid {
                f[3].parse().ok()
            } else {
                None
            }
        })
    }

    pub fn lookup_group(&self, name: &str) -> Option<u32> {
        self.read_etc("/etc/group").lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 3 && f[0] == name {
                f[2].parse().ok()
            } else {
                None
            }
        })
    }
}
