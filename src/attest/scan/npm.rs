//! npm packages: `node_modules/NAME/package.json` and
//! `node_modules/@SCOPE/NAME/package.json`, at any depth (nested
//! `node_modules` are dependencies too). Other `package.json` files inside a
//! package (test fixtures, `"type": "module"` markers) are not packages.

use super::{Ecosystem, Found};

/// Whether `path` is an installed package's manifest.
pub fn is_manifest(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [.., "node_modules", scope, name, "package.json"] if scope.starts_with('@') => {
            !name.is_empty() && !name.starts_with('.')
        }
        [.., "node_modules", name, "package.json"] => {
            !name.is_empty() && !name.starts_with('.') && !name.starts_with('@')
        }
        _ => false,
    }
}

pub fn parse(bytes: &[u8]) -> Option<Found> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let full = v.get("name")?.as_str()?;
    let version = v.get("version")?.as_str()?;
    let (namespace, name) = match full.strip_prefix('@').and_then(|s| s.split_once('/')) {
        Some((scope, name)) => (scope.to_string(), name.to_string()),
        None => (String::new(), full.to_string()),
    };
    // `"license": "MIT"`, or the old `{"type": "MIT"}`, or `"licenses": [{"type": …}]`.
    let kind = |l: &serde_json::Value| {
        l.as_str()
            .map(str::to_string)
            .or_else(|| l.get("type").and_then(|t| t.as_str()).map(str::to_string))
    };
    let license = v.get("license").and_then(kind).or_else(|| {
        let all: Vec<String> = v
            .get("licenses")?
            .as_array()?
            .iter()
            .filter_map(kind)
            .collect();
        (!all.is_empty()).then(|| all.join(" OR "))
    });
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(Found {
        namespace,
        license,
        ..Found::new(Ecosystem::Npm, &name, version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths() {
        for (p, want) in [
            ("app/node_modules/ms/package.json", true),
            ("app/node_modules/@types/node/package.json", true),
            ("app/node_modules/a/node_modules/b/package.json", true),
            ("app/node_modules/ms/lib/package.json", false),
            ("app/node_modules/@types/package.json", false),
            ("app/node_modules/.bin/package.json", false),
            ("app/package.json", false),
        ] {
            assert_eq!(is_manifest(p), want, "{p}");
        }
    }

    #[test]
    fn names_scopes_and_licences() {
        let f = parse(br#"{"name":"@babel/core","version":"7.24.0","license":"MIT"}"#).unwrap();
        assert_eq!((f.namespace.as_str(), f.name.as_str()), ("babel", "core"));
        assert_eq!(f.license.as_deref(), Some("MIT"));
        let f = parse(br#"{"name":"old","version":"0.1.0","licenses":[{"type":"MIT"},{"type":"Apache-2.0"}]}"#)
            .unwrap();
        assert_eq!(f.license.as_deref(), Some("MIT OR Apache-2.0"));
        let f = parse(br#"{"name":"t","version":"1.0.0","license":{"type":"ISC"}}"#).unwrap();
        assert_eq!(f.license.as_deref(), Some("ISC"));
        assert!(parse(br#"{"name":"noversion"}"#).is_none());
        assert!(parse(b"not json").is_none());
    }
}
