//! A bounded in-process pipe for the uncompressed tar stream of a layer being
//! written, so that another thread can apply the same entries to a rootfs while the
//! layer is hashed and compressed: no second read of the sources, no decompression,
//! and at most `CHUNK * DEPTH` bytes in flight.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

const CHUNK: usize = 256 << 10;
const DEPTH: usize = 8;

/// The writing end: buffers into chunks and sends them; fails once the reader is gone.
pub struct ChunkSender {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

/// The reading end.
pub struct ChunkReader {
    cur: Vec<u8>,
    pos: usize,
    rx: Receiver<Vec<u8>>,
}

pub fn channel() -> (ChunkSender, ChunkReader) {
    let (tx, rx) = sync_channel(DEPTH);
    (
        ChunkSender {
            buf: Vec::with_capacity(CHUNK),
            tx,
        },
        ChunkReader {
            cur: Vec::new(),
            pos: 0,
            rx,
        },
    )
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the rootfs being written from this layer stopped reading",
    )
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(full).map_err(|_| gone())
    }

    /// Send what is buffered and close the stream (the reader sees EOF).
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                // Every sender dropped: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A writer that also hands every byte to a [`ChunkSender`] when one is attached.
pub struct Tee<W> {
    pub inner: W,
    pub side: Option<ChunkSender>,
}

impl<W: Write> Tee<W> {
    /// Close the side stream and give back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        if let Some(side) = self.side {
            side.finish()?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        if let Some(side) = &mut self.side {
            side.write_all(&data[..n])?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_eof_follows_finish() {
        let (mut tx, mut rx) = channel();
        let data: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        let expect = data.clone();
        let t = std::thread::spawn(move || {
            for piece in data.chunks(10_000) {
                tx.write_all(piece).unwrap();
            }
            tx.finish().unwrap();
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, expect);
    }

    #[test]
    fn writing_fails_once_the_reader_is_gone() {
        let (mut tx, rx) = channel();
        drop(rx);
        let err = tx.write_all(&vec![0u8; CHUNK]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
