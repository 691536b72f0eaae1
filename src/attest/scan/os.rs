//! The distribution, from `etc/os-release` (or `usr/lib/os-release`): its `ID`
//! and `VERSION_ID` qualify deb and apk package URLs (`distro=debian-12`).

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            "ID" => os.id = v,
            "VERSION_ID" => os.version_id = v,
            "PRETTY_NAME" => os.pretty_name = v,
            _ => {}
        }
    }
    os
}

#[cfg(test)]
mod tests {
    #[test]
    fn debian_and_alpine() {
        let d = super::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
        assert_eq!(d.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        let a = super::parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n");
        assert_eq!((a.id.as_str(), a.version_id.as_str()), ("alpine", "3.19.1"));
    }
}
