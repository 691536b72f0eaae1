//! Where a pull really goes: registry mirrors for Docker Hub
//! (`--registry-mirror`, kaniko's meaning), registry maps for any registry
//! (`--registry-map ORIG=NEW[;NEW2]`, the maintained kaniko fork's meaning),
//! and GitLab's Dependency Proxy (`--dependency-proxy`), each tried in order and
//! then the original registry unless `--skip-default-registry-fallback`.
//!
//! Pulls only: bases, `COPY --from=image`, `RUN --mount from=image`, `kiln
//! warm`. Never pushes or the cache repo. A base's cache key is its manifest
//! digest, so where it came from changes no key. Pure: no I/O here.

use crate::image::Reference;

/// How pulls are redirected.
#[derive(Debug, Clone, Default)]
pub struct PullSources {
    /// Docker Hub mirrors, `host[:port][/path]`.
    pub mirrors: Vec<String>,
    /// (original `registry[/path]`, replacements `registry[/path]`).
    pub maps: Vec<(String, Vec<String>)>,
    /// The Dependency Proxy's image prefix (`host[:port]/group/dependency_proxy/containers`).
    pub dependency_proxy: Option<String>,
    /// `--skip-default-registry-fallback`: never the original registry after them.
    pub no_fallback: bool,
}

/// One place to try, and what it is (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub reference: Reference,
    /// "" for the original registry, else "mirror", "registry map" or
    /// "dependency proxy".
    pub via: &'static str,
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    )
}

/// `r` under `prefix` (`host[:port][/path]`): `prefix/<repository>`.
fn under(prefix: &str, repository: &str, r: &Reference) -> Reference {
    let prefix = prefix.trim_end_matches('/');
    let (host, path) = match prefix.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (prefix, None),
    };
    let repo = match path {
        Some(p) => format!("{p}/{repository}"),
        None => repository.to_string(),
    };
    Reference {
        registry: host.to_string(),
        repository: repo,
        tag: r.tag.clone(),
        digest: r.digest.clone(),
    }
}

impl PullSources {
    pub fn is_empty(&self) -> bool {
        self.mirrors.is_empty() && self.maps.is_empty() && self.dependency_proxy.is_none()
    }

    /// The places to pull `r` from, in order.
    pub fn candidates(&self, r: &Reference) -> Vec<Candidate> {
        let mut out = Vec::new();
        let hub = is_docker_hub(&r.registry);
        if hub {
            if let Some(prefix) = &self.dependency_proxy {
                // The proxy takes official images without `library/`, as GitLab's
                // documentation writes them.
                let repo = r
                    .repository
                    .strip_prefix("library/")
                    .unwrap_or(&r.repository);
                out.push(Candidate {
                    reference: under(prefix, repo, r),
                    via: "dependency proxy",
                });
            }
            for m in &self.mirrors {
                let m = m
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                out.push(Candidate {
                    reference: under(m, &r.repository, r),
                    via: "mirror",
                });
            }
        }
        let full = format!(
            "{}/{}",
            if hub {
                "docker.io"
            } else {
                r.registry.as_str()
            },
            r.repository
        );
        for (orig, news) in &self.maps {
            let orig = orig.trim_end_matches('/');
            let orig_norm = match orig.split_once('/') {
                Some((h, p)) if is_docker_hub(h) => format!("docker.io/{p}"),
                None if is_docker_hub(orig) => "docker.io".to_string(),
                _ => orig.to_string(),
            };
            let Some(rest) = full.strip_prefix(&orig_norm) else {
                continue;
            };
            let rest = match rest.strip_prefix('/') {
                Some(r) => r,
                None if rest.is_empty() => "",
                None => continue,
            };
            for new in news {
                let repo = if rest.is_empty() {
                    // The whole name was mapped: NEW names the repository.
                    match new.split_once('/') {
                        Some((_, p)) => p.to_string(),
                        None => continue,
                    }
                } else {
                    rest.to_string()
                };
                let host_only = new.split('/').next().unwrap_or(new);
                let prefix = if rest.is_empty() {
                    host_only.to_string()
                } else {
                    new.clone()
                };
                out.push(Candidate {
                    reference: under(&prefix, &repo, r),
                    via: "registry map",
                });
            }
        }
        if out.is_empty() || !self.no_fallback {
            out.push(Candidate {
                reference: r.clone(),
                via: "",
            });
        }
        out
    }
}

/// `--registry-map` values: `ORIG=NEW[;NEW2]`.
pub fn parse_map(v: &str) -> Result<(String, Vec<String>), String> {
    let (orig, news) = v
        .split_once('=')
        .ok_or_else(|| format!("--registry-map {v:?}: use ORIG=NEW[;NEW2]"))?;
    let news: Vec<String> = news
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if orig.trim().is_empty() || news.is_empty() {
        return Err(format!("--registry-map {v:?}: use ORIG=NEW[;NEW2]"));
    }
    Ok((orig.trim().to_string(), news))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(s: &PullSources, r: &str) -> Vec<String> {
        s.candidates(&Reference::parse(r).unwrap())
            .into_iter()
            .map(|c| {
                format!(
                    "{}/{}:{}",
                    c.reference.registry,
                    c.reference.repository,
                    c.reference.tag.unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn docker_hub_mirrors_then_docker_hub() {
        let s = PullSources {
            mirrors: vec![
                "mirror.local:5001".into(),
                "harbor.example/dockerhub_proxy".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            refs(&s, "alpine:3.20"),
            vec![
                "mirror.local:5001/library/alpine:3.20",
                "harbor.example/dockerhub_proxy/library/alpine:3.20",
                "docker.io/library/alpine:3.20"
            ]
        );
        // Other registries are not mirrored.
        assert_eq!(refs(&s, "quay.io/a/b:1"), vec!["quay.io/a/b:1"]);
        let s = PullSources {
            no_fallback: true,
            ..s
        };
        assert_eq!(refs(&s, "alpine:3.20").len(), 2);
    }

    #[test]
    fn maps_for_any_registry_and_the_dependency_proxy() {
        let s = PullSources {
            maps: vec![
                parse_map("docker.io=internal.example/hub;harbor.example/proxy").unwrap(),
                parse_map("quay.io/coreos=internal.example/coreos").unwrap(),
            ],
            ..Default::default()
        };
        assert_eq!(
            refs(&s, "index.docker.io/library/debian:12"),
            vec![
                "internal.example/hub/library/debian:12",
                "harbor.example/proxy/library/debian:12",
                "docker.io/library/debian:12"
            ]
        );
        assert_eq!(
            refs(&s, "quay.io/coreos/etcd:v3"),
            vec!["internal.example/coreos/etcd:v3", "quay.io/coreos/etcd:v3"]
        );
        assert_eq!(refs(&s, "quay.io/other/x:1"), vec!["quay.io/other/x:1"]);
        let s = PullSources {
            dependency_proxy: Some("gitlab.example:443/group/dependency_proxy/containers".into()),
            ..Default::default()
        };
        for r in ["alpine:3", "library/alpine:3", "docker.io/library/alpine:3"] {
            assert_eq!(
                refs(&s, r)[0],
                "gitlab.example:443/group/dependency_proxy/containers/alpine:3",
                "{r}"
            );
        }
        assert_eq!(
            refs(&s, "bitnami/redis:7")[0],
            "gitlab.example:443/group/dependency_proxy/containers/bitnami/redis:7"
        );
        // A digest pin stays pinned.
        let pinned = format!("alpine@sha256:{}", "a".repeat(64));
        let c = s.candidates(&Reference::parse(&pinned).unwrap());
        assert_eq!(
            c[0].reference.digest.as_deref(),
            Some(&*format!("sha256:{}", "a".repeat(64)))
        );
        assert!(parse_map("nothing").is_err());
    }
}
