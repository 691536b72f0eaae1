//! One build of each step per run, when several targets build at once
//! (`kiln bake`): a step that misses the cache takes its key's flight first.
//! A second target missing the same key waits for the first, then finds its
//! layer in the (shared) cache instead of building it again. Who built what
//! is kept, so the bake's summary can say which targets shared a step.
//!
//! Keys are namespaced by cache dir: builds with different caches never wait
//! on each other.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// A bake target's share of `--jobs`: held while the target works, given
/// back while it waits on a step another target is building, so that a
/// target which only waits does not keep a third one from starting.
#[derive(Debug, Clone)]
pub struct JobSlot {
    jobs: Arc<Semaphore>,
    held: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
}

impl JobSlot {
    pub fn new(jobs: Arc<Semaphore>) -> JobSlot {
        JobSlot {
            jobs,
            held: Arc::default(),
        }
    }

    /// Take a share (waiting for one), unless this slot has it.
    pub async fn acquire(&self) {
        if self.held.lock().map(|h| h.is_some()).unwrap_or(true) {
            return;
        }
        // A closed semaphore (never closed here) would mean: run unlimited.
        let permit = self.jobs.clone().acquire_owned().await.ok();
        if let Ok(mut h) = self.held.lock() {
            *h = permit;
        }
    }

    /// Give the share back.
    pub fn release(&self) {
        if let Ok(mut h) = self.held.lock() {
            h.take();
        }
    }
}

#[derive(Default)]
struct Flights {
    locks: HashMap<String, Arc<AsyncMutex<()>>>,
    /// key → the label of the build that built it in this process.
    built_by: HashMap<String, String>,
    /// (label of the build that reused, label of the builder, step text).
    shared: Vec<(String, String, String)>,
}

static FLIGHTS: LazyLock<Mutex<Flights>> = LazyLock::new(Mutex::default);

fn with<T>(f: impl FnOnce(&mut Flights) -> T) -> Option<T> {
    FLIGHTS.lock().ok().map(|mut g| f(&mut g))
}

fn slot(cache_dir: &std::path::Path, key: &str) -> String {
    format!("{}\0{key}", cache_dir.display())
}

/// The right to build `key`. `waited`: another build held it first (so the
/// cache may now have the step).
pub struct Ticket {
    _guard: Option<OwnedMutexGuard<()>>,
    pub waited: bool,
}

pub async fn take(cache_dir: &std::path::Path, key: &str, job: Option<&JobSlot>) -> Ticket {
    let Some(lock) = with(|f| {
        f.locks
            .entry(slot(cache_dir, key))
            .or_insert_with(|| Arc::new(AsyncMutex::new(())))
            .clone()
    }) else {
        return Ticket {
            _guard: None,
            waited: false,
        };
    };
    match lock.clone().try_lock_owned() {
        Ok(g) => Ticket {
            _guard: Some(g),
            waited: false,
        },
        Err(_) => {
            if let Some(j) = job {
                j.release();
            }
            let guard = lock.lock_owned().await;
            if let Some(j) = job {
                j.acquire().await;
            }
            Ticket {
                _guard: Some(guard),
                waited: true,
            }
        }
    }
}

/// `label` built `key`.
pub fn built(cache_dir: &std::path::Path, key: &str, label: &str) {
    with(|f| f.built_by.insert(slot(cache_dir, key), label.to_string()));
}

/// `label` found `key` in the cache: if another build of this process made
/// it, remember that they shared it.
pub fn reused(cache_dir: &std::path::Path, key: &str, label: &str, step: &str) {
    with(|f| {
        if let Some(by) = f.built_by.get(&slot(cache_dir, key)).cloned() {
            if by != label {
                f.shared.push((label.to_string(), by, step.to_string()));
            }
        }
    });
}

/// Every (reuser, builder, step) so far, and forget them.
pub fn take_shared() -> Vec<(String, String, String)> {
    with(|f| std::mem::take(&mut f.shared)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[tokio::test]
    async fn a_second_taker_waits_and_knows_it_waited() {
        let dir = Path::new("/nonexistent/flight-test");
        let first = take(dir, "k1", None).await;
        assert!(!first.waited);
        let second = tokio::spawn(async move { take(dir, "k1", None).await.waited });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "the second taker must wait");
        built(dir, "k1", "app");
        drop(first);
        assert!(second.await.unwrap());
        reused(dir, "k1", "worker", "RUN make");
        reused(dir, "k1", "app", "RUN make");
        let other = take(Path::new("/nonexistent/other"), "k1", None).await;
        assert!(!other.waited, "another cache dir never waits");
        let shared = take_shared();
        assert!(
            shared.contains(&("worker".into(), "app".into(), "RUN make".into())),
            "{shared:?}"
        );
        assert!(!shared.iter().any(|s| s.0 == "app"), "{shared:?}");
    }

    #[tokio::test]
    async fn a_waiting_taker_gives_its_job_back_until_its_turn() {
        let dir = Path::new("/nonexistent/flight-jobs");
        let jobs = Arc::new(Semaphore::new(2));
        let (a, b) = (JobSlot::new(jobs.clone()), JobSlot::new(jobs.clone()));
        a.acquire().await;
        b.acquire().await;
        assert_eq!(jobs.available_permits(), 0);
        let first = take(dir, "k", Some(&a)).await;
        let b2 = b.clone();
        let second = tokio::spawn(async move { take(dir, "k", Some(&b2)).await.waited });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // b waits on a's step: a third target may run meanwhile.
        assert_eq!(jobs.available_permits(), 1);
        drop(first);
        assert!(second.await.unwrap());
        assert_eq!(
            jobs.available_permits(),
            0,
            "b works again: it holds its job"
        );
        b.release();
        a.release();
        assert_eq!(jobs.available_permits(), 2);
    }
}
