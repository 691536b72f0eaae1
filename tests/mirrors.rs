//! Pulls as GitLab users route them, with no Dockerfile change: a plain-HTTP
//! Docker Hub mirror, a failing mirror falling through to the next, a registry
//! map for another registry, GitLab's Dependency Proxy (a local registry under
//! a group path behind the GitLab-like token server), digest pins kept, and the
//! base recorded as written.

mod support;

use support::gitlab::{seed_busybox, GitLab};
use support::*;

fn manifest(layout: &std::path::Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap()
}

/// `log` has one warning that `failed` (e.g. "mirror HOST") failed for busybox,
/// and busybox came from the mirror at `served_by`.
fn fell_through(log: &str, failed: &str, served_by: &str) {
    assert_eq!(
        log.matches(&format!("{failed} failed for docker.io/library/busybox"))
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!("pulled from mirror {served_by}/library/busybox")),
        "{log}"
    );
}

fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

#[test]
fn docker_hub_mirrors_fall_through_and_maps_reach_any_registry() {
    let mirror = Registry::start();
    push_busybox_base(&mirror, "library/busybox");
    push_busybox_base(&mirror, "quaycopy/org/tool");
    let ctx = context(&[
        ("Dockerfile", "FROM busybox\nRUN true\nCOPY f /f\n"),
        ("f", "x"),
    ]);
    let dead = closed_port();
    let build = |args: &[&str]| {
        let out = run(kiln()
            .args(["build", "--no-push", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"))
            .args(args));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A dead mirror first (one warning), then the plain-HTTP mirror (http://).
    let (ok, log) = build(&[
        "--registry-mirror",
        &format!("http://{dead}"),
        "--registry-mirror",
        &format!("http://{}", mirror.addr),
    ]);
    assert!(ok, "{log}");
    fell_through(&log, &format!("mirror {dead}"), &mirror.addr);
    let m = manifest(&ctx.path().join("oci"));
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.name"], "docker.io/library/busybox:latest",
        "{m}"
    );
    assert!(m["annotations"]["org.opencontainers.image.base.digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
    // The same through the environment, comma-separated.
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(ctx.path().join("oci-env"))
        .env(
            "KILN_REGISTRY_MIRROR",
            format!("http://{dead},http://{}", mirror.addr),
        ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only a dead mirror and no fallback: an error that names the mirror.
    let (ok, log) = build(&[
        "--registry-mirror",
        &format!("http://{dead}"),
        "--skip-default-registry-fallback",
    ]);
    assert!(
        !ok && log.contains(&dead) && !log.contains("docker.io/library/busybox: "),
        "{log}"
    );

    // A registry map for another registry (the weekly internal copy).
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM quay.io/org/tool\nCOPY f /f\n",
    )
    .unwrap();
    let (ok, log) = build(&[
        "--insecure-registry",
        &mirror.addr,
        "--registry-map",
        &format!("quay.io={}/quaycopy", mirror.addr),
        "--skip-default-registry-fallback",
    ]);
    assert!(ok, "{log}");
    assert!(log.contains("pulled from registry map"), "{log}");
    assert_eq!(
        manifest(&ctx.path().join("oci"))["annotations"]["org.opencontainers.image.base.name"],
        "quay.io/org/tool:latest"
    );
}

#[test]
fn the_dependency_proxy_serves_docker_hub_references_with_its_credentials() {
    let gl = GitLab::start(300);
    let proxy_path = "group/dependency_proxy/containers";
    seed_busybox(&gl, &format!("{proxy_path}/alpine"));
    let reg = gl.registry.addr.clone();
    // The digest the proxy holds, to pin one reference to it.
    let raw = check(
        std::process::Command::new("skopeo")
            .args(["inspect", "--format", "{{.Digest}}"])
            .args(gl.skopeo_admin(""))
            .arg(format!("docker://{reg}/{proxy_path}/alpine:latest")),
    );
    let digest = raw.trim().to_string();
    let ca = gl.pki.ca.display().to_string();
    for from in [
        "alpine".to_string(),
        "library/alpine:latest".to_string(),
        "docker.io/library/alpine".to_string(),
        format!("alpine@{digest}"),
    ] {
        let ctx = context(&[
            ("Dockerfile", &format!("FROM {from}\nCOPY f /f\n")),
            ("f", "x"),
        ]);
        let out = run(kiln()
            .args(["build", "--no-push", "--context"])
            .arg(ctx.path())
            .arg("--oci-layout-path")
            .arg(ctx.path().join("oci"))
            .args(["--ca-cert", &ca, "--dependency-proxy", "auto"])
            .env("GITLAB_CI", "true")
            .env(
                "CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX",
                format!("{reg}/{proxy_path}"),
            )
            .env("CI_DEPENDENCY_PROXY_SERVER", &reg)
            .env("CI_DEPENDENCY_PROXY_USER", &gl.cfg.admin.0)
            .env("CI_DEPENDENCY_PROXY_PASSWORD", &gl.cfg.admin.1));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "FROM {from}:\n{log}");
        assert!(
            log.contains(&format!(
                "pulled from dependency proxy {reg}/{proxy_path}/alpine"
            )),
            "FROM {from}:\n{log}"
        );
        assert!(
            log.contains("credentials for") && log.contains("CI_DEPENDENCY_PROXY_USER"),
            "FROM {from}: the proxy's own credentials:\n{log}"
        );
        assert!(!log.contains(&gl.cfg.admin.1), "the password was printed");
        let m = manifest(&ctx.path().join("oci"));
        assert_eq!(
            m["annotations"]["org.opencontainers.image.base.digest"], digest,
            "FROM {from}: {m}"
        );
    }
}

/// Mirrors that fail each way a mirror fails: 503, 429 with a long Retry-After,
/// 404 (the mirror lacks the image), a TLS certificate kiln does not trust, and
/// a registry that wants credentials. Each falls through to the next source
/// with one warning line, and fast: a source with another after it is tried
/// twice at most, and a 429's two-minute Retry-After is not waited out.
#[test]
fn each_way_a_mirror_fails_falls_through_with_one_warning() {
    use support::proxy::{Fault, FaultProxy};
    let good = Registry::start();
    push_busybox_base(&good, "library/busybox");
    let empty = Registry::start();
    let p503 = FaultProxy::start(&good.addr, |_| Fault::Respond(503, vec![]));
    let p429 = FaultProxy::start(&good.addr, |_| {
        Fault::Respond(429, vec![("Retry-After", "120".into())])
    });
    let untrusted = GitLab::start(300);
    let locked = GitLab::start(300);
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "x")]);
    let t = std::time::Instant::now();
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(ctx.path().join("oci"))
        .args([
            "--registry-certificate",
            &format!("{}={}", locked.registry.addr, locked.pki.ca.display()),
        ])
        .args(["--registry-mirror", &format!("http://{}", p503.addr)])
        .args(["--registry-mirror", &format!("http://{}", p429.addr)])
        .args(["--registry-mirror", &format!("http://{}", empty.addr)])
        .args(["--registry-mirror", &untrusted.registry.addr])
        .args(["--registry-mirror", &locked.registry.addr])
        .args(["--registry-mirror", &format!("http://{}", good.addr)]));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    for bad in [
        &p503.addr,
        &p429.addr,
        &empty.addr,
        &untrusted.registry.addr,
        &locked.registry.addr,
    ] {
        assert_eq!(
            log.matches(&format!("mirror {bad} failed for")).count(),
            1,
            "{bad}:\n{log}"
        );
    }
    assert!(
        log.contains(&format!("pulled from mirror {}/library/busybox", good.addr)),
        "{log}"
    );
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") || l.starts_with("warning:"))
        .count();
    assert_eq!(warnings, 5, "one line per failed mirror:\n{log}");
    for p in [&p503, &p429] {
        let tries = p.count("/v2/library/busybox/manifests/");
        assert!(
            (1..=2).contains(&tries),
            "{} tried {tries} times:\n{log}",
            p.addr
        );
    }
    // Not the 120 s the 429 asked for, nor the 60 s retry window.
    assert!(t.elapsed().as_secs() < 60, "{:?}:\n{log}", t.elapsed());
}

/// The Dependency Proxy failing (here: it refuses the job's credentials) falls
/// through, with one warning, to the next source: a Docker Hub mirror.
#[test]
fn a_failing_dependency_proxy_falls_through_to_a_mirror() {
    let gl = GitLab::start(300);
    let proxy_path = "group/dependency_proxy/containers";
    seed_busybox(&gl, &format!("{proxy_path}/busybox"));
    let mirror = Registry::start();
    push_busybox_base(&mirror, "library/busybox");
    let reg = gl.registry.addr.clone();
    let ctx = context(&[("Dockerfile", "FROM busybox\nCOPY f /f\n"), ("f", "x")]);
    let out = run(kiln()
        .args(["build", "--no-push", "--context"])
        .arg(ctx.path())
        .arg("--oci-layout-path")
        .arg(ctx.path().join("oci"))
        .args(["--ca-cert", &gl.pki.ca.display().to_string()])
        .args(["--dependency-proxy", "group"])
        .args(["--registry-mirror", &format!("http://{}", mirror.addr)])
        .env("GITLAB_CI", "true")
        .env(
            "CI_DEPENDENCY_PROXY_GROUP_IMAGE_PREFIX",
            format!("{reg}/{proxy_path}"),
        )
        .env("CI_DEPENDENCY_PROXY_SERVER", &reg)
        .env("CI_DEPENDENCY_PROXY_USER", "gitlab-ci-token")
        .env("CI_DEPENDENCY_PROXY_PASSWORD", "not-the-job-token"));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    fell_through(&log, &format!("dependency proxy {reg}"), &mirror.addr);
    assert!(
        !log.contains("not-the-job-token"),
        "the password was printed:\n{log}"
    );
    assert_eq!(
        manifest(&ctx.path().join("oci"))["annotations"]["org.opencontainers.image.base.name"],
        "docker.io/library/busybox:latest"
    );
}
