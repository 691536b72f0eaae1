//! A layer blob read while it is still being written: the compressed bytes a
//! [`LayerWriter`](super::LayerWriter) has put into its temporary file so far,
//! then, once the writer has sealed it, the blob's digest. An upload can start
//! with a layer's first bytes instead of after its last one; a slow link then
//! carries the layer while it is compressed.
//!
//! The writer side ([`Published`]) counts what reached the file and says so on a
//! watch channel; the reader side ([`Tail`]) reads the file with positioned reads
//! (so every copy reads on its own) up to what was published, and waits for more.
//! A writer dropped before sealing (a failed step, a step with no changes) closes
//! the channel, and a reader gets an error.

use futures_util::Stream;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Called with the blob's digest on the writer's thread as it seals the blob.
pub type OnSeal = Box<dyn FnOnce(&str) + Send>;

/// What runs when the blob is sealed, or the digest it was sealed with.
#[derive(Default)]
enum Sealing {
    #[default]
    Open,
    Waiting(Vec<OnSeal>),
    Sealed(String),
}

/// What the writer has done so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// This many bytes are in the file.
    Writing(u64),
    /// Sealed: the blob is complete.
    Done { digest: String, size: u64 },
}

/// A writer that publishes how many bytes went through it.
pub struct Published<W> {
    inner: W,
    written: u64,
    tx: watch::Sender<Progress>,
    sealing: Arc<Mutex<Sealing>>,
}

impl<W> Published<W> {
    pub fn new(inner: W) -> Published<W> {
        let (tx, _) = watch::channel(Progress::Writing(0));
        Published {
            inner,
            written: 0,
            tx,
            sealing: Arc::default(),
        }
    }

    /// A reader of `file` (the same file this writes) that follows this writer.
    pub fn tail(&self, file: File) -> Tail {
        Tail {
            file: Arc::new(file),
            rx: self.tx.subscribe(),
            sealing: self.sealing.clone(),
        }
    }

    /// The blob is complete: the [`Tail::on_seal`] calls run, then readers may finish.
    pub fn seal(self, digest: &str, size: u64) {
        let waiting = match self.sealing.lock() {
            Ok(mut s) => match std::mem::replace(&mut *s, Sealing::Sealed(digest.to_string())) {
                Sealing::Waiting(w) => w,
                Sealing::Open | Sealing::Sealed(_) => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        for f in waiting {
            f(digest);
        }
        self.tx.send_replace(Progress::Done {
            digest: digest.to_string(),
            size,
        });
    }
}

impl<W: Write> Write for Published<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        if self.tx.receiver_count() > 0 {
            self.tx.send_replace(Progress::Writing(self.written));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader of a blob being written. Cloning is cheap; each clone reads from
/// the start on its own.
#[derive(Clone)]
pub struct Tail {
    file: Arc<File>,
    rx: watch::Receiver<Progress>,
    sealing: Arc<Mutex<Sealing>>,
}

/// How much a read takes at once.
const CHUNK: u64 = 1 << 20;

impl Tail {
    /// The blob's bytes from the first on, as they arrive; ends when the blob
    /// is sealed, fails when its writer gave up.
    pub fn stream(&self) -> impl Stream<Item = io::Result<Vec<u8>>> + Send + 'static {
        let state = (self.clone(), 0u64);
        futures_util::stream::try_unfold(state, |(mut tail, pos)| async move {
            loop {
                let (avail, sealed) = match &*tail.rx.borrow_and_update() {
                    Progress::Writing(n) => (*n, false),
                    Progress::Done { size, .. } => (*size, true),
                };
                if pos < avail {
                    let len = (avail - pos).min(CHUNK);
                    let file = tail.file.clone();
                    let buf = tokio::task::spawn_blocking(move || {
                        let mut buf = vec![0; len as usize];
                        file.read_exact_at(&mut buf, pos).map(|_| buf)
                    })
                    .await
                    .map_err(io::Error::other)??;
                    return Ok(Some((buf, (tail, pos + len))));
                }
                if sealed {
                    return Ok(None);
                }
                if tail.rx.changed().await.is_err() {
                    return Err(io::Error::other(
                        "the layer was not finished (its step failed or changed nothing)",
                    ));
                }
            }
        })
    }

    /// Run `f` with the digest when the writer seals the blob, on its thread and
    /// before any reader learns the digest (at once if it is sealed already).
    /// Never, if the writer gives up.
    pub fn on_seal(&self, f: OnSeal) {
        let Ok(mut s) = self.sealing.lock() else {
            return;
        };
        match &mut *s {
            Sealing::Sealed(d) => {
                let d = d.clone();
                drop(s);
                f(&d);
            }
            Sealing::Waiting(w) => w.push(f),
            Sealing::Open => *s = Sealing::Waiting(vec![f]),
        }
    }

    /// How many bytes are in the file now, and whether that is all of them.
    pub fn available(&self) -> (u64, bool) {
        match &*self.rx.borrow() {
            Progress::Writing(n) => (*n, false),
            Progress::Done { size, .. } => (*size, true),
        }
    }

    /// Wait until the writer is done: the blob's digest and size, or None when
    /// it gave up.
    pub async fn finished(&self) -> Option<(String, u64)> {
        let mut rx = self.rx.clone();
        loop {
            if let Progress::Done { digest, size } = &*rx.borrow_and_update() {
                return Some((digest.clone(), *size));
            }
            rx.changed().await.ok()?;
        }
    }
}

/// Called with a [`Tail`] when a layer writer starts, by the writer's thread.
pub type Hook = Box<dyn FnOnce(Tail) + Send>;

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    #[tokio::test]
    async fn a_tail_reads_what_is_written_and_ends_when_sealed() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut w = Published::new(tmp.reopen().unwrap());
        let tail = w.tail(tmp.reopen().unwrap());
        let reader = tokio::spawn({
            let t = tail.clone();
            async move { t.stream().try_concat().await }
        });
        let finished = tokio::spawn({
            let t = tail.clone();
            async move { t.finished().await }
        });
        for i in 0..50u8 {
            w.write_all(&vec![i; 100_000]).unwrap();
            tokio::task::yield_now().await;
        }
        w.seal("sha256:abc", 5_000_000);
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got.len(), 5_000_000);
        assert!(got
            .chunks(100_000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
        assert_eq!(
            finished.await.unwrap(),
            Some(("sha256:abc".into(), 5_000_000))
        );
        // A clone made later still reads from the start.
        assert_eq!(tail.stream().try_concat().await.unwrap().len(), 5_000_000);
    }

    #[tokio::test]
    async fn seal_calls_run_before_the_digest_is_out_and_late_ones_at_once() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let w = Published::new(tmp.reopen().unwrap());
        let tail = w.tail(tmp.reopen().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, t) = (seen.clone(), tail.clone());
        tail.on_seal(Box::new(move |d| {
            // The readers do not know the digest yet.
            assert_eq!(t.available(), (0, false));
            s.lock().unwrap().push(format!("early {d}"));
        }));
        w.seal("sha256:abc", 0);
        let s = seen.clone();
        tail.on_seal(Box::new(move |d| {
            s.lock().unwrap().push(format!("late {d}"))
        }));
        assert_eq!(
            *seen.lock().unwrap(),
            ["early sha256:abc", "late sha256:abc"]
        );
    }

    #[tokio::test]
    async fn a_writer_dropped_unsealed_fails_the_reader() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut w = Published::new(tmp.reopen().unwrap());
        let tail = w.tail(tmp.reopen().unwrap());
        w.write_all(b"partial").unwrap();
        drop(w);
        assert!(tail.stream().try_concat().await.is_err());
        assert_eq!(tail.finished().await, None);
    }
}
