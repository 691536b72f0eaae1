//! Content-addressed build cache: keys, the local index, and the registry cache repo.
//! This module owns the key scheme and the formats of both tiers; `steps` owns how a
//! build uses them.
//!
//! # Cache keys
//!
//! Only steps that produce layers (COPY, ADD, RUN, and WORKDIR other than `/`) have keys. A key is the sha256 of
//! a sequence of **length-prefixed** fields (8-byte big-endian length, then the bytes),
//! so no two different field lists can hash alike however their contents look:
//!
//! 1. a version tag (`kiln-cache-v2`; v2 since COPY --from keeps owners, as
//!    BuildKit does, so v1 layers of the same steps hold other bytes);
//! 2. the parent: the key of the previous layer step of the stage, or for the first
//!    one the base: the platform-resolved manifest digest of the base image,
//!    `scratch/<platform>`, or the last key of the stage it builds on;
//! 3. the instruction kind and its arguments after variable expansion;
//! 4. RUN: the names and values of every ENV and ARG in scope (sorted), SHELL, USER and
//!    WORKDIR. An ARG's value thus enters at its first *use* (the first RUN that has
//!    it in scope), not at its declaration; a build-arg no step has in scope (declared
//!    later, or never) enters no key;
//! 5. COPY/ADD: the flags (`--from` as the source stage's last key or the source
//!    image's digest, `--chown`, `--chmod`), the absolute destination, and a Merkle digest
//!    over every selected source after `.dockerignore`: for each entry, in sorted order,
//!    its path relative to the source root, type, resulting mode and owner, and the
//!    sha256 of its content or its link target. mtimes are left out;
//! 6. WORKDIR: the directory and the USER that owns what it creates.
//!
//! Inputs that do not change the layer stay out: LABEL, EXPOSE, CMD and other
//! metadata; the owner of context files (COPY writes 0:0 or `--chown`).
//!
//! # Tiers
//!
//! - Local: `<cache-dir>/index/<key hex>.json` → [`Entry`]; layer blobs in the same
//!   content-addressed store. Writes are temp file + rename, so concurrent builds
//!   sharing the directory never see a half-written entry and need no lock.
//! - Registry: `<cache-repo>:kiln-v1-<key hex>`, a single-layer OCI image manifest
//!   whose config carries the entry; any OCI registry stores it and cleanup policies
//!   can expire it by tag.

pub mod steps;

use crate::digest::sha256_bytes;
use crate::image::manifest::{LayerDesc, OCI_CONFIG, OCI_MANIFEST};
use crate::image::Reference;
use crate::registry::Client;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io;
use std::path::PathBuf;

/// Builds a cache key from length-prefixed fields.
pub struct KeyBuilder(Sha256);

impl KeyBuilder {
    pub fn new(parent: &str, kind: &str) -> KeyBuilder {
        let mut k = KeyBuilder(Sha256::new());
        k.field(b"kiln-cache-v2");
        k.field(parent.as_bytes());
        k.field(kind.as_bytes());
        k
    }

    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.field(s.as_bytes())
    }

    /// A list, prefixed by its length so element boundaries stay unambiguous.
    pub fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.field(&(items.len() as u64).to_be_bytes());
        for i in items {
            self.str(i.as_ref());
        }
        self
    }

    pub fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finalize()))
    }
}

/// A cached step: the layer it produced (None when the step changed nothing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub layer: Option<CachedLayer>,
    pub created_by: String,
    /// Unix seconds when the entry was made (for `--cache-ttl`).
    pub created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
    /// The SBOM scanners' facts of the layer, when they are small (see
    /// [`CachedLayer::FACTS_MAX`]): a hit, on this runner or another, then
    /// needs no layer read for the SBOM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<crate::attest::scan::LayerFacts>,
}

impl CachedLayer {
    /// The most facts an entry carries, serialised: entries stay small (a
    /// registry cache entry's config is read whole).
    pub const FACTS_MAX: usize = 256 << 10;

    /// Facts worth keeping in an entry: `facts` if they are small enough.
    pub fn small_facts(
        facts: Option<&crate::attest::scan::LayerFacts>,
    ) -> Option<crate::attest::scan::LayerFacts> {
        let f = facts?;
        let n = serde_json::to_vec(f).map(|b| b.len()).unwrap_or(usize::MAX);
        (n <= Self::FACTS_MAX).then(|| f.clone())
    }

    pub fn desc(&self) -> LayerDesc {
        LayerDesc {
            digest: self.digest.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
            diff_id: self.diff_id.clone(),
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn key_hex(key: &str) -> &str {
    key.strip_prefix("sha256:").unwrap_or(key)
}

/// The local tier, inside the cache dir's store.
#[derive(Clone)]
pub struct LocalCache {
    store: Store,
    ttl_secs: u64,
}

impl LocalCache {
    pub fn new(store: &Store, ttl_secs: u64) -> io::Result<LocalCache> {
        std::fs::create_dir_all(store.root().join("index"))?;
        Ok(LocalCache {
            store: store.clone(),
            ttl_secs,
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.store
            .root()
            .join("index")
            .join(format!("{}.json", key_hex(key)))
    }

    /// A usable entry for `key`: present, younger than the TTL, and (if it has a
    /// layer) with its blob present and matching its digest. A corrupt blob or
    /// entry is discarded and reported, never used.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(_) => {
                tracing::warn!("discarding unreadable cache entry {key}");
                let _ = std::fs::remove_file(self.path(key));
                return None;
            }
        };
        if now_secs().saturating_sub(entry.created) > self.ttl_secs {
            return None;
        }
        if let Some(l) = &entry.layer {
            // A corrupt blob is discarded by the store: the step is rebuilt.
            if !matches!(self.store.verified_path(&l.digest), Ok(Some(_))) {
                let _ = std::fs::remove_file(self.path(key));
                return None;
            }
        }
        Some(entry)
    }

    /// Record an entry (atomically).
    pub fn put(&self, key: &str, entry: &Entry) -> io::Result<()> {
        let mut tmp = self.store.temp()?;
        io::Write::write_all(
            &mut tmp,
            &serde_json::to_vec(entry).map_err(io::Error::other)?,
        )?;
        tmp.persist(self.path(key)).map_err(|e| e.error)?;
        Ok(())
    }
}

/// A base image as resolved by an earlier pull or `kiln warm`, for offline builds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub reference: String,
    pub platform: String,
    /// The platform's manifest (its bytes are a blob in the store).
    pub manifest_digest: String,
    pub media_type: String,
    pub resolved: u64,
}

impl LocalCache {
    fn image_path(&self, reference: &str, platform: &str) -> PathBuf {
        let id = sha256_bytes(format!("{reference}\n{platform}").as_bytes());
        self.store
            .root()
            .join("images")
            .join(format!("{}.json", key_hex(&id)))
    }

    /// Remember how `reference` resolved for `platform`.
    pub fn record_image(&self, rec: &ImageRecord) -> io::Result<()> {
        let path = self.image_path(&rec.reference, &rec.platform);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = self.store.temp()?;
        io::Write::write_all(
            &mut tmp,
            &serde_json::to_vec(rec).map_err(io::Error::other)?,
        )?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    pub fn image(&self, reference: &str, platform: &str) -> Option<ImageRecord> {
        let bytes = std::fs::read(self.image_path(reference, platform)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Content digests of context files, remembered by their metadata (size, mtime,
/// ctime, inode), so warm builds do not re-hash unchanged files for COPY keys. ctime
/// cannot be set by a process, so an edit that restores size and mtime is still seen.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FileDigests {
    entries: std::collections::BTreeMap<String, (u64, i64, i64, u64, String)>,
    #[serde(skip)]
    dirty: bool,
}

impl FileDigests {
    fn path(store: &Store, context: &std::path::Path) -> PathBuf {
        let abs = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let id = sha256_bytes(abs.to_string_lossy().as_bytes());
        store
            .root()
            .join("digests")
            .join(format!("{}.json", key_hex(&id)))
    }

    /// The remembered digests for `context` (empty when there are none or they are unreadable).
    pub fn load(store: &Store, context: &std::path::Path) -> FileDigests {
        std::fs::read(Self::path(store, context))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, store: &Store, context: &std::path::Path) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let path = Self::path(store, context);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = store.temp()?;
        io::Write::write_all(
            &mut tmp,
            &serde_json::to_vec(self).map_err(io::Error::other)?,
        )?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    fn stat(md: &std::fs::Metadata) -> (u64, i64, i64, u64) {
        use std::os::unix::fs::MetadataExt;
        (
            md.size(),
            md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            md.ino(),
        )
    }

    /// The remembered digest of the file at `path`, when its metadata is unchanged.
    /// Only BLAKE3 digests: a memo written by a kiln that keyed with sha256 is
    /// hashed again, never mixed into a key.
    pub fn cached(&self, path: &std::path::Path, md: &std::fs::Metadata) -> Option<String> {
        let (size, mtime, ctime, ino, d) = self.entries.get(path.to_string_lossy().as_ref())?;
        ((*size, *mtime, *ctime, *ino) == Self::stat(md) && d.starts_with("blake3:"))
            .then(|| d.clone())
    }

    /// Remember the digest of the file at `path` with its metadata.
    pub fn remember(&mut self, path: &std::path::Path, md: &std::fs::Metadata, digest: &str) {
        let stat = Self::stat(md);
        self.entries.insert(
            path.to_string_lossy().into_owned(),
            (stat.0, stat.1, stat.2, stat.3, digest.to_string()),
        );
        self.dirty = true;
    }
}

/// The registry tier.
#[derive(Clone)]
pub struct RemoteCache {
    pub repo: Reference,
    pub ttl_secs: u64,
}

impl RemoteCache {
    pub fn tag(key: &str) -> String {
        format!("kiln-v1-{}", key_hex(key))
    }

    fn entry_ref(&self, key: &str) -> Reference {
        Reference {
            tag: Some(Self::tag(key)),
            digest: None,
            ..self.repo.clone()
        }
    }

    /// Look up one key: the entry, if the cache repo has a fresh one.
    pub async fn get(&self, client: &Client, key: &str) -> Option<Entry> {
        let r = self.entry_ref(key);
        let (bytes, _, _) = match client.get_manifest(&r).await {
            Ok(m) => m,
            Err(crate::registry::RegistryError::NotFound { .. }) => return None,
            Err(e) => {
                tracing::debug!("cache lookup {key} failed: {e}");
                return None;
            }
        };
        let m: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let config_digest = m.pointer("/config/digest")?.as_str()?.to_string();
        let path = client.fetch_small_blob(&r, &config_digest).await.ok()?;
        let config: serde_json::Value = serde_json::from_slice(&path).ok()?;
        let entry: Entry = serde_json::from_value(config.get("kiln.cache")?.clone()).ok()?;
        if now_secs().saturating_sub(entry.created) > self.ttl_secs {
            return None;
        }
        Some(entry)
    }

    /// Store an entry: the layer blob (if any), a config carrying the entry, and the
    /// tagged manifest.
    pub async fn put(
        &self,
        client: &Client,
        key: &str,
        entry: &Entry,
        layer_path: Option<&std::path::Path>,
    ) -> Result<(), crate::registry::RegistryError> {
        let r = self.entry_ref(key);
        let diff_ids: Vec<&str> = entry.layer.iter().map(|l| l.diff_id.as_str()).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": [{ "created_by": entry.created_by, "empty_layer": entry.layer.is_none() }],
            "kiln.cache": entry,
        });
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| crate::registry::RegistryError::Other(e.to_string()))?;
        let config_digest = sha256_bytes(&config_bytes);
        if let (Some(l), Some(p)) = (&entry.layer, layer_path) {
            client.push_blob(&r, &l.digest, l.size, p).await?;
        }
        client
            .push_blob_bytes(&r, &config_digest, &config_bytes)
            .await?;
        let layers: Vec<serde_json::Value> = entry
            .layer
            .iter()
            .map(|l| serde_json::json!({ "mediaType": crate::image::manifest::oci_layer_type(&l.media_type), "digest": l.digest, "size": l.size }))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len() },
            "layers": layers,
        });
        let mbytes = serde_json::to_vec(&manifest)
            .map_err(|e| crate::registry::RegistryError::Other(e.to_string()))?;
        client
            .put_manifest(&r, &Self::tag(key), &mbytes, OCI_MANIFEST)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixing_prevents_collisions() {
        let a = {
            let mut k = KeyBuilder::new("p", "RUN");
            k.str("ab").str("c");
            k.finish()
        };
        let b = {
            let mut k = KeyBuilder::new("p", "RUN");
            k.str("a").str("bc");
            k.finish()
        };
        assert_ne!(a, b, "field boundaries matter");
        let c = {
            let mut k = KeyBuilder::new("p", "RUN");
            k.list(&["a=b", "c"]);
            k.finish()
        };
        let d = {
            let mut k = KeyBuilder::new("p", "RUN");
            k.list(&["a", "b=c"]);
            k.finish()
        };
        assert_ne!(c, d);
    }

    #[test]
    fn file_digests_see_edits_that_restore_size_and_mtime() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        let f = d.path().join("file");
        std::fs::write(&f, b"aaaa").unwrap();
        let mut digests = FileDigests::load(&store, d.path());
        let first = format!("blake3:{}", blake3::hash(b"aaaa").to_hex());
        assert_eq!(digests.cached(&f, &std::fs::metadata(&f).unwrap()), None);
        // A memo of an earlier kiln (sha256 keys) is not mixed into BLAKE3 keys.
        digests.remember(&f, &std::fs::metadata(&f).unwrap(), &sha256_bytes(b"aaaa"));
        assert_eq!(digests.cached(&f, &std::fs::metadata(&f).unwrap()), None);
        digests.remember(&f, &std::fs::metadata(&f).unwrap(), &first);
        digests.save(&store, d.path()).unwrap();
        let digests = FileDigests::load(&store, d.path());
        assert_eq!(
            digests.cached(&f, &std::fs::metadata(&f).unwrap()),
            Some(first),
            "remembered across builds"
        );
        // Same size, mtime put back: ctime still moves, so the edit is seen.
        let md = std::fs::metadata(&f).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"bbbb").unwrap();
        let t = nix::sys::time::TimeSpec::new(md.mtime(), md.mtime_nsec());
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &f,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .unwrap();
        assert_eq!(
            digests.cached(&f, &std::fs::metadata(&f).unwrap()),
            None,
            "the edit is seen: the file is hashed again"
        );
    }

    #[test]
    fn local_entries_ttl_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let blob = store.put_bytes(b"layer bytes").unwrap();
        let cache = LocalCache::new(&store, 3600).unwrap();
        let entry = Entry {
            layer: Some(CachedLayer {
                digest: blob.clone(),
                diff_id: blob.clone(),
                size: 11,
                media_type: "x".into(),
                facts: None,
            }),
            created_by: "RUN x".into(),
            created: now_secs(),
        };
        cache.put("sha256:aa", &entry).unwrap();
        assert_eq!(cache.get("sha256:aa"), Some(entry.clone()));
        let old = Entry {
            created: now_secs() - 7200,
            ..entry.clone()
        };
        cache.put("sha256:bb", &old).unwrap();
        assert_eq!(cache.get("sha256:bb"), None, "older than the TTL");
        // Corrupted between builds: the next build (a new store handle) re-hashes
        // it on first use.
        std::fs::write(store.blob_path(&blob).unwrap(), b"corrupted!!").unwrap();
        let next = Store::open(d.path()).unwrap();
        let cache = LocalCache::new(&next, 3600).unwrap();
        assert_eq!(cache.get("sha256:aa"), None, "a corrupt blob is never used");
        assert!(!next.has(&blob), "and is discarded");
    }
}
