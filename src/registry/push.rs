//! Pushing: blob existence checks, cross-repository mounts, uploads and manifests.
//!
//! Uploads use a session per attempt, and a new session after a failed one.
//!
//! A PUT or PATCH that breaks off cannot be replayed on its session: the registry
//! may have dropped the session (`404 BLOB_UPLOAD_UNKNOWN`) or kept part of the
//! body. So a failed upload first asks whether the blob arrived after all (HEAD),
//! then starts over on a new session, with the push retry policy's backoff.

use super::{retry, Body, Client, RegistryError, Result, UPLOAD_CHUNK};
use crate::image::Reference;
use crate::layer::live::Tail;
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Failures after which a new upload session may succeed.
fn worth_a_new_session(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } | RegistryError::RateLimited { .. } => true,
        RegistryError::Status { status, .. } => retry::retryable_status(*status) || *status == 404,
        _ => false,
    }
}

/// How long a streamed upload may make no progress: the connection takes none
/// of the bytes there are, or the registry does not answer once it has them all.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Resolves when a streamed upload has stalled (see [`STALL`]); never otherwise.
async fn stalled(tail: &Tail, pulled: &AtomicU64) {
    let (mut seen, mut since) = (u64::MAX, std::time::Instant::now());
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (avail, sealed) = tail.available();
        let now = pulled.load(Ordering::Relaxed);
        // Bytes taken, or all taken while the writer is still at work: no stall.
        if now != seen || (now >= avail && !sealed) {
            (seen, since) = (now, std::time::Instant::now());
        } else if since.elapsed() > STALL {
            return;
        }
    }
}

/// The headers of an upload's body.
fn octet_stream() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/octet-stream"),
    );
    h
}

/// Where an upload's body comes from: a file (layers; read again on each
/// attempt) or memory (configs and other small blobs).
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl<'a> Source<'a> {
    /// The body for `len` bytes from `off`.
    fn body(self, off: u64, len: u64) -> Body<'a> {
        match self {
            Source::File(p) => Body::File(p, off, len),
            Source::Bytes(b) => Body::Bytes(&b[off as usize..(off + len) as usize]),
        }
    }
}

impl Client {
    /// Upload a blob from a file, unless the registry has it (false then). Each
    /// attempt is a new session; the body is read again from the file.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<bool> {
        self.push_blob_from(r, digest, size, Source::File(path))
            .await
    }

    async fn push_blob_from(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        src: Source<'_>,
    ) -> Result<bool> {
        if self.blob_exists(r, digest).await? {
            tracing::debug!("{digest}: already in {}", r.name());
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        // Another push of this process may be uploading it, or have put it in
        // another repository of this registry: wait for it, then mount.
        let turn = super::ledger::turn(&r.registry, digest).await;
        // An upload of this process put it here since the check above.
        if super::ledger::has(&r.registry, digest, &r.repository) {
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if turn.waited && self.blob_exists(r, digest).await? {
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        if self.mount_from_ledger(r, digest).await {
            return Ok(false);
        }
        tracing::debug!("{digest}: uploading {size} bytes to {}", r.name());
        let mut attempts = retry::Attempts::new(self.push_retry);
        loop {
            let err = match self.upload_once(r, digest, size, src).await {
                Ok(()) => {
                    self.uploaded(size);
                    super::ledger::record(&r.registry, digest, &r.repository);
                    return Ok(true);
                }
                Err(e) if worth_a_new_session(&e) => e,
                Err(e) => return Err(e),
            };
            let why = err.to_string();
            let why = format!("failed ({})", why.lines().next().unwrap_or(""));
            let what = format!("upload of {digest}");
            // A rate limit on the upload waits what Retry-After asks, within
            // the retry window, like one on any other request.
            let asked = match &err {
                RegistryError::RateLimited { retry_after, .. } => *retry_after,
                _ => None,
            };
            if !self.backoff(r, &what, &why, &mut attempts, asked).await {
                return Err(err);
            }
            // The failed session may have completed after all.
            if self.blob_exists(r, digest).await? {
                self.uploaded(size);
                super::ledger::record(&r.registry, digest, &r.repository);
                return Ok(true);
            }
        }
    }

    /// One upload session: POST, then a monolithic PUT, falling back to chunked
    /// PATCHes when the registry refuses the single PUT. The session's requests
    /// are not retried here (see [`Client::push_blob`]).
    async fn upload_once(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        src: Source<'_>,
    ) -> Result<()> {
        let start = self.url(r, "blobs/uploads/")?;
        let resp = self
            .send(
                r,
                true,
                Method::POST,
                start.clone(),
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(self.fail(r, "POST", "blob upload", resp, true).await);
        }
        let mut put = self.location(r, &resp)?;
        put.query_pairs_mut().append_pair("digest", digest);
        let h = octet_stream();
        let resp = self
            .send_with(
                r,
                true,
                Method::PUT,
                put,
                h.clone(),
                src.body(0, size),
                false,
            )
            .await?;
        if resp.status() == StatusCode::CREATED {
            return Ok(());
        }
        let refused = matches!(resp.status().as_u16(), 400 | 405 | 413 | 416 | 501);
        if !refused {
            return Err(self
                .fail(r, "PUT", &format!("blob {digest}"), resp, true)
                .await);
        }
        tracing::debug!(
            "monolithic upload refused ({}), retrying in chunks",
            resp.status()
        );
        // Chunked: POST, PATCH each chunk (following Location), PUT to finish.
        let resp = self
            .send(r, true, Method::POST, start, HeaderMap::new(), Body::Empty)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(r, "POST", "blob upload", resp, true).await);
        }
        let mut loc = self.location(r, &resp)?;
        let mut off = 0;
        while off < size {
            let len = UPLOAD_CHUNK.min(size - off);
            let mut ph = h.clone();
            ph.insert(
                "Content-Range",
                format!("{}-{}", off, off + len - 1)
                    .parse()
                    .map_err(|_| RegistryError::Other("header".into()))?,
            );
            let resp = self
                .send_with(
                    r,
                    true,
                    Method::PATCH,
                    loc.clone(),
                    ph,
                    src.body(off, len),
                    false,
                )
                .await?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self
                    .fail(r, "PATCH", &format!("blob {digest}"), resp, true)
                    .await);
            }
            loc = self.location(r, &resp)?;
            off += len;
        }
        self.finish_upload(r, loc, digest, h).await
    }

    /// Upload a layer while it is being written: POST, one PATCH whose body is
    /// the blob's bytes as they arrive (streamed: its length is not known yet),
    /// and the PUT with the digest once the writer has sealed the blob. One
    /// session and no retries: after a failure the caller uploads the finished
    /// blob from its file as usual. The digest and size it uploaded.
    pub async fn push_blob_live(&self, r: &Reference, tail: &Tail) -> Result<(String, u64)> {
        // This upload takes the blob's turn (see [`super::ledger`]) as the writer
        // seals it, on the writer's thread, before the digest is out: another
        // push of the blob (its cache entry's, another build's of this process)
        // then waits for this one and finds or mounts the blob. Registered before
        // the first request, so that only a layer sealed before this upload began
        // finds the turn taken; then this one waits for it before its last request
        // and, if the blob is now here or in a repository to mount it from, gives
        // its session back instead of uploading it a second time.
        let held: Arc<std::sync::Mutex<Option<super::ledger::Turn>>> = Arc::default();
        let (slot, registry) = (held.clone(), r.registry.clone());
        tail.on_seal(Box::new(move |digest: &str| {
            if let Ok(mut s) = slot.lock() {
                *s = super::ledger::try_turn(&registry, digest);
            }
        }));
        let start = self.url(r, "blobs/uploads/")?;
        let empty = HeaderMap::new;
        let resp = self
            .send_with(r, true, Method::POST, start, empty(), Body::Empty, false)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(r, "POST", "blob upload", resp, true).await);
        }
        let session = self.location(r, &resp)?;
        let h = octet_stream();
        let pulled = Arc::new(AtomicU64::new(0));
        let patch = self.send_with(
            r,
            true,
            Method::PATCH,
            session.clone(),
            h.clone(),
            Body::Live(tail, pulled.clone()),
            false,
        );
        let sent = tokio::select! {
            sent = patch => sent,
            () = stalled(tail, &pulled) => Err(RegistryError::Other(format!(
                "registry {}: the streamed upload stalled",
                r.registry
            ))),
        };
        let resp = match sent {
            Ok(resp) if resp.status() == StatusCode::ACCEPTED => resp,
            other => {
                // Give the session back rather than leave it for the registry's
                // purge (a refusal here changes nothing).
                let _ = self
                    .send_with(
                        r,
                        true,
                        Method::DELETE,
                        session,
                        empty(),
                        Body::Empty,
                        false,
                    )
                    .await;
                return Err(match other {
                    Ok(resp) => {
                        self.fail(r, "PATCH", "streamed blob upload", resp, true)
                            .await
                    }
                    Err(e) => e,
                });
            }
        };
        let put = self.location(r, &resp)?;
        let (digest, size) = tail
            .finished()
            .await
            .ok_or_else(|| RegistryError::Other("the layer was not finished".into()))?;
        let taken = held.lock().ok().and_then(|mut s| s.take());
        let _turn = match taken {
            Some(t) => t,
            None => super::ledger::turn(&r.registry, &digest).await,
        };
        if super::ledger::has(&r.registry, &digest, &r.repository)
            || self.mount_from_ledger(r, &digest).await
        {
            let _ = self
                .send_with(r, true, Method::DELETE, put, empty(), Body::Empty, false)
                .await;
            return Ok((digest, size));
        }
        self.finish_upload(r, put, &digest, h).await?;
        self.uploaded(size);
        super::ledger::record(&r.registry, &digest, &r.repository);
        Ok((digest, size))
    }

    /// Close an upload session whose bytes are all sent: the PUT with the digest.
    async fn finish_upload(
        &self,
        r: &Reference,
        mut session: Url,
        digest: &str,
        h: HeaderMap,
    ) -> Result<()> {
        session.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send_with(r, true, Method::PUT, session, h, Body::Empty, false)
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self
                .fail(r, "PUT", &format!("blob {digest}"), resp, true)
                .await);
        }
        Ok(())
    }

    fn uploaded(&self, size: u64) {
        self.counters.blobs_up.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_up.fetch_add(size, Ordering::Relaxed);
    }

    /// Upload a small blob held in memory, with the same sessions and retries
    /// as a layer (and no temporary file that a killed build would leave).
    pub async fn push_blob_bytes(&self, r: &Reference, digest: &str, data: &[u8]) -> Result<()> {
        self.push_blob_from(r, digest, data.len() as u64, Source::Bytes(data))
            .await
            .map(|_| ())
    }

    pub async fn blob_exists(&self, r: &Reference, digest: &str) -> Result<bool> {
        Ok(self.blob_size(r, digest).await?.is_some())
    }

    /// HEAD a blob: `None` when the registry lacks it, else its size when the
    /// registry says it (`Some(None)` when it does not).
    pub async fn blob_size(&self, r: &Reference, digest: &str) -> Result<Option<Option<u64>>> {
        let url = self.url(r, &format!("blobs/{digest}"))?;
        let resp = self
            .send(r, true, Method::HEAD, url, HeaderMap::new(), Body::Empty)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
            )),
            StatusCode::NOT_FOUND => Ok(None),
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

    /// May the credentials push to `r`? Starts an upload session and cancels
    /// it, as kaniko's check does; nothing is written.
    pub async fn check_push(&self, r: &Reference) -> Result<()> {
        let start = self.url(r, "blobs/uploads/")?;
        let resp = self
            .send(r, true, Method::POST, start, HeaderMap::new(), Body::Empty)
            .await?;
        if resp.status() != StatusCode::ACCEPTED && resp.status() != StatusCode::CREATED {
            return Err(self.fail(r, "POST", "push access check", resp, true).await);
        }
        if let Ok(loc) = self.location(r, &resp) {
            let _ = self
                .send_with(
                    r,
                    true,
                    Method::DELETE,
                    loc,
                    HeaderMap::new(),
                    Body::Empty,
                    false,
                )
                .await;
        }
        Ok(())
    }

    /// Mount `digest` into `r` from a repository this process put it in (see
    /// [`super::ledger`]). False when there is none or the registry wants an
    /// upload: a refused mount is never an error, the upload follows.
    async fn mount_from_ledger(&self, r: &Reference, digest: &str) -> bool {
        for from in super::ledger::holders(&r.registry, digest, &r.repository) {
            self.declare(
                &Reference {
                    registry: r.registry.clone(),
                    repository: from.clone(),
                    tag: None,
                    digest: None,
                },
                false,
            );
            match self.mount_blob(r, digest, &from).await {
                Ok(true) => {
                    super::ledger::record(&r.registry, digest, &r.repository);
                    return true;
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("{digest}: mount from {from} failed ({e}); uploading"),
            }
        }
        false
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
        self.put_manifest_seen(r, reference, bytes, media_type)
            .await
            .map(|(d, _)| d)
    }

    /// PUT a manifest that has a `subject`: also whether the registry keeps
    /// referrers itself (it answers with `OCI-Subject`, OCI distribution 1.1).
    pub async fn put_referrer(
        &self,
        r: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<bool> {
        let digest = crate::digest::sha256_bytes(bytes);
        self.put_manifest_seen(r, &digest, bytes, media_type)
            .await
            .map(|(_, subject)| subject)
    }

    async fn put_manifest_seen(
        &self,
        r: &Reference,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(String, bool)> {
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
        let subject = resp.headers().contains_key("oci-subject");
        Ok((crate::digest::sha256_bytes(bytes), subject))
    }
}
