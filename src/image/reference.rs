//! Image references: `[registry[:port]/]path[:tag][@sha256:digest]`, with Docker's
//! defaults (`docker.io`, `library/`, `latest`).

use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host as written, with port (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// `host[:port]` as Docker's reference grammar has it: DNS labels of letters,
/// digits and inner `-`, joined by `.`, or a bracketed IPv6 address; the port is
/// digits.
fn valid_host(host: &str) -> bool {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        return ip.parse::<std::net::Ipv6Addr>().is_ok()
            && (after.is_empty() || after.strip_prefix(':').is_some_and(port_ok));
    }
    let (name, port) = match host.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    port.is_none_or(port_ok)
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Reference {
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("empty"));
        }
        if input.chars().any(|c| c.is_whitespace()) {
            return Err(err("contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                crate::digest::hex_of(d).map_err(|e| err(&e))?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_string()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(err("bad tag (letters, digits, '_', '.', '-'; at most 128)"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, p))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), p.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        if !valid_host(&registry) {
            return Err(err(
                "bad registry host (a host name or IP, then an optional :port)",
            ));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        for comp in repository.split('/') {
            let ok = !comp.is_empty()
                && comp
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && comp.starts_with(|c: char| c.is_ascii_alphanumeric())
                && comp.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(err(
                    "repository names use lowercase letters, digits and separators (. _ -)",
                ));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host kiln connects to (Docker Hub's API lives on registry-1.docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The same repository with another digest and no tag.
    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            tag: None,
            ..self.clone()
        }
    }

    /// `registry/repository` (no tag or digest).
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn docker_defaults() {
        let a = r("busybox");
        assert_eq!(
            (a.registry.as_str(), a.repository.as_str(), a.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        assert_eq!(a.api_host(), "registry-1.docker.io");
        assert_eq!(r("user/app:1.0").repository, "user/app");
        assert_eq!(r("index.docker.io/library/alpine").registry, "docker.io");
    }

    #[test]
    fn registries_ports_tags_digests() {
        let d = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
        let a = r(&format!("localhost:5000/group/app:v1@{d}"));
        assert_eq!(a.registry, "localhost:5000");
        assert_eq!(a.repository, "group/app");
        assert_eq!(a.tag.as_deref(), Some("v1"));
        assert_eq!(a.digest.as_deref(), Some(d));
        assert_eq!(a.reference(), d);
        let b = r("127.0.0.1:5000/app");
        assert_eq!(
            (b.registry.as_str(), b.tag.as_deref()),
            ("127.0.0.1:5000", Some("latest"))
        );
        let c = r(&format!("registry.gitlab.com/g/p@{d}"));
        assert_eq!(c.tag, None);
        assert_eq!(
            r("gitlab.example.com/a/b/c:tag").to_string(),
            "gitlab.example.com/a/b/c:tag"
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "app:",
            "app:-x",
            "x@sha256:zz",
            "a//b",
            "-a/b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn registry_hosts_follow_the_reference_grammar() {
        for ok in [
            "localhost:5000/a",
            "127.0.0.1:5001/a/b",
            "[::1]:5000/a",
            "[fe80::1]/a",
            "registry.gitlab.example/g/p:tag",
            "my-registry.example:443/x",
        ] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "h:1:2:3/x",
            "host:/x",
            "host:port/x",
            "host:123456/x",
            "-bad.example/x",
            "a..b.example/x",
            "[::1/x",
            "[zz]:5000/x",
            "ho_st.example/x",
        ] {
            let e = Reference::parse(bad);
            assert!(e.is_err(), "{bad} must be refused: {e:?}");
        }
    }
}
