//! Debian packages: `var/lib/dpkg/status` (and one paragraph per file in
//! `status.d/`, as distroless images keep them). A package counts when dpkg
//! has it installed (`Status: install ok installed`, or any want with the
//! state `installed`); removed packages whose config files remain do not.
//! Licences come from the package's machine-readable copyright file
//! (`usr/share/doc/NAME/copyright`, DEP-5), where it has `License:` fields.

use super::{field, paragraphs, Ecosystem, Found};

pub fn parse(text: &str) -> Vec<Found> {
    paragraphs(text)
        .iter()
        .filter_map(|p| {
            let name = field(p, "Package")?;
            let version = field(p, "Version")?;
            // status.d paragraphs have no Status field: they are installed.
            if let Some(status) = field(p, "Status") {
                if status.split_whitespace().nth(2) != Some("installed") {
                    return None;
                }
            }
            // `Source: name (version)` names the source package.
            let source = field(p, "Source")
                .and_then(|s| s.split_whitespace().next())
                .filter(|s| *s != name)
                .map(str::to_string);
            Some(Found {
                ecosystem: Ecosystem::Deb,
                namespace: String::new(),
                name: name.to_string(),
                version: version.to_string(),
                license: None,
                arch: field(p, "Architecture").map(str::to_string),
                source,
            })
        })
        .collect()
}

/// The licence short names of a DEP-5 copyright file, each once, in order of
/// appearance (`GPL-2+`, `BSD-3-clause`, …). A file in another format names none.
pub fn copyright_licenses(text: &str) -> Vec<String> {
    if !text.starts_with("Format:") {
        return vec![];
    }
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(v) = line.strip_prefix("License:") else {
            continue;
        };
        let v = v.trim();
        // `License: GPL-2+ or Artistic` is a choice: kept as one expression.
        let v = v
            .trim_end_matches(',')
            .replace(" or ", " OR ")
            .replace(" and ", " AND ");
        let v = if v.contains(' ') { format!("({v})") } else { v };
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_only_with_arch_and_source() {
        let status = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u4
Description: GNU C Library
 Contains the standard libraries.

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1

Package: dpkg
Status: install ok installed
Architecture: amd64
Source: dpkg (1.21.22)
Version: 1.21.22
";
        let found = parse(status);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|f| (f.name.as_str(), f.version.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("libc6", "2.36-9+deb12u4"),
                ("tzdata", "2024a-0+deb12u1"),
                ("dpkg", "1.21.22")
            ]
        );
        assert_eq!(found[0].arch.as_deref(), Some("amd64"));
        assert_eq!(found[0].source.as_deref(), Some("glibc"));
        assert_eq!(
            found[2].source, None,
            "Source equal to the name is not kept"
        );
    }

    #[test]
    fn copyright_licences_from_dep5_only() {
        let dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Files: *\nCopyright: 1999 someone\nLicense: GPL-2+\n This program is free software.\n\n\
Files: lib/*\nLicense: BSD-3-clause or Expat\n\nLicense: GPL-2+\n text\n";
        assert_eq!(
            copyright_licenses(dep5),
            ["GPL-2+", "(BSD-3-clause OR Expat)"]
        );
        assert!(copyright_licenses("This package was debianized by…\nLicense: GPL\n").is_empty());
    }

    #[test]
    fn a_status_d_paragraph_needs_no_status() {
        let found = parse("Package: base-files\nVersion: 12.4\nArchitecture: arm64\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].arch.as_deref(), Some("arm64"));
    }
}
