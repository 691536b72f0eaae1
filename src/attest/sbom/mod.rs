//! SBOM documents of one image, as pure writers: the same inventory, subject
//! and layers always give the same bytes (`--reproducible` builds give
//! byte-identical documents). SPDX 2.3 JSON ([`spdx`]) and CycloneDX 1.6 JSON
//! ([`cyclonedx`]).

pub mod cyclonedx;
pub mod spdx;

use super::scan::{Inventory, Package};

/// An SBOM format, named by a file's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SPDX 2.3 JSON (`.spdx.json`).
    Spdx,
    /// CycloneDX 1.6 JSON (`.cdx.json`).
    CycloneDx,
}

impl Format {
    /// The format a file's name asks for: `.spdx.json` or `.cdx.json`, the
    /// suffixes both projects recommend.
    pub fn of_path(path: &std::path::Path) -> Result<Format, String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if name.ends_with(".spdx.json") {
            Ok(Format::Spdx)
        } else if name.ends_with(".cdx.json") {
            Ok(Format::CycloneDx)
        } else {
            Err(format!(
                "{}: name the SBOM's format by the file's suffix: .spdx.json (SPDX 2.3) or .cdx.json (CycloneDX 1.6)",
                crate::clip::clip(&path.display().to_string())
            ))
        }
    }

    /// `sbom.cdx.json` → `sbom.linux-arm64.cdx.json`: one file per platform.
    pub fn per_platform(self, path: &std::path::Path, platform: &str) -> std::path::PathBuf {
        let suffix = match self {
            Format::Spdx => ".spdx.json",
            Format::CycloneDx => ".cdx.json",
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(suffix).unwrap_or(&name);
        path.with_file_name(format!("{stem}.{}{suffix}", platform.replace('/', "-")))
    }

    pub fn write(self, input: &Input<'_>) -> anyhow::Result<Vec<u8>> {
        match self {
            Format::Spdx => spdx::write(input),
            Format::CycloneDx => cyclonedx::write(input),
        }
    }
}

/// A document as pretty JSON with a final newline.
fn pretty(doc: &impl serde::Serialize) -> anyhow::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(doc)?;
    out.push(b'\n');
    Ok(out)
}

/// The image a document describes.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The repository (`registry/group/app`), or a name for an image with no
    /// destination.
    pub name: String,
    /// The first destination's tag, if it has one.
    pub tag: Option<String>,
    /// The image manifest's digest.
    pub digest: String,
    /// `linux/amd64`, …
    pub platform: String,
    /// When the image was built (RFC 3339, seconds, UTC): follows `SOURCE_DATE_EPOCH`.
    pub created: String,
    /// kiln's version.
    pub tool_version: String,
}

/// Where an image layer came from.
#[derive(Debug, Clone, Default)]
pub struct LayerOrigin {
    pub diff_id: String,
    /// The Dockerfile line of the step (or FROM) that brought the layer in.
    pub line: Option<usize>,
    /// That instruction, as written (cut short).
    pub instruction: Option<String>,
}

/// What a document is made of.
pub struct Input<'a> {
    pub subject: &'a Subject,
    /// The image's layers, bottom first.
    pub layers: &'a [LayerOrigin],
    pub inventory: &'a Inventory,
    /// The Dockerfile's name as the user gave it.
    pub dockerfile: &'a str,
}

impl Input<'_> {
    /// The package URL of the image itself (`pkg:oci/app@sha256:…`).
    pub fn image_purl(&self) -> Option<String> {
        let s = self.subject;
        let last = s
            .name
            .rsplit('/')
            .next()
            .unwrap_or(&s.name)
            .to_ascii_lowercase();
        let mut p = packageurl::PackageUrl::new("oci", last.as_str()).ok()?;
        p.with_version(s.digest.as_str()).ok()?;
        if s.name.contains('/') {
            p.add_qualifier("repository_url", s.name.as_str()).ok()?;
        }
        if let Some((_, arch)) = s.platform.split_once('/') {
            p.add_qualifier("arch", arch.replace('/', "-")).ok()?;
        }
        Some(p.to_string())
    }

    pub fn purl(&self, p: &Package) -> Option<String> {
        super::purl::of(&p.found, self.inventory.os.as_ref())
    }

    /// "var/lib/dpkg/status, layer 3 (sha256:…), Dockerfile:7 RUN apt-get …"
    pub fn origin(&self, p: &Package) -> String {
        let mut s = format!("/{}", p.path);
        if let Some(l) = self.layers.get(p.layer) {
            s.push_str(&format!(", layer {} ({})", p.layer + 1, l.diff_id));
            if let Some(line) = l.line {
                s.push_str(&format!(", {}:{line}", self.dockerfile));
                if let Some(i) = &l.instruction {
                    s.push(' ');
                    s.push_str(i);
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::Format;
    use std::path::Path;

    #[test]
    fn formats_by_suffix_and_per_platform_names() {
        assert_eq!(
            Format::of_path(Path::new("out/sbom.spdx.json")),
            Ok(Format::Spdx)
        );
        assert_eq!(
            Format::of_path(Path::new("gl-sbom.cdx.json")),
            Ok(Format::CycloneDx)
        );
        let e = Format::of_path(Path::new("sbom.json")).unwrap_err();
        assert!(e.contains(".spdx.json") && e.contains(".cdx.json"), "{e}");
        assert_eq!(
            Format::CycloneDx.per_platform(Path::new("o/gl-sbom.cdx.json"), "linux/arm/v7"),
            Path::new("o/gl-sbom.linux-arm-v7.cdx.json")
        );
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::attest::scan::{self, Kind, LayerFacts};

    pub fn subject() -> Subject {
        Subject {
            name: "registry.example/group/app".into(),
            tag: Some("1.0".into()),
            digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                .into(),
            platform: "linux/amd64".into(),
            created: "2026-12-07T00:00:00Z".into(),
            tool_version: "0.1.0".into(),
        }
    }

    pub fn layers() -> Vec<LayerOrigin> {
        vec![
            LayerOrigin {
                diff_id: "sha256:aa".into(),
                line: Some(1),
                instruction: Some("FROM debian:bookworm".into()),
            },
            LayerOrigin {
                diff_id: "sha256:bb".into(),
                line: Some(3),
                instruction: Some("RUN pip install requests".into()),
            },
        ]
    }

    /// The fixture's subject, layers and inventory, owned.
    pub struct Owned(Subject, Vec<LayerOrigin>, scan::Inventory);

    pub fn owned() -> Owned {
        Owned(subject(), layers(), inventory())
    }

    impl Owned {
        pub fn input(&self) -> Input<'_> {
            Input {
                subject: &self.0,
                layers: &self.1,
                inventory: &self.2,
                dockerfile: "Dockerfile",
            }
        }
    }

    pub fn inventory() -> scan::Inventory {
        let l0 = LayerFacts {
            files: vec![
                scan::parse(Kind::OsRelease, "etc/os-release", b"ID=debian\nVERSION_ID=12\n"),
                scan::parse(
                    Kind::DpkgStatus,
                    "var/lib/dpkg/status",
                    b"Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n",
                ),
            ],
            ..Default::default()
        };
        let l1 = LayerFacts {
            files: vec![
                scan::parse(
                    Kind::PythonMetadata,
                    "usr/local/lib/python3.11/site-packages/requests-2.32.3.dist-info/METADATA",
                    b"Name: requests\nVersion: 2.32.3\nLicense: Apache 2.0\n",
                ),
                scan::parse(
                    Kind::NpmPackage,
                    "app/node_modules/@types/node/package.json",
                    br#"{"name":"@types/node","version":"20.1.0","license":"see LICENSE"}"#,
                ),
            ],
            ..Default::default()
        };
        scan::merge([&l0, &l1])
    }
}
