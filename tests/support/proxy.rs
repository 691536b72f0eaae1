//! A fault-injecting HTTP/1.1 proxy in front of a real registry: each request is
//! shown to a rule, which forwards it, answers it itself, or breaks the
//! connection the way flaky networks and registries do.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What the rule sees of a request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub body_len: usize,
}

impl Req {
    pub fn is(&self, method: &str, path_part: &str) -> bool {
        self.method == method && self.path.contains(path_part)
    }
}

pub enum Fault {
    /// Pass the request to the registry and its answer back.
    Forward,
    /// Answer with this status and headers, without asking the registry.
    Respond(u16, Vec<(&'static str, String)>),
    /// The same, with a body.
    RespondWith(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request, then close the connection without an answer.
    Drop,
    /// Read half the request body, then close the connection: an upload that
    /// broke off. The registry never hears of it.
    DropMidBody,
    /// Forward, but cut the registry's answer after this many bytes.
    CutResponse(usize),
}

type Rule = dyn Fn(&Req) -> Fault + Send + Sync;

pub struct FaultProxy {
    pub addr: String,
    /// "METHOD path -> what happened", one per request.
    pub log: Arc<Mutex<Vec<String>>>,
    /// "METHOD path" and when its head arrived (before its body), one per request.
    pub arrivals: Arc<Mutex<Vec<(String, std::time::SystemTime)>>>,
}

impl FaultProxy {
    pub fn start(
        upstream: &str,
        rule: impl Fn(&Req) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.to_string();
        let (shared_log, shared_arrivals) = (log.clone(), arrivals.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let (upstream, rule, log) = (upstream.clone(), rule.clone(), shared_log.clone());
                let arrivals = shared_arrivals.clone();
                std::thread::spawn(move || serve(client, &upstream, &*rule, &log, &arrivals));
            }
        });
        FaultProxy {
            addr,
            log,
            arrivals,
        }
    }

    pub fn count(&self, what: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }
}

/// One request per connection (the proxy asks for `Connection: close`).
fn serve(
    mut client: TcpStream,
    upstream: &str,
    rule: &Rule,
    log: &Mutex<Vec<String>>,
    arrivals: &Mutex<Vec<(String, std::time::SystemTime)>>,
) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        // A streamed body (kiln's upload of a layer still being written) is
        // read whole here and forwarded with its length.
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
            continue;
        }
        head.push(line);
    }
    if let Some(first) = head.first() {
        let mut p = first.split_whitespace();
        let what = format!("{} {}", p.next().unwrap_or(""), p.next().unwrap_or(""));
        arrivals
            .lock()
            .unwrap()
            .push((what, std::time::SystemTime::now()));
    }
    let streamed = if chunked {
        let Some(body) = read_chunked(&mut reader) else {
            return;
        };
        length = body.len();
        head.push(format!("Content-Length: {length}\r\n"));
        Some(body)
    } else {
        None
    };
    let first = head.first().cloned().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let req = Req {
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        body_len: length,
    };
    let fault = rule(&req);
    let note = |what: &str| {
        log.lock()
            .unwrap()
            .push(format!("{} {} -> {what}", req.method, req.path));
    };
    if let Fault::DropMidBody = fault {
        if streamed.is_none() {
            let mut half = vec![0u8; length / 2];
            let _ = reader.read_exact(&mut half);
        }
        note("dropped mid-body");
        let _ = client.shutdown(std::net::Shutdown::Both);
        return;
    }
    let body = match streamed {
        Some(b) => b,
        None => {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        }
    };
    match fault {
        Fault::Respond(status, headers) => answer(&mut client, status, headers, &[], note),
        Fault::RespondWith(status, headers, body) => {
            answer(&mut client, status, headers, &body, note)
        }
        Fault::Drop => {
            note("dropped");
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
        Fault::Forward | Fault::CutResponse(_) => {
            let Ok(mut up) = TcpStream::connect(upstream) else {
                return;
            };
            let mut out = head.concat();
            out.push_str("Connection: close\r\n\r\n");
            if up.write_all(out.as_bytes()).is_err() || up.write_all(&body).is_err() {
                return;
            }
            if let Fault::CutResponse(n) = fault {
                note(&format!("cut after {n} bytes"));
                let _ = std::io::copy(&mut up.take(n as u64), &mut client);
                let _ = client.shutdown(std::net::Shutdown::Both);
            } else {
                note("forwarded");
                let _ = std::io::copy(&mut up, &mut client);
            }
        }
        Fault::DropMidBody => unreachable!("handled above"),
    }
}

/// An HTTP/1.1 chunked body, decoded; None when the connection broke off.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t == "\r\n" {
                    return Some(body);
                }
            }
        }
        let at = body.len();
        body.resize(at + size, 0);
        reader.read_exact(&mut body[at..]).ok()?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).ok()?;
    }
}

fn answer(
    client: &mut TcpStream,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &[u8],
    note: impl Fn(&str),
) {
    note(&format!("answered {status}"));
    let mut resp = format!(
        "HTTP/1.1 {status} Injected\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        resp.push_str(&format!("{k}: {v}\r\n"));
    }
    resp.push_str("\r\n");
    let _ = client.write_all(resp.as_bytes());
    let _ = client.write_all(body);
}
