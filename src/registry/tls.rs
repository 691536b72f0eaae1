//! TLS trust for registries (rustls): the system roots plus every extra CA the
//! user or the CI environment provides, per-host certificates, client certificates
//! (mTLS), and per-host verification skipping.
//!
//! Extra CAs, all trusted at once when present:
//! - `CI_SERVER_TLS_CA_FILE` (set by the GitLab runner), `ADDITIONAL_CA_CERT_BUNDLE`;
//! - each `--ca-cert VALUE` and `KILN_CA_CERT`, where VALUE is a path or inline PEM, so
//!   a File-type CI variable (a path) and a plain variable (the text) both work;
//! - `SSL_CERT_FILE` / `SSL_CERT_DIR`;
//! - per host: `/etc/docker/certs.d/<host>/*.crt`, `/etc/containers/certs.d/<host>/*.crt`,
//!   and `--registry-certificate host=path`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("CA certificate from {source_name}: {reason}\nhint: pass a PEM file (or PEM text) holding one or more -----BEGIN CERTIFICATE----- blocks")]
pub struct CaError {
    pub source_name: String,
    pub reason: String,
}

/// TLS settings from flags; the environment is read when a client is built.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--ca-cert` values (path or inline PEM).
    pub ca_certs: Vec<String>,
    /// `--registry-certificate host=path`.
    pub registry_certificates: Vec<(String, PathBuf)>,
    /// `--registry-client-cert host=cert,key`.
    pub client_certs: Vec<(String, PathBuf, PathBuf)>,
    /// `--skip-tls-verify-registry host`.
    pub skip_verify: Vec<String>,
    /// Where per-host `certs.d` directories are looked up (tests point this elsewhere).
    pub certs_d_roots: Vec<PathBuf>,
}

/// PEM certificates with the name of where they came from.
#[derive(Clone)]
pub struct Pem {
    pub source: String,
    pub certs: Vec<reqwest::Certificate>,
    /// The certificate blocks as PEM text (nothing else of the file: a bundle
    /// that also holds a key never passes it on).
    pub pem: String,
}

fn parse_pem(text: &str, source: &str) -> Result<Pem, CaError> {
    let err = |reason: String| CaError {
        source_name: source.to_string(),
        reason,
    };
    let blocks = text.matches("-----BEGIN CERTIFICATE-----").count();
    if blocks == 0 {
        return Err(err("no PEM certificate found".into()));
    }
    let certs = reqwest::Certificate::from_pem_bundle(text.as_bytes())
        .map_err(|e| err(format!("malformed PEM: {e}")))?;
    if certs.len() != blocks {
        return Err(err(format!(
            "{} of {blocks} certificate(s) could not be read",
            blocks - certs.len()
        )));
    }
    let mut pem = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(len) = rest[start..].find("-----END CERTIFICATE-----") else {
            break;
        };
        let end = start + len + "-----END CERTIFICATE-----".len();
        pem.push_str(&rest[start..end]);
        pem.push('\n');
        rest = &rest[end..];
    }
    Ok(Pem {
        source: source.to_string(),
        certs,
        pem,
    })
}

/// A value that is either inline PEM or the path of a PEM file.
pub fn load_value(value: &str, source: &str) -> Result<Pem, CaError> {
    if value.contains("-----BEGIN") {
        return parse_pem(value, &format!("{source} (inline PEM)"));
    }
    load_file(Path::new(value.trim()), source)
}

pub fn load_file(path: &Path, source: &str) -> Result<Pem, CaError> {
    let name = format!("{source} ({})", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| CaError {
        source_name: name.clone(),
        reason: format!("cannot read it: {e}"),
    })?;
    parse_pem(&text, &name)
}

/// The company CAs: `CI_SERVER_TLS_CA_FILE`, `ADDITIONAL_CA_CERT_BUNDLE`,
/// `KILN_CA_CERT` and each `--ca-cert` (what RUN steps can be given too).
pub fn company_cas(
    opts: &TlsOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Pem>, CaError> {
    let mut out = Vec::new();
    for var in [
        "CI_SERVER_TLS_CA_FILE",
        "ADDITIONAL_CA_CERT_BUNDLE",
        "KILN_CA_CERT",
    ] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            out.push(load_value(&v, var)?);
        }
    }
    for v in &opts.ca_certs {
        out.push(load_value(v, "--ca-cert")?);
    }
    Ok(out)
}

/// The CAs trusted for every registry, read from the environment and flags: the
/// company CAs, and `SSL_CERT_FILE`/`SSL_CERT_DIR`.
pub fn global_cas(
    opts: &TlsOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Pem>, CaError> {
    let mut out = company_cas(opts, env)?;
    if let Some(f) = env("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        out.push(load_file(Path::new(&f), "SSL_CERT_FILE")?);
    }
    if let Some(d) = env("SSL_CERT_DIR").filter(|v| !v.is_empty()) {
        for dir in d.split(':') {
            out.extend(load_dir(
                Path::new(dir),
                "SSL_CERT_DIR",
                &["pem", "crt", "0"],
            ));
        }
    }
    Ok(out)
}

/// Every readable certificate file in `dir` with one of `exts` (unreadable ones are
/// skipped: system directories hold links and other files).
fn load_dir(dir: &Path, source: &str, exts: &[&str]) -> Vec<Pem> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.iter().any(|x| e.ends_with(x)))
        })
        .filter_map(|p| load_file(&p, source).ok())
        .collect()
}

/// Per-host extra trust and identity.
pub struct HostTls {
    pub cas: Vec<Pem>,
    pub identity: Option<reqwest::Identity>,
    pub skip_verify: bool,
}

pub fn host_tls(opts: &TlsOptions, host: &str) -> Result<HostTls, CaError> {
    let mut cas = Vec::new();
    let roots = if opts.certs_d_roots.is_empty() {
        vec![
            PathBuf::from("/etc/docker/certs.d"),
            PathBuf::from("/etc/containers/certs.d"),
        ]
    } else {
        opts.certs_d_roots.clone()
    };
    for root in roots {
        cas.extend(load_dir(
            &root.join(host),
            &root.join(host).display().to_string(),
            &["crt"],
        ));
    }
    for (h, path) in &opts.registry_certificates {
        if h == host {
            cas.push(load_file(path, "--registry-certificate")?);
        }
    }
    let mut identity = None;
    for (h, cert, key) in &opts.client_certs {
        if h == host {
            let name = format!("--registry-client-cert {host}");
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| CaError {
                    source_name: format!("{name} ({})", p.display()),
                    reason: format!("cannot read it: {e}"),
                })
            };
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| CaError {
                source_name: name.clone(),
                reason: format!("bad certificate or key: {e}"),
            })?);
        }
    }
    Ok(HostTls {
        cas,
        identity,
        skip_verify: opts.skip_verify.iter().any(|h| h == host),
    })
}

/// Build the HTTP client for one host.
pub fn client_for(
    global: &[Pem],
    host: HostTls,
    host_name: &str,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    // HTTP/1.1 unless KILN_HTTP2=1: on a 40 ms, 200 Mbit/s link HTTP/2 pushed
    // 17-25% slower (ci/bench, README's Benchmark), as GitLab and kaniko users
    // report for GitLab's registry.
    if !std::env::var("KILN_HTTP2").is_ok_and(|v| v == "1") {
        b = b.http1_only();
    }
    let mut b = b
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(300))
        // Redirects to storage hosts are followed; reqwest drops Authorization when
        // the host changes.
        .redirect(reqwest::redirect::Policy::limited(10));
    for pem in global.iter().chain(host.cas.iter()) {
        for c in &pem.certs {
            b = b.add_root_certificate(c.clone());
        }
    }
    if let Some(id) = host.identity {
        b = b.identity(id);
    }
    if host.skip_verify {
        crate::report::warning(&format!("TLS verification is OFF for {host_name} (--skip-tls-verify-registry): anyone on the network path can impersonate it"));
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot set up TLS for {host_name}: {e}"))
}

/// The environment as a lookup function (tests pass their own).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Names of the extra CA sources in use, for error messages.
pub fn describe(global: &[Pem]) -> String {
    if global.is_empty() {
        "system roots only".into()
    } else {
        let names: Vec<&str> = global.iter().map(|p| p.source.as_str()).collect();
        format!("system roots + {}", names.join(", "))
    }
}

pub type ClientCache = HashMap<String, reqwest::Client>;

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &str = "hello";

    #[test]
    fn inline_or_path_and_clear_errors() {
        let e = load_value(NOT_PEM, "KNUT_CA")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("KNUT_CA") && e.contains("cannot read"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ca.pem");
        std::fs::write(
            &f,
            "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_value(f.to_str().unwrap(), "--ca-cert")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("--ca-cert") && e.contains("ca.pem"), "{e}");
        std::fs::write(&f, "just text\n").unwrap();
        let e = load_value(f.to_str().unwrap(), "--ca-cert")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
