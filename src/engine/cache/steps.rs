//! How one build uses the cache: the key of each layer step, looking keys up
//! (local index, then the registry cache repo, concurrently), recording what a
//! step built, and waiting for the background pushes at the end.
//!
//! It owns the build's hit and miss counts and the remembered digests of
//! context files. The key scheme and the two tiers' formats are in the parent
//! module; deciding what a hit means for a stage is the engine's.

use super::{Entry, FileDigests, KeyBuilder, LocalCache, RemoteCache};
use crate::engine::copy;
use crate::engine::copy_step::CopyPrep;
use crate::engine::plan::is_predefined_arg;
use crate::engine::run::RunPrep;
use crate::engine::session::Session;
use crate::image::Reference;
use crate::layer::BuiltLayer;
use crate::registry::Client;
use anyhow::Result;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A hit: the entry, and the cache repo its layer lives in (None: local).
pub type Hit = (Entry, Option<Reference>);

/// What a `COPY --from` reads, for the key: the source's kind and identity.
pub enum CopySource<'a> {
    Context,
    Stage(&'a str),
    Image(&'a str),
    /// ADD of a git repository: its URL, commit, subdir and `--keep-git-dir`.
    Git(&'a str),
    /// A named build context that is a directory.
    Dir(&'a std::path::Path),
}

#[derive(Default)]
pub struct StepCache {
    pub local: Option<LocalCache>,
    remote: Option<RemoteCache>,
    /// Cache entries being pushed to the registry cache repo.
    /// Each returns the layer digest it put in the cache repo.
    pushes: Vec<tokio::task::JoinHandle<std::result::Result<Option<String>, String>>>,
    /// Layers (digests) this build put in the cache repo, once [`StepCache::wait_pushes`] ran.
    pushed: std::collections::HashSet<String>,
    push_failures: usize,
    pub hits: usize,
    pub misses: usize,
    /// Remembered digests of context files (with the cache on).
    file_digests: Option<Arc<Mutex<FileDigests>>>,
    /// Their save, running while the outputs are pushed.
    saving: Option<tokio::task::JoinHandle<()>>,
    /// `kiln warm`: keys only matter when there is a cache repo to fetch from.
    warm: bool,
}

impl StepCache {
    /// The cache of a session: off, or the local index in the store, plus the
    /// cache repo when one is set.
    pub fn new(sess: &Session) -> Result<StepCache> {
        let req = sess.req;
        if !req.cache {
            return Ok(StepCache::default());
        }
        let mut c = StepCache {
            local: Some(LocalCache::new(&sess.store, req.cache_ttl_secs)?),
            file_digests: Some(Arc::new(Mutex::new(FileDigests::load(
                &sess.store,
                &req.context,
            )))),
            warm: req.warm,
            ..Default::default()
        };
        if let Some(repo) = &req.cache_repo {
            sess.client.declare(repo, true);
            c.remote = Some(RemoteCache {
                repo: repo.clone(),
                ttl_secs: req.cache_ttl_secs,
            });
        }
        Ok(c)
    }

    /// Whether steps get keys in this session.
    pub fn keyed(&self) -> bool {
        !((self.local.is_none() && self.remote.is_none()) || (self.warm && self.remote.is_none()))
    }

    /// The key of a COPY/ADD (see the parent module for the scheme), or None when
    /// caching is off. Hashes the selected context files.
    pub async fn copy_key(
        &self,
        sess: &Session<'_>,
        parent: &str,
        prep: &CopyPrep,
        source: CopySource<'_>,
    ) -> Result<Option<String>> {
        if !self.keyed() {
            return Ok(None);
        }
        let spec = &prep.spec;
        let mut k = KeyBuilder::new(parent, if spec.is_add { "ADD" } else { "COPY" });
        k.str(sess.codec().name());
        k.list(&spec.sources)
            .str(&spec.dest)
            .str(prep.chown.as_deref().unwrap_or(""))
            .str(&spec.chmod.as_ref().map(|m| m.key()).unwrap_or_default());
        for (name, content) in &spec.heredocs {
            k.str(name).str(content);
        }
        // Fields only when set, so the keys of steps without them stay valid.
        if !spec.exclude.is_empty() {
            k.str("exclude").list(&spec.exclude);
        }
        if spec.parents {
            k.str("parents");
        }
        // ADD's URLs: their content when fetched to key the step, or the
        // `--checksum` that promises it (then they are fetched only on a miss).
        match (&prep.fetched, &prep.checksum) {
            (Some((dir, names)), _) => {
                let (dir, names) = (dir.clone(), names.clone());
                let merkle = tokio::task::spawn_blocking(move || {
                    let sel = copy::Selection {
                        sources: &names,
                        chmod: None,
                        is_add: false,
                        exclude: &[],
                    };
                    copy::context_digest(&dir, &crate::dockerfile::Ignore::default(), &sel, None)
                })
                .await??;
                k.str("url").str(&merkle);
            }
            (None, Some(sum)) => {
                k.str("url").list(&prep.urls).str(sum);
            }
            (None, None) => {}
        }
        match source {
            // An ADD of URLs only reads nothing from the context.
            CopySource::Context if spec.sources.is_empty() && !prep.urls.is_empty() => {}
            CopySource::Context => {
                let merkle = self
                    .context_digest(
                        sess,
                        spec.sources.clone(),
                        spec.chmod.clone(),
                        spec.is_add,
                        spec.exclude.clone(),
                    )
                    .await?;
                k.str("context").str(&merkle);
            }
            CopySource::Stage(key) => {
                k.str("stage").str(key);
            }
            CopySource::Image(key) => {
                k.str("image").str(key);
            }
            CopySource::Git(id) => {
                k.str("git").str(id);
            }
            CopySource::Dir(dir) => {
                let (dir, sources, chmod, is_add, exclude) = (
                    dir.to_path_buf(),
                    spec.sources.clone(),
                    spec.chmod.clone(),
                    spec.is_add,
                    spec.exclude.clone(),
                );
                let merkle = tokio::task::spawn_blocking(move || {
                    let sel = copy::Selection {
                        sources: &sources,
                        chmod: chmod.as_ref(),
                        is_add,
                        exclude: &exclude,
                    };
                    copy::context_digest(&dir, &crate::dockerfile::Ignore::default(), &sel, None)
                })
                .await??;
                k.str("dir").str(&merkle);
            }
        }
        Ok(Some(k.finish()))
    }

    /// The Merkle digest of context paths (see [`copy::context_digest`]), with
    /// the remembered digests of unchanged files.
    pub async fn context_digest(
        &self,
        sess: &Session<'_>,
        sources: Vec<String>,
        chmod: Option<crate::engine::chmod::Chmod>,
        is_add: bool,
        exclude: Vec<String>,
    ) -> Result<String> {
        let (dir, ignore) = (sess.req.context.clone(), sess.ignore.clone());
        let digests = self.file_digests.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let mut guard = digests.as_ref().and_then(|d| d.lock().ok());
            let sel = copy::Selection {
                sources: &sources,
                chmod: chmod.as_ref(),
                is_add,
                exclude: &exclude,
            };
            copy::context_digest(&dir, &ignore, &sel, guard.as_deref_mut())
        })
        .await??)
    }

    /// The Merkle digest of `source` in a named directory context, or None
    /// when caching is off.
    pub async fn dir_digest(
        &self,
        dir: std::path::PathBuf,
        source: String,
    ) -> Result<Option<String>> {
        if !self.keyed() {
            return Ok(None);
        }
        let rel = source.trim_start_matches('/');
        let rel = if rel.is_empty() {
            ".".to_string()
        } else {
            rel.to_string()
        };
        Ok(Some(
            tokio::task::spawn_blocking(move || {
                let sources = [rel];
                let sel = copy::Selection {
                    sources: &sources,
                    chmod: None,
                    is_add: false,
                    exclude: &[],
                };
                copy::context_digest(&dir, &crate::dockerfile::Ignore::default(), &sel, None)
            })
            .await??,
        ))
    }

    /// What `RUN --mount`s add to a key: each mount's options, and for a bind
    /// mount what it shows (the context's content, or the source stage's key),
    /// so that a step reruns when its mounted input changes. A cache's content
    /// and a secret's value are never part of it. None when caching is off.
    pub async fn mount_keys(
        &self,
        sess: &Session<'_>,
        mounts: &[crate::engine::mounts::MountSpec],
        from_keys: &[Option<String>],
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if !self.keyed() {
            return Ok(out);
        }
        for (m, from) in mounts.iter().zip(from_keys) {
            out.push(m.key());
            match (&m.kind, from) {
                (_, Some(k)) => out.push(format!("from:{k}")),
                (crate::engine::mounts::Kind::Bind { source, .. }, None) => {
                    let rel = source.trim_start_matches('/');
                    let rel = if rel.is_empty() { "." } else { rel };
                    let d = self
                        .context_digest(sess, vec![rel.to_string()], None, false, vec![])
                        .await?;
                    out.push(format!("context:{d}"));
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// The key of a RUN, or None when caching is off.
    pub fn run_key(&self, sess: &Session, parent: &str, prep: &RunPrep) -> Option<String> {
        if !self.keyed() {
            return None;
        }
        let mut k = KeyBuilder::new(parent, "RUN");
        k.str(sess.codec().name());
        // Proxy variables are left out, as Docker does: they do not change results.
        let mut vars: Vec<String> = prep
            .env
            .iter()
            .filter(|(k, _)| !is_predefined_arg(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vars.sort();
        k.list(&prep.argv)
            .list(&vars)
            .str(&prep.user)
            .str(&prep.workdir);
        // A step without network may build something else (BuildKit keys it too);
        // the default adds no field, so existing keys stay valid.
        if prep.network_none {
            k.str("network=none");
        }
        if !prep.mount_keys.is_empty() {
            k.str("mounts").list(&prep.mount_keys);
        }
        if let Some(script) = &prep.script {
            k.str("script").str(script);
        }
        Some(k.finish())
    }

    /// The key of a WORKDIR's `mkdir -p`: the directory and the USER that owns
    /// what it creates.
    pub fn workdir_key(
        &self,
        sess: &Session,
        parent: &str,
        prep: &crate::engine::workdir_step::WorkdirPrep,
    ) -> Option<String> {
        if !self.keyed() {
            return None;
        }
        let mut k = KeyBuilder::new(parent, "WORKDIR");
        k.str(sess.codec().name())
            .str(&prep.dir)
            .str(prep.user.as_deref().unwrap_or(""));
        Some(k.finish())
    }

    /// Look up keys: the local index first, then the registry cache repo, concurrently.
    pub async fn lookup(&self, client: &Client, keys: &[String]) -> HashMap<String, Hit> {
        let mut found = HashMap::new();
        let mut remote_keys = Vec::new();
        for k in keys {
            match self.local.as_ref().and_then(|c| c.get(k)) {
                Some(e) => {
                    found.insert(k.clone(), (e, None));
                }
                None => remote_keys.push(k.clone()),
            }
        }
        if let Some(remote) = &self.remote {
            let results = futures_util::future::join_all(
                remote_keys
                    .iter()
                    .map(|k| async move { (k.clone(), remote.get(client, k).await) }),
            )
            .await;
            for (k, e) in results {
                if let Some(e) = e {
                    found.insert(k, (e, Some(remote.repo.clone())));
                }
            }
        }
        found
    }

    /// `kiln warm`: bring a hit into the cache dir (its entry, and its blob from
    /// the cache repo).
    pub async fn warm(&mut self, sess: &Session<'_>, key: &str, hit: &Hit) -> Result<()> {
        self.hits += 1;
        let (entry, origin) = hit;
        if let (Some(l), Some(o)) = (&entry.layer, origin) {
            sess.client.fetch_blob(o, &l.digest, &sess.store).await?;
        }
        if let Some(local) = &self.local {
            local.put(key, entry)?;
        }
        Ok(())
    }

    /// Write a cache entry locally, and push it to the cache repo in the background.
    pub fn record(
        &mut self,
        sess: &Session,
        key: &str,
        created_by: &str,
        built: Option<&BuiltLayer>,
    ) {
        let entry = Entry {
            layer: built.map(|l| super::CachedLayer {
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                facts: super::CachedLayer::small_facts(l.facts.as_ref()),
            }),
            created_by: created_by.to_string(),
            created: super::now_secs(),
        };
        if let Some(local) = &self.local {
            if let Err(e) = local.put(key, &entry) {
                sess.report.warn(&format!(
                    "could not write the cache entry for {created_by}: {e}"
                ));
            }
        }
        if let Some(remote) = self.remote.clone().filter(|_| !sess.req.no_push_cache) {
            let client = sess.client.clone();
            let path = built.and_then(|l| sess.store.blob_path(&l.digest).ok());
            let key = key.to_string();
            self.pushes.push(tokio::spawn(async move {
                remote
                    .put(&client, &key, &entry, path.as_deref())
                    .await
                    .map(|()| entry.layer.map(|l| l.digest))
                    .map_err(|e| format!("{e}"))
            }));
        }
    }

    /// Keep the context file digests for the next build (best effort), on a
    /// thread of their own: a new runner writes tens of thousands while its
    /// outputs go out. [`StepCache::saved`] waits for it.
    pub fn save_file_digests(&mut self, sess: &Session) {
        let Some(d) = self.file_digests.clone() else {
            return;
        };
        let (store, context) = (sess.store.clone(), sess.req.context.clone());
        self.saving = Some(tokio::task::spawn_blocking(move || {
            if let Ok(d) = d.lock() {
                if let Err(e) = d.save(&store, &context) {
                    tracing::warn!("could not save context file digests: {e}");
                }
            }
        }));
    }

    /// Wait for [`StepCache::save_file_digests`].
    pub async fn saved(&mut self) {
        if let Some(h) = self.saving.take() {
            let _ = h.await;
        }
    }

    /// The cache repo this build pushes cache entries to, if it does.
    pub fn push_repo(&self, no_push_cache: bool) -> Option<&Reference> {
        self.remote
            .as_ref()
            .filter(|_| !no_push_cache)
            .map(|r| &r.repo)
    }

    /// Wait for the background pushes to the cache repo: then the outputs can
    /// mount those layers instead of uploading them a second time. A failure is
    /// a warning, never a failed build.
    pub async fn wait_pushes(&mut self, sess: &Session<'_>) {
        for p in std::mem::take(&mut self.pushes) {
            match p.await {
                Ok(Ok(Some(digest))) => {
                    self.pushed.insert(digest);
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    self.push_failures += 1;
                    if self.push_failures == 1 {
                        sess.report
                            .warn(&format!("could not push a cache entry: {e}"));
                    }
                }
                Err(e) => sess.report.warn(&format!("cache push task failed: {e}")),
            }
        }
    }

    /// The cache repo, when it holds `digest` because this build put it there.
    pub fn holds(&self, digest: &str) -> Option<&Reference> {
        self.remote
            .as_ref()
            .filter(|_| self.pushed.contains(digest))
            .map(|r| &r.repo)
    }

    pub async fn finish(&mut self, sess: &Session<'_>) {
        let report = sess.report;
        self.saved().await;
        self.wait_pushes(sess).await;
        let failed = self.push_failures;
        if failed > 1 {
            report.warn(&format!("{failed} cache entries could not be pushed"));
        }
        if self.local.is_some() {
            let c = sess.client.counters.snapshot();
            let who = match sess.req.label.as_str() {
                "" => String::new(),
                target => format!("{target}: "),
            };
            report.line(&format!(
                "{who}cache: {} hit{}, {} miss{}; {} uploaded, {} downloaded",
                self.hits,
                if self.hits == 1 { "" } else { "s" },
                self.misses,
                if self.misses == 1 { "" } else { "es" },
                crate::report::human_bytes(c.bytes_up),
                crate::report::human_bytes(c.bytes_down)
            ));
        }
    }
}
