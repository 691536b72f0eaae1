//! Debian packages: `var/lib/dpkg/status` (and one paragraph per file in
//! `status.d/`, as distroless images keep them). A package counts when dpkg
//! has it installed (`Status: install ok installed`, or any want with the
//! state `installed`); removed packages whose config files remain do not.

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
    fn a_status_d_paragraph_needs_no_status() {
        let found = parse("Package: base-files\nVersion: 12.4\nArchitecture: arm64\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].arch.as_deref(), Some("arm64"));
    }
}
