//! What an image's files say is installed: one scanner per ecosystem, each a
//! pure function from a file's path and bytes to the packages it declares.
//!
//! A layer is read once as a tar stream ([`super::layers`]); only the files a
//! scanner asks for ([`interest`]) are read, each up to [`MAX_FILE`] bytes, and
//! reduced to [`LayerFacts`] at once. [`merge`] then replays the layers' facts in
//! order, whiteouts included, into the packages of the final tree, each with the
//! layer that brought it in. Nothing here touches a filesystem.

pub mod apk;
pub mod cargo;
pub mod dpkg;
pub mod gobin;
pub mod java;
pub mod merge;
pub mod npm;
pub mod os;
pub mod python;
pub mod rpm;

pub use merge::{merge, Inventory, Package};

/// The largest metadata file a scanner reads (a dpkg status of several
/// thousand packages is a few MiB). A bigger one is named in a warning.
pub const MAX_FILE: u64 = 64 << 20;

/// Where a package's metadata came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Apk,
    Rpm,
    Python,
    Npm,
    Go,
    Maven,
    Cargo,
}

impl Ecosystem {
    /// The package URL type (purl-spec).
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Python => "pypi",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "golang",
            Ecosystem::Maven => "maven",
            Ecosystem::Cargo => "cargo",
        }
    }
}

/// What one file declares about one package.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Found {
    pub ecosystem: Ecosystem,
    /// npm's scope (`@types`), without the `@`; empty otherwise.
    pub namespace: String,
    pub name: String,
    pub version: String,
    /// The licence as the metadata states it (not normalised).
    pub license: Option<String>,
    /// The package's architecture where the metadata has one (dpkg, apk, rpm).
    pub arch: Option<String>,
    /// The source package (dpkg `Source:`, apk `o:`, rpm's source rpm), when
    /// it differs.
    pub source: Option<String>,
}

impl Found {
    /// The group as its ecosystem writes it: npm's scope as `@scope`, Maven's
    /// groupId as it is; None without one.
    pub fn group(&self) -> Option<String> {
        match (self.namespace.is_empty(), self.ecosystem) {
            (true, _) => None,
            (false, Ecosystem::Npm) => Some(format!("@{}", self.namespace)),
            (false, _) => Some(self.namespace.clone()),
        }
    }

    /// The full name as its ecosystem writes it: `@scope/name`,
    /// `group:artifact`, or the name.
    pub fn full_name(&self) -> String {
        match (self.group(), self.ecosystem) {
            (Some(g), Ecosystem::Maven) => format!("{g}:{}", self.name),
            (Some(g), _) => format!("{g}/{}", self.name),
            (None, _) => self.name.clone(),
        }
    }

    /// A package with only its name and version known.
    pub fn new(ecosystem: Ecosystem, name: &str, version: &str) -> Found {
        Found {
            ecosystem,
            namespace: String::new(),
            name: name.to_string(),
            version: version.to_string(),
            license: None,
            arch: None,
            source: None,
        }
    }
}

/// What kind of file a path is to the scanners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DpkgStatus,
    /// One package's paragraph (`var/lib/dpkg/status.d/NAME`, as distroless has).
    DpkgStatusD,
    ApkInstalled,
    /// rpm's sqlite database.
    RpmSqlite,
    /// An rpm database in a format not read (named in a warning).
    RpmOther(&'static str),
    /// `usr/share/doc/PACKAGE/copyright`: a Debian package's licences.
    DebCopyright,
    PythonMetadata,
    NpmPackage,
    OsRelease,
}

/// Whether a scanner wants the file at `path` (relative, no leading `/`).
pub fn interest(path: &str) -> Option<Kind> {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    match path {
        "var/lib/dpkg/status" => return Some(Kind::DpkgStatus),
        "lib/apk/db/installed" => return Some(Kind::ApkInstalled),
        "etc/os-release" | "usr/lib/os-release" => return Some(Kind::OsRelease),
        _ => {}
    }
    if rpm::SQLITE_PATHS.contains(&path) {
        return Some(Kind::RpmSqlite);
    }
    if let Some((_, what)) = rpm::OTHER_FORMATS.iter().find(|(p, _)| *p == path) {
        return Some(Kind::RpmOther(what));
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        if !name.contains('/') && !name.contains('.') && !name.is_empty() {
            return Some(Kind::DpkgStatusD);
        }
        return None;
    }
    if let Some(rest) = path.strip_prefix("usr/share/doc/") {
        if let Some((pkg, "copyright")) = rest.split_once('/') {
            if !pkg.is_empty() {
                return Some(Kind::DebCopyright);
            }
        }
        return None;
    }
    if python::is_metadata(path) {
        return Some(Kind::PythonMetadata);
    }
    if npm::is_manifest(path) {
        return Some(Kind::NpmPackage);
    }
    None
}

/// What one interesting file of a layer says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileFacts {
    /// Relative path, no leading `/`.
    pub path: String,
    pub packages: Vec<Found>,
    /// For an os-release file: the distribution.
    pub os: Option<os::OsRelease>,
    /// For a Debian copyright file: the licences it names.
    #[serde(default)]
    pub licenses: Vec<String>,
    /// Why a package database could not be read, for a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// Read one interesting file.
pub fn parse(kind: Kind, path: &str, bytes: &[u8]) -> FileFacts {
    let text = || String::from_utf8_lossy(bytes);
    let mut licenses = vec![];
    let mut unread = None;
    let (packages, os) = match kind {
        Kind::DpkgStatus | Kind::DpkgStatusD => (dpkg::parse(&text()), None),
        Kind::ApkInstalled => (apk::parse(&text()), None),
        Kind::RpmSqlite => match rpm::parse(bytes) {
            Ok(p) => (p, None),
            Err(e) => {
                unread = Some(e);
                (vec![], None)
            }
        },
        Kind::RpmOther(what) => {
            unread = Some(format!(
                "{what} is not read (only rpm's sqlite database is)"
            ));
            (vec![], None)
        }
        Kind::PythonMetadata => (python::parse(&text()).into_iter().collect(), None),
        Kind::NpmPackage => (npm::parse(bytes).into_iter().collect(), None),
        Kind::OsRelease => (vec![], Some(os::parse(&text()))),
        Kind::DebCopyright => {
            licenses = dpkg::copyright_licenses(&text());
            (vec![], None)
        }
    };
    FileFacts {
        path: path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string(),
        packages,
        os,
        licenses,
        unread,
    }
}

/// What a layer changes for the scanners: interesting files written, paths
/// removed (whiteouts, or an interesting path replaced by a non-file), and
/// directories made opaque.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerFacts {
    pub files: Vec<FileFacts>,
    pub removed: Vec<String>,
    pub opaque: Vec<String>,
    /// Interesting files left unread because they were over [`MAX_FILE`].
    pub too_big: Vec<String>,
    /// Caches, VCS directories and big files, for the layer hints.
    #[serde(default)]
    pub usage: super::hints::Usage,
}

/// Split `text` into deb822-style paragraphs (blank-line separated), each a
/// list of (field, value) with continuation lines joined by `\n`.
pub(crate) fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The first value of `field` (case-insensitive) in a paragraph.
pub(crate) fn field<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_picks_the_metadata_files() {
        let cases = [
            ("var/lib/dpkg/status", Some(Kind::DpkgStatus)),
            ("./var/lib/dpkg/status", Some(Kind::DpkgStatus)),
            ("var/lib/dpkg/status-old", None),
            ("var/lib/dpkg/status.d/base-files", Some(Kind::DpkgStatusD)),
            ("var/lib/dpkg/status.d/base-files.md5sums", None),
            ("lib/apk/db/installed", Some(Kind::ApkInstalled)),
            ("var/lib/rpm/rpmdb.sqlite", Some(Kind::RpmSqlite)),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", Some(Kind::RpmSqlite)),
            ("var/lib/rpm/rpmdb.sqlite-wal", None),
            (
                "var/lib/rpm/Packages",
                Some(Kind::RpmOther("rpm's Berkeley DB database")),
            ),
            ("etc/os-release", Some(Kind::OsRelease)),
            ("usr/lib/os-release", Some(Kind::OsRelease)),
            ("usr/share/doc/libc6/copyright", Some(Kind::DebCopyright)),
            ("usr/share/doc/libc6/changelog.Debian.gz", None),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(Kind::PythonMetadata),
            ),
            (
                "app/node_modules/left-pad/package.json",
                Some(Kind::NpmPackage),
            ),
            ("app/package.json", None),
            ("usr/bin/python3", None),
        ];
        for (path, want) in cases {
            assert_eq!(interest(path), want, "{path}");
        }
    }

    #[test]
    fn paragraphs_join_continuations_and_split_on_blank_lines() {
        let p = paragraphs("Package: a\nDescription: x\n more\n\nPackage: b\n\n\n");
        assert_eq!(p.len(), 2);
        assert_eq!(field(&p[0], "description"), Some("x\nmore"));
        assert_eq!(field(&p[1], "Package"), Some("b"));
        assert_eq!(field(&p[1], "Version"), None);
    }
}
