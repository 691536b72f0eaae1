//! Python distributions: `*.dist-info/METADATA` and `*.egg-info/PKG-INFO` (or
//! an `.egg-info` file) directly in a `site-packages` or `dist-packages`
//! directory, which is what `pip list` reports. Copies vendored inside another
//! package (`pip/_vendor/…`) are that package's business and not listed.

use super::{Ecosystem, Found};

/// Whether `path` is an installed distribution's metadata file.
pub fn is_metadata(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let in_site = |dir: &str| dir == "site-packages" || dir == "dist-packages";
    match parts.as_slice() {
        [.., site, info, file]
            if in_site(site)
                && ((info.ends_with(".dist-info") && *file == "METADATA")
                    || (info.ends_with(".egg-info") && *file == "PKG-INFO")) =>
        {
            true
        }
        [.., site, info] => in_site(site) && info.ends_with(".egg-info"),
        _ => false,
    }
}

/// Name, version and licence from the metadata's header (RFC 822 style, up to
/// the first blank line).
pub fn parse(text: &str) -> Option<Found> {
    let mut name = None;
    let mut version = None;
    let mut expression = None;
    let mut license = None;
    let mut classifiers = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "version" => version = Some(v),
            "license-expression" => expression = Some(v),
            "license" if !v.is_empty() && v != "UNKNOWN" => license = Some(v),
            "classifier" => {
                if let Some(l) = v.strip_prefix("License :: ") {
                    let l = l.rsplit(" :: ").next().unwrap_or(l);
                    if l != "OSI Approved" {
                        classifiers.push(l);
                    }
                }
            }
            _ => {}
        }
    }
    // PEP 639's expression first; a one-line License field next (a long one
    // is the licence's text, not its name); the classifiers last.
    let license = expression
        .or(license.filter(|l| l.len() <= 100))
        .map(str::to_string)
        .or_else(|| (!classifiers.is_empty()).then(|| classifiers.join(" AND ")));
    Some(Found {
        license,
        ..Found::new(Ecosystem::Python, name?, version?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_paths() {
        for (p, want) in [
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                true,
            ),
            (
                "app/.venv/lib/python3.11/site-packages/idna-3.7.dist-info/METADATA",
                true,
            ),
            (
                "usr/lib/python3/dist-packages/PyYAML-6.0.egg-info/PKG-INFO",
                true,
            ),
            ("usr/lib/python3/dist-packages/old.egg-info", true),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/RECORD",
                false,
            ),
            (
                "x/site-packages/pip/_vendor/rich-13.dist-info/METADATA",
                false,
            ),
            ("src/foo.dist-info/METADATA", false),
        ] {
            assert_eq!(is_metadata(p), want, "{p}");
        }
    }

    #[test]
    fn licence_from_expression_field_or_classifiers() {
        let m = "Metadata-Version: 2.1\nName: requests\nVersion: 2.32.3\nLicense: Apache-2.0\n\
                 Classifier: License :: OSI Approved :: Apache Software License\n\nLicense: body\n";
        let f = parse(m).unwrap();
        assert_eq!(
            (f.name.as_str(), f.version.as_str()),
            ("requests", "2.32.3")
        );
        assert_eq!(f.license.as_deref(), Some("Apache-2.0"));
        let m = "Name: idna\nVersion: 3.7\nLicense-Expression: BSD-3-Clause\nLicense: UNKNOWN\n";
        assert_eq!(parse(m).unwrap().license.as_deref(), Some("BSD-3-Clause"));
        let m = "Name: x\nVersion: 1\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: MIT License\n";
        assert_eq!(parse(m).unwrap().license.as_deref(), Some("MIT License"));
        let long = format!("Name: y\nVersion: 2\nLicense: {}\n", "word ".repeat(40));
        assert_eq!(parse(&long).unwrap().license, None);
        assert!(parse("Name: z\n").is_none());
    }
}
