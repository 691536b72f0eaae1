//! sha256 digests and a writer that hashes and counts what passes through it, so that
//! layers are hashed in the same pass that writes them.

use crate::report::busy::{self, Work};
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};

/// `sha256:<64 hex>`.
pub fn sha256_bytes(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Check that `d` is `sha256:<64 lowercase hex>` and return the hex part.
pub fn hex_of(d: &str) -> Result<&str, String> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(h)
        }
        _ => Err(format!(
            "invalid or unsupported digest {d:?} (kiln handles sha256)"
        )),
    }
}

/// Hashes and counts every byte written, then passes it on.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.count)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        busy::time(Work::Hash, || self.hasher.update(&buf[..n]));
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes every byte read through it: a layer's diffID while it is extracted.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: io::Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// The digest of what was read so far.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.finalize()))
    }
}

impl<R: io::Read> io::Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        busy::time(Work::Hash, || self.hasher.update(&buf[..n]));
        Ok(n)
    }
}

/// The sha256 of a file's content.
pub fn sha256_file(path: &std::path::Path) -> io::Result<String> {
    let f = std::fs::File::open(path)?;
    Ok(sha256_reader(io::BufReader::with_capacity(1 << 20, f))?.0)
}

/// The BLAKE3 digest of the first `size` bytes of a file (its size when it was
/// walked, which the layer's tar entry also takes), `blake3:<hex>`. Cache keys use
/// it for context files: it is a cryptographic hash like sha256, and about four
/// times faster where sha256 is most of a new runner's start.
///
/// Read through an uninitialised 64 KiB buffer, and no read past `size` (no read
/// only to see the end, per file): `Hasher::update_reader` zeroes a 64 KiB stack
/// buffer per call, which on a key pass over 46,000 small files is 3 GB of memset.
pub fn blake3_file(path: &std::path::Path, size: u64) -> io::Result<String> {
    use io::Read as _;
    let mut h = blake3::Hasher::new();
    let mut w = io::BufWriter::with_capacity(64 << 10, &mut h);
    io::copy(&mut std::fs::File::open(path)?.take(size), &mut w)?;
    w.flush()?;
    drop(w);
    Ok(format!("blake3:{}", h.finalize().to_hex()))
}

/// Hash a reader to the end: (digest, size).
pub fn sha256_reader(mut r: impl io::Read) -> io::Result<(String, u64)> {
    let mut w = HashWriter::new(io::sink());
    io::copy(&mut r, &mut w)?;
    let (_, d, n) = w.finish();
    Ok((d, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_of_a_file_is_the_reference_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // The empty input's digest is BLAKE3's published test vector.
        std::fs::write(&p, b"").unwrap();
        assert_eq!(
            blake3_file(&p, 0).unwrap(),
            "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        // A file longer than one read hashes as one input.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert_eq!(
            blake3_file(&p, data.len() as u64).unwrap(),
            format!("blake3:{}", blake3::hash(&data).to_hex())
        );
        // Only the size the walk saw: what the layer's tar entry takes.
        assert_eq!(
            blake3_file(&p, 1000).unwrap(),
            format!("blake3:{}", blake3::hash(&data[..1000]).to_hex())
        );
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_bytes(b"{}"),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let (d, n) = sha256_reader(&b"{}"[..]).unwrap();
        assert_eq!((d.as_str(), n), (sha256_bytes(b"{}").as_str(), 2));
    }

    #[test]
    fn digest_validation() {
        assert!(
            hex_of("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
                .is_ok()
        );
        assert!(hex_of("sha256:../../etc/passwd").is_err());
        assert!(hex_of("sha512:abc").is_err());
    }
}
