//! A static HTTPS file server on 127.0.0.1 with a certificate from the test CA:
//! the company's package mirror, PyPI proxy and git server as RUN steps meet
//! them. It serves files under a root (a directory's `index.html`), HTTP/1.1
//! with keep-alive, and logs each request's path.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct StaticServer {
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// The DER blocks of a PEM file.
fn pem_blocks(path: &Path) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).expect("pem");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("-----BEGIN") {
            cur = Some(String::new());
        } else if line.starts_with("-----END") {
            if let Some(b) = cur.take() {
                out.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .expect("base64"),
                );
            }
        } else if let Some(b) = cur.as_mut() {
            b.push_str(line.trim());
        }
    }
    out
}

impl StaticServer {
    pub fn start(root: &Path, cert: &Path, key: &Path) -> StaticServer {
        let certs: Vec<CertificateDer<'static>> = pem_blocks(cert)
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pem_blocks(key).pop().expect("a key"),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (root, log2) = (root.to_path_buf(), log.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (config, root, log) = (config.clone(), root.clone(), log2.clone());
                std::thread::spawn(move || {
                    let Ok(tls) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    serve(rustls::StreamOwned::new(tls, conn), &root, &log);
                });
            }
        });
        StaticServer { addr, log }
    }

    /// The paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        _ => "application/octet-stream",
    }
}

fn serve(
    stream: rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>,
    root: &Path,
    log: &Mutex<Vec<String>>,
) {
    let mut r = BufReader::new(stream);
    loop {
        let mut request = String::new();
        if r.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut close = false;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h.trim().is_empty() {
                break;
            }
            if h.to_ascii_lowercase().starts_with("connection:")
                && h.to_ascii_lowercase().contains("close")
            {
                close = true;
            }
        }
        let mut parts = request.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_string();
        if let Ok(mut l) = log.lock() {
            l.push(path.clone());
        }
        let mut file: PathBuf = root.join(path.trim_start_matches('/'));
        if file.is_dir() {
            file = file.join("index.html");
        }
        let inside = !path.contains("..");
        let (status, body, ctype) = match std::fs::read(&file) {
            Ok(b) if inside => ("200 OK", b, content_type(&file)),
            _ => ("404 Not Found", b"not found\n".to_vec(), "text/plain"),
        };
        // Last-Modified from the file; Content-Disposition from a `<file>.disposition`.
        let mut extra = String::new();
        if let Ok(m) = std::fs::metadata(&file).and_then(|m| m.modified()) {
            extra.push_str(&format!(
                "Last-Modified: {}\r\n",
                httpdate::fmt_http_date(m)
            ));
        }
        let mut disp = file.clone().into_os_string();
        disp.push(".disposition");
        if let Ok(name) = std::fs::read_to_string(&disp) {
            extra.push_str(&format!(
                "Content-Disposition: attachment; filename=\"{}\"\r\n",
                name.trim()
            ));
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: {ctype}\r\n{extra}{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let w = r.get_mut();
        if w.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method != "HEAD" && w.write_all(&body).is_err() {
            return;
        }
        let _ = w.flush();
        if close {
            w.conn.send_close_notify();
            let _ = w.flush();
            return;
        }
    }
}

/// A bare git repository under `dir/repo.git`, served the "dumb" way (static
/// files after `git update-server-info`), holding a README.
pub fn git_repo(dir: &Path) {
    let work = dir.join("repo-work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README"), "knut-repo\n").unwrap();
    let git = |args: &[&str], cwd: &Path| {
        super::check(
            std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=kiln",
                    "-c",
                    "user.email=kiln@example.invalid",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(cwd),
        );
    };
    git(&["init", "-q"], &work);
    git(&["add", "README"], &work);
    git(&["commit", "-q", "-m", "first"], &work);
    git(&["clone", "-q", "--bare", "repo-work", "repo.git"], dir);
    git(&["update-server-info"], &dir.join("repo.git"));
}
