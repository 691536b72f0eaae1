//! The final tree's packages from each layer's facts, in layer order: a
//! layer's whiteouts and opaque directories hide what lower layers wrote, then
//! its files replace what was at their paths. Each package keeps the layer that
//! brought it in: for a file rewritten by later layers (dpkg's status after
//! each `apt-get install`), the first layer since which that package has had
//! that version without a break.

use super::os::OsRelease;
use super::{Found, LayerFacts};
use std::collections::{BTreeMap, HashMap};

/// A package of the final tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub found: Found,
    /// The metadata file that declares it (relative, no leading `/`).
    pub path: String,
    /// Index of the image layer that brought it in.
    pub layer: usize,
}

/// Everything the scanners found in the final tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub packages: Vec<Package>,
    pub os: Option<OsRelease>,
    /// Metadata files that were too big to read, with their layer.
    pub too_big: Vec<(String, usize)>,
    /// Package databases that could not be read: path, layer, why.
    pub unread: Vec<(String, usize, String)>,
}

struct Entry {
    facts: super::FileFacts,
    /// The layer that wrote the file.
    layer: usize,
    /// (name, version, arch) → the layer that introduced it.
    since: HashMap<(String, String, Option<String>), usize>,
}

fn key(f: &Found) -> (String, String, Option<String>) {
    (
        format!("{}/{}", f.namespace, f.name),
        f.version.clone(),
        f.arch.clone(),
    )
}

/// Remove `path` and everything under it.
fn remove_tree<V>(state: &mut BTreeMap<String, V>, path: &str) {
    state.remove(path);
    remove_under(state, path);
}

/// Remove everything strictly under `dir`.
fn remove_under<V>(state: &mut BTreeMap<String, V>, dir: &str) {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<String> = state
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        state.remove(&k);
    }
}

/// Replay `layers` (bottom first) into the final tree's inventory.
pub fn merge<'a>(layers: impl IntoIterator<Item = &'a LayerFacts>) -> Inventory {
    let mut state: BTreeMap<String, Entry> = BTreeMap::new();
    let mut big: BTreeMap<String, usize> = BTreeMap::new();
    for (i, layer) in layers.into_iter().enumerate() {
        for dir in &layer.opaque {
            remove_under(&mut state, dir);
            remove_under(&mut big, dir);
        }
        for path in &layer.removed {
            remove_tree(&mut state, path);
            remove_tree(&mut big, path);
        }
        for f in &layer.files {
            let old = state.remove(&f.path);
            big.remove(&f.path);
            let since = f
                .packages
                .iter()
                .map(|p| {
                    let k = key(p);
                    let at = old
                        .as_ref()
                        .and_then(|o| o.since.get(&k).copied())
                        .unwrap_or(i);
                    (k, at)
                })
                .collect();
            state.insert(
                f.path.clone(),
                Entry {
                    facts: f.clone(),
                    layer: i,
                    since,
                },
            );
        }
        for path in &layer.too_big {
            state.remove(path);
            big.insert(path.clone(), i);
        }
    }
    let mut inv = Inventory::default();
    // etc/os-release wins over usr/lib/os-release, as systemd reads them.
    for p in ["usr/lib/os-release", "etc/os-release"] {
        if let Some(os) = state.get(p).and_then(|e| e.facts.os.clone()) {
            inv.os = Some(os);
        }
    }
    for (path, e) in &state {
        if let Some(why) = &e.facts.unread {
            inv.unread.push((path.clone(), e.layer, why.clone()));
        }
        for f in &e.facts.packages {
            let mut found = f.clone();
            if found.ecosystem == super::Ecosystem::Deb && found.license.is_none() {
                let doc = format!("usr/share/doc/{}/copyright", found.name);
                found.license = state
                    .get(&doc)
                    .map(|c| c.facts.licenses.join(" AND "))
                    .filter(|l| !l.is_empty());
            }
            inv.packages.push(Package {
                found,
                path: path.clone(),
                layer: e.since.get(&key(f)).copied().unwrap_or(0),
            });
        }
    }
    inv.packages.sort_by(|a, b| {
        (
            a.found.ecosystem,
            &a.found.namespace,
            &a.found.name,
            &a.found.version,
            &a.path,
        )
            .cmp(&(
                b.found.ecosystem,
                &b.found.namespace,
                &b.found.name,
                &b.found.version,
                &b.path,
            ))
    });
    inv.too_big = big.into_iter().collect();
    inv
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Kind};
    use super::*;

    fn status(pkgs: &[(&str, &str)]) -> super::super::FileFacts {
        let text: String = pkgs
            .iter()
            .map(|(n, v)| format!("Package: {n}\nStatus: install ok installed\nVersion: {v}\n\n"))
            .collect();
        parse(Kind::DpkgStatus, "var/lib/dpkg/status", text.as_bytes())
    }

    fn names(inv: &Inventory) -> Vec<(String, String, usize)> {
        inv.packages
            .iter()
            .map(|p| (p.found.name.clone(), p.found.version.clone(), p.layer))
            .collect()
    }

    #[test]
    fn a_rewritten_status_keeps_each_package_where_it_came_from() {
        let l0 = LayerFacts {
            files: vec![status(&[("base", "1"), ("libc6", "2.36")])],
            ..Default::default()
        };
        let l1 = LayerFacts::default();
        let l2 = LayerFacts {
            files: vec![status(&[
                ("base", "1"),
                ("libc6", "2.37"),
                ("python3", "3.11"),
            ])],
            ..Default::default()
        };
        let inv = merge([&l0, &l1, &l2]);
        assert_eq!(
            names(&inv),
            [
                ("base".into(), "1".into(), 0),
                ("libc6".into(), "2.37".into(), 2),
                ("python3".into(), "3.11".into(), 2)
            ]
        );
    }

    #[test]
    fn an_unread_database_of_the_final_tree_is_named_with_its_layer() {
        let bdb = |p: &str| parse(Kind::RpmOther("rpm's Berkeley DB database"), p, b"\0\0");
        let l0 = LayerFacts {
            files: vec![
                bdb("var/lib/rpm/Packages"),
                bdb("usr/lib/sysimage/rpm/Packages"),
            ],
            ..Default::default()
        };
        let l1 = LayerFacts {
            removed: vec!["usr/lib/sysimage/rpm".into()],
            ..Default::default()
        };
        let inv = merge([&l0, &l1]);
        assert_eq!(inv.unread.len(), 1, "{:?}", inv.unread);
        assert_eq!(inv.unread[0].0, "var/lib/rpm/Packages");
        assert_eq!(inv.unread[0].1, 0);
        assert!(inv.unread[0].2.contains("Berkeley DB"), "{:?}", inv.unread);
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_files() {
        let meta = |name: &str| {
            parse(
                Kind::PythonMetadata,
                &format!("app/site-packages/{name}-1.dist-info/METADATA"),
                format!("Name: {name}\nVersion: 1\n").as_bytes(),
            )
        };
        let l0 = LayerFacts {
            files: vec![meta("a"), meta("b"), meta("c")],
            ..Default::default()
        };
        let l1 = LayerFacts {
            removed: vec!["app/site-packages/a-1.dist-info".into()],
            ..Default::default()
        };
        let inv = merge([&l0, &l1]);
        assert_eq!(inv.packages.len(), 2);
        let l2 = LayerFacts {
            opaque: vec!["app/site-packages".into()],
            files: vec![meta("d")],
            ..Default::default()
        };
        let inv = merge([&l0, &l1, &l2]);
        assert_eq!(names(&inv), [("d".into(), "1".into(), 2)]);
        // A package removed and installed again counts from its new layer.
        let l3 = LayerFacts {
            files: vec![meta("a")],
            ..Default::default()
        };
        let inv = merge([&l0, &l1, &l3]);
        assert_eq!(inv.packages[0].layer, 2);
    }

    #[test]
    fn deb_licences_come_from_the_package_copyright_file() {
        let copyright = parse(
            Kind::DebCopyright,
            "usr/share/doc/x/copyright",
            b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nLicense: GPL-2+ or Artistic\n",
        );
        let l0 = LayerFacts {
            files: vec![status(&[("x", "1"), ("y", "2")]), copyright],
            ..Default::default()
        };
        let inv = merge([&l0]);
        assert_eq!(
            inv.packages[0].found.license.as_deref(),
            Some("(GPL-2+ OR Artistic)")
        );
        assert_eq!(inv.packages[1].found.license, None);
    }

    #[test]
    fn os_release_and_oversized_files() {
        let os = parse(
            Kind::OsRelease,
            "usr/lib/os-release",
            b"ID=debian\nVERSION_ID=12\n",
        );
        let l0 = LayerFacts {
            files: vec![os, status(&[("x", "1")])],
            ..Default::default()
        };
        let l1 = LayerFacts {
            too_big: vec!["var/lib/dpkg/status".into()],
            ..Default::default()
        };
        let inv = merge([&l0, &l1]);
        assert_eq!(inv.os.as_ref().map(|o| o.id.as_str()), Some("debian"));
        assert!(
            inv.packages.is_empty(),
            "the unread status replaced the old one"
        );
        assert_eq!(inv.too_big, [("var/lib/dpkg/status".to_string(), 1)]);
    }
}
