//! A GitLab-like setup: a CA made in the test, a TLS registry with `auth: token`,
//! and a token server behaving like GitLab's `/jwt/auth`: Basic
//! `gitlab-ci-token:<job token>` in, `{"token": <RS256 JWT>}` out with no
//! `expires_in`, `kid` = libtrust fingerprint of the signing key; pull+push on the
//! job's own project (and the names below it), pull on allowlisted projects,
//! nothing elsewhere.
#![allow(dead_code)]

use super::{check, Registry};
use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// A name for 127.0.0.1 that only a test's DNS server knows (tests/job_image.rs);
/// the server certificate holds it too.
pub const REGISTRY_NAME: &str = "registry.kiln.test";

/// A CA and a server certificate for 127.0.0.1, localhost and [`REGISTRY_NAME`].
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A directory with `ca.crt`, for skopeo's --cert-dir.
    pub cert_dir: PathBuf,
    /// A client certificate and key signed by the CA (mTLS).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "KNUT test root CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("key");
        let leaf = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            REGISTRY_NAME.to_string(),
        ])
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf");
        let ca = dir.path().join("knut-ca.pem");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&ca, ca_cert.pem()).expect("write");
        std::fs::write(&cert, leaf.pem()).expect("write");
        std::fs::write(&key, leaf_key.serialize_pem()).expect("write");
        let cert_dir = dir.path().join("certs");
        std::fs::create_dir_all(&cert_dir).expect("mkdir");
        std::fs::copy(&ca, cert_dir.join("ca.crt")).expect("copy");
        let client_key = KeyPair::generate().expect("key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ci-runner");
        client_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let client = client_params
            .signed_by(&client_key, &issuer)
            .expect("client cert");
        let client_cert = dir.path().join("client.pem");
        let client_key_path = dir.path().join("client.key");
        std::fs::write(&client_cert, client.pem()).expect("write");
        std::fs::write(&client_key_path, client_key.serialize_pem()).expect("write");
        Pki {
            dir,
            ca,
            cert,
            key,
            cert_dir,
            client_cert,
            client_key: client_key_path,
        }
    }
}

fn base32(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buf = 0u64;
    let mut bits = 0;
    for &b in data {
        buf = (buf << 8) | b as u64;
        bits += 8;
        while bits >= 5 {
            out.push(A[((buf >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(A[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[derive(Clone)]
pub struct TokenConfig {
    /// Project path whose job token this is (pull+push).
    pub project: String,
    /// Other projects that allow this job (pull only).
    pub allowlist: Vec<String>,
    pub job_token: String,
    /// (user, password) with every right, for seeding images.
    pub admin: (String, String),
    pub ttl_secs: u64,
}

#[derive(Default)]
pub struct TokenLog {
    /// Scopes asked for in each token request.
    pub requests: Vec<Vec<String>>,
    pub issued: usize,
    pub rejected: usize,
}

pub struct TokenServer {
    pub realm: String,
    pub log: Arc<Mutex<TokenLog>>,
    pub cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn start(cfg: TokenConfig) -> TokenServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        check(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=gitlab-token",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let pubkey = check(
            Command::new("openssl")
                .args(["x509", "-pubkey", "-noout", "-in"])
                .arg(&cert),
        );
        let mut p = Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl");
        p.stdin
            .take()
            .expect("stdin")
            .write_all(pubkey.as_bytes())
            .expect("write");
        let der = p.wait_with_output().expect("openssl").stdout;
        use sha2::Digest as _;
        let hash = sha2::Sha256::digest(&der);
        let b32 = base32(&hash[..30]);
        let kid: Vec<String> = b32
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let kid = kid.join(":");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let realm = format!("http://{}/jwt/auth", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(TokenLog::default()));
        let log2 = log.clone();
        let key2 = key.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut stream = conn;
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut headers = HashMap::new();
                let mut len = 0;
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        let k = k.trim().to_ascii_lowercase();
                        if k == "content-length" {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        headers.insert(k, v.trim().to_string());
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let target = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let query = target
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                let scopes: Vec<String> = params
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.clone())
                    .collect();
                let user = headers
                    .get("authorization")
                    .and_then(|a| a.strip_prefix("Basic "))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok());
                let (who, admin) = match user.as_deref().and_then(|u| u.split_once(':')) {
                    Some((u, p)) if u == "gitlab-ci-token" && p == cfg.job_token => {
                        (u.to_string(), false)
                    }
                    Some((u, p)) if u == cfg.admin.0 && p == cfg.admin.1 => (u.to_string(), true),
                    _ => {
                        if let Ok(mut l) = log2.lock() {
                            l.rejected += 1;
                        }
                        let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}\n   ");
                        continue;
                    }
                };
                let mut access = Vec::new();
                for sc in &scopes {
                    let parts: Vec<&str> = sc.splitn(3, ':').collect();
                    if parts.len() != 3 || parts[0] != "repository" {
                        continue;
                    }
                    let (name, wanted) = (parts[1], parts[2].split(',').collect::<Vec<_>>());
                    // A project's registry holds its path and names below it
                    // ($CI_REGISTRY_IMAGE/app, …/cache), as GitLab's does.
                    let of = |project: &str| {
                        name == project
                            || name
                                .strip_prefix(project)
                                .is_some_and(|r| r.starts_with('/'))
                    };
                    let granted: Vec<&str> = if admin || of(&cfg.project) {
                        wanted.clone()
                    } else if cfg.allowlist.iter().any(|a| of(a)) {
                        wanted.iter().copied().filter(|a| *a == "pull").collect()
                    } else {
                        vec![]
                    };
                    if !granted.is_empty() {
                        access.push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
                    }
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("time")
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": kid});
                let claims = serde_json::json!({"iss": "gitlab-issuer", "sub": who, "aud": "container_registry", "iat": now, "nbf": now - 5, "exp": now + cfg.ttl_secs, "jti": format!("{now}-{}", access.len()), "access": access});
                let input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let mut sign = Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign"])
                    .arg(&key2)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("openssl");
                sign.stdin
                    .take()
                    .expect("stdin")
                    .write_all(input.as_bytes())
                    .expect("write");
                let sig = sign.wait_with_output().expect("openssl").stdout;
                let token = format!("{input}.{}", b64url(&sig));
                if let Ok(mut l) = log2.lock() {
                    l.requests.push(scopes.clone());
                    l.issued += 1;
                }
                // Like GitLab: no expires_in.
                let body = serde_json::json!({"token": token}).to_string();
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        TokenServer {
            realm,
            log,
            cert,
            _dir: dir,
        }
    }

    /// The registry's `auth:` section for this server.
    pub fn registry_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: container_registry\n    issuer: gitlab-issuer\n    rootcertbundle: {}\n",
            self.realm,
            self.cert.display()
        )
    }
}

/// A GitLab-like TLS registry with token auth.
pub struct GitLab {
    pub pki: Pki,
    pub tokens: TokenServer,
    pub registry: Registry,
    pub cfg: TokenConfig,
}

impl GitLab {
    pub fn start(ttl_secs: u64) -> GitLab {
        let pki = Pki::new();
        let cfg = TokenConfig {
            project: "group/project".into(),
            allowlist: vec!["group/base-images/busybox".into()],
            job_token: "glcbt-64_SeCrEtJoBtOkEn_0123456789".into(),
            admin: ("root".into(), "admin-password-xyz".into()),
            ttl_secs,
        };
        let tokens = TokenServer::start(cfg.clone());
        let registry = Registry::start_with(&tokens.registry_yaml(), Some((&pki.cert, &pki.key)));
        GitLab {
            pki,
            tokens,
            registry,
            cfg,
        }
    }

    /// skopeo flags to reach this registry as the admin.
    pub fn skopeo_admin(&self, verb_flag_prefix: &str) -> Vec<String> {
        vec![
            format!(
                "--{verb_flag_prefix}creds={}:{}",
                self.cfg.admin.0, self.cfg.admin.1
            ),
            format!(
                "--{verb_flag_prefix}cert-dir={}",
                self.pki.cert_dir.display()
            ),
        ]
    }

    /// The environment a GitLab runner sets for a job of `group/project`.
    pub fn job_env(&self) -> Vec<(String, String)> {
        let reg = &self.registry.addr;
        vec![
            ("GITLAB_CI".into(), "true".into()),
            ("CI".into(), "true".into()),
            ("CI_REGISTRY".into(), reg.clone()),
            ("CI_REGISTRY_IMAGE".into(), format!("{reg}/group/project")),
            ("CI_REGISTRY_USER".into(), "gitlab-ci-token".into()),
            ("CI_REGISTRY_PASSWORD".into(), self.cfg.job_token.clone()),
            ("CI_JOB_TOKEN".into(), self.cfg.job_token.clone()),
            ("CI_PROJECT_DIR".into(), "/builds/group/project".into()),
            ("CI_PROJECT_PATH".into(), "group/project".into()),
            ("CI_COMMIT_SHORT_SHA".into(), "1a2b3c4d".into()),
        ]
    }
}

/// Seed `repo:latest` with the busybox base, through the admin account.
pub fn seed_busybox(gl: &GitLab, repo: &str) {
    let plain = Registry::start();
    super::push_busybox_base(&plain, "seed");
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet", "--src-tls-verify=false"])
        .args(gl.skopeo_admin("dest-"));
    check(
        c.arg(format!("docker://{}/seed:latest", plain.addr))
            .arg(format!("docker://{}/{repo}:latest", gl.registry.addr)),
    );
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
