//! Layers uploaded while the build still runs. Each layer of the image (a stage
//! on the target's FROM chain) that has no origin to mount it from is sent to the
//! first destination of each registry as soon as it is written, so the push at
//! the end finds it there and only the config and the tags are left. Blobs only:
//! tags come at the end, so a failed build tags nothing (and its unreferenced
//! blobs are the registry's garbage). On the registry the build pushes cache
//! entries to, layers go to the cache repo instead: its entries then find them
//! there, and the destinations mount them from it (each layer crosses the link
//! once, while it is written, rather than after it).
//!
//! A failed early upload is only logged: the push at the end uploads the blob.

use super::plan::{Base, Plan};
use super::session::Session;
use super::sink::PUSH_CONCURRENCY;
use crate::image::manifest::LayerDesc;
use crate::image::Reference;
use crate::layer::live::Tail;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// What the early uploads sent to one destination.
#[derive(Debug, Default)]
pub struct Sent {
    pub bytes: u64,
    /// The blobs' digests: the push need not ask for them again.
    pub digests: HashSet<String>,
}

/// [`Sent`] per destination (as `Reference::to_string`).
pub type EarlyStats = HashMap<String, Sent>;

/// An upload's outcome: (destination, digest, size, sent or already there).
type Outcome = (String, String, u64, Result<bool, String>);

pub struct EarlyPush {
    dests: Vec<Reference>,
    /// Stages whose layers end up in the image.
    stages: HashSet<usize>,
    offered: HashSet<String>,
    tasks: JoinSet<Outcome>,
    /// Uploads started by a layer writer (from its thread): see [`EarlyPush::arm`].
    live: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<Outcome>>>>,
    permits: Arc<Semaphore>,
}

/// A step's layer is being uploaded while it is written, if `taken`.
pub struct Armed {
    taken: Arc<AtomicBool>,
}

impl Armed {
    /// Whether the step's layer writer took the upload.
    pub fn taken(&self) -> bool {
        self.taken.load(Ordering::SeqCst)
    }
}

impl EarlyPush {
    /// Nothing happens unless the build pushes. `cache_repo`: the repository
    /// the build's cache entries are pushed to, if they are.
    pub fn new(
        sess: &Session,
        plan: &Plan,
        target: usize,
        cache_repo: Option<&Reference>,
    ) -> EarlyPush {
        let mut dests: Vec<Reference> = Vec::new();
        // KILN_EARLY_PUSH=0 leaves every upload to the end (ci/bench measures both).
        let off = std::env::var("KILN_EARLY_PUSH").is_ok_and(|v| v == "0");
        if !sess.req.no_push && !off {
            for d in &sess.req.destinations {
                let d = match cache_repo {
                    Some(c) if c.registry == d.registry => c,
                    _ => d,
                };
                if !dests.iter().any(|e| e.registry == d.registry) {
                    dests.push(d.clone());
                }
            }
        }
        // The target, the stage it is FROM, that one's, …
        let mut stages = HashSet::from([target]);
        let mut s = target;
        while let Ok(Base::Stage(j)) = plan.base(s) {
            if !stages.insert(j) {
                break;
            }
            s = j;
        }
        EarlyPush {
            dests,
            stages,
            offered: HashSet::new(),
            tasks: JoinSet::new(),
            live: Arc::default(),
            permits: Arc::new(Semaphore::new(PUSH_CONCURRENCY)),
        }
    }

    /// Before a step of `stage` that misses the cache: the layer it writes goes
    /// to the destinations while it is written (see [`crate::layer::live`]),
    /// rather than after. Its upload starts with the layer's first compressed
    /// bytes, so on a slow link the last layer is not left to the end. Call
    /// `sess.store.unannounce()` after the step.
    pub fn arm(&mut self, sess: &Session, stage: usize) -> Option<Armed> {
        if self.dests.is_empty() || !self.stages.contains(&stage) {
            return None;
        }
        let taken = Arc::new(AtomicBool::new(false));
        let (flag, live) = (taken.clone(), self.live.clone());
        let (client, dests, permits) = (
            sess.client.clone(),
            self.dests.clone(),
            self.permits.clone(),
        );
        let store = sess.store.clone();
        let rt = tokio::runtime::Handle::current();
        sess.store.announce(Box::new(move |tail: Tail| {
            flag.store(true, Ordering::SeqCst);
            for dest in dests {
                let (client, tail, permits, store) =
                    (client.clone(), tail.clone(), permits.clone(), store.clone());
                let task = rt.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let to = dest.to_string();
                    match client.push_blob_live(&dest, &tail).await {
                        Ok((digest, size)) => (to, digest, size, Ok(true)),
                        Err(e) => {
                            // The finished blob goes up from its file, as any other.
                            let Some((digest, size)) = tail.finished().await else {
                                return (to, String::new(), 0, Ok(false));
                            };
                            tracing::debug!("streamed upload of {digest} to {to} failed ({e}); uploading the finished blob");
                            let res = match store.blob_path(&digest) {
                                Ok(path) => client.push_blob(&dest, &digest, size, &path).await.map_err(|e| format!("{e}")),
                                Err(e) => Err(e.to_string()),
                            };
                            (to, digest, size, res)
                        }
                    }
                });
                if let Ok(mut l) = live.lock() {
                    l.push(task);
                }
            }
        }));
        Some(Armed { taken })
    }

    /// A layer stage `stage` now has; `origin`: where it can be mounted from;
    /// `live`: its upload already started while it was written.
    pub fn offer(
        &mut self,
        sess: &Session,
        stage: usize,
        layer: &LayerDesc,
        origin: Option<&Reference>,
        live: bool,
    ) {
        if origin.is_some()
            || !self.stages.contains(&stage)
            || !self.offered.insert(layer.digest.clone())
            || live
        {
            return;
        }
        let Ok(path) = sess.store.blob_path(&layer.digest) else {
            return;
        };
        for dest in &self.dests {
            let (client, dest, digest) = (sess.client.clone(), dest.clone(), layer.digest.clone());
            let (size, path, permits) = (layer.size, path.clone(), self.permits.clone());
            self.tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let res = client
                    .push_blob(&dest, &digest, size, &path)
                    .await
                    .map_err(|e| format!("{e}"));
                (dest.to_string(), digest, size, res)
            });
        }
    }

    /// Wait for the uploads under way; what they sent, per destination.
    pub async fn wait(&mut self) -> EarlyStats {
        let mut stats = EarlyStats::new();
        let live: Vec<_> = self
            .live
            .lock()
            .map(|mut l| l.drain(..).collect())
            .unwrap_or_default();
        for task in live {
            self.tasks.spawn(async move {
                task.await
                    .unwrap_or_else(|e| (String::new(), String::new(), 0, Err(e.to_string())))
            });
        }
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((dest, digest, size, Ok(true))) => {
                    let sent = stats.entry(dest).or_default();
                    sent.bytes += size;
                    sent.digests.insert(digest);
                }
                Ok((_, _, _, Ok(false))) => {}
                Ok((dest, _, _, Err(e))) => {
                    tracing::debug!("early upload to {dest} failed ({e}); the push uploads it")
                }
                Err(e) => tracing::debug!("early upload task: {e}"),
            }
        }
        stats
    }
}
