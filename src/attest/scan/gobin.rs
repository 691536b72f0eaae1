//! Go programs: the build information the Go linker embeds (`go version -m`
//! reads the same). It starts with the magic `\xff Go buildinf:`; since Go 1.18
//! the header is followed inline by two length-prefixed strings, the Go version
//! and the module information (`path`, `mod`, `dep`, `=>` lines between two
//! 16-byte sentinels). A program is read as a stream ([`Stream`]): only the
//! bytes after the magic are kept, at most [`CAPTURE`].
//!
//! Older layouts (pointers into the data segment, Go < 1.18) are not read.

use super::{Ecosystem, Found};

pub const MAGIC: &[u8] = b"\xff Go buildinf:";
/// How much of the build information is kept: module lists run to a few KiB.
pub const CAPTURE: usize = 256 << 10;
/// Smaller files are no Go programs.
pub const MIN_SIZE: u64 = 4096;

/// Watches a file's bytes go by for the build information.
#[derive(Debug, Default)]
pub struct Stream {
    /// The last bytes of the previous chunk, where a magic may have begun.
    carry: Vec<u8>,
    /// From the magic on, once seen.
    captured: Option<Vec<u8>>,
}

impl Stream {
    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(c) = &mut self.captured {
            let room = CAPTURE.saturating_sub(c.len());
            c.extend_from_slice(&chunk[..chunk.len().min(room)]);
            return;
        }
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(chunk);
        if let Some(i) = memchr::memmem::find(&window, MAGIC) {
            let end = window.len().min(i + CAPTURE);
            self.captured = Some(window[i..end].to_vec());
            return;
        }
        let keep = window.len().min(MAGIC.len() - 1);
        self.carry = window[window.len() - keep..].to_vec();
    }

    pub fn finish(self) -> Vec<Found> {
        self.captured.map(|c| parse(&c)).unwrap_or_default()
    }
}

fn uvarint(b: &[u8], pos: &mut usize) -> Option<usize> {
    let mut x: u64 = 0;
    for shift in (0..64).step_by(7) {
        let c = *b.get(*pos)?;
        *pos += 1;
        x |= u64::from(c & 0x7f) << shift;
        if c < 0x80 {
            return usize::try_from(x).ok();
        }
    }
    None
}

fn string(b: &[u8], pos: &mut usize) -> Option<String> {
    let n = uvarint(b, pos)?;
    let s = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(String::from_utf8_lossy(s).into_owned())
}

fn module(path: &str, version: &str) -> Found {
    Found::new(Ecosystem::Go, path, version)
}

/// The modules of build information that starts at the magic: the standard
/// library (`stdlib` at the Go version), the main module, and each dependency
/// (a replacement's path and version where one is given).
pub fn parse(b: &[u8]) -> Vec<Found> {
    if !b.starts_with(MAGIC) || b.len() < 32 || b[15] & 2 == 0 {
        return vec![];
    }
    let mut pos = 32;
    let Some(go) = string(b, &mut pos) else {
        return vec![];
    };
    let info = string(b, &mut pos).unwrap_or_default();
    // The module text sits between two 16-byte sentinels.
    let info = if info.len() >= 33 && info.as_bytes()[info.len() - 17] == b'\n' {
        info.get(16..info.len() - 16).unwrap_or("").to_string()
    } else {
        info
    };
    let mut out = vec![module("stdlib", go.trim_start_matches("go"))];
    for line in info.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => {
                out.push(module(path, version))
            }
            ["=>", path, version, ..] => {
                if let Some(last) = out.last_mut() {
                    *last = module(path, version);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build information as the Go 1.18+ linker lays it out.
    fn buildinfo(go: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8); // pointer size
        b.push(2); // flags: inline strings
        b.resize(32, 0);
        let info = format!("0123456789abcdef{modinfo}\n0123456789abcdef");
        for s in [go, info.as_str()] {
            let mut n = s.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                b.push(if n > 0 { byte | 0x80 } else { byte });
                if n == 0 {
                    break;
                }
            }
            b.extend_from_slice(s.as_bytes());
        }
        b
    }

    #[test]
    fn modules_dependencies_and_replacements() {
        let info = "path\tgithub.com/evanw/esbuild/cmd/esbuild\n\
                    mod\tgithub.com/evanw/esbuild\tv0.21.5\t\n\
                    dep\tgolang.org/x/sys\tv0.0.0-20220715151400-c0bba94af5f8\th1:abc=\n\
                    dep\texample.com/old\tv1.0.0\th1:x=\n\
                    =>\texample.com/new\tv1.2.0\th1:y=\n\
                    build\tCGO_ENABLED=0";
        let got: Vec<(String, String)> = parse(&buildinfo("go1.22.4", info))
            .into_iter()
            .map(|f| (f.name, f.version))
            .collect();
        assert_eq!(
            got,
            [
                ("stdlib".to_string(), "1.22.4".to_string()),
                ("github.com/evanw/esbuild".into(), "v0.21.5".into()),
                (
                    "golang.org/x/sys".into(),
                    "v0.0.0-20220715151400-c0bba94af5f8".into()
                ),
                ("example.com/new".into(), "v1.2.0".into()),
            ]
        );
    }

    #[test]
    fn found_in_a_stream_across_chunk_boundaries() {
        let mut file = vec![0x7fu8, b'E', b'L', b'F'];
        file.resize(10_000, 0xAA);
        file.extend(buildinfo(
            "go1.19.8",
            "path\tgithub.com/opencontainers/umoci/cmd/umoci",
        ));
        file.resize(30_000, 0);
        for chunk in [1, 7, 4096, 65536] {
            let mut s = Stream::default();
            for c in file.chunks(chunk) {
                s.feed(c);
            }
            let got = s.finish();
            assert_eq!(got.len(), 1, "chunk {chunk}");
            assert_eq!(
                (got[0].name.as_str(), got[0].version.as_str()),
                ("stdlib", "1.19.8")
            );
        }
        let mut s = Stream::default();
        s.feed(&[0u8; 5000]);
        assert!(s.finish().is_empty());
        assert!(
            parse(b"\xff Go buildinf:\x08\x00").is_empty(),
            "old layouts are not read"
        );
    }

    #[test]
    fn a_real_go_program() {
        // Debian's umoci (Go 1.19, built in GOPATH mode: no module lines),
        // which ci/test installs.
        let data = std::fs::read("/usr/bin/umoci").expect("umoci (ci/test installs it)");
        let mut s = Stream::default();
        for c in data.chunks(1 << 20) {
            s.feed(c);
        }
        let got = s.finish();
        assert_eq!(
            got.first().map(|f| f.name.as_str()),
            Some("stdlib"),
            "{got:?}"
        );
    }
}
