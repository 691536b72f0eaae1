//! A reader that runs its source on a thread of its own, a few chunks ahead:
//! a layer's decompression on one core while the tar is hashed, parsed and
//! written to disk on another. At most [`AHEAD`] chunks of [`CHUNK`] bytes are
//! in flight, so memory stays bounded whatever the layer's size.
//!
//! The thread ends at the source's end or error, or as soon as the reader is
//! dropped (its next send fails).

use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

pub const CHUNK: usize = 1 << 20;
pub const AHEAD: usize = 4;

pub struct ReadAhead {
    rx: Receiver<io::Result<Vec<u8>>>,
    /// Read chunks go back to the thread to be filled again (not a fresh
    /// zeroed MiB per chunk).
    back: Sender<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    pub fn new(mut src: impl Read + Send + 'static) -> io::Result<ReadAhead> {
        let (tx, rx) = sync_channel(AHEAD);
        let (back, returned) = channel::<Vec<u8>>();
        std::thread::Builder::new()
            .name("kiln-readahead".into())
            .spawn(move || loop {
                let mut chunk = returned.try_recv().unwrap_or_default();
                chunk.resize(CHUNK, 0);
                let mut n = 0;
                // Fill the chunk (decoders hand out a few KiB at a time).
                let res = loop {
                    match src.read(&mut chunk[n..]) {
                        Ok(0) => break Ok(()),
                        Ok(k) => {
                            n += k;
                            if n == CHUNK {
                                break Ok(());
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => break Err(e),
                    }
                };
                chunk.truncate(n);
                let last = n < CHUNK;
                let sent = match res {
                    Ok(()) if n > 0 => tx.send(Ok(chunk)),
                    Ok(()) => Ok(()),
                    // What was read before the error first, then the error.
                    Err(e) => {
                        if n > 0 && tx.send(Ok(chunk)).is_err() {
                            return;
                        }
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if sent.is_err() || last {
                    return;
                }
            })?;
        Ok(ReadAhead {
            rx,
            back,
            buf: Vec::new(),
            pos: 0,
            done: false,
        })
    }
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.buf, chunk);
                    if used.capacity() > 0 {
                        let _ = self.back.send(used);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The thread ended after the last chunk.
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out a few bytes at a time, then fails if asked to.
    struct Dribble {
        data: Vec<u8>,
        at: usize,
        fail_at_end: bool,
    }

    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return if self.fail_at_end {
                    Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt"))
                } else {
                    Ok(0)
                };
            }
            let n = out.len().min(7919).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn it_reads_what_the_source_gives_in_order() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 12345] {
            let d = data(len);
            let mut r = ReadAhead::new(Dribble {
                data: d.clone(),
                at: 0,
                fail_at_end: false,
            })
            .unwrap();
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), d.len());
            assert!(got == d, "bytes differ at len {len}");
        }
    }

    #[test]
    fn a_source_error_arrives_after_the_bytes_before_it() {
        let d = data(CHUNK + 10);
        let mut r = ReadAhead::new(Dribble {
            data: d.clone(),
            at: 0,
            fail_at_end: true,
        })
        .unwrap();
        let mut got = vec![0u8; d.len()];
        r.read_exact(&mut got).unwrap();
        assert!(got == d);
        let e = r.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn dropping_the_reader_stops_the_thread() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // An endless source that counts its reads: they must stop once the
        // reader is gone.
        struct Endless(Arc<AtomicUsize>);
        impl Read for Endless {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.0.fetch_add(1, Ordering::SeqCst);
                out.fill(1);
                Ok(out.len())
            }
        }
        let reads = Arc::new(AtomicUsize::new(0));
        let mut r = ReadAhead::new(Endless(reads.clone())).unwrap();
        let mut b = [0u8; 10];
        r.read_exact(&mut b).unwrap();
        drop(r);
        let mut last = usize::MAX;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let now = reads.load(Ordering::SeqCst);
            if now == last {
                return;
            }
            last = now;
        }
        panic!("the source is still read after the reader was dropped");
    }
}
