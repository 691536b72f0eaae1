//! The scanners' edge: an image's layer blobs read once each, as tar streams,
//! into [`LayerFacts`], then merged into the final tree's [`Inventory`]. Only
//! metadata files are held, each up to [`scan::MAX_FILE`]; a layer's other
//! bytes stream past.

use super::scan::{self, Inventory, LayerFacts};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::Path;

/// A tar entry's path as the scanners see it: relative, no `./`, no trailing `/`.
fn clean(raw: &str) -> String {
    raw.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

/// Every ancestor directory of `path`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// What one layer's tar stream says. `known`: the ancestor directories of
/// metadata files lower layers wrote, so that a file or link put in place of
/// one of them removes what was under it.
pub fn scan_tar(tar: impl Read, known: &HashSet<String>) -> io::Result<LayerFacts> {
    let mut facts = LayerFacts::default();
    let mut read_here: HashMap<String, usize> = HashMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = clean(&entry.path()?.to_string_lossy());
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n),
            None => (String::new(), path.as_str()),
        };
        if name == ".wh..wh..opq" {
            facts.opaque.push(parent);
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            facts.removed.push(if parent.is_empty() {
                gone.to_string()
            } else {
                format!("{parent}/{gone}")
            });
            continue;
        }
        let kind = scan::interest(&path);
        let ty = entry.header().entry_type();
        match (kind, ty) {
            (Some(kind), t) if t.is_file() => {
                let size = entry.header().size()?;
                if size > scan::MAX_FILE {
                    facts.too_big.push(path);
                    continue;
                }
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry).take(scan::MAX_FILE).read_to_end(&mut bytes)?;
                read_here.insert(path.clone(), facts.files.len());
                facts.files.push(scan::parse(kind, &path, &bytes));
            }
            (Some(_), t) if t.is_hard_link() => {
                let target = entry
                    .link_name()?
                    .map(|l| clean(&l.to_string_lossy()))
                    .unwrap_or_default();
                match read_here.get(&target) {
                    Some(&i) => {
                        let mut copy = facts.files[i].clone();
                        copy.path = path.clone();
                        read_here.insert(path, facts.files.len());
                        facts.files.push(copy);
                    }
                    None => facts.removed.push(path),
                }
            }
            (Some(_), t) if !t.is_dir() => facts.removed.push(path),
            (None, t) if !t.is_dir() && known.contains(&path) => facts.removed.push(path),
            _ => {}
        }
    }
    Ok(facts)
}

/// The inventory of an image whose layer blobs (bottom first) are `blobs`.
pub fn inventory(blobs: &[&Path]) -> io::Result<Inventory> {
    let mut all = Vec::with_capacity(blobs.len());
    let mut known: HashSet<String> = HashSet::new();
    for blob in blobs {
        let facts = scan_tar(crate::layer::writer::open_tar(blob)?, &known)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", blob.display())))?;
        for f in &facts.files {
            known.extend(ancestors(&f.path).map(str::to_string));
        }
        all.push(facts);
    }
    Ok(scan::merge(&all))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, ty, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*ty);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn a_layer_reads_metadata_whiteouts_and_replacements() {
        use tar::EntryType::*;
        let meta: &[u8] = b"Name: six\nVersion: 1.16.0\n";
        let lower = tar_of(&[
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Regular,
                meta,
                "",
            ),
            (
                "app/node_modules/ms/package.json",
                Regular,
                br#"{"name":"ms","version":"2.1.3"}"#,
                "",
            ),
            ("usr/bin/big", Regular, &[0u8; 4096], ""),
        ]);
        let known = HashSet::new();
        let f0 = scan_tar(&lower[..], &known).unwrap();
        assert_eq!(f0.files.len(), 2);
        let known: HashSet<String> = f0
            .files
            .iter()
            .flat_map(|f| ancestors(&f.path).map(str::to_string).collect::<Vec<_>>())
            .collect();
        let upper = tar_of(&[
            ("./app/node_modules/.wh.ms", Regular, b"", ""),
            ("usr/lib/python3/dist-packages", Symlink, b"", "/elsewhere"),
            (
                "srv/site-packages/x-1.dist-info/METADATA",
                Regular,
                b"Name: x\nVersion: 1\n",
                "",
            ),
            (
                "srv/site-packages/y-1.dist-info/METADATA",
                Link,
                b"",
                "srv/site-packages/x-1.dist-info/METADATA",
            ),
        ]);
        let f1 = scan_tar(&upper[..], &known).unwrap();
        assert_eq!(
            f1.removed,
            ["app/node_modules/ms", "usr/lib/python3/dist-packages"]
        );
        assert_eq!(f1.files.len(), 2, "the hard link is read as its target");
        let inv = scan::merge([&f0, &f1]);
        let got: Vec<(&str, usize)> = inv
            .packages
            .iter()
            .map(|p| (p.path.as_str(), p.layer))
            .collect();
        assert_eq!(
            got,
            [
                ("srv/site-packages/x-1.dist-info/METADATA", 1),
                ("srv/site-packages/y-1.dist-info/METADATA", 1)
            ]
        );
    }
}
