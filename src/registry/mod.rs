//! The registry HTTP client (OCI distribution spec): manifests, blobs, uploads,
//! cross-repository mounts, redirects and retries. Bodies are streamed from files,
//! so any request can be replayed after a retry or a token refresh.

pub mod auth;
pub mod creds;
pub mod fetch;
mod ledger;
mod pull;
mod push;
pub mod retry;
pub mod tls;
mod token;

use crate::image::Reference;
use auth::parse_challenge;
use base64::Engine as _;
use futures_util::TryStreamExt as _;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
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
    /// 429 Too Many Requests, and how long the registry asked to wait.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
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
    /// Bytes of blobs the registry accepted.
    pub bytes_up: AtomicU64,
    /// Bytes received, as they arrive (progress bars read it live).
    pub bytes_down: std::sync::Arc<AtomicU64>,
    /// Bytes of upload bodies sent so far, retries included (progress bars).
    pub streamed_up: std::sync::Arc<AtomicU64>,
    pub blobs_up: AtomicU64,
    pub blobs_skipped: AtomicU64,
    pub blobs_mounted: AtomicU64,
}

tokio::task_local! {
    /// Set while a pull tries a source that has another after it.
    static FALLS_THROUGH: ();
}

/// Run `f`, a pull from a mirror, a registry map or the Dependency Proxy with
/// another source after it: it fails fast, so the next source is tried instead
/// of this one's retries waited out.
pub async fn falling_through<F: std::future::Future>(f: F) -> F::Output {
    FALLS_THROUGH.scope((), f).await
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
                return format!(": {}", crate::clip::clip(&parts.join("; ")));
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
    /// A layer still being written: its length is not known yet. The counter
    /// says how much of it the connection has taken.
    Live(&'a crate::layer::live::Tail, std::sync::Arc<AtomicU64>),
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
                crate::report::message(&format!("credentials for {registry} from {}", f.source));
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

    /// The retry policy for a request: pushes are anything that writes. A pull
    /// from a source with another after it (see [`falling_through`]) retries
    /// once, briefly, and a 429 that asks for a longer wait falls through.
    fn policy(&self, push: bool, method: &Method) -> retry::Policy {
        if push || !matches!(*method, Method::GET | Method::HEAD) {
            self.push_retry
        } else if FALLS_THROUGH.try_with(|_| ()).is_ok() {
            retry::Policy {
                retries: self.pull_retry.retries.min(1),
                window: Duration::from_secs(5),
            }
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
        let line = format!(
            "registry {}: {what} {why}; retry {} of {} in {:.1}s{asked}",
            r.registry,
            attempts.made,
            attempts.allowed(),
            wait.as_secs_f64()
        );
        // A source with another after it says one line when it gives up.
        if FALLS_THROUGH.try_with(|_| ()).is_ok() {
            tracing::debug!("{line}");
        } else {
            tracing::warn!("{line}");
        }
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
                    let sent = self.counters.streamed_up.clone();
                    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(*len), 1 << 20)
                        .inspect_ok(move |b| {
                            sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                        });
                    req.header(CONTENT_LENGTH, *len)
                        .body(reqwest::Body::wrap_stream(stream))
                }
                Body::Live(tail, pulled) => {
                    let sent = self.counters.streamed_up.clone();
                    let pulled = pulled.clone();
                    pulled.store(0, Ordering::Relaxed);
                    let stream = tail.stream().inspect_ok(move |b| {
                        sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                        pulled.fetch_add(b.len() as u64, Ordering::Relaxed);
                    });
                    req.body(reqwest::Body::wrap_stream(stream))
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
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry::parse_retry_after);
        let body = resp.text().await.unwrap_or_default();
        let detail = error_detail(&body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                self.denied(r, status, &detail, push)
            }
            // Still limited after the retries waited as Retry-After asked, or
            // a request whose body is replayed by its caller (an upload).
            StatusCode::TOO_MANY_REQUESTS => RegistryError::RateLimited {
                message: rate_limited(&r.registry, method, path, &detail),
                retry_after,
            },
            _ => RegistryError::Status {
                registry: r.registry.clone(),
                method: method.into(),
                path: path.into(),
                status: status.as_u16(),
                detail,
            },
        }
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

/// A 429 that outlasted the retries: what it is, and for Docker Hub the way
/// around its pull limit.
fn rate_limited(registry: &str, method: &str, path: &str, detail: &str) -> String {
    let hint = if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        ": Docker Hub allows 100 anonymous pulls per 6 hours; pull through a mirror (--registry-mirror, --registry-map) or GitLab's Dependency Proxy (--dependency-proxy auto)"
    } else {
        "; try again later"
    };
    format!("registry {registry} rate-limited the {method} of {path} (429 Too Many Requests{detail}){hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_hub_rate_limit_says_what_it_is_and_the_way_around() {
        let hub = rate_limited("docker.io", "GET", "/v2/library/node/manifests/22", "");
        assert!(hub.contains("429 Too Many Requests"), "{hub}");
        assert!(hub.contains("100 anonymous pulls per 6 hours"), "{hub}");
        assert!(
            hub.contains("--registry-mirror") && hub.contains("--dependency-proxy auto"),
            "{hub}"
        );
        let other = rate_limited("quay.io", "GET", "/v2/x/manifests/1", ": slow down");
        assert!(
            other.contains("(429 Too Many Requests: slow down); try again later"),
            "{other}"
        );
        assert!(!other.contains("Docker Hub"), "{other}");
    }

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
