//! Where registry credentials come from, first match wins, per registry host:
//!
//! 1. explicit flags (`--username`/`--password`/`--password-stdin`), for the
//!    destination registries;
//! 2. the GitLab CI environment: for `CI_REGISTRY`, `CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD`,
//!    else `gitlab-ci-token`/`CI_JOB_TOKEN`; for `CI_DEPENDENCY_PROXY_SERVER` (with or
//!    without its `:443`), `CI_DEPENDENCY_PROXY_USER`/`CI_DEPENDENCY_PROXY_PASSWORD`;
//! 3. Docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`): `auth`, `username`/
//!    `password`, `identitytoken`, `credHelpers`, `credsStore`;
//! 4. `REGISTRY_AUTH_FILE`, or the containers `auth.json` locations;
//! 5. anonymous.
//!
//! Secrets never appear in `Debug` output or messages: only the source's name does.

use base64::Engine as _;
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json).
    IdentityToken(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Secret::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Credentials for one host and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub secret: Option<Secret>,
    /// Human-readable source, e.g. `CI_REGISTRY_USER`, `docker config.json (auth)`.
    pub source: String,
}

impl Found {
    pub fn anonymous() -> Found {
        Found {
            secret: None,
            source: "none (anonymous)".into(),
        }
    }

    /// Every secret string in it, to make sure none is printed.
    pub fn secrets(&self) -> Vec<String> {
        match &self.secret {
            Some(Secret::Basic { password, .. }) => vec![password.clone()],
            Some(Secret::IdentityToken(t)) => vec![t.clone()],
            None => vec![],
        }
    }
}

/// The inputs of credential lookup, captured once.
#[derive(Clone, Default)]
pub struct Sources {
    /// Explicit `--username`/`--password` and the registries they apply to.
    pub explicit: Option<(String, String)>,
    pub explicit_hosts: Vec<String>,
    pub env: std::collections::HashMap<String, String>,
    pub home: Option<PathBuf>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("explicit_hosts", &self.explicit_hosts)
            .finish_non_exhaustive()
    }
}

const ENV_VARS: &[&str] = &[
    "CI_REGISTRY",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
    "CI_JOB_TOKEN",
    "CI_DEPENDENCY_PROXY_SERVER",
    "CI_DEPENDENCY_PROXY_USER",
    "CI_DEPENDENCY_PROXY_PASSWORD",
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
];

impl Sources {
    pub fn from_process(
        explicit: Option<(String, String)>,
        explicit_hosts: Vec<String>,
    ) -> Sources {
        let env = ENV_VARS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Sources {
            explicit,
            explicit_hosts,
            env,
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    fn var(&self, k: &str) -> Option<&str> {
        self.env
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Look up credentials for `host` (as written in image references, with port).
    pub fn lookup(&self, host: &str) -> Found {
        if let Some((u, p)) = &self.explicit {
            if self.explicit_hosts.iter().any(|h| h == host) {
                return Found {
                    secret: Some(Secret::Basic {
                        username: u.clone(),
                        password: p.clone(),
                    }),
                    source: "--username/--password".into(),
                };
            }
        }
        if let Some(reg) = self.var("CI_REGISTRY") {
            if same_host(reg, host) {
                if let (Some(u), Some(p)) = (
                    self.var("CI_REGISTRY_USER"),
                    self.var("CI_REGISTRY_PASSWORD"),
                ) {
                    return basic(u, p, "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD");
                }
                if let Some(t) = self.var("CI_JOB_TOKEN") {
                    return basic("gitlab-ci-token", t, "CI_JOB_TOKEN");
                }
            }
        }
        if let Some(proxy) = self.var("CI_DEPENDENCY_PROXY_SERVER") {
            if same_host(proxy, host)
                || same_host(proxy.trim_end_matches(":443"), host)
                || same_host(proxy, &format!("{host}:443"))
            {
                if let (Some(u), Some(p)) = (
                    self.var("CI_DEPENDENCY_PROXY_USER"),
                    self.var("CI_DEPENDENCY_PROXY_PASSWORD"),
                ) {
                    return basic(
                        u,
                        p,
                        "CI_DEPENDENCY_PROXY_USER/CI_DEPENDENCY_PROXY_PASSWORD",
                    );
                }
            }
        }
        if let Some(path) = self.docker_config() {
            if let Some(f) = from_auth_file(&path, host, "docker config.json") {
                return f;
            }
        }
        for path in self.auth_json_paths() {
            if let Some(f) = from_auth_file(&path, host, "containers auth.json") {
                return f;
            }
        }
        Found::anonymous()
    }

    fn docker_config(&self) -> Option<PathBuf> {
        match self.var("DOCKER_CONFIG") {
            Some(d) => Some(PathBuf::from(d).join("config.json")),
            None => self.home.as_ref().map(|h| h.join(".docker/config.json")),
        }
    }

    fn auth_json_paths(&self) -> Vec<PathBuf> {
        if let Some(f) = self.var("REGISTRY_AUTH_FILE") {
            return vec![PathBuf::from(f)];
        }
        let mut v = Vec::new();
        if let Some(r) = self.var("XDG_RUNTIME_DIR") {
            v.push(PathBuf::from(r).join("containers/auth.json"));
        }
        match self.var("XDG_CONFIG_HOME") {
            Some(c) => v.push(PathBuf::from(c).join("containers/auth.json")),
            None => {
                if let Some(h) = &self.home {
                    v.push(h.join(".config/containers/auth.json"));
                }
            }
        }
        v
    }
}

fn basic(u: &str, p: &str, source: &str) -> Found {
    Found {
        secret: Some(Secret::Basic {
            username: u.into(),
            password: p.into(),
        }),
        source: source.into(),
    }
}

/// Compare registry hosts, ignoring scheme and path (`https://host/v1/`).
fn same_host(configured: &str, host: &str) -> bool {
    normalize(configured) == normalize(host)
}

fn normalize(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match k.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => k,
    }
}

/// Read `auths`/`credHelpers`/`credsStore` of a Docker-style auth file.
fn from_auth_file(path: &std::path::Path, host: &str, kind: &str) -> Option<Found> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!("ignoring {}: not valid JSON ({e})", path.display());
            return None;
        }
    };
    let source = format!("{kind} {}", path.display());
    if let Some(helper) = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| same_host(k, host))
                .and_then(|(_, n)| n.as_str().map(str::to_string))
        })
    {
        return Some(run_helper(&helper, host, &source));
    }
    if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
        if let Some((_, entry)) = auths.iter().find(|(k, _)| same_host(k, host)) {
            if let Some(t) = entry
                .get("identitytoken")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty())
            {
                return Some(Found {
                    secret: Some(Secret::IdentityToken(t.into())),
                    source: format!("{source} (identitytoken)"),
                });
            }
            if let Some(a) = entry
                .get("auth")
                .and_then(|a| a.as_str())
                .filter(|a| !a.is_empty())
            {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                match decoded.as_deref().and_then(|d| d.split_once(':')) {
                    Some((u, p)) => return Some(basic(u, p, &format!("{source} (auth)"))),
                    None => tracing::warn!(
                        "{}: the auth entry for {host} is not base64 user:password",
                        path.display()
                    ),
                }
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|u| u.as_str()),
                entry.get("password").and_then(|p| p.as_str()),
            ) {
                return Some(basic(u, p, &format!("{source} (username/password)")));
            }
        }
    }
    if let Some(store) = v
        .get("credsStore")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
    {
        let f = run_helper(store, host, &source);
        if f.secret.is_some() {
            return Some(f);
        }
    }
    None
}

/// `docker-credential-<name> get`, host on stdin; `{"Username","Secret"}` on stdout.
fn run_helper(name: &str, host: &str, source: &str) -> Found {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let prog = format!("docker-credential-{name}");
    let label = format!("{source} ({prog})");
    let child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("credential helper {prog} for {host} could not run: {e}");
            return Found {
                secret: None,
                source: label,
            };
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = match child.wait_with_output() {
        Ok(o) if o.status.success() => o.stdout,
        _ => {
            tracing::warn!("credential helper {prog} has no credentials for {host}");
            return Found {
                secret: None,
                source: label,
            };
        }
    };
    let v: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
    let user = v.get("Username").and_then(|u| u.as_str()).unwrap_or("");
    let secret = v.get("Secret").and_then(|s| s.as_str()).unwrap_or("");
    let secret = if secret.is_empty() {
        None
    } else if user == "<token>" {
        Some(Secret::IdentityToken(secret.into()))
    } else {
        Some(Secret::Basic {
            username: user.into(),
            password: secret.into(),
        })
    };
    Found {
        secret,
        source: label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sources(env: &[(&str, &str)], home: Option<PathBuf>) -> Sources {
        Sources {
            explicit: None,
            explicit_hosts: vec![],
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            home,
        }
    }

    #[test]
    fn gitlab_variables() {
        let s = sources(
            &[
                ("CI_REGISTRY", "registry.gitlab.example.com"),
                ("CI_REGISTRY_USER", "gitlab-ci-token"),
                ("CI_REGISTRY_PASSWORD", "pw"),
                ("CI_JOB_TOKEN", "jt"),
            ],
            None,
        );
        let f = s.lookup("registry.gitlab.example.com");
        assert_eq!(f.source, "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD");
        assert!(
            !format!("{f:?}").contains("pw"),
            "Debug never shows the secret"
        );
        let s = sources(
            &[
                ("CI_REGISTRY", "registry.gitlab.example.com"),
                ("CI_JOB_TOKEN", "jt"),
            ],
            None,
        );
        assert_eq!(
            s.lookup("registry.gitlab.example.com").secret,
            Some(Secret::Basic {
                username: "gitlab-ci-token".into(),
                password: "jt".into()
            })
        );
        assert_eq!(s.lookup("other.example.com").source, "none (anonymous)");
        let s = sources(
            &[
                ("CI_DEPENDENCY_PROXY_SERVER", "gitlab.example.com:443"),
                ("CI_DEPENDENCY_PROXY_USER", "u"),
                ("CI_DEPENDENCY_PROXY_PASSWORD", "p"),
            ],
            None,
        );
        assert!(
            s.lookup("gitlab.example.com").secret.is_some(),
            "matched without the port"
        );
        assert!(
            s.lookup("gitlab.example.com:443").secret.is_some(),
            "and with it"
        );
    }

    #[test]
    fn docker_config_forms() {
        let d = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("hubuser:hubpass")},
                "plain.example.com": {"username": "u", "password": "p"},
                "oauth.example.com": {"identitytoken": "refresh"},
            },
            "credHelpers": {"helped.example.com": "kiln-test-missing-helper"}
        });
        std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
        let s = sources(&[("DOCKER_CONFIG", d.path().to_str().unwrap())], None);
        assert_eq!(
            s.lookup("docker.io").secret,
            Some(Secret::Basic {
                username: "hubuser".into(),
                password: "hubpass".into()
            })
        );
        assert!(s.lookup("docker.io").source.contains("(auth)"));
        assert_eq!(
            s.lookup("plain.example.com").secret,
            Some(Secret::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            s.lookup("oauth.example.com").secret,
            Some(Secret::IdentityToken("refresh".into()))
        );
        let helped = s.lookup("helped.example.com");
        assert!(
            helped.secret.is_none()
                && helped
                    .source
                    .contains("docker-credential-kiln-test-missing-helper")
        );
    }

    #[test]
    fn containers_auth_json_and_order() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("auth.json");
        std::fs::write(&f, serde_json::json!({"auths": {"quay.example.com": {"auth": base64::engine::general_purpose::STANDARD.encode("a:b")}}}).to_string()).unwrap();
        let s = sources(
            &[
                ("REGISTRY_AUTH_FILE", f.to_str().unwrap()),
                ("DOCKER_CONFIG", "/nonexistent"),
            ],
            None,
        );
        assert!(s
            .lookup("quay.example.com")
            .source
            .starts_with("containers auth.json"));
        let mut s = sources(
            &[
                ("CI_REGISTRY", "quay.example.com"),
                ("CI_JOB_TOKEN", "t"),
                ("REGISTRY_AUTH_FILE", f.to_str().unwrap()),
            ],
            None,
        );
        assert_eq!(
            s.lookup("quay.example.com").source,
            "CI_JOB_TOKEN",
            "CI variables come before auth files"
        );
        s.explicit = Some(("me".into(), "secret".into()));
        s.explicit_hosts = vec!["quay.example.com".into()];
        assert_eq!(
            s.lookup("quay.example.com").source,
            "--username/--password",
            "flags come first"
        );
    }
}
