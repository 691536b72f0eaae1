//! Blobs this process has put into repositories, per registry. Several builds in
//! one process (`kiln bake`: targets that share layers but not repositories)
//! would each upload a shared layer to their own repository; with the ledger,
//! the first uploads it and the others mount it from there. An upload of a blob
//! takes the blob's turn on its registry, so that a second push of the same
//! blob waits for the first and then mounts, rather than uploading alongside.
//!
//! The ledger only ever saves uploads: a mount the registry refuses falls back
//! to an upload, as it would without it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
struct Entry {
    turn: Arc<AsyncMutex<()>>,
    /// Repositories of the registry that have the blob, in the order they got it.
    repos: Vec<String>,
}

static LEDGER: LazyLock<Mutex<HashMap<(String, String), Entry>>> = LazyLock::new(Mutex::default);

fn with<T>(registry: &str, digest: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
    LEDGER.lock().ok().map(|mut l| {
        f(l.entry((registry.to_string(), digest.to_string()))
            .or_default())
    })
}

/// The right to upload `digest` to `registry` now. `waited`: another upload of
/// it held the turn first, so it may now be there to mount or find.
pub struct Turn {
    _guard: Option<OwnedMutexGuard<()>>,
    pub waited: bool,
}

pub async fn turn(registry: &str, digest: &str) -> Turn {
    let Some(lock) = with(registry, digest, |e| e.turn.clone()) else {
        return Turn {
            _guard: None,
            waited: false,
        };
    };
    match lock.clone().try_lock_owned() {
        Ok(g) => Turn {
            _guard: Some(g),
            waited: false,
        },
        Err(_) => Turn {
            _guard: Some(lock.lock_owned().await),
            waited: true,
        },
    }
}

/// The turn to upload `digest` to `registry`, if no one holds it now.
pub fn try_turn(registry: &str, digest: &str) -> Option<Turn> {
    let lock = with(registry, digest, |e| e.turn.clone())?;
    lock.try_lock_owned().ok().map(|g| Turn {
        _guard: Some(g),
        waited: false,
    })
}

/// `repository` of `registry` now has `digest`.
pub fn record(registry: &str, digest: &str, repository: &str) {
    with(registry, digest, |e| {
        if !e.repos.iter().any(|r| r == repository) {
            e.repos.push(repository.to_string());
        }
    });
}

/// Whether this process put `digest` into `repository` of `registry`.
pub fn has(registry: &str, digest: &str, repository: &str) -> bool {
    with(registry, digest, |e| {
        e.repos.iter().any(|r| r == repository)
    })
    .unwrap_or(false)
}

/// The repositories of `registry` this process put `digest` into, but
/// `except`: where a push of it can mount it from.
pub fn holders(registry: &str, digest: &str, except: &str) -> Vec<String> {
    with(registry, digest, |e| {
        e.repos
            .iter()
            .filter(|r| r.as_str() != except)
            .cloned()
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_upload_waits_for_the_first_then_sees_its_repository() {
        let (reg, d) = ("ledger-test.example:5000", "sha256:aa");
        let first = turn(reg, d).await;
        assert!(!first.waited);
        let second = tokio::spawn(async move {
            let t = turn(reg, d).await;
            (t.waited, holders(reg, d, "b"))
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the second push waits for the first");
        record(reg, d, "a");
        drop(first);
        let (waited, from) = second.await.unwrap();
        assert!(waited);
        assert_eq!(from, ["a"]);
        assert!(holders(reg, d, "a").is_empty(), "never a mount from itself");
        // Another registry, or another blob, is another ledger line.
        assert!(holders("other.example", d, "b").is_empty());
        assert!(holders(reg, "sha256:bb", "b").is_empty());
    }
}
