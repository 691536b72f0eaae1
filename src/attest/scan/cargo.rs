//! Rust programs built with cargo-auditable: the ELF section `.dep-v0` holds
//! the crates the program was built from, as zlib-compressed JSON
//! (`{"packages": [{"name", "version", "source", "kind", "root"}]}`).
//!
//! Sections are found through the section header table, which linkers put at
//! the end of the file, and `.dep-v0`, a section that is not loaded, sits just
//! before it. A program is read as a stream ([`Stream`]) that keeps its ELF
//! header and its last [`TAIL`] bytes only; a `.dep-v0` further from the end
//! (behind much debug information) is not found.

use super::{Ecosystem, Found};
use std::io::Read;

/// How much of a program's end is kept.
pub const TAIL: u64 = 4 << 20;
/// The most decompressed JSON read from `.dep-v0`.
const MAX_JSON: u64 = 16 << 20;

/// Watches a program's bytes go by, keeping its head and its tail.
#[derive(Debug, Default)]
pub struct Stream {
    size: u64,
    seen: u64,
    head: Vec<u8>,
    /// The file's bytes from `size - TAIL` (or 0) on, once it is known to be
    /// a 64-bit little-endian ELF file.
    tail: Vec<u8>,
    not_elf: bool,
}

impl Stream {
    /// A stream over a file of `size` bytes.
    pub fn new(size: u64) -> Stream {
        Stream {
            size,
            ..Default::default()
        }
    }

    fn tail_start(&self) -> u64 {
        self.size.saturating_sub(TAIL)
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.not_elf {
            return;
        }
        let at = self.seen;
        self.seen += chunk.len() as u64;
        if self.head.len() < 64 {
            let n = (64 - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..n]);
            if self.head.len() >= 6 && !self.head.starts_with(b"\x7fELF\x02\x01") {
                self.not_elf = true;
                return;
            }
        }
        let start = self.tail_start();
        if self.seen > start {
            let skip = usize::try_from(start.saturating_sub(at)).unwrap_or(usize::MAX);
            if skip < chunk.len() {
                if self.tail.capacity() == 0 {
                    self.tail
                        .reserve(usize::try_from(self.size - start).unwrap_or(0));
                }
                self.tail.extend_from_slice(&chunk[skip..]);
            }
        }
    }

    /// The bytes at file offset `off`, `len` long, if the tail holds them.
    fn at(&self, off: u64, len: u64) -> Option<&[u8]> {
        let rel = usize::try_from(off.checked_sub(self.tail_start())?).ok()?;
        let end = rel.checked_add(usize::try_from(len).ok()?)?;
        self.tail.get(rel..end)
    }

    pub fn finish(self) -> Vec<Found> {
        if self.not_elf || self.head.len() < 64 || self.seen != self.size {
            return vec![];
        }
        self.dep_section().and_then(packages).unwrap_or_default()
    }

    fn dep_section(&self) -> Option<&[u8]> {
        let h = &self.head;
        let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as u64;
        let u32_at = |b: &[u8], i: usize| {
            u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4])) as u64
        };
        let u64_at =
            |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let (shoff, shentsize, shnum, shstrndx) = (
            u64_at(h, 0x28),
            u16_at(h, 0x3A),
            u16_at(h, 0x3C),
            u16_at(h, 0x3E),
        );
        if shentsize < 64 || shnum == 0 || shstrndx >= shnum {
            return None;
        }
        let table = self.at(shoff, shentsize * shnum)?;
        let header = |i: u64| table.get((i * shentsize) as usize..(i * shentsize + 64) as usize);
        let strtab = header(shstrndx)?;
        let names = self.at(u64_at(strtab, 24), u64_at(strtab, 32))?;
        for i in 0..shnum {
            let sh = header(i)?;
            let name_at = usize::try_from(u32_at(sh, 0)).ok()?;
            let name = names.get(name_at..)?;
            if name.starts_with(b".dep-v0\0") {
                return self.at(u64_at(sh, 24), u64_at(sh, 32));
            }
        }
        None
    }
}

/// The crates of a `.dep-v0` section's compressed JSON: all but build
/// dependencies (which are not in the program), the root crate included.
pub fn packages(compressed: &[u8]) -> Option<Vec<Found>> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_JSON)
        .read_to_end(&mut json)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    Some(
        v.get("packages")?
            .as_array()?
            .iter()
            .filter(|p| p.get("kind").and_then(|k| k.as_str()) != Some("build"))
            .filter_map(|p| {
                Some(Found::new(
                    Ecosystem::Cargo,
                    p.get("name")?.as_str()?,
                    p.get("version")?.as_str()?,
                ))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A 64-bit ELF file of `pad` filler bytes, then `.dep-v0` holding
    /// `json` compressed, the section names and the section header table.
    fn elf(pad: usize, json: &str) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(json.as_bytes()).unwrap();
        let dep = z.finish().unwrap();
        let names = b"\0.dep-v0\0.shstrtab\0";
        let mut f = b"\x7fELF\x02\x01\x01".to_vec();
        f.resize(64 + pad, 0);
        let dep_at = f.len() as u64;
        f.extend_from_slice(&dep);
        let names_at = f.len() as u64;
        f.extend_from_slice(names);
        let shoff = f.len() as u64;
        let section = |name: u32, off: u64, size: u64| {
            let mut s = vec![0u8; 64];
            s[0..4].copy_from_slice(&name.to_le_bytes());
            s[24..32].copy_from_slice(&off.to_le_bytes());
            s[32..40].copy_from_slice(&size.to_le_bytes());
            s
        };
        f.extend(section(0, 0, 0));
        f.extend(section(1, dep_at, dep.len() as u64));
        f.extend(section(9, names_at, names.len() as u64));
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        f[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        f[0x3E..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    const DEPS: &str = r#"{"packages":[{"name":"adler2","version":"2.0.1","source":"crates.io"},{"name":"cc","version":"1.2.0","source":"crates.io","kind":"build"},{"name":"tool","version":"0.3.0","source":"local","dependencies":[0],"root":true}]}"#;

    fn read(file: &[u8], chunk: usize) -> Vec<(String, String)> {
        let mut s = Stream::new(file.len() as u64);
        for c in file.chunks(chunk) {
            s.feed(c);
        }
        s.finish()
            .into_iter()
            .map(|f| (f.name, f.version))
            .collect()
    }

    #[test]
    fn crates_from_the_section_near_the_end() {
        let want = [
            ("adler2".to_string(), "2.0.1".to_string()),
            ("tool".into(), "0.3.0".into()),
        ];
        for (pad, chunk) in [(100, 7), (10_000, 4096), ((6 << 20) as usize, 1 << 20)] {
            assert_eq!(read(&elf(pad, DEPS), chunk), want, "pad {pad}");
        }
        assert!(read(b"#!/bin/sh\necho hi\n", 4).is_empty());
        // A file cut short names nothing.
        let f = elf(100, DEPS);
        let mut s = Stream::new(f.len() as u64);
        s.feed(&f[..f.len() - 10]);
        assert!(s.finish().is_empty());
    }
}
