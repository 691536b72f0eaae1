//! A package's licence as its metadata states it, turned into an SPDX licence
//! expression. A valid expression is kept as it is. Otherwise each licence
//! named is mapped on its own: an SPDX id, or a name whose meaning is exact
//! (Debian's `GPL-2+`, `LGPL-2.1`, `BSD-3-clause`, `Expat`; `MIT License`);
//! a name kiln cannot map without guessing (`public-domain`, `BSD`, `GPL`
//! with no version) becomes a `LicenseRef-` of its own, listed with the
//! name it stands for, never a guessed id.

use regex::Regex;
use std::sync::LazyLock;

/// A declared licence as an SPDX expression, with the `LicenseRef-`s it uses
/// and the names they stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub expression: String,
    pub refs: Vec<(String, String)>,
}

impl Declared {
    /// A lone SPDX licence id (no operator, no `LicenseRef-`).
    pub fn single_id(&self) -> Option<&str> {
        (self.refs.is_empty() && !self.expression.contains([' ', '(']))
            .then_some(self.expression.as_str())
    }
}

fn known(id: &str) -> Option<String> {
    spdx::license_id(id)
        .filter(|l| !l.is_deprecated())
        .map(|l| l.name.to_string())
}

/// `GPL-2`, `GPLv2+`, `LGPL-2.1+`, `AGPL-3` → the SPDX id.
fn gnu(term: &str) -> Option<String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(A|L)?GPL[-v ]?(\d)(?:\.(\d))?(\+)?$").expect("a constant pattern")
    });
    let c = RE.captures(term)?;
    let family = match c.get(1).map(|m| m.as_str().to_ascii_uppercase()) {
        Some(f) => format!("{f}GPL"),
        None => "GPL".into(),
    };
    let minor = c.get(3).map_or("0", |m| m.as_str());
    let suffix = if c.get(4).is_some() {
        "or-later"
    } else {
        "only"
    };
    known(&format!("{family}-{}.{minor}-{suffix}", &c[2]))
}

/// One licence name → an SPDX id, where that is exact.
fn map_term(term: &str) -> Option<String> {
    if let Some(id) = known(term) {
        return Some(id);
    }
    // Deprecated spellings of GNU ids (`GPL-2.0+`) and Debian's short names.
    if let Some(id) = gnu(term) {
        return Some(id);
    }
    let lower = term.to_ascii_lowercase();
    static BSD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^bsd-([234])-clause$").expect("a constant pattern"));
    if let Some(c) = BSD.captures(&lower) {
        return known(&format!("BSD-{}-Clause", &c[1]));
    }
    match lower.as_str() {
        "expat" | "mit license" => return known("MIT"),
        "apache-2" | "apache 2.0" | "apache-2.0 license" | "apache license 2.0" => {
            return known("Apache-2.0")
        }
        "isc license" | "isc license (iscl)" => return known("ISC"),
        _ => {}
    }
    None
}

fn reference(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut collapsed = String::with_capacity(id.len());
    for c in id.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    format!("LicenseRef-{}", collapsed.trim_matches('-'))
}

/// Read a declared licence; None for an empty one.
pub fn read(raw: &str) -> Option<Declared> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if spdx::Expression::parse(raw).is_ok() {
        return Some(Declared {
            expression: raw.to_string(),
            refs: vec![],
        });
    }
    // Split into names and AND / OR / parentheses; a name may hold spaces
    // (`MIT License`, `GPL-3+ with Bison exception`).
    let spaced = raw.replace('(', " ( ").replace(')', " ) ");
    let mut out: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let mut refs: Vec<(String, String)> = Vec::new();
    let mut flush = |name: &mut Vec<&str>, out: &mut Vec<String>| {
        if name.is_empty() {
            return;
        }
        let n = name.join(" ");
        name.clear();
        let id = map_term(&n).unwrap_or_else(|| {
            let r = reference(&n);
            if !refs.iter().any(|(id, _)| *id == r) {
                refs.push((r.clone(), n.clone()));
            }
            r
        });
        out.push(id);
    };
    for tok in spaced.split_whitespace() {
        match tok {
            "(" | ")" => {
                flush(&mut name, &mut out);
                out.push(tok.to_string());
            }
            t if t.eq_ignore_ascii_case("and") || t.eq_ignore_ascii_case("or") || t == "," => {
                flush(&mut name, &mut out);
                out.push(if t == "," {
                    "AND".into()
                } else {
                    t.to_ascii_uppercase()
                });
            }
            t => name.push(t),
        }
    }
    flush(&mut name, &mut out);
    let expression = out.join(" ").replace("( ", "(").replace(" )", ")");
    // Unbalanced or dangling operators: the whole text as one reference.
    let mut check = expression.clone();
    for (id, _) in &refs {
        check = check.replace(id.as_str(), "MIT");
    }
    if spdx::Expression::parse(&check).is_err() {
        let r = reference(raw);
        return Some(Declared {
            expression: r.clone(),
            refs: vec![(r, raw.to_string())],
        });
    }
    Some(Declared { expression, refs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(raw: &str) -> String {
        read(raw).unwrap().expression
    }

    #[test]
    fn valid_expressions_stay_as_they_are() {
        assert_eq!(expr("MIT"), "MIT");
        assert_eq!(expr("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(read("Apache-2.0").unwrap().single_id(), Some("Apache-2.0"));
        assert_eq!(read("MIT OR Apache-2.0").unwrap().single_id(), None);
        assert_eq!(read("  "), None);
    }

    #[test]
    fn exact_names_map_and_the_rest_become_references() {
        assert_eq!(expr("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(expr("GPL-2"), "GPL-2.0-only");
        assert_eq!(expr("LGPL-2.1+"), "LGPL-2.1-or-later");
        assert_eq!(expr("GPL-2.0+"), "GPL-2.0-or-later");
        assert_eq!(expr("BSD-3-clause"), "BSD-3-Clause");
        assert_eq!(expr("Expat"), "MIT");
        assert_eq!(expr("MIT License"), "MIT");
        assert_eq!(expr("Apache 2.0"), "Apache-2.0");
        let d = read("GPL-2+ AND public-domain AND (BSD-3-clause OR Expat)").unwrap();
        assert_eq!(
            d.expression,
            "GPL-2.0-or-later AND LicenseRef-public-domain AND (BSD-3-Clause OR MIT)"
        );
        assert_eq!(
            d.refs,
            [(
                "LicenseRef-public-domain".to_string(),
                "public-domain".to_string()
            )]
        );
        // No guessing: a GPL of no version, or "BSD", is not a given id.
        assert_eq!(expr("GPL"), "LicenseRef-GPL");
        assert_eq!(expr("BSD License"), "LicenseRef-BSD-License");
        let d = read("GPL-3+ with Bison exception").unwrap();
        assert_eq!(d.expression, "LicenseRef-GPL-3-with-Bison-exception");
        assert_eq!(d.refs[0].1, "GPL-3+ with Bison exception");
    }

    #[test]
    fn broken_text_is_one_reference() {
        let d = read("MIT AND (").unwrap();
        assert_eq!(d.refs.len(), 1);
        assert!(spdx::Expression::parse(&d.expression.replace(&d.refs[0].0, "MIT")).is_ok());
        let d = read("see LICENSE file").unwrap();
        assert_eq!(d.expression, "LicenseRef-see-LICENSE-file");
    }
}
