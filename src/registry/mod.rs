//! The registry HTTP client (OCI distribution spec): manifests, blobs, uploads,
//! cross-repository mounts, redirects and retries. Bodies are streamed from files,
//! so any request can be replayed after a retry or a token refresh.

pub mod auth;
pub mod creds;
pub mod retry;
pub mod tls;
mod upload;

use crate::image::manifest::ACCEPT;
use crate::image::Reference;
use auth::parse_challenge;
use base64::Engine as _;
use reqwest::header::{
    HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach registry {registry}: {cause}\nhint: {hint}")]
    Unreachable {
        registry: String,
        cause: String,
        hint: String,
    },
    #[error("{what} not found in registry {registry}\nhint: check the name and tag, and that the image was pushed")]
    NotFound { registry: String, what: String },
    #[error("registry {registry} refused access to {repository} ({status}{detail}); credentials: {source_name}\nhint: {hint}")]
    Denied {
        registry: String,
        repository: String,
        status: u16,
        detail: String,
        source_name: String,
        hint: String,
    },
    #[error("registry {registry}: {method} {path} failed with {status}{detail}")]
    Status {
        registry: String,
        method: String,
        path: String,
        status: u16,
        detail: String,
    },
    #[error(
        "registry {registry} sent {what} that does not match digest {expected} (got {actual})"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("registry {registry}: {what} broke off: {cause}")]
    Interrupted {
        registry: String,
        what: String,
        cause: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// Options for talking to registries.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Registries (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    pub tls: tls::TlsOptions,
    pub creds: creds::Sources,
    /// Retries of pushes (any request that writes) and of pulls.
    pub push_retry: retry::Policy,
    pub pull_retry: retry::Policy,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_up: AtomicU64,
    pub bytes_down: AtomicU64,
    pub blobs_up: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub blobs_mounted: AtomicU64,
}

/// A point-in-time copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterSnapshot {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub blobs_up: u64,
    pub blobs_skipped: u64,
    pub blobs_mounted: u64,
}

impl CounterSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            bytes_up: self.bytes_up - earlier.bytes_up,
            bytes_down: self.bytes_down - earlier.bytes_down,
            blobs_up: self.blobs_up - earlier.blobs_up,
            blobs_skipped: self.blobs_skipped - earlier.blobs_skipped,
            blobs_mounted: self.blobs_mounted - earlier.blobs_mounted,
        }
    }
}

impl Counters {
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            blobs_up: self.blobs_up.load(Ordering::Relaxed),
            blobs_skipped: self.blobs_skipped.load(Ordering::Relaxed),
            blobs_mounted: self.blobs_mounted.load(Ordering::Relaxed),
        }
    }
}

/// How a registry wants to be authenticated, learnt from its challenge.
#[derive(Debug, Clone)]
enum AuthState {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        token: Option<Token>,
    },
}

#[derive(Clone)]
struct Token {
    value: String,
    expires_at: Instant,
    lifetime: Duration,
    scopes: BTreeSet<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Still good for a request that needs `scope`? Refreshed a little before expiry.
    fn usable_for(&self, scope: &str) -> bool {
        let margin = (self.lifetime / 10).min(Duration::from_secs(30));
        self.scopes.contains(scope) && Instant::now() + margin < self.expires_at
    }
}

pub struct Client {
    insecure: HashSet<String>,
    tls: tls::TlsOptions,
    global_cas: Vec<tls::Pem>,
    clients: StdMutex<tls::ClientCache>,
    creds: creds::Sources,
    found: StdMutex<HashMap<String, creds::Found>>,
    /// Scopes the build will need per registry, so one token covers them all.
    scopes: StdMutex<HashMap<String, BTreeSet<String>>>,
    auth: tokio::sync::Mutex<HashMap<String, AuthState>>,
    push_retry: retry::Policy,
    pull_retry: retry::Policy,
    pub counters: Counters,
}

const UPLOAD_CHUNK: u64 = 32 << 20;
fn error_detail(body: &str) -> String {
    // Registries answer {"errors":[{"code":..,"message":..}]}; keep it short.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
            let parts: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    format!("{code}: {msg}")
                        .trim_matches([' ', ':'])
                        .to_string()
                })
                .collect();
            if !parts.is_empty() {
                return format!(": {}", parts.join("; "));
            }
        }
    }
    let t = body.trim();
    if t.is_empty() || t.len() > 200 {
        String::new()
    } else {
        format!(": {t}")
    }
}

fn connect_hint(registry: &str, err: &reqwest::Error) -> String {
    let text = format!("{err:?}");
    if text.contains("InvalidContentType")
        || text.contains("CorruptMessage")
        || text.contains("wrong version number")
    {
        format!("the registry does not speak HTTPS; if it is a plain-HTTP registry, pass --insecure-registry {registry}")
    } else if text.contains("certificate") || text.contains("UnknownIssuer") {
        "the registry's TLS certificate is not trusted".to_string()
    } else {
        format!("check that {registry} is the right host and port and that it is up; for a plain-HTTP registry pass --insecure-registry {registry}")
    }
}

fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut src = err.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

/// What a request sends, rebuilt for every attempt so it can be replayed.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// (path, offset, length)
    File(&'a Path, u64, u64),
}

impl Client {
    pub fn new(opts: &Options) -> Result<Client> {
        let global_cas = tls::global_cas(&opts.tls, &tls::process_env)
            .map_err(|e| RegistryError::Other(e.to_string()))?;
        Ok(Client {
            insecure: opts.insecure.iter().cloned().collect(),
            tls: opts.tls.clone(),
            global_cas,
            clients: StdMutex::new(HashMap::new()),
            creds: opts.creds.clone(),
            found: StdMutex::new(HashMap::new()),
            scopes: StdMutex::new(HashMap::new()),
            auth: tokio::sync::Mutex::new(HashMap::new()),
            push_retry: opts.push_retry,
            pull_retry: opts.pull_retry,
            counters: Counters::default(),
        })
    }

    /// The HTTP client for `host`, with that host's TLS trust.
    fn http(&self, host: &str) -> Result<reqwest::Client> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| RegistryError::Other("client cache poisoned".into()))?;
        if let Some(c) = clients.get(host) {
            return Ok(c.clone());
        }
        let host_tls =
            tls::host_tls(&self.tls, host).map_err(|e| RegistryError::Other(e.to_string()))?;
        let c = tls::client_for(&self.global_cas, host_tls, host).map_err(RegistryError::Other)?;
        clients.insert(host.to_string(), c.clone());
        Ok(c)
    }

    /// Say up front that the build will need `pull` (or `pull,push`) on `r`, so the
    /// registry's token covers it (cross-repository mounts need both repositories).
    pub fn declare(&self, r: &Reference, push: bool) {
        if let Ok(mut s) = self.scopes.lock() {
            s.entry(r.registry.clone())
                .or_default()
                .insert(Self::scope(r, push));
        }
    }

    /// Credentials for a registry, looked up once; the source is reported, never the secret.
    pub fn credentials(&self, registry: &str) -> creds::Found {
        let mut found = match self.found.lock() {
            Ok(f) => f,
            Err(_) => return creds::Found::anonymous(),
        };
        found
            .entry(registry.to_string())
            .or_insert_with(|| {
                let f = self.creds.lookup(registry);
                eprintln!("credentials for {registry} from {}", f.source);
                f
            })
            .clone()
    }

    fn base(&self, r: &Reference) -> String {
        let scheme = if self.insecure.contains(&r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    fn url(&self, r: &Reference, path: &str) -> Result<Url> {
        Url::parse(&format!("{}/v2/{}/{}", self.base(r), r.repository, path))
            .map_err(|e| RegistryError::Other(format!("bad registry URL for {r}: {e}")))
    }

    fn scope(r: &Reference, push: bool) -> String {
        format!(
            "repository:{}:{}",
            r.repository,
            if push { "pull,push" } else { "pull" }
        )
    }

    /// The Authorization header for a request needing `scope`, fetching or
    /// refreshing the registry's token when needed.
    async fn authorization(&self, r: &Reference, scope: &str) -> Result<Option<String>> {
        let mut auth = self.auth.lock().await;
        let Some(state) = auth.get(&r.registry).cloned() else {
            return Ok(None);
        };
        match state {
            AuthState::Basic => Ok(match self.credentials(&r.registry).secret {
                Some(creds::Secret::Basic { username, password }) => Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                )),
                _ => None,
            }),
            AuthState::Bearer {
                realm,
                service,
                token,
            } => {
                if let Some(t) = token.as_ref().filter(|t| t.usable_for(scope)) {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let mut wanted: BTreeSet<String> = self
                    .scopes
                    .lock()
                    .map(|s| s.get(&r.registry).cloned().unwrap_or_default())
                    .unwrap_or_default();
                wanted.insert(scope.to_string());
                if let Some(t) = &token {
                    wanted.extend(t.scopes.iter().cloned());
                }
                let t = self
                    .fetch_token(r, &realm, service.as_deref(), &wanted)
                    .await?;
                let header = format!("Bearer {}", t.value);
                auth.insert(
                    r.registry.clone(),
                    AuthState::Bearer {
                        realm,
                        service,
                        token: Some(t),
                    },
                );
                Ok(Some(header))
            }
        }
    }

    /// Send a request, answering auth challenges and retrying transient failures
    /// (see [`retry`]). A 401 after a token was sent (expired or revoked) gets one
    /// fresh token.
    async fn send(
        &self,
        r: &Reference,
        push: bool,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Body<'_>,
    ) -> Result<reqwest::Response> {
        self.send_with(r, push, method, url, headers, body, true)
            .await
    }

    /// The retry policy for a request: pushes are anything that writes.
    fn policy(&self, push: bool, method: &Method) -> retry::Policy {
        if push || !matches!(*method, Method::GET | Method::HEAD) {
            self.push_retry
        } else {
            self.pull_retry
        }
    }

    /// Wait before the next retry if the policy allows it, saying what is
    /// retried and why; false when the caller should give up.
    async fn backoff(
        &self,
        r: &Reference,
        what: &str,
        why: &str,
        attempts: &mut retry::Attempts,
        retry_after: Option<Duration>,
    ) -> bool {
        let Some(wait) = attempts.next(retry_after) else {
            return false;
        };
        let asked = if retry_after.is_some() {
            " (as Retry-After asks)"
        } else {
            ""
        };
        tracing::warn!(
            "registry {}: {what} {why}; retry {} of {} in {:.1}s{asked}",
            r.registry,
            attempts.made,
            attempts.allowed(),
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
        true
    }

    /// [`Client::send`]; with `retry` false, transient failures are returned to
    /// the caller instead (an upload session's requests cannot be replayed: the
    /// registry may have dropped the session or kept part of the body).
    #[allow(clippy::too_many_arguments)]
    async fn send_with(
        &self,
        r: &Reference,
        push: bool,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Body<'_>,
        retry: bool,
    ) -> Result<reqwest::Response> {
        let scope = Self::scope(r, push);
        let http = self.http(r.api_host())?;
        let mut attempts = retry::Attempts::new(self.policy(push, &method));
        let what = format!("{method} {}", url.path());
        let mut challenged = 0;
        loop {
            let mut req = http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(h) = self.authorization(r, &scope).await? {
                req = req.header(AUTHORIZATION, h);
            }
            req = match &body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b.to_vec()),
                Body::File(p, off, len) => {
                    let mut f = tokio::fs::File::open(p).await.map_err(|e| {
                        RegistryError::Other(format!("cannot read {}: {e}", p.display()))
                    })?;
                    f.seek(std::io::SeekFrom::Start(*off)).await.map_err(|e| {
                        RegistryError::Other(format!("cannot read {}: {e}", p.display()))
                    })?;
                    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(*len), 1 << 20);
                    req.header(CONTENT_LENGTH, *len)
                        .body(reqwest::Body::wrap_stream(stream))
                }
            };
            // Errors without the URL: an upload's has the session state in it.
            let resp = match req.send().await.map_err(reqwest::Error::without_url) {
                Ok(r) => r,
                Err(e) => {
                    let cause = cause_chain(&e);
                    if e.is_connect() {
                        attempts.limit_to(retry::CONNECT_RETRIES);
                    }
                    let why = format!("failed ({cause})");
                    if retry
                        && !retry::is_tls_failure(&cause)
                        && self.backoff(r, &what, &why, &mut attempts, None).await
                    {
                        continue;
                    }
                    return Err(RegistryError::Unreachable {
                        registry: r.registry.clone(),
                        hint: self.connect_hint(&r.registry, &e),
                        cause,
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && challenged < 2 {
                challenged += 1;
                let ch = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let mut auth = self.auth.lock().await;
                match ch {
                    Some(c) if c.scheme == "bearer" => {
                        let realm = c.params.get("realm").cloned().ok_or_else(|| {
                            RegistryError::Other(format!(
                                "registry {} sent a Bearer challenge without realm",
                                r.registry
                            ))
                        })?;
                        // A second 401 with a fresh token means the scope was refused.
                        if challenged == 2 {
                            let detail = c
                                .params
                                .get("error")
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default();
                            drop(auth);
                            return Err(self.denied(r, status, &detail, push));
                        }
                        let service = c.params.get("service").cloned();
                        auth.insert(
                            r.registry.clone(),
                            AuthState::Bearer {
                                realm,
                                service,
                                token: None,
                            },
                        );
                        continue;
                    }
                    Some(c)
                        if c.scheme == "basic"
                            && challenged == 1
                            && self.credentials(&r.registry).secret.is_some() =>
                    {
                        auth.insert(r.registry.clone(), AuthState::Basic);
                        continue;
                    }
                    _ => {
                        drop(auth);
                        let detail = error_detail(&resp.text().await.unwrap_or_default());
                        return Err(self.denied(r, status, &detail, push));
                    }
                }
            }
            if retry && retry::retryable_status(status.as_u16()) {
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry::parse_retry_after);
                let why = if status == StatusCode::TOO_MANY_REQUESTS {
                    "was rate-limited (429 Too Many Requests)".to_string()
                } else {
                    format!("answered {status}")
                };
                if self
                    .backoff(r, &what, &why, &mut attempts, retry_after)
                    .await
                {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &BTreeSet<String>,
    ) -> Result<Token> {
        let found = self.credentials(&r.registry);
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Other(format!(
                "registry {} sent a bad token realm {realm:?}: {e}",
                r.registry
            ))
        })?;
        let http = self.http(&url_host(&url))?;
        let req = match &found.secret {
            Some(creds::Secret::IdentityToken(refresh)) => {
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", refresh.clone()),
                    ("client_id", "kiln".into()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.into()));
                }
                form.push((
                    "scope",
                    scopes.iter().cloned().collect::<Vec<_>>().join(" "),
                ));
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", url_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http.post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for sc in scopes {
                        q.append_pair("scope", sc);
                    }
                }
                let req = http.get(url);
                match other {
                    Some(creds::Secret::Basic { username, password }) => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let resp = req.send().await.map_err(|e| RegistryError::Unreachable {
            registry: r.registry.clone(),
            hint: format!(
                "the token service {realm} could not be reached; {}",
                self.connect_hint(&r.registry, &e)
            ),
            cause: cause_chain(&e),
        })?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Denied {
                registry: r.registry.clone(),
                repository: r.repository.clone(),
                status: status.as_u16(),
                detail: format!(": the token service {realm} rejected the credentials"),
                source_name: found.source.clone(),
                hint: format!("check the credentials from {} (a CI job token is valid only while its job runs)", found.source),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Other(format!(
                "registry {}: token service {realm} answered {status}",
                r.registry
            )));
        }
        let body = resp.bytes().await.map_err(|e| {
            RegistryError::Other(format!("registry {}: token service: {e}", r.registry))
        })?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            RegistryError::Other(format!(
                "registry {}: token service sent an invalid answer: {e}",
                r.registry
            ))
        })?;
        let value = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "registry {}: token service answered without a token",
                    r.registry
                ))
            })?;
        let secs = v
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .or_else(|| auth::jwt_seconds_left(&value))
            .unwrap_or(60);
        let lifetime = Duration::from_secs(secs);
        tracing::debug!(
            "token for {} valid {}s, scopes {:?}",
            r.registry,
            secs,
            scopes
        );
        Ok(Token {
            value,
            expires_at: Instant::now() + lifetime,
            lifetime,
            scopes: scopes.clone(),
        })
    }

    fn connect_hint(&self, registry: &str, err: &reqwest::Error) -> String {
        let text = format!("{err:?}");
        if text.contains("UnknownIssuer")
            || text.contains("invalid peer certificate")
            || text.contains("certificate")
        {
            format!(
                "the TLS certificate of {registry} is not signed by a CA kiln trusts ({}); add the CA with --ca-cert FILE_OR_PEM, or set CI_SERVER_TLS_CA_FILE or KILN_CA_CERT (a File-type CI variable works as is)",
                tls::describe(&self.global_cas)
            )
        } else {
            connect_hint(registry, err)
        }
    }

    fn denied(&self, r: &Reference, status: StatusCode, detail: &str, push: bool) -> RegistryError {
        let found = self.credentials(&r.registry);
        let gitlab = self
            .creds
            .env
            .get("CI_REGISTRY")
            .is_some_and(|c| c == &r.registry)
            || found.source.starts_with("CI_");
        let hint = if found.secret.is_none() {
            format!("{} {} needs credentials: in GitLab CI, CI_REGISTRY/CI_JOB_TOKEN are used automatically; elsewhere use --username/--password or docker login", r.registry, if push { "push" } else { "pull" })
        } else if gitlab {
            "a CI job token can push only to its own project's registry ($CI_REGISTRY_IMAGE); pulling from another project needs this project on that project's job-token allowlist (Settings > CI/CD > Job token permissions)".into()
        } else if push {
            format!(
                "the credentials from {} may not push to {}",
                found.source, r.repository
            )
        } else {
            format!(
                "the credentials from {} may not pull {}, or it does not exist",
                found.source, r.repository
            )
        };
        RegistryError::Denied {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            status: status.as_u16(),
            detail: detail.to_string(),
            source_name: found.source,
            hint,
        }
    }

    async fn fail(
        &self,
        r: &Reference,
        method: &str,
        path: &str,
        resp: reqwest::Response,
        push: bool,
    ) -> RegistryError {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let detail = error_detail(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.denied(r, status, &detail, push)
            }
            _ => RegistryError::Status {
                registry: r.registry.clone(),
                method: method.into(),
                path: path.into(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    /// Fetch a manifest or index: (bytes, content type, digest). The bytes are
    /// checked against the digest when the reference pins one.
    pub async fn get_manifest(&self, r: &Reference) -> Result<(Vec<u8>, String, String)> {
        let url = self.url(r, &format!("manifests/{}", r.reference()))?;
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::ACCEPT,
            ACCEPT
                .parse()
                .map_err(|_| RegistryError::Other("bad accept header".into()))?,
        );
        let resp = self
            .send(r, false, Method::GET, url, h, Body::Empty)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: r.registry.clone(),
                what: format!("image {r}"),
            });
        }
        if !resp.status().is_success() {
            return Err(self
                .fail(
                    r,
                    "GET",
                    &format!("manifest {}", r.reference()),
                    resp,
                    false,
                )
                .await);
        }
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let too_big = || {
            RegistryError::Other(format!(
                "registry {}: the manifest of {r} is larger than 4 MiB; kiln refuses it, as containerd does",
                r.registry
            ))
        };
        if resp
            .content_length()
            .is_some_and(|n| n > crate::image::MAX_JSON as u64)
        {
            return Err(too_big());
        }
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            RegistryError::Other(format!("registry {}: reading manifest: {e}", r.registry))
        })? {
            if bytes.len() + chunk.len() > crate::image::MAX_JSON {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = crate::digest::sha256_bytes(&bytes);
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: r.registry.clone(),
                    what: format!("a manifest for {r}"),
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        Ok((bytes, ct, digest))
    }

    /// Download a blob to `store`, verifying its digest. Returns the stored path.
    /// A blob already in the store is re-hashed on first use (see
    /// [`crate::store::Store::verified_path`]). A download that breaks off or
    /// does not match its digest is tried again, with the pull retry policy.
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        digest: &str,
        store: &crate::store::Store,
    ) -> Result<std::path::PathBuf> {
        let io = |e: std::io::Error| RegistryError::Other(format!("local store: {e}"));
        let st = store.clone();
        let d = digest.to_string();
        let have = tokio::task::spawn_blocking(move || st.verified_path(&d))
            .await
            .map_err(|e| RegistryError::Other(e.to_string()))?
            .map_err(io)?;
        if let Some(p) = have {
            return Ok(p);
        }
        let mut attempts = retry::Attempts::new(self.pull_retry);
        loop {
            let err = match self.download_once(r, digest, store).await {
                Ok(p) => return Ok(p),
                Err(
                    e @ (RegistryError::Interrupted { .. } | RegistryError::DigestMismatch { .. }),
                ) => e,
                Err(e) => return Err(e),
            };
            let why = format!("failed ({err})");
            let what = format!("download of {digest}");
            if !self.backoff(r, &what, &why, &mut attempts, None).await {
                return Err(err);
            }
        }
    }

    async fn download_once(
        &self,
        r: &Reference,
        digest: &str,
        store: &crate::store::Store,
    ) -> Result<std::path::PathBuf> {
        use sha2::Digest as _;
        use tokio::io::AsyncWriteExt;
        let io = |e: std::io::Error| RegistryError::Other(format!("local store: {e}"));
        let mut resp = self.get_blob(r, digest).await?;
        tracing::debug!("{digest}: downloading from {}", r.name());
        let tmp = store.temp().map_err(io)?;
        let mut file = tokio::fs::File::from_std(tmp.as_file().try_clone().map_err(io)?);
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| RegistryError::Interrupted {
            registry: r.registry.clone(),
            what: format!("the download of {digest}"),
            cause: cause_chain(&e),
        })? {
            hasher.update(&chunk);
            self.counters
                .bytes_down
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry: r.registry.clone(),
                what: "a blob".into(),
                expected: digest.into(),
                actual,
            });
        }
        let store = store.clone();
        let d = digest.to_string();
        tokio::task::spawn_blocking(move || store.commit(tmp, &d))
            .await
            .map_err(|e| RegistryError::Other(e.to_string()))?
            .map_err(io)
    }

    /// GET a blob: the successful response, or NotFound / the registry's error.
    async fn get_blob(&self, r: &Reference, digest: &str) -> Result<reqwest::Response> {
        let url = self.url(r, &format!("blobs/{digest}"))?;
        let resp = self
            .send(r, false, Method::GET, url, HeaderMap::new(), Body::Empty)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: r.registry.clone(),
                what: format!("blob {digest} of {}", r.name()),
            });
        }
        if !resp.status().is_success() {
            return Err(self
                .fail(r, "GET", &format!("blob {digest}"), resp, false)
                .await);
        }
        Ok(resp)
    }

    /// Fetch a small blob (a config) into memory, checking its digest.
    pub async fn fetch_small_blob(&self, r: &Reference, digest: &str) -> Result<Vec<u8>> {
        let resp = self.get_blob(r, digest).await?;
        let bytes = resp.bytes().await.map_err(|e| {
            RegistryError::Other(format!(
                "registry {}: reading blob {digest}: {e}",
                r.registry
            ))
        })?;
        self.counters
            .bytes_down
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let actual = crate::digest::sha256_bytes(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch {
                registry: r.registry.clone(),
                what: "a blob".into(),
                expected: digest.into(),
                actual,
            });
        }
        Ok(bytes.to_vec())
    }

    /// Upload a small blob held in memory (through a temporary file, so the upload
    /// path and its retries are the same as for layers).
    pub async fn push_blob_bytes(&self, r: &Reference, digest: &str, data: &[u8]) -> Result<()> {
        let mut tmp = tempfile::NamedTempFile::new()
            .map_err(|e| RegistryError::Other(format!("temporary file: {e}")))?;
        std::io::Write::write_all(&mut tmp, data)
            .map_err(|e| RegistryError::Other(format!("temporary file: {e}")))?;
        self.push_blob(r, digest, data.len() as u64, tmp.path())
            .await
    }

    pub async fn blob_exists(&self, r: &Reference, digest: &str) -> Result<bool> {
        let url = self.url(r, &format!("blobs/{digest}"))?;
        let resp = self
            .send(r, true, Method::HEAD, url, HeaderMap::new(), Body::Empty)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self
                .fail(r, "HEAD", &format!("blob {digest}"), resp, true)
                .await),
        }
    }

    fn location(&self, r: &Reference, resp: &reqwest::Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "registry {} started an upload without a Location",
                    r.registry
                ))
            })?;
        let base = Url::parse(&self.base(r)).map_err(|e| RegistryError::Other(e.to_string()))?;
        base.join(loc).map_err(|e| {
            RegistryError::Other(format!(
                "registry {} sent a bad upload Location: {e}",
                r.registry
            ))
        })
    }

    /// Try to mount `digest` from another repository of the same registry.
    /// Ok(true) when mounted; Ok(false) when the registry wants an upload instead.
    pub async fn mount_blob(&self, r: &Reference, digest: &str, from: &str) -> Result<bool> {
        let mut url = self.url(r, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from);
        let resp = self
            .send(r, true, Method::POST, url, HeaderMap::new(), Body::Empty)
            .await?;
        match resp.status() {
            StatusCode::CREATED => {
                tracing::debug!("{digest}: mounted into {} from {from}", r.repository);
                self.counters.blobs_mounted.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            StatusCode::ACCEPTED
            | StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.fail(r, "POST", "blob mount", resp, true).await),
        }
    }

    /// PUT a manifest under `reference` (tag or digest); returns the digest the
    /// registry reports (or the computed one).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let url = self.url(r, &format!("manifests/{reference}"))?;
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            media_type
                .parse()
                .map_err(|_| RegistryError::Other(format!("bad media type {media_type}")))?,
        );
        let resp = self
            .send(r, true, Method::PUT, url, h, Body::Bytes(bytes))
            .await?;
        if !resp.status().is_success() {
            return Err(self
                .fail(r, "PUT", &format!("manifest {reference}"), resp, true)
                .await);
        }
        Ok(crate::digest::sha256_bytes(bytes))
    }
}

fn url_host(u: &Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_are_short() {
        assert_eq!(
            error_detail(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            ": MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(error_detail(""), "");
        assert_eq!(error_detail(&"x".repeat(500)), "");
    }
}
