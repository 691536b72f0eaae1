//! Alpine packages: `lib/apk/db/installed`, one paragraph per package of
//! one-letter fields (`P:` name, `V:` version, `A:` arch, `L:` licence, `o:`
//! origin, the source package).

use super::{Ecosystem, Found};

pub fn parse(text: &str) -> Vec<Found> {
    let mut out = Vec::new();
    let mut cur: Vec<(char, &str)> = Vec::new();
    let flush = |cur: &mut Vec<(char, &str)>, out: &mut Vec<Found>| {
        let get = |k: char| {
            cur.iter()
                .find(|(c, _)| *c == k)
                .map(|(_, v)| *v)
                .filter(|v| !v.is_empty())
        };
        if let (Some(name), Some(version)) = (get('P'), get('V')) {
            out.push(Found {
                ecosystem: Ecosystem::Apk,
                namespace: String::new(),
                name: name.to_string(),
                version: version.to_string(),
                license: get('L').map(str::to_string),
                arch: get('A').map(str::to_string),
                source: get('o').filter(|o| *o != name).map(str::to_string),
            });
        }
        cur.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut cur, &mut out);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            cur.push((k, line[2..].trim()));
        }
    }
    flush(&mut cur, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_with_licence_arch_and_origin() {
        let db = "\
C:Q1abc=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
L:MIT
o:musl
F:lib
R:ld-musl-x86_64.so.1

P:ssl_client
V:3.1.4-r5
A:x86_64
L:Apache-2.0
o:openssl
";
        let f = parse(db);
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name.as_str(), f[0].version.as_str()),
            ("musl", "1.2.4-r2")
        );
        assert_eq!(f[0].license.as_deref(), Some("MIT"));
        assert_eq!(f[0].source, None);
        assert_eq!(f[1].source.as_deref(), Some("openssl"));
        assert_eq!(f[1].arch.as_deref(), Some("x86_64"));
    }
}
