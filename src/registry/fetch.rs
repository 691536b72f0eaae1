//! `ADD https://…`: one file fetched over HTTP(S) with the same TLS trust as
//! the registries (so the company CA works for ADD too), streamed to a file
//! while it is hashed, with the name and mtime Docker takes from the response.

use super::{Client, RegistryError};
use sha2::Digest as _;
use std::path::Path;
use tokio::io::AsyncWriteExt;

/// What a fetch brought.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `sha256:<hex>` of the content.
    pub digest: String,
    pub size: u64,
    /// The file's name: from Content-Disposition, else the URL path's last
    /// segment, else `download`.
    pub name: String,
    /// Last-Modified, in seconds since the epoch.
    pub mtime: Option<u64>,
}

/// The largest file ADD fetches.
const MAX_FETCH: u64 = 8 << 30;

/// `filename="x"` or `filename=x` of a Content-Disposition header.
fn disposition_name(v: &str) -> Option<String> {
    v.split(';').find_map(|part| {
        let (k, val) = part.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("filename") {
            return None;
        }
        let name = val.trim().trim_matches('"');
        let name = name.rsplit('/').next().unwrap_or(name);
        (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
    })
}

fn url_name(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|n| !n.is_empty() && n != "." && n != "..")
        .unwrap_or_else(|| "download".into())
}

impl Client {
    /// A CA bundle for tools kiln runs itself (`git` for ADD): the job's system
    /// roots plus the CAs kiln trusts beyond them, written once into `dir`.
    /// None when kiln trusts nothing beyond the system roots.
    pub fn ca_bundle(&self, dir: &Path) -> Option<std::path::PathBuf> {
        if self.global_cas.is_empty() {
            return None;
        }
        let path = dir.join("kiln-ca-bundle.crt");
        if !path.exists() {
            let mut text = crate::exec::ca::SYSTEM_BUNDLES
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            for pem in &self.global_cas {
                text.push('\n');
                text.push_str(&pem.pem);
            }
            std::fs::write(&path, text).ok()?;
        }
        Some(path)
    }

    /// Fetch `url` into `dest` (a new file). Retries a dropped connection or a
    /// 5xx as pulls do; a 4xx is an error at once.
    pub async fn fetch_url(&self, url: &str, dest: &Path) -> Result<Fetched, RegistryError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| RegistryError::Other(format!("{url}: not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RegistryError::Other(format!(
                "{url}: only http:// and https:// URLs can be fetched"
            )));
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(RegistryError::Other(format!("{url}: no host"))),
        };
        let http = self.http(&host)?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.fetch_once(&http, &parsed, dest).await {
                Ok(f) => return Ok(f),
                Err((e, retryable)) if retryable && attempt < 4 => {
                    crate::report::warning(&format!("ADD {url}: {e}; retrying"));
                    tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)))
                        .await;
                }
                Err((e, _)) => return Err(RegistryError::Other(format!("{url}: {e}"))),
            }
        }
    }

    async fn fetch_once(
        &self,
        http: &reqwest::Client,
        url: &url::Url,
        dest: &Path,
    ) -> Result<Fetched, (String, bool)> {
        let resp = http.get(url.clone()).send().await.map_err(|e| {
            let why = super::cause_chain(&e);
            let debug = format!("{e:?}");
            if debug.contains("certificate") || debug.contains("UnknownIssuer") {
                (
                    format!("{why}; the server's TLS certificate is not trusted: give its CA with --ca-cert or KILN_CA_CERT"),
                    false,
                )
            } else {
                (why, true)
            }
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err((format!("HTTP {status}"), status.is_server_error()));
        }
        let headers = resp.headers().clone();
        let name = headers
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(disposition_name)
            .unwrap_or_else(|| url_name(resp.url()));
        let mtime = headers
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| (format!("cannot write {}: {e}", dest.display()), false))?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            (
                format!("the download broke off: {}", super::cause_chain(&e)),
                true,
            )
        })? {
            size += chunk.len() as u64;
            if size > MAX_FETCH {
                return Err(("larger than 8 GiB".into(), false));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| (format!("cannot write {}: {e}", dest.display()), false))?;
        }
        file.flush()
            .await
            .map_err(|e| (format!("cannot write {}: {e}", dest.display()), false))?;
        self.counters
            .bytes_down
            .fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        Ok(Fetched {
            digest: format!("sha256:{}", hex::encode(hasher.finalize())),
            size,
            name,
            mtime,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_from_the_response_or_the_url() {
        assert_eq!(
            super::disposition_name("attachment; filename=\"tool-1.2.tgz\"").as_deref(),
            Some("tool-1.2.tgz")
        );
        assert_eq!(
            super::disposition_name("attachment; filename=../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(super::disposition_name("inline"), None);
        let u = url::Url::parse("https://example.com/dl/tini-amd64?x=1").unwrap();
        assert_eq!(super::url_name(&u), "tini-amd64");
        let u = url::Url::parse("https://example.com/").unwrap();
        assert_eq!(super::url_name(&u), "download");
    }
}
