//! kiln's job image: the repo's `Dockerfile`, built by kiln from a static kiln,
//! and then kiln inside it, as GitLab's Docker executor runs it (the image's ENV,
//! /proc and /dev mounted, /etc/resolv.conf written, Docker's capabilities and
//! default seccomp profile), building and pushing an app with a RUN step.
mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use support::gitlab::{seed_busybox, GitLab, REGISTRY_NAME};
use support::sandbox::gitlab_job;
use support::*;

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The static kiln: `$KILN_STATIC_BIN` (ci/test builds it first), else built
/// now with ci/build-static, once per test process.
fn static_kiln() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("KILN_STATIC_BIN") {
            return PathBuf::from(p);
        }
        let out = repo_dir().join("target/static/dist/kiln");
        check(Command::new(repo_dir().join("ci/build-static")).arg(&out));
        out
    })
}

#[test]
fn the_static_kiln_needs_no_shared_library() {
    let bin = static_kiln();
    let file = check(Command::new("file").arg("-b").arg(bin));
    assert!(file.contains("ELF 64-bit"), "{file}");
    assert!(file.contains("x86-64"), "{file}");
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    // ldd exits non-zero on a static binary; its words are what count.
    let ldd = run(Command::new("ldd").arg(bin));
    let text = output_text(&ldd);
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "{text}"
    );
    assert!(!text.contains(".so"), "{text}");
}

/// The job image's context: the repo's Dockerfile and .dockerignore, the static
/// kiln at dist/kiln, and files the .dockerignore must keep out.
fn job_image_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tempdir");
    for f in ["Dockerfile", ".dockerignore"] {
        std::fs::copy(repo_dir().join(f), ctx.path().join(f)).expect("copy");
    }
    std::fs::create_dir_all(ctx.path().join("dist")).expect("mkdir");
    std::fs::copy(static_kiln(), ctx.path().join("dist/kiln")).expect("copy kiln");
    std::fs::write(ctx.path().join("dist/kiln.d"), "not for the image").expect("write");
    std::fs::create_dir_all(ctx.path().join("src")).expect("mkdir");
    std::fs::write(ctx.path().join("src/main.rs"), "fn main() {}").expect("write");
    ctx
}

/// A stand-in for Docker Hub on loopback, with the two bases the Dockerfile
/// names by default: `busybox:1.37.0-musl` (a static busybox) and `alpine:3.21`
/// (whose CA bundle is the test CA, so TLS in the job trusts only it).
fn docker_hub_mirror(ca: &Path) -> Registry {
    let hub = Registry::start();
    push_busybox_base(&hub, "library/busybox");
    check(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{}/library/busybox:latest", hub.addr),
        &format!("docker://{}/library/busybox:1.37.0-musl", hub.addr),
    ]));
    let ctx = context(&[(
        "Dockerfile",
        "FROM scratch\nCOPY ca.pem /etc/ssl/certs/ca-certificates.crt\n",
    )]);
    std::fs::copy(ca, ctx.path().join("ca.pem")).expect("copy CA");
    check(
        kiln()
            .args(["build", "--insecure-registry", &hub.addr, "--context"])
            .arg(ctx.path())
            .args([
                "--destination",
                &format!("{}/library/alpine:3.21", hub.addr),
            ]),
    );
    hub
}

/// A DNS server on 127.53.0.1:53 that knows only REGISTRY_NAME, logging queries.
struct Dns {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DNS_ADDR: &str = "127.53.0.1";

fn start_dns() -> Dns {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("queries.log");
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-queries",
        ])
        .arg(format!("--listen-address={DNS_ADDR}"))
        .arg(format!("--address=/{REGISTRY_NAME}/127.0.0.1"))
        .arg(format!("--log-facility={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq (ci/test installs dnsmasq-base)");
    let dns = Dns {
        child,
        log,
        _dir: dir,
    };
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&dns.log).is_ok_and(|l| l.contains("started")) {
        assert!(t.elapsed().as_secs() < 10, "dnsmasq did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    dns
}

/// Start `cmd` as Docker starts a container's process: a mount namespace of its
/// own with /proc and /dev mounted in `root`, chrooted there; then the job
/// sandbox (capabilities and seccomp) on top.
fn in_container(cmd: &mut Command, root: &Path) {
    for d in ["proc", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path");
    let (root_c, proc_c, dev_c) = (c(root), c(&root.join("proc")), c(&root.join("dev")));
    let (slash, proc_fs, host_dev) = (
        c(Path::new("/")),
        c(Path::new("proc")),
        c(Path::new("/dev")),
    );
    // SAFETY: in the forked child before exec: unshare, mount, chroot and chdir
    // on C strings made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let ok = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            let null = std::ptr::null();
            ok(libc::unshare(libc::CLONE_NEWNS))?;
            ok(libc::mount(
                null,
                slash.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                null as _,
            ))?;
            ok(libc::mount(
                proc_fs.as_ptr(),
                proc_c.as_ptr(),
                proc_fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                null as _,
            ))?;
            ok(libc::mount(
                host_dev.as_ptr(),
                dev_c.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REC,
                null as _,
            ))?;
            ok(libc::chroot(root_c.as_ptr()))?;
            ok(libc::chdir(slash.as_ptr()))
        });
    }
    gitlab_job(cmd);
}

/// `reference` from the GitLab registry, copied with skopeo and unpacked with umoci.
fn pull_from(gl: &GitLab, reference: &str, work: &Path) -> PathBuf {
    std::fs::create_dir_all(work).expect("mkdir");
    let layout = work.join("layout");
    let mut c = Command::new("skopeo");
    c.args(["copy", "--quiet"]).args(gl.skopeo_admin("src-"));
    check(
        c.arg(format!("docker://{}/{reference}", gl.registry.addr))
            .arg(format!("oci:{}:img", layout.display())),
    );
    let bundle = work.join("bundle");
    check(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:img", layout.display())])
            .arg(&bundle),
    );
    bundle.join("rootfs")
}

/// Every path of the rootfs, relative, with what it is.
fn inventory(root: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("prefix").display().to_string();
            let ty = e.file_type().expect("type");
            if ty.is_symlink() {
                let to = std::fs::read_link(&p).expect("readlink");
                out.push((rel, format!("-> {}", to.display())));
            } else if ty.is_dir() {
                out.push((rel, "dir".into()));
                walk(root, &p, out);
            } else {
                out.push((rel, "file".into()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn kiln_builds_its_job_image_and_kiln_in_it_builds_an_app_in_the_job_sandbox() {
    if !need_root("job image in the job sandbox") {
        return;
    }
    let gl = GitLab::start(300);
    let hub = docker_hub_mirror(&gl.pki.ca);
    let version = env!("CARGO_PKG_VERSION");

    // 1. The job image, from the repo's Dockerfile, its bases through a mirror.
    let ctx = job_image_context();
    let image = format!("{}/kiln:{version}", hub.addr);
    let out = check(
        kiln()
            .args(["build", "--insecure-registry", &hub.addr])
            .args(["--registry-mirror", &format!("http://{}", hub.addr)])
            .arg("--context")
            .arg(ctx.path())
            .args(["--build-arg", &format!("KILN_VERSION={version}")])
            .args(["--build-arg", "KILN_REVISION=0123abc"])
            .args([
                "--annotation",
                &format!("org.opencontainers.image.version={version}"),
            ])
            .args(["--annotation", "org.opencontainers.image.revision=0123abc"])
            .args(["--destination", &image]),
    );
    let _ = out;
    let manifest: serde_json::Value = serde_json::from_str(&check(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ])))
    .expect("manifest");
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.version"],
        version
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        "0123abc"
    );
    let compressed: u64 = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["size"].as_u64().expect("size"))
        .sum();
    assert!(compressed < 25 << 20, "{compressed} bytes compressed");
    let config = config_of(&hub, &format!("kiln:{version}"));
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], version);
    assert_eq!(labels["org.opencontainers.image.revision"], "0123abc");
    assert!(config["config"]["Entrypoint"].is_null(), "{config}");
    let env: Vec<String> = config["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().expect("env").to_string())
        .collect();

    // 2. Nothing else in it.
    let work = tempfile::tempdir().expect("tempdir");
    let root = unpack(&format!("docker://{image}"), &work.path().join("image"));
    let inv = inventory(&root);
    for (path, what) in &inv {
        let expected = match path.as_str() {
            "bin/busybox"
            | "etc/passwd"
            | "etc/group"
            | "etc/ssl/certs/ca-certificates.crt"
            | "usr/local/bin/kiln" => what == "file",
            "kaniko/executor" | "kaniko/warmer" => what == "-> /usr/local/bin/kiln",
            "usr/local/bin/executor" => what == "-> kiln",
            "kaniko/ssl/certs/ca-certificates.crt" => {
                what == "-> /etc/ssl/certs/ca-certificates.crt"
            }
            p if p.starts_with("bin/") => what == "-> /bin/busybox",
            "bin" | "etc" | "etc/ssl" | "etc/ssl/certs" | "kaniko" | "kaniko/.docker"
            | "kaniko/ssl" | "kaniko/ssl/certs" | "root" | "tmp" | "usr" | "usr/local"
            | "usr/local/bin" => what == "dir",
            _ => false,
        };
        assert!(expected, "unexpected in the job image: {path} ({what})");
    }
    for needed in ["bin/sh", "bin/tar", "bin/base64", "kaniko/executor"] {
        assert!(
            inv.iter().any(|(p, _)| p == needed),
            "no {needed} in the job image"
        );
    }

    // 3. A GitLab job in that image: kiln builds and pushes an app with a RUN
    // step and a USER, reaching the registry by a name only DNS knows and
    // trusting it through the image's CA bundle; then an unchanged kaniko job.
    seed_busybox(&gl, "group/base-images/busybox");
    let dns = start_dns();
    let port = gl.registry.addr.rsplit(':').next().expect("port");
    let registry = format!("{REGISTRY_NAME}:{port}");
    let project = root.join("builds/group/project");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(
        project.join("Dockerfile"),
        format!(
            "FROM {registry}/group/base-images/busybox\nRUN mkdir /out && chown app:staff /out\nUSER app:staff\nRUN id > /out/id && echo built by kiln in kiln > /out/msg\n"
        ),
    )
    .expect("Dockerfile");
    std::fs::write(
        root.join("etc/resolv.conf"),
        format!("nameserver {DNS_ADDR}\n"),
    )
    .expect("resolv.conf");
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").expect("hosts");
    let script = r#"set -e
cd "$CI_PROJECT_DIR"
kiln build --context . --destination "$CI_REGISTRY_IMAGE/app:$CI_COMMIT_SHORT_SHA"
# An unchanged kaniko job: config.json by hand, kaniko's binary name and flags.
auth=$(printf '%s:%s' "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" | base64 | tr -d '\n')
echo "{\"auths\":{\"$CI_REGISTRY\":{\"auth\":\"$auth\"}}}" > /kaniko/.docker/config.json
env -u CI_REGISTRY_USER -u CI_REGISTRY_PASSWORD -u CI_JOB_TOKEN \
  /kaniko/executor --context "dir://$CI_PROJECT_DIR" --dockerfile "$CI_PROJECT_DIR/Dockerfile" \
  --destination "$CI_REGISTRY_IMAGE/app:kaniko" --cache=false
"#;
    let mut job = Command::new("/bin/sh");
    job.args(["-c", script]).env_clear();
    for kv in &env {
        if let Some((k, v)) = kv.split_once('=') {
            job.env(k, v);
        }
    }
    for (k, v) in gl.job_env() {
        job.env(k, v.replace(&gl.registry.addr, &registry));
    }
    job.env("CI_PROJECT_DIR", "/builds/group/project")
        .env("HOME", "/root");
    in_container(&mut job, &root);
    let res = run(&mut job);
    let log = output_text(&res);
    assert!(res.status.success(), "the job failed:\n{log}");
    let queries = std::fs::read_to_string(&dns.log).unwrap_or_default();
    assert!(
        queries.contains(&format!("query[A] {REGISTRY_NAME}")),
        "no DNS query:\n{queries}\n{log}"
    );

    // 4. The app, checked with skopeo and umoci.
    for (tag, dir) in [("1a2b3c4d", "app"), ("kaniko", "app-kaniko")] {
        let app = pull_from(
            &gl,
            &format!("group/project/app:{tag}"),
            &work.path().join(dir),
        );
        let id = std::fs::read_to_string(app.join("out/id")).expect("/out/id");
        assert!(id.starts_with("uid=1000(app) gid=50(staff)"), "{id}");
        assert_eq!(
            std::fs::read_to_string(app.join("out/msg")).expect("/out/msg"),
            "built by kiln in kiln\n"
        );
    }
}

/// kiln's emulator job image (`--target emulators`): the job image plus
/// Debian's static qemu-user, installed from a Debian base by apt, where kiln
/// looks with no flag. kiln in it, in the job sandbox, runs an arm64 RUN step
/// with no binfmt_misc handler and no `--emulator-dir`.
#[test]
fn the_emulator_job_image_runs_a_foreign_step_with_no_flag() {
    let test = "the_emulator_job_image_runs_a_foreign_step_with_no_flag";
    if !need_root(test) {
        return;
    }
    if std::env::consts::ARCH != "x86_64"
        || Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
    {
        skip(
            test,
            "needs an x86-64 host with no qemu-aarch64 binfmt_misc handler",
        );
        return;
    }
    let hub = docker_hub_mirror(Path::new("/etc/ssl/certs/ca-certificates.crt"));
    // Debian for the qemu stage, as `debian:bookworm-slim` on the mirror.
    let debian = context(&[("Dockerfile", "FROM scratch\nCOPY root/ /\n")]);
    let tree = support::debian::bookworm().expect("the bookworm tree");
    check(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&tree)
            .arg(debian.path().join("root")),
    );
    check(
        kiln()
            .args(["build", "--insecure-registry", &hub.addr, "--context"])
            .arg(debian.path())
            .args([
                "--destination",
                &format!("{}/library/debian:bookworm-slim", hub.addr),
            ]),
    );
    let ctx = job_image_context();
    let image = format!("{}/kiln:emulators", hub.addr);
    check(
        kiln()
            .args(["build", "--insecure-registry", &hub.addr])
            .args(["--registry-mirror", &format!("http://{}", hub.addr)])
            .args(["--target", "emulators", "--context"])
            .arg(ctx.path())
            .args(["--destination", &image]),
    );
    let work = tempfile::tempdir().expect("tempdir");
    let root = unpack(&format!("docker://{image}"), &work.path().join("image"));
    let emulators = root.join("usr/local/libexec/kiln/emulators");
    for arch in ["aarch64", "arm", "riscv64", "ppc64le", "s390x"] {
        let q = emulators.join(format!("qemu-{arch}-static"));
        let out = check(Command::new("file").arg(&q));
        assert!(
            out.contains("statically linked") || out.contains("static-pie linked"),
            "{out}"
        );
    }
    assert!(root.join("usr/local/bin/kiln").is_file());

    // An arm64 step in a job of that image.
    let project = root.join("builds/p");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(
        project.join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nRUN echo \"step on $(uname -m)\"\n",
    )
    .expect("Dockerfile");
    let arm64 = support::debian::bookworm_arm64_first_stage().expect("the arm64 first stage");
    check(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(&arm64)
            .arg(project.join("root")),
    );
    let mut job = Command::new("/bin/sh");
    job.args([
        "-c",
        "kiln build --no-push --platform linux/arm64 --context /builds/p",
    ])
    .env_clear()
    .env("PATH", "/usr/local/bin:/bin")
    .env("HOME", "/root");
    in_container(&mut job, &root);
    let res = run(&mut job);
    let log = output_text(&res);
    assert!(res.status.success(), "the job failed:\n{log}");
    assert!(log.contains("step on aarch64"), "{log}");
    assert!(
        log.contains(
            "linux/arm64 by /usr/local/libexec/kiln/emulators/qemu-aarch64-static under kiln's exec tracer"
        ),
        "{log}"
    );
}
