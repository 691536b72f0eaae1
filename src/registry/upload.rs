//! Blob uploads: a session per attempt, and a new session after a failed one.
//!
//! A PUT or PATCH that breaks off cannot be replayed on its session: the registry
//! may have dropped the session (`404 BLOB_UPLOAD_UNKNOWN`) or kept part of the
//! body. So a failed upload first asks whether the blob arrived after all (HEAD),
//! then starts over on a new session, with the push retry policy's backoff.

use super::{retry, Body, Client, RegistryError, Result, UPLOAD_CHUNK};
use crate::image::Reference;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::sync::atomic::Ordering;

/// Failures after which a new upload session may succeed.
fn worth_a_new_session(e: &RegistryError) -> bool {
    match e {
        RegistryError::Unreachable { .. } => true,
        RegistryError::Status { status, .. } => retry::retryable_status(*status) || *status == 404,
        _ => false,
    }
}

impl Client {
    /// Upload a blob from a file, unless the registry has it. Each attempt is a
    /// new session; the body is read again from the file.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        path: &Path,
    ) -> Result<()> {
        if self.blob_exists(r, digest).await? {
            tracing::debug!("{digest}: already in {}", r.name());
            self.counters.blobs_skipped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        tracing::debug!("{digest}: uploading {size} bytes to {}", r.name());
        let mut attempts = retry::Attempts::new(self.push_retry);
        loop {
            let err = match self.upload_once(r, digest, size, path).await {
                Ok(()) => {
                    self.uploaded(size);
                    return Ok(());
                }
                Err(e) if worth_a_new_session(&e) => e,
                Err(e) => return Err(e),
            };
            let why = err.to_string();
            let why = format!("failed ({})", why.lines().next().unwrap_or(""));
            let what = format!("upload of {digest}");
            if !self.backoff(r, &what, &why, &mut attempts, None).await {
                return Err(err);
            }
            // The failed session may have completed after all.
            if self.blob_exists(r, digest).await? {
                self.uploaded(size);
                return Ok(());
            }
        }
    }

    /// One upload session: POST, then a monolithic PUT, falling back to chunked
    /// PATCHes when the registry refuses the single PUT. The session's requests
    /// are not retried here (see [`Client::push_blob`]).
    async fn upload_once(&self, r: &Reference, digest: &str, size: u64, path: &Path) -> Result<()> {
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
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            "application/octet-stream"
                .parse()
                .map_err(|_| RegistryError::Other("header".into()))?,
        );
        let resp = self
            .send_with(
                r,
                true,
                Method::PUT,
                put,
                h.clone(),
                Body::File(path, 0, size),
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
                    Body::File(path, off, len),
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
        loc.query_pairs_mut().append_pair("digest", digest);
        let resp = self
            .send_with(r, true, Method::PUT, loc, h, Body::Empty, false)
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
}
