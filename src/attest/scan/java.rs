//! Java archives (`.jar`, `.war`, `.ear`): the Maven coordinates in
//! `META-INF/maven/GROUP/ARTIFACT/pom.properties`, of the archive and of the
//! archives nested in it (`BOOT-INF/lib/*.jar`, `WEB-INF/lib/*.jar`).
//!
//! An archive is read as a stream ([`Stream`]): its local file headers one
//! after the other, each entry's data skipped, or inflated only to find its
//! end (an entry written with a data descriptor has no size up front), and only
//! `pom.properties` kept. The central directory at the end is not needed.

use super::{Ecosystem, Found};
use flate2::{Decompress, FlushDecompress, Status};

/// Smaller files are no archives worth reading.
pub const MIN_SIZE: u64 = 22;
/// The most of a `pom.properties` kept.
const MAX_PROPS: usize = 64 << 10;
/// Archives nested this deep are not opened.
const MAX_DEPTH: u8 = 2;
const LOCAL: u32 = 0x0403_4b50;
const DESCRIPTOR: u32 = 0x0807_4b50;

/// Whether `path` names a Java archive.
pub fn is_archive(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".jar", ".war", ".ear"].iter().any(|e| lower.ends_with(e))
}

/// What an entry's data is to the reader.
enum Sink {
    Skip,
    Props(Vec<u8>),
    Nested(Box<Stream>),
}

impl Sink {
    fn take(&mut self, bytes: &[u8]) {
        match self {
            Sink::Skip => {}
            Sink::Props(b) => {
                let room = MAX_PROPS.saturating_sub(b.len());
                b.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Sink::Nested(s) => s.feed(bytes),
        }
    }
}

enum State {
    Header,
    /// Stored data of known size.
    Stored {
        left: u64,
        sink: Sink,
        descriptor: bool,
    },
    /// Deflated data, inflated until its stream ends.
    Inflate {
        dec: Box<Decompress>,
        sink: Sink,
        descriptor: bool,
    },
    /// The data descriptor after an entry (optional signature, CRC, sizes).
    Descriptor,
    Done,
}

/// Reads an archive as its bytes go by.
pub struct Stream {
    depth: u8,
    /// Bytes of headers and descriptors not yet complete, from `pos` on.
    buf: Vec<u8>,
    pos: usize,
    state: State,
    found: Vec<Found>,
    /// Where inflated bytes go on their way to an entry's sink.
    out: Vec<u8>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream::at_depth(0)
    }
}

fn u16_at(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_le_bytes([b[i], b[i + 1]]))
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Whether `name` is `META-INF/maven/GROUP/ARTIFACT/pom.properties`.
fn is_pom_properties(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(parts.as_slice(), ["META-INF", "maven", g, a, "pom.properties"] if !g.is_empty() && !a.is_empty())
}

/// groupId, artifactId and version from a `pom.properties`.
pub fn parse_properties(text: &str) -> Option<Found> {
    let mut g = None;
    let mut a = None;
    let mut v = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, val)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "groupId" => g = Some(val.trim()),
            "artifactId" => a = Some(val.trim()),
            "version" => v = Some(val.trim()),
            _ => {}
        }
    }
    Some(Found {
        namespace: g?.to_string(),
        ..Found::new(Ecosystem::Maven, a?, v?)
    })
}

impl Stream {
    fn at_depth(depth: u8) -> Stream {
        Stream {
            depth,
            buf: Vec::new(),
            pos: 0,
            state: State::Header,
            found: Vec::new(),
            out: Vec::new(),
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        loop {
            match self.state {
                State::Done => {
                    self.buf = Vec::new();
                    self.pos = 0;
                    return;
                }
                State::Stored { .. } | State::Inflate { .. } => {
                    if self.pos < self.buf.len() {
                        let pending = std::mem::take(&mut self.buf);
                        let used = self.data(&pending[self.pos..]);
                        self.buf = pending;
                        self.pos += used;
                        if self.pos == self.buf.len() {
                            self.buf.clear();
                            self.pos = 0;
                        }
                    } else if !chunk.is_empty() {
                        let used = self.data(chunk);
                        chunk = &chunk[used..];
                    } else {
                        return;
                    }
                }
                State::Header | State::Descriptor => {
                    if !chunk.is_empty() {
                        if self.pos > 0 {
                            self.buf.drain(..self.pos);
                            self.pos = 0;
                        }
                        self.buf.extend_from_slice(chunk);
                        chunk = &[];
                    }
                    if !self.header() {
                        return;
                    }
                }
            }
        }
    }

    /// Entry data: returns how much of `bytes` the entry took (less than all
    /// when it ends within them).
    fn data(&mut self, bytes: &[u8]) -> usize {
        let (used, ended) = match &mut self.state {
            State::Stored { left, sink, .. } => {
                let n = bytes
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                sink.take(&bytes[..n]);
                *left -= n as u64;
                (n, *left == 0)
            }
            State::Inflate { dec, sink, .. } => {
                self.out.resize(32 << 10, 0);
                let (in0, out0) = (dec.total_in(), dec.total_out());
                let status = dec.decompress(bytes, &mut self.out, FlushDecompress::None);
                let used = (dec.total_in() - in0) as usize;
                let made = (dec.total_out() - out0) as usize;
                sink.take(&self.out[..made]);
                match status {
                    Ok(Status::StreamEnd) => (used, true),
                    Ok(_) if used == 0 && made == 0 => {
                        self.state = State::Done;
                        return bytes.len();
                    }
                    Ok(_) => (used, false),
                    Err(_) => {
                        self.state = State::Done;
                        return bytes.len();
                    }
                }
            }
            _ => return 0,
        };
        if ended {
            let (sink, descriptor) = match &mut self.state {
                State::Stored {
                    sink, descriptor, ..
                }
                | State::Inflate {
                    sink, descriptor, ..
                } => (std::mem::replace(sink, Sink::Skip), *descriptor),
                _ => (Sink::Skip, false),
            };
            self.end_entry(sink, descriptor);
        }
        used
    }

    /// A local file header or a data descriptor from the buffer; false when
    /// more bytes are needed (or the entries have ended).
    fn header(&mut self) -> bool {
        let b = &self.buf[self.pos..];
        if let State::Descriptor = self.state {
            // Optional signature, then CRC and two 32-bit sizes.
            let sig = b.len() >= 4 && u32_at(b, 0) == DESCRIPTOR;
            let need = if sig { 16 } else { 12 };
            if b.len() < need {
                return false;
            }
            self.pos += need;
            self.state = State::Header;
            return true;
        }
        if b.len() < 4 {
            return false;
        }
        if u32_at(b, 0) != LOCAL {
            // The central directory (or anything else): no more entries.
            self.state = State::Done;
            return true;
        }
        if b.len() < 30 {
            return false;
        }
        let flags = u16_at(b, 6);
        let method = u16_at(b, 8);
        let csize = u64::from(u32_at(b, 18));
        let (nlen, xlen) = (u16_at(b, 26), u16_at(b, 28));
        if b.len() < 30 + nlen + xlen {
            return false;
        }
        let name = String::from_utf8_lossy(&b[30..30 + nlen]).into_owned();
        self.pos += 30 + nlen + xlen;
        let descriptor = flags & 8 != 0;
        let sink = if is_pom_properties(&name) {
            Sink::Props(Vec::new())
        } else if is_archive(&name) && self.depth < MAX_DEPTH {
            Sink::Nested(Box::new(Stream::at_depth(self.depth + 1)))
        } else {
            Sink::Skip
        };
        match method {
            0 if csize == 0 && !descriptor => self.end_entry(sink, false),
            0 if csize > 0 => {
                self.state = State::Stored {
                    left: csize,
                    sink,
                    descriptor,
                }
            }
            8 => {
                self.state = State::Inflate {
                    dec: Box::new(Decompress::new(false)),
                    sink,
                    descriptor,
                }
            }
            // A stored entry of unknown size, or another method: its end
            // cannot be found without the central directory.
            _ => self.state = State::Done,
        }
        true
    }

    fn end_entry(&mut self, sink: Sink, descriptor: bool) {
        match sink {
            Sink::Props(b) => self
                .found
                .extend(parse_properties(&String::from_utf8_lossy(&b))),
            Sink::Nested(s) => self.found.extend(s.finish()),
            Sink::Skip => {}
        }
        self.state = if descriptor {
            State::Descriptor
        } else {
            State::Header
        };
    }

    pub fn finish(self) -> Vec<Found> {
        self.found
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A zip archive written entry by entry as jar tools do: deflated with a
    /// data descriptor (`jar`), or with the sizes up front, or stored.
    pub fn zip(entries: &[(&str, &[u8], u16, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data, method, descriptor) in entries {
            let body = if *method == 8 {
                let mut e =
                    flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let flags: u16 = if *descriptor { 8 } else { 0 };
            let (csize, usize_) = if *descriptor {
                (0u32, 0u32)
            } else {
                (body.len() as u32, data.len() as u32)
            };
            out.extend_from_slice(&LOCAL.to_le_bytes());
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0u8; 8]); // time, date, crc
            out.extend_from_slice(&csize.to_le_bytes());
            out.extend_from_slice(&usize_.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            if *descriptor {
                out.extend_from_slice(&DESCRIPTOR.to_le_bytes());
                out.extend_from_slice(&0u32.to_le_bytes());
                out.extend_from_slice(&(body.len() as u32).to_le_bytes());
                out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            }
        }
        // A central directory header ends the entries.
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out
    }

    const PROPS: &[u8] = b"#Generated by Maven\ngroupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.12.0\n";

    fn read(bytes: &[u8], chunk: usize) -> Vec<(String, String, String)> {
        let mut s = Stream::default();
        for c in bytes.chunks(chunk) {
            s.feed(c);
        }
        s.finish()
            .into_iter()
            .map(|f| (f.namespace, f.name, f.version))
            .collect()
    }

    #[test]
    fn coordinates_from_every_way_a_jar_is_written_and_nested_jars() {
        let classes = vec![7u8; 100_000];
        let inner = zip(&[(
            "META-INF/maven/com.google.guava/guava/pom.properties",
            b"groupId=com.google.guava\nartifactId=guava\nversion=33.0.0-jre\n",
            8,
            true,
        )]);
        let app = zip(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n", 8, true),
            ("org/x/Big.class", &classes, 8, true),
            (
                "META-INF/maven/org.apache.commons/commons-lang3/pom.properties",
                PROPS,
                8,
                true,
            ),
            ("data.bin", &classes, 0, false),
            ("BOOT-INF/lib/guava-33.0.0-jre.jar", &inner, 0, false),
            ("lib/other.jar", &inner, 8, false),
        ]);
        for chunk in [1, 13, 4096, 1 << 20] {
            let got = read(&app, chunk);
            assert_eq!(
                got,
                [
                    (
                        "org.apache.commons".to_string(),
                        "commons-lang3".to_string(),
                        "3.12.0".to_string()
                    ),
                    (
                        "com.google.guava".into(),
                        "guava".into(),
                        "33.0.0-jre".into()
                    ),
                    (
                        "com.google.guava".into(),
                        "guava".into(),
                        "33.0.0-jre".into()
                    ),
                ],
                "chunk {chunk}"
            );
        }
        assert!(read(b"not a zip at all", 4).is_empty());
        assert!(
            read(&app[..app.len() / 2], 512).len() <= 1,
            "a cut archive ends quietly"
        );
    }

    #[test]
    fn archive_names_and_properties() {
        assert!(is_archive("usr/share/java/commons-lang3.jar"));
        assert!(is_archive("opt/app/ROOT.WAR"));
        assert!(!is_archive("usr/share/java/readme.txt"));
        assert!(parse_properties("groupId=a\nartifactId=b\n").is_none());
    }
}
