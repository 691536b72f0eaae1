//! Pulling: manifests (capped at 4 MiB) and blobs, verified by digest while they
//! stream to the store, and downloaded again when they break off or do not match.

use super::{cause_chain, retry, Body, Client, RegistryError, Result};
use crate::image::manifest::ACCEPT;
use crate::image::Reference;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::sync::atomic::Ordering;

impl Client {
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
        let have = store
            .verified_path_async(digest)
            .await
            .map_err(|e| RegistryError::Other(format!("local store: {e}")))?;
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
        same_digest(r, digest, actual)?;
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

    /// Fetch a small blob (a config, at most 4 MiB) into memory, checking its digest.
    pub async fn fetch_small_blob(&self, r: &Reference, digest: &str) -> Result<Vec<u8>> {
        let resp = self.get_blob(r, digest).await?;
        if resp
            .content_length()
            .is_some_and(|n| n > crate::image::MAX_JSON as u64)
        {
            return Err(RegistryError::Other(format!(
                "registry {}: blob {digest} is larger than 4 MiB, too big for a config",
                r.registry
            )));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            RegistryError::Other(format!(
                "registry {}: reading blob {digest}: {e}",
                r.registry
            ))
        })?;
        self.counters
            .bytes_down
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        same_digest(r, digest, crate::digest::sha256_bytes(&bytes))?;
        Ok(bytes.to_vec())
    }
}

/// A blob `r`'s registry sent must hash to the digest asked for.
fn same_digest(r: &Reference, expected: &str, actual: String) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(RegistryError::DigestMismatch {
        registry: r.registry.clone(),
        what: "a blob".into(),
        expected: expected.into(),
        actual,
    })
}
