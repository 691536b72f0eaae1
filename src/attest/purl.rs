//! Package URLs (purl-spec) for what the scanners found: the distribution
//! qualifies deb and apk packages (`?arch=amd64&distro=debian-12`), PyPI names
//! are normalised as PEP 503 says, npm scopes become the namespace.

use super::scan::os::OsRelease;
use super::scan::{Ecosystem, Found};
use packageurl::PackageUrl;

/// PEP 503: lower case, each run of `-`, `_` and `.` one `-`.
pub fn pypi_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

pub fn of(f: &Found, os: Option<&OsRelease>) -> Option<String> {
    let name = match f.ecosystem {
        Ecosystem::Python => pypi_name(&f.name),
        _ => f.name.clone(),
    };
    let mut p = PackageUrl::new(f.ecosystem.purl_type(), name.as_str()).ok()?;
    // rpm: `version-release`, the epoch a qualifier.
    let (version, epoch) = match f.ecosystem {
        Ecosystem::Rpm => super::scan::rpm::purl_version(&f.version),
        _ => (f.version.as_str(), None),
    };
    p.with_version(version).ok()?;
    match f.ecosystem {
        Ecosystem::Deb | Ecosystem::Apk | Ecosystem::Rpm => {
            let distro = os.map(|o| o.id.as_str()).filter(|i| !i.is_empty());
            // The vendor: the image's distribution, else the ecosystem's own.
            let ns = distro.or(match f.ecosystem {
                Ecosystem::Apk => Some("alpine"),
                Ecosystem::Deb => Some("debian"),
                _ => None,
            });
            if let Some(ns) = ns {
                p.with_namespace(ns.to_ascii_lowercase()).ok()?;
            }
            if let Some(a) = &f.arch {
                p.add_qualifier("arch", a.as_str()).ok()?;
            }
            if let Some(e) = epoch {
                p.add_qualifier("epoch", e).ok()?;
            }
            if let Some(o) = os.filter(|o| !o.id.is_empty() && !o.version_id.is_empty()) {
                p.add_qualifier("distro", format!("{}-{}", o.id, o.version_id))
                    .ok()?;
            }
        }
        // `github.com/evanw/esbuild` → namespace `github.com/evanw`, name `esbuild`.
        Ecosystem::Go => {
            if let Some((ns, last)) = f.name.rsplit_once('/') {
                let mut g = PackageUrl::new("golang", last).ok()?;
                g.with_namespace(ns).ok()?;
                g.with_version(f.version.as_str()).ok()?;
                return Some(g.to_string());
            }
        }
        Ecosystem::Maven if !f.namespace.is_empty() => {
            p.with_namespace(f.namespace.as_str()).ok()?;
        }
        Ecosystem::Npm if !f.namespace.is_empty() => {
            p.with_namespace(format!("@{}", f.namespace)).ok()?;
        }
        _ => {}
    }
    Some(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(e: Ecosystem, ns: &str, name: &str, v: &str, arch: Option<&str>) -> Found {
        Found {
            ecosystem: e,
            namespace: ns.into(),
            name: name.into(),
            version: v.into(),
            license: None,
            arch: arch.map(str::to_string),
            source: None,
        }
    }

    #[test]
    fn purls_per_ecosystem() {
        let deb12 = OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: String::new(),
        };
        assert_eq!(
            of(
                &found(Ecosystem::Deb, "", "libc6", "2.36-9+deb12u4", Some("amd64")),
                Some(&deb12)
            )
            .unwrap(),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            of(
                &found(Ecosystem::Python, "", "Typing_Extensions", "4.12.2", None),
                None
            )
            .unwrap(),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(
            of(
                &found(Ecosystem::Npm, "babel", "core", "7.24.0", None),
                None
            )
            .unwrap(),
            "pkg:npm/%40babel/core@7.24.0"
        );
        assert_eq!(
            of(
                &found(Ecosystem::Apk, "", "musl", "1.2.4-r2", Some("x86_64")),
                None
            )
            .unwrap(),
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
        );
        assert_eq!(
            of(
                &found(
                    Ecosystem::Go,
                    "",
                    "github.com/evanw/esbuild",
                    "v0.21.5",
                    None
                ),
                None
            )
            .unwrap(),
            "pkg:golang/github.com/evanw/esbuild@v0.21.5"
        );
        assert_eq!(
            of(&found(Ecosystem::Go, "", "stdlib", "1.22.4", None), None).unwrap(),
            "pkg:golang/stdlib@1.22.4"
        );
        let fedora = OsRelease {
            id: "fedora".into(),
            version_id: "40".into(),
            pretty_name: String::new(),
        };
        assert_eq!(
            of(
                &found(
                    Ecosystem::Rpm,
                    "",
                    "bash",
                    "1:5.2.26-3.fc40",
                    Some("x86_64")
                ),
                Some(&fedora)
            )
            .unwrap(),
            "pkg:rpm/fedora/bash@5.2.26-3.fc40?arch=x86_64&distro=fedora-40&epoch=1"
        );
        assert_eq!(
            of(&found(Ecosystem::Rpm, "", "zlib", "1.3-1", None), None).unwrap(),
            "pkg:rpm/zlib@1.3-1"
        );
        assert_eq!(pypi_name("zope.interface"), "zope-interface");
        assert_eq!(pypi_name("a__b--c"), "a-b-c");
    }
}
