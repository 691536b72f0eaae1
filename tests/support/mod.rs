//! Test harness: a real Debian `docker-registry` on 127.0.0.1 with a free port and
//! temporary storage, base images built from `busybox-static` with umoci and pushed
//! with skopeo, and checks through skopeo/umoci rather than kiln's own reader.
#![allow(dead_code)]

use std::io::{Read, Write};
pub mod attest;
pub mod debian;
pub mod gitlab;
pub mod https;
pub mod proxy;
pub mod sandbox;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GET a path, return (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http(
        addr,
        "GET",
        path,
        "application/vnd.oci.image.manifest.v1+json",
        &[],
    )
}

/// One plain HTTP/1.1 request (`Connection: close`); `ctype` is sent as Accept
/// and Content-Type. Returns the status and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    http_full(addr, method, path, ctype, body).map(|(status, _, body)| (status, body))
}

/// [`http`], also returning the response's header block.
pub fn http_full(
    addr: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: {ctype}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let buf = String::from_utf8_lossy(&buf);
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    Some((status, head.to_string(), body.to_string()))
}

/// Upload `data` as a blob of `repo` (POST, then PUT with the digest).
pub fn upload_blob(addr: &str, repo: &str, data: &[u8]) -> String {
    let digest = kiln::digest::sha256_bytes(data);
    let (status, head, _) = http_full(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        "application/octet-stream",
        &[],
    )
    .expect("POST");
    assert_eq!(status, 202, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .expect("Location")
        .trim()
        .to_string();
    let path = location
        .split_once(addr)
        .map(|(_, p)| p.to_string())
        .unwrap_or(location);
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, head, _) = http_full(
        addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        "application/octet-stream",
        data,
    )
    .expect("PUT");
    assert_eq!(status, 201, "{head}");
    digest
}

impl Registry {
    /// A plain-HTTP registry with no auth.
    pub fn start() -> Registry {
        Registry::start_with("", None)
    }

    /// A TLS registry that requires client certificates signed by `client_ca`.
    pub fn start_mtls(cert: &Path, key: &Path, client_ca: &Path) -> Registry {
        Registry::start_tls(
            &format!("    clientcas:\n      - {}\n", client_ca.display()),
            "",
            Some((cert, key)),
        )
    }

    /// A registry with extra top-level config (e.g. an `auth:` section) and
    /// optionally TLS (certificate and key files).
    pub fn start_with(extra_yaml: &str, tls: Option<(&Path, &Path)>) -> Registry {
        Registry::start_tls("", extra_yaml, tls)
    }

    fn start_tls(tls_extra: &str, extra_yaml: &str, tls: Option<(&Path, &Path)>) -> Registry {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let tls_yaml = match tls {
                Some((cert, key)) => format!(
                    "  tls:\n    certificate: {}\n    key: {}\n{tls_extra}",
                    cert.display(),
                    key.display()
                ),
                None => String::new(),
            };
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{extra_yaml}",
                dir.path().join("data").display()
            );
            let cfg = dir.path().join("config.yml");
            std::fs::write(&cfg, config).expect("write config");
            // The access log (one line per request) goes to stdout: keep it, so
            // tests can count uploads and downloads.
            let access = std::fs::File::create(dir.path().join("access.log")).expect("access log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&cfg)
                .stdout(Stdio::from(access))
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry must be installed (apt-get install docker-registry)");
            let mut reg = Registry {
                child,
                addr: addr.clone(),
                dir,
            };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(15) {
                // Any answer on the port means it is up (TLS or auth registries
                // do not answer plain GET /v2/ with 200).
                if tls.is_some() || !extra_yaml.is_empty() {
                    if TcpStream::connect(&addr).is_ok() {
                        return reg;
                    }
                } else if let Some((200, _)) = http_get(&addr, "/v2/") {
                    return reg;
                }
                if let Ok(Some(_)) = reg.child.try_wait() {
                    break; // port taken: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(reg);
        }
        panic!("docker-registry did not start");
    }

    /// The access log so far: one line per request (`"METHOD /path HTTP/1.1" status`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Requests in the access log after `from` lines that match `method` and contain `needle`.
    pub fn count_requests(&self, from: usize, method: &str, needle: &str) -> usize {
        self.access_log()
            .lines()
            .skip(from)
            .filter(|l| l.contains(&format!("\"{method} ")) && l.contains(needle))
            .count()
    }

    pub fn log_len(&self) -> usize {
        self.access_log().lines().count()
    }

    /// Does the registry's storage contain `needle` anywhere (e.g. a leaked token)?
    pub fn storage_contains(&self, needle: &str) -> bool {
        walk_files(&self.dir.path().join("data")).iter().any(|f| {
            std::fs::read(f)
                .map(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
                .unwrap_or(false)
        })
    }

    /// Does `repo:tag` exist?
    pub fn has_tag(&self, repo: &str, tag: &str) -> bool {
        matches!(
            http_get(&self.addr, &format!("/v2/{repo}/manifests/{tag}")),
            Some((200, _))
        )
    }
}

/// Run `cmd` to completion. A binary a test has just copied can be briefly
/// "busy" (ETXTBSY): a child forked by another test thread meanwhile holds the
/// copy's write descriptor until it execs. That is retried, a few times.
pub fn run(cmd: &mut Command) -> Output {
    let mut tries = 0;
    loop {
        let res = cmd.output();
        let busy = match &res {
            Err(e) => e.raw_os_error() == Some(libc::ETXTBSY),
            Ok(o) => {
                !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("Text file busy")
            }
        };
        if !busy || tries == 5 {
            return res.unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        }
        tries += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn check(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    check(Command::new("id").arg("-u")).trim() == "0"
}

/// Say that `test` cannot run here, for a reason outside the project (never a
/// missing package: those are installed by `ci/test`). The line goes to stderr and
/// to `$KILN_SKIP_LOG`, which `ci/test` lists and counts at the end.
pub fn skip(test: &str, reason: &str) {
    let line = format!("skipped: {test}: {reason}\n");
    eprint!("{line}");
    if let Some(log) = std::env::var_os("KILN_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// True when the test runs as root; otherwise records the skip.
pub fn need_root(test: &str) -> bool {
    let root = is_root();
    if !root {
        skip(
            test,
            "needs root (the unprivileged-job sandbox and namespaces are root's)",
        );
    }
    root
}

/// Build a busybox base image with umoci and push it with skopeo to `reg/repo:latest`.
/// It has /etc/passwd with root and `app` (1000), /etc/group with `app` and `staff` (50),
/// and a directory /to-delete.
pub fn push_busybox_base(reg: &Registry, repo: &str) {
    let d = tempfile::tempdir().expect("tempdir");
    let layout = d.path().join("layout");
    let bundle = d.path().join("bundle");
    let image = format!("{}:latest", layout.display());
    check(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
    );
    check(Command::new("umoci").args(["new", "--image", &image]));
    let mut unpack = Command::new("umoci");
    unpack.arg("unpack");
    if !is_root() {
        unpack.arg("--rootless");
    }
    check(unpack.args(["--image", &image]).arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for dir in ["bin", "etc", "tmp", "to-delete/sub", "var"] {
        std::fs::create_dir_all(rootfs.join(dir)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("busybox-static must be installed");
    for app in [
        "sh", "ls", "cat", "env", "id", "echo", "touch", "rm", "chmod", "chown", "ln", "mkdir",
        "true", "false", "find", "stat", "sort", "grep", "sleep", "test", "[", "printf", "wc",
        "head", "tail", "tr", "cut", "mknod", "ps", "readlink",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).expect("symlink");
    }
    std::os::unix::fs::symlink("/tmp", rootfs.join("var/tmp")).expect("symlink");
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nstaff:x:50:\napp:x:1000:\n",
    )
    .expect("group");
    std::fs::write(rootfs.join("to-delete/sub/file"), "x").expect("file");
    check(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
    );
    check(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.env",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "--config.cmd",
        "/bin/sh",
    ]));
    check(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{image}"))
            .arg(format!("docker://{}/{repo}:latest", reg.addr)),
    );
}

/// Compile `testdata/<source>` into a static binary at `out`, so that it runs
/// in any image.
pub fn static_binary(source: &str, out: &Path) {
    check(
        Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(out)
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("testdata")
                    .join(source),
            ),
    );
}

pub fn kiln() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Write files into a fresh context directory.
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }
    d
}

/// The raw config blob of a registry image, via `skopeo inspect --raw --config`
/// (without `--raw`, skopeo drops Docker fields such as Healthcheck).
pub fn config_of(reg: &Registry, repo_tag: &str) -> serde_json::Value {
    let out = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--config", "--tls-verify=false"])
            .arg(format!("docker://{}/{repo_tag}", reg.addr)),
    );
    serde_json::from_str(&out).expect("config JSON")
}

/// Copy an image out with skopeo and unpack it with umoci; returns the rootfs.
pub fn unpack(source: &str, work: &Path) -> PathBuf {
    std::fs::create_dir_all(work).expect("mkdir");
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    let _ = std::fs::remove_dir_all(&layout);
    let _ = std::fs::remove_dir_all(&bundle);
    check(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .arg(source)
            .arg(format!("oci:{}:img", layout.display())),
    );
    let mut c = Command::new("umoci");
    c.arg("unpack");
    if !is_root() {
        c.arg("--rootless");
    }
    check(
        c.args(["--image", &format!("{}:img", layout.display())])
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// `kiln build --no-push` of `ctx` into an OCI layout under `out`, then unpack it
/// with umoci; returns the rootfs. Panics with kiln's stderr if the build fails.
pub fn build_and_unpack(ctx: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    build_cmd_and_unpack(
        kiln().arg("build").arg("--context").arg(ctx).args(extra),
        out,
    )
}

/// Run `build` (a `kiln build` with its context) with `--no-push` into an OCI
/// layout under `out`, then unpack it with umoci; returns the rootfs. Panics
/// with kiln's stderr if the build fails.
pub fn build_cmd_and_unpack(build: &mut Command, out: &Path) -> PathBuf {
    let layout = out.join("oci");
    let res = run(build.arg("--no-push").arg("--oci-layout-path").arg(&layout));
    assert!(
        res.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    unpack(&format!("oci:{}:latest", layout.display()), out)
}

/// A process's stdout, then its stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A world-accessible directory for uid 65534 (nobody) holding a copy of kiln and a
/// context with `files` (busybox included); kiln's work dir and outputs go there too.
pub fn nobody_workspace(files: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o777)).unwrap();
    let bin = d.path().join("kiln");
    std::fs::copy(env!("CARGO_BIN_EXE_kiln"), &bin).unwrap();
    std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).unwrap();
    let ctx = d.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::set_permissions(&ctx, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::set_permissions(ctx.join("busybox"), PermissionsExt::from_mode(0o755)).unwrap();
    for (name, text) in files {
        std::fs::write(ctx.join(name), text).unwrap();
        std::fs::set_permissions(ctx.join(name), PermissionsExt::from_mode(0o644)).unwrap();
    }
    (d, bin)
}

/// `kiln build` of the workspace's context as uid 65534, writing an OCI layout;
/// `wrap` is a command line the setpriv call is appended to.
pub fn build_as_nobody(d: &Path, bin: &Path, wrap: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(wrap.first().copied().unwrap_or("setpriv"));
    if !wrap.is_empty() {
        cmd.args(&wrap[1..]).arg("setpriv");
    }
    run(cmd
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(bin)
        .args(["build", "--context"])
        .arg(d.join("ctx"))
        .arg("--oci-layout-path")
        .arg(d.join("oci"))
        .arg("--work-dir")
        .arg(d)
        .env("HOME", d))
}
