//! Parallel gzip: the stream is cut into fixed-size chunks, each compressed on a
//! worker thread into an independent gzip member, and the members are written in
//! order. A multi-member stream is valid gzip (RFC 1952); Go's readers (registries,
//! umoci, skopeo, containerd) and zlib's read it whole.
//!
//! Chunk boundaries depend only on the input, never on the thread count or timing,
//! so the output is byte-identical on every machine. Memory is bounded: at most
//! `2 × threads` chunks are in flight.
//!
//! Each member is compressed whole by libdeflate (a chunk is a buffer already, and
//! libdeflate needs no streaming state): at level 3 it takes about half the CPU of
//! zlib's (pigz's) or zlib-rs's level 3 for the same size on a source tree, and
//! compression is most of a cold build's work. Its output depends only on the
//! input, the level and libdeflate's version (pinned in Cargo.lock).

use crate::report::busy::{self, Work};
use libdeflater::{CompressionLvl, Compressor};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Uncompressed bytes per gzip member.
pub const CHUNK: usize = 1 << 20;

type Job = (u64, Vec<u8>);
/// A member, and the chunk it came from (emptied, to be filled again).
type Done = (u64, io::Result<Vec<u8>>, Vec<u8>);

pub struct ParGz<W: Write> {
    inner: Option<W>,
    buf: Vec<u8>,
    next_seq: u64,
    write_seq: u64,
    submitted_any: bool,
    pending: BTreeMap<u64, Vec<u8>>,
    /// Chunks back from the workers: refilled rather than allocated per MiB.
    free: Vec<Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    jobs: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
}

/// One gzip member of `data` (libdeflate's header: mtime 0, no name), through
/// the worker's own output buffer (zeroed once, not once per MiB), copied out at
/// its compressed size.
fn compress(c: &mut Compressor, out: &mut Vec<u8>, data: &[u8]) -> io::Result<Vec<u8>> {
    let bound = c.gzip_compress_bound(data.len());
    if out.len() < bound {
        out.resize(bound, 0);
    }
    let n = c
        .gzip_compress(data, out)
        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
    Ok(out[..n].to_vec())
}

impl<W: Write> ParGz<W> {
    /// gzip at `level`, 0 (stored) to 9, on `threads` workers.
    pub fn new(inner: W, level: u32, threads: usize) -> ParGz<W> {
        let threads = threads.max(1);
        // 0–9 are valid libdeflate levels, so the fallback is never taken.
        let level = CompressionLvl::new(level.min(9) as i32).unwrap_or_default();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = jobs_rx.clone();
                let tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut c = Compressor::new(level);
                    let mut out = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok((seq, mut data)) = job else { break };
                        let member = compress(&mut c, &mut out, &data);
                        data.clear();
                        if tx.send((seq, member, data)).is_err() {
                            break;
                        }
                    }
                    busy::add(Work::Compress, busy::thread_cpu());
                })
            })
            .collect();
        ParGz {
            inner: Some(inner),
            buf: Vec::with_capacity(CHUNK),
            next_seq: 0,
            write_seq: 0,
            submitted_any: false,
            pending: BTreeMap::new(),
            free: Vec::new(),
            in_flight: 0,
            max_in_flight: 2 * threads,
            jobs: Some(jobs_tx),
            done: done_rx,
            workers,
        }
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let (seq, out, chunk) = self
            .done
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.in_flight -= 1;
        self.free.push(chunk);
        self.pending.insert(seq, out?);
        Ok(())
    }

    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(member) = self.pending.remove(&self.write_seq) {
            self.inner
                .as_mut()
                .ok_or_else(|| io::Error::other("finished"))?
                .write_all(&member)?;
            self.write_seq += 1;
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
            self.write_ready()?;
        }
        let next = self.free.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
        let chunk = std::mem::replace(&mut self.buf, next);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("finished"))?;
        jobs.send((self.next_seq, chunk))
            .map_err(|_| io::Error::other("gzip worker stopped"))?;
        self.next_seq += 1;
        self.in_flight += 1;
        self.submitted_any = true;
        Ok(())
    }

    /// Compress what is left, write every member in order, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || !self.submitted_any {
            // An empty stream still becomes one (empty) gzip member.
            self.submit()?;
        }
        self.jobs = None; // workers stop when the queue is drained
        while self.in_flight > 0 {
            self.receive_one()?;
            self.write_ready()?;
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("finished twice"))
    }
}

impl<W: Write> Write for ParGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGz<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Threads for compression: every core kiln may use.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    fn gz(input: &[u8], threads: usize) -> Vec<u8> {
        let mut w = ParGz::new(Vec::new(), 6, threads);
        // Uneven writes, to cross chunk boundaries in pieces.
        for piece in input.chunks(333_333) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn same_bytes_whatever_the_thread_count_and_round_trips() {
        let input = data(5 * CHUNK + 12345);
        let one = gz(&input, 1);
        let four = gz(&input, 4);
        assert_eq!(one, four, "deterministic across thread counts");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn empty_input_is_a_valid_gzip() {
        let out = gz(&[], 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert!(out.starts_with(&[0x1f, 0x8b]));
    }
}
