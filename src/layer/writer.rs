//! Deterministic layer tarballs, written in one streaming pass:
//!
//! ```text
//! tar entries ─▶ HashWriter (diffID, uncompressed size) ─▶ gzip ─▶ HashWriter (digest, size) ─▶ file in the store
//! ```
//!
//! Nothing is buffered beyond the stream buffers, so memory does not grow with the
//! layer. Callers add entries in a fixed order (sorted paths, parents first); headers
//! carry only mode, uid/gid, size, mtime and type (no user/group names, no
//! atime/ctime), so the same inputs give the same bytes.

use crate::attest::layers::{Collector, Entry, Watch};
use crate::digest::HashWriter;
use crate::layer::live::Published;
use crate::layer::pgzip::ParGz;
use crate::layer::tee::{ChunkSender, Tee};
use crate::store::Store;
use std::io::{self, BufWriter, Read, Write};
use tempfile::NamedTempFile;

pub const MEDIA_TYPE_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub zstd: bool,
    pub level: u32,
}

impl From<u32> for Codec {
    /// gzip at `level`.
    fn from(level: u32) -> Codec {
        Codec { zstd: false, level }
    }
}

impl Codec {
    pub fn media_type(&self) -> &'static str {
        if self.zstd {
            MEDIA_TYPE_ZSTD
        } else {
            MEDIA_TYPE_GZIP
        }
    }

    pub fn name(&self) -> &'static str {
        if self.zstd {
            "zstd"
        } else {
            "gzip"
        }
    }
}

/// The compressor in the middle of the pipeline.
enum Compressor<W: Write> {
    Gzip(ParGz<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(inner: W, codec: Codec) -> io::Result<Compressor<W>> {
        let threads = crate::layer::pgzip::threads();
        if codec.zstd {
            let mut e = zstd::stream::write::Encoder::new(inner, codec.level.clamp(1, 19) as i32)?;
            // zstd's multithreaded output does not depend on the number of workers.
            e.multithread(threads as u32)?;
            Ok(Compressor::Zstd(e))
        } else {
            // Parallel gzip: fixed chunks, one member each, written in order: the same
            // bytes whatever the number of cores.
            Ok(Compressor::Gzip(ParGz::new(inner, codec.level, threads)))
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(g) => g.finish(),
            Compressor::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}

/// Owner, mode and time of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (no file type bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    /// The sub-second part of the mtime, kept in a PAX `mtime` record as
    /// BuildKit's layers keep it (0: whole seconds, no record).
    pub mtime_nsec: u32,
}

/// A finished layer blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub uncompressed_size: u64,
    pub media_type: String,
    /// What the SBOM's scanners need of the layer, gathered as it was written
    /// (so an SBOM does not read the layer again).
    pub facts: Option<crate::attest::scan::LayerFacts>,
}

type Sink = HashWriter<Tee<Compressor<HashWriter<BufWriter<Published<std::fs::File>>>>>>;

pub struct LayerWriter {
    tar: tar::Builder<Sink>,
    codec: Codec,
    tmp: NamedTempFile,
    store: Store,
    /// PAX records for the next entry (xattrs), written with its mtime record
    /// as one extended header: readers keep only the last one before an entry.
    pax: Vec<(String, Vec<u8>)>,
    /// The SBOM scanners' view of the entries written.
    facts: Collector,
}

impl LayerWriter {
    /// `level` is the gzip level, 0–9.
    /// A writer compressing with `codec` (a bare number means gzip at that level).
    pub fn new(store: &Store, codec: impl Into<Codec>) -> io::Result<LayerWriter> {
        let codec = codec.into();
        let (sink, tmp) = open_sink(store, codec)?;
        let mut tar = tar::Builder::new(sink);
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter {
            tar,
            codec,
            tmp,
            store: store.clone(),
            pax: Vec::new(),
            facts: Collector::default(),
        })
    }

    /// Also send the uncompressed tar stream to `side` (see [`crate::layer::tee`]),
    /// from the next entry on; the stream ends when the layer is finished or dropped.
    pub fn tee(&mut self, side: ChunkSender) {
        self.tar.get_mut().get_mut().side = Some(side);
    }

    fn header(kind: tar::EntryType, m: &Meta, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(m.mode & 0o7777);
        h.set_uid(m.uid as u64);
        h.set_gid(m.gid as u64);
        h.set_mtime(m.mtime);
        h.set_size(size);
        h
    }

    /// The pending PAX records of the next entry, with `m`'s sub-second mtime
    /// (`mtime=<secs>.<fraction>`, trailing zeros trimmed, as Go writes it).
    fn flush_pax(&mut self, m: &Meta) -> io::Result<()> {
        let mut records = std::mem::take(&mut self.pax);
        if m.mtime_nsec != 0 {
            let frac = format!("{:09}", m.mtime_nsec);
            let value = format!("{}.{}", m.mtime, frac.trim_end_matches('0'));
            records.insert(0, ("mtime".to_string(), value.into_bytes()));
        }
        if records.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    pub fn dir(&mut self, path: &str, m: &Meta) -> io::Result<()> {
        self.facts.entry(path, Entry::Dir);
        self.flush_pax(m)?;
        let mut h = Self::header(tar::EntryType::Directory, m, 0);
        self.tar
            .append_data(&mut h, format!("{path}/"), io::empty())
    }

    /// A regular file of exactly `size` bytes read from `data`.
    pub fn file(&mut self, path: &str, m: &Meta, size: u64, data: impl Read) -> io::Result<()> {
        self.facts.file_size(path, size);
        if Collector::wants(path) {
            if size <= crate::attest::scan::MAX_FILE {
                // A package manager's metadata file: small, read whole, then written.
                let mut bytes = Vec::with_capacity(size as usize);
                data.take(size).read_to_end(&mut bytes)?;
                self.facts.metadata(path, &bytes);
                return self.file_data(path, m, size, &bytes[..]);
            }
            self.facts.too_big(path);
        } else if let Some(w) = Collector::watches(path, m.mode, size) {
            let mut watch = Watch::new(data, w);
            self.file_data(path, m, size, &mut watch)?;
            self.facts.program(path, watch.finish());
            return Ok(());
        } else {
            self.facts.entry(path, Entry::File);
        }
        self.file_data(path, m, size, data)
    }

    fn file_data(&mut self, path: &str, m: &Meta, size: u64, data: impl Read) -> io::Result<()> {
        self.flush_pax(m)?;
        let mut h = Self::header(tar::EntryType::Regular, m, size);
        let mut limited = data.take(size);
        let mut counted = CountingReader {
            inner: &mut limited,
            n: 0,
        };
        self.tar.append_data(&mut h, path, &mut counted)?;
        if counted.n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path} changed size while it was being read"),
            ));
        }
        Ok(())
    }

    pub fn symlink(&mut self, path: &str, target: &str, m: &Meta) -> io::Result<()> {
        self.facts.entry(path, Entry::Symlink);
        self.flush_pax(m)?;
        let mut h = Self::header(tar::EntryType::Symlink, m, 0);
        self.tar.append_link(&mut h, path, target)
    }

    pub fn hardlink(&mut self, path: &str, target: &str, m: &Meta) -> io::Result<()> {
        self.facts.hardlink(path, target);
        self.flush_pax(m)?;
        let mut h = Self::header(tar::EntryType::Link, m, 0);
        self.tar.append_link(&mut h, path, target)
    }

    /// Extended attributes for the next entry, as PAX `SCHILY.xattr.*` records.
    pub fn xattrs(&mut self, attrs: &[(String, Vec<u8>)]) -> io::Result<()> {
        if attrs.is_empty() {
            return Ok(());
        }
        self.pax.extend(
            attrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone())),
        );
        Ok(())
    }

    /// A whiteout: `<dir>/.wh.<name>` hides `<dir>/<name>` of lower layers.
    pub fn whiteout(&mut self, path: &str) -> io::Result<()> {
        match path.rsplit_once('/') {
            Some((d, n)) => self.marker(&format!("{d}/.wh.{n}")),
            None => self.marker(&format!(".wh.{path}")),
        }
    }

    /// An opaque marker: lower-layer content of directory `dir` is hidden.
    pub fn opaque(&mut self, dir: &str) -> io::Result<()> {
        if dir.is_empty() {
            self.marker(".wh..wh..opq")
        } else {
            self.marker(&format!("{dir}/.wh..wh..opq"))
        }
    }

    /// An empty entry with fixed metadata: the form of whiteouts and opaque markers.
    fn marker(&mut self, path: &str) -> io::Result<()> {
        self.facts.whiteout(path);
        let m = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
        };
        let mut h = Self::header(tar::EntryType::Regular, &m, 0);
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// A character or block device, or a FIFO.
    pub fn device(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
        m: &Meta,
    ) -> io::Result<()> {
        self.facts.entry(path, Entry::Other);
        self.flush_pax(m)?;
        let mut h = Self::header(kind, m, 0);
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
        self.tar.append_data(&mut h, path, io::empty())
    }

    /// Pass an entry of another archive through (ADD of a local tar), under a new path.
    pub fn raw(&mut self, header: &tar::Header, path: &str, data: impl Read) -> io::Result<()> {
        let ty = header.entry_type();
        let size = header.size()?;
        if ty.is_file() && !path.rsplit('/').next().unwrap_or(path).starts_with(".wh.") {
            self.facts.file_size(path, size);
        }
        if ty.is_file() && Collector::wants(path) && size <= crate::attest::scan::MAX_FILE {
            let mut bytes = Vec::with_capacity(size as usize);
            data.take(size).read_to_end(&mut bytes)?;
            self.facts.metadata(path, &bytes);
            return self.raw_data(header, path, &bytes[..]);
        }
        let watching = if ty.is_file() {
            Collector::watches(path, header.mode()?, size)
        } else {
            None
        };
        if let Some(w) = watching {
            let mut watch = Watch::new(data, w);
            self.raw_data(header, path, &mut watch)?;
            self.facts.program(path, watch.finish());
            return Ok(());
        }
        if ty.is_hard_link() {
            let target = header
                .link_name()?
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.facts.hardlink(path, &target);
        } else if !self.facts.whiteout(path) {
            let kind = Entry::of(ty);
            if kind == Entry::File && Collector::wants(path) {
                self.facts.too_big(path);
            } else {
                self.facts.entry(path, kind);
            }
        }
        self.raw_data(header, path, data)
    }

    fn raw_data(&mut self, header: &tar::Header, path: &str, data: impl Read) -> io::Result<()> {
        let mut h = Self::header(
            header.entry_type(),
            &Meta {
                mode: header.mode()?,
                uid: header.uid()? as u32,
                gid: header.gid()? as u32,
                mtime: header.mtime()?,
                mtime_nsec: 0,
            },
            header.size()?,
        );
        match header.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = header
                    .link_name()?
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                self.tar.append_link(&mut h, path, target)
            }
            tar::EntryType::Directory => self.tar.append_data(&mut h, format!("{path}/"), data),
            _ => self.tar.append_data(&mut h, path, data),
        }
    }

    /// Finish the archive and move the blob into the store under its digest.
    pub fn finish(self) -> io::Result<BuiltLayer> {
        let mut built = seal(self.tar.into_inner()?, self.tmp, &self.store, self.codec)?;
        built.facts = Some(self.facts.finish());
        Ok(built)
    }
}

/// The one-pass pipeline into a temporary file of the store.
fn open_sink(store: &Store, codec: Codec) -> io::Result<(Sink, NamedTempFile)> {
    let tmp = store.temp()?;
    let file = Published::new(tmp.as_file().try_clone()?);
    // Someone waits for the next layer's bytes (an upload while it is written).
    if let Some(hook) = store.take_announced() {
        hook(file.tail(tmp.reopen()?));
    }
    let compressed = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    Ok((
        HashWriter::new(Tee {
            inner: Compressor::new(compressed, codec)?,
            side: None,
        }),
        tmp,
    ))
}

/// Close the pipeline and move the blob into the store under its digest.
fn seal(sink: Sink, tmp: NamedTempFile, store: &Store, codec: Codec) -> io::Result<BuiltLayer> {
    let (tee, diff_id, uncompressed_size) = sink.finish();
    let (buf, digest, size) = tee.finish()?.finish()?.finish();
    let published = buf.into_inner().map_err(|e| e.into_error())?;
    store.commit(tmp, &digest)?;
    published.seal(&digest, size);
    Ok(BuiltLayer {
        digest,
        diff_id,
        size,
        uncompressed_size,
        media_type: codec.media_type().to_string(),
        facts: None,
    })
}

/// Compress an uncompressed tar stream into a layer blob, in one pass.
pub fn compress_stream(
    store: &Store,
    codec: impl Into<Codec>,
    mut tar: impl Read,
) -> io::Result<BuiltLayer> {
    let codec = codec.into();
    let (mut sink, tmp) = open_sink(store, codec)?;
    io::copy(&mut tar, &mut sink)?;
    seal(sink, tmp, store, codec)
}

/// Store an already-compressed blob as it is: (digest, size).
pub fn store_stream(store: &Store, mut data: impl Read) -> io::Result<(String, u64)> {
    let tmp = store.temp()?;
    let mut w = HashWriter::new(BufWriter::with_capacity(
        1 << 20,
        tmp.as_file().try_clone()?,
    ));
    io::copy(&mut data, &mut w)?;
    let (mut buf, digest, size) = w.finish();
    buf.flush()?;
    drop(buf);
    store.commit(tmp, &digest)?;
    Ok((digest, size))
}

/// The diffID and uncompressed size of a stored layer blob.
pub fn diff_id_of(path: &std::path::Path) -> io::Result<(String, u64)> {
    crate::digest::sha256_reader(open_tar(path)?)
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    n: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Open a layer blob for reading its tar stream, whatever its compression.
/// A compressed layer is decompressed on a thread of its own, a few chunks
/// ahead of its reader (see [`super::readahead`]).
pub fn open_tar(path: &std::path::Path) -> io::Result<Box<dyn Read + Send>> {
    let mut f = io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    Ok(match Packed::of(&mut f)? {
        Packed::None => Box::new(f),
        p => Box::new(super::readahead::ReadAhead::new(p.decoder(f)?)?),
    })
}

/// A tar stream from `f`, decompressed by its magic bytes (gzip, zstd, bzip2,
/// xz, plain), as BuildKit's ADD and containerd's layer readers detect them.
pub fn tar_reader(mut f: impl io::BufRead + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    Packed::of(&mut f)?.decoder(f)
}

/// The compression of a stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packed {
    None,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl Packed {
    /// The compression of what `f` holds, from its first bytes (not consumed).
    fn of(f: &mut impl io::BufRead) -> io::Result<Packed> {
        let buf = f.fill_buf()?;
        Ok(Packed::sniff(buf.get(..6).unwrap_or_default()))
    }

    /// A reader of `f`'s bytes, decompressed.
    fn decoder(self, f: impl io::BufRead + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Packed::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
            Packed::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
            Packed::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(f)),
            Packed::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(f)),
            Packed::None => Box::new(f),
        })
    }

    fn sniff(head: &[u8]) -> Packed {
        if head.starts_with(&[0x1f, 0x8b]) {
            Packed::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Packed::Zstd
        } else if head.starts_with(b"BZh") {
            Packed::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Packed::Xz
        } else {
            Packed::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(store: &Store) -> BuiltLayer {
        let m = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_nsec: 0,
        };
        let mut w = LayerWriter::new(store, 6).unwrap();
        w.dir("app", &m).unwrap();
        w.file("app/a.txt", &Meta { mode: 0o644, ..m }, 5, &b"hello"[..])
            .unwrap();
        w.symlink("app/link", "a.txt", &m).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn deterministic_and_digests_match_content() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let a = build(&s);
        let b = build(&s);
        assert_eq!(a, b);
        let p = s.blob_path(&a.digest).unwrap();
        assert_eq!(crate::digest::sha256_file(&p).unwrap(), a.digest);
        // The diffID is the digest of the uncompressed stream.
        let mut tar = Vec::new();
        open_tar(&s.blob_path(&a.digest).unwrap())
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(crate::digest::sha256_bytes(&tar), a.diff_id);
        assert_eq!(tar.len() as u64, a.uncompressed_size);
        let mut ar = tar::Archive::new(&tar[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["app/", "app/a.txt", "app/link"]);
    }

    #[test]
    fn the_facts_gathered_while_writing_are_those_a_scan_of_the_blob_finds() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let m = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            mtime_nsec: 0,
        };
        let status = b"Package: a\nStatus: install ok installed\nVersion: 1\n";
        let npm = br#"{"name":"ms","version":"2.1.3"}"#;
        let mut w = LayerWriter::new(&s, 1).unwrap();
        w.dir("var/lib/dpkg", &m).unwrap();
        w.file("var/lib/dpkg/status", &m, status.len() as u64, &status[..])
            .unwrap();
        w.file(
            "app/node_modules/ms/package.json",
            &m,
            npm.len() as u64,
            &npm[..],
        )
        .unwrap();
        w.hardlink(
            "app/node_modules/ms2/package.json",
            "app/node_modules/ms/package.json",
            &m,
        )
        .unwrap();
        w.file("app/main.js", &m, 2, &b"//"[..]).unwrap();
        w.symlink("app/current", "main.js", &m).unwrap();
        // A Go program (the build information as Go 1.18+ lays it out), and
        // another executable where a lower layer may have had one.
        let mut prog = vec![0x7fu8, b'E', b'L', b'F'];
        prog.resize(8192, 0);
        prog.extend_from_slice(crate::attest::scan::gobin::MAGIC);
        prog.extend_from_slice(&[8, 2]);
        prog.resize(8192 + 32, 0);
        prog.extend_from_slice(b"\x08go1.22.4\x00");
        prog.resize(12_000, 0);
        let exe = Meta { mode: 0o755, ..m };
        w.file("usr/local/bin/tool", &exe, prog.len() as u64, &prog[..])
            .unwrap();
        w.file("usr/local/bin/script", &exe, 5000, &[b'#'; 5000][..])
            .unwrap();
        let jar = crate::attest::scan::java::tests::zip(&[(
            "META-INF/maven/org.example/lib/pom.properties",
            b"groupId=org.example\nartifactId=lib\nversion=1.0\n",
            8,
            true,
        )]);
        w.file("opt/app/lib.jar", &m, jar.len() as u64, &jar[..])
            .unwrap();
        w.whiteout("usr/lib/python3/dist-packages/six-1.16.0.dist-info")
            .unwrap();
        w.opaque("srv/node_modules").unwrap();
        let built = w.finish().unwrap();
        let scanned = crate::attest::layers::scan_tar(
            open_tar(&s.blob_path(&built.digest).unwrap()).unwrap(),
        )
        .unwrap();
        let facts = built.facts.unwrap();
        assert_eq!(facts, scanned);
        assert_eq!(facts.files.len(), 5);
        assert_eq!(facts.files[3].packages[0].version, "1.22.4");
        assert_eq!(facts.files[4].packages[0].full_name(), "org.example:lib");
        assert_eq!(
            facts.removed,
            [
                "app/current",
                "usr/local/bin/script",
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info"
            ]
        );
        assert_eq!(facts.opaque, ["srv/node_modules"]);
    }

    #[test]
    fn zstd_layers_are_deterministic_and_readable() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let codec = Codec {
            zstd: true,
            level: 3,
        };
        let build = || {
            let m = Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 1,
                mtime_nsec: 0,
            };
            let mut w = LayerWriter::new(&s, codec).unwrap();
            let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            w.file("big", &m, big.len() as u64, &big[..]).unwrap();
            w.finish().unwrap()
        };
        let a = build();
        assert_eq!(a, build());
        assert_eq!(a.media_type, MEDIA_TYPE_ZSTD);
        let mut tar = Vec::new();
        open_tar(&s.blob_path(&a.digest).unwrap())
            .unwrap()
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(crate::digest::sha256_bytes(&tar), a.diff_id);
        // zstd's multithreaded output does not depend on the number of workers.
        let data: Vec<u8> = (0..8_000_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8 & 0x3f)
            .collect();
        let enc = |workers: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.multithread(workers).unwrap();
            std::io::Write::write_all(&mut e, &data).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(enc(1), enc(4));
    }

    #[test]
    fn short_read_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        let mut w = LayerWriter::new(&s, 1).unwrap();
        let m = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
        };
        assert!(w.file("f", &m, 10, &b"short"[..]).is_err());
    }

    #[test]
    fn tar_streams_are_read_whatever_their_compression() {
        use std::io::Write;
        let mut plain = Vec::new();
        {
            let mut b = tar::Builder::new(&mut plain);
            let mut h = tar::Header::new_ustar();
            h.set_size(5);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, "f", &b"hello"[..]).unwrap();
            b.finish().unwrap();
        }
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let zst = zstd::encode_all(&plain[..], 3).unwrap();
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
            e.write_all(&plain).unwrap();
            e.finish().unwrap()
        };
        for (name, packed) in [
            ("plain", plain.clone()),
            ("gzip", gz),
            ("zstd", zst),
            ("bzip2", bz),
            ("xz", xz),
        ] {
            let mut out = Vec::new();
            tar_reader(io::Cursor::new(packed))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, plain, "{name}");
        }
    }
}
