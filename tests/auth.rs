//! Registry auth and TLS the way GitLab CI needs them, against the real
//! docker-registry: TLS with a CA made in the test, token auth behind a
//! GitLab-like /jwt/auth, htpasswd, redirects.

mod support;

use std::process::Command;
use support::gitlab::{seed_busybox, GitLab};
use support::*;

/// Extra environment variables for one run.
type Env<'a> = Vec<(&'a str, String)>;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// kiln with only what a GitLab runner's job would have (no host CI variables,
/// no ~/.docker/config.json).
fn job_kiln(gl: &GitLab, home: &std::path::Path) -> Command {
    let mut c = kiln();
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home);
    for (k, v) in gl.job_env() {
        c.env(k, v);
    }
    c
}

fn config_with_admin(gl: &GitLab, repo_tag: &str) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--config"])
        .arg(format!("--creds={}:{}", gl.cfg.admin.0, gl.cfg.admin.1))
        .arg(format!("--cert-dir={}", gl.pki.cert_dir.display()));
    serde_json::from_str(&check(
        c.arg(format!("docker://{}/{repo_tag}", gl.registry.addr)),
    ))
    .expect("config JSON")
}

#[test]
fn gitlab_job_pushes_with_the_job_token_and_a_company_ca() {
    let gl = GitLab::start(300);
    seed_busybox(&gl, "group/base-images/busybox");
    let reg = gl.registry.addr.clone();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {reg}/group/base-images/busybox\nCOPY app.txt /app.txt\n"),
        ),
        ("app.txt", "app\n"),
    ]);
    let home = tempfile::tempdir().unwrap();
    let ca = gl.pki.ca.display().to_string();
    let pem = std::fs::read_to_string(&gl.pki.ca).unwrap();

    // The ways a job gets the company CA: --ca-cert "$KNUT_CA" (File variable),
    // the runner's CI_SERVER_TLS_CA_FILE, a project variable KILN_CA_CERT holding the
    // PEM text, and that text given to --ca-cert.
    let runs: Vec<(&str, Vec<String>, Env)> = vec![
        (
            "knut",
            vec!["--ca-cert".into(), ca.clone()],
            vec![("KNUT_CA", ca.clone())],
        ),
        (
            "runner",
            vec![],
            vec![("CI_SERVER_TLS_CA_FILE", ca.clone())],
        ),
        ("inline", vec![], vec![("KILN_CA_CERT", pem.clone())]),
        // The PEM text as a separate argument (--ca-cert "$PEM"): it starts with
        // dashes, which an argument parser takes for a flag unless told otherwise.
        ("pem-arg", vec!["--ca-cert".into(), pem.clone()], vec![]),
    ];
    for (tag, args, env) in runs {
        let mut cmd = job_kiln(&gl, home.path());
        // --reproducible: identical runs give identical blobs, config included,
        // so "nothing re-uploaded" does not depend on the clock.
        cmd.args([
            "build",
            "--reproducible",
            "--destination",
            &format!("{reg}/group/project:1a2b3c4d-{tag}"),
        ])
        .arg("--context")
        .arg(ctx.path())
        .args(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        let err = stderr(&out);
        assert!(out.status.success(), "{tag}: {err}");
        assert!(
            err.contains(&format!(
                "credentials for {reg} from CI_REGISTRY_USER/CI_REGISTRY_PASSWORD"
            )),
            "{tag}: the source is named:\n{err}"
        );
        assert!(
            !err.contains(&gl.cfg.job_token)
                && !String::from_utf8_lossy(&out.stdout).contains(&gl.cfg.job_token),
            "the token is never printed"
        );
        let cfg = config_with_admin(&gl, &format!("group/project:1a2b3c4d-{tag}"));
        assert_eq!(
            cfg["rootfs"]["diff_ids"].as_array().unwrap().len(),
            2,
            "{tag}"
        );
        assert!(
            !cfg.to_string().contains(&gl.cfg.job_token),
            "no token in the config"
        );
        if tag == "knut" {
            // The base layer comes from the base project and the new layer
            // from $CI_REGISTRY_IMAGE/cache, where the build uploaded it once.
            assert!(
                err.contains("1 uploaded") && err.contains("2 mounted"),
                "the base layer and the new layer are mounted, not uploaded:\n{err}"
            );
        } else {
            assert!(
                err.contains("0 uploaded"),
                "{tag}: nothing re-uploaded:\n{err}"
            );
        }
    }
    // One token covered pull on the base's project and push on our own (needed for mounts).
    let log = gl.tokens.log.lock().unwrap();
    assert!(
        log.requests.iter().any(|s| s
            .iter()
            .any(|x| x == "repository:group/base-images/busybox:pull")
            && s.iter().any(|x| x == "repository:group/project:pull,push")),
        "scopes asked: {:?}",
        log.requests
    );
    drop(log);
    assert!(
        !gl.registry.storage_contains(&gl.cfg.job_token),
        "the token is not in the registry's storage"
    );
}

#[test]
fn short_lived_tokens_are_refreshed_during_a_build() {
    let gl = GitLab::start(2);
    seed_busybox(&gl, "group/base-images/busybox");
    let reg = gl.registry.addr.clone();
    // Incompressible data, so compressing and pushing outlasts the 2 s token.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let data: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {reg}/group/base-images/busybox\nCOPY a.bin /a.bin\nCOPY b.bin /b.bin\n"),
    )]);
    std::fs::write(ctx.path().join("a.bin"), &data).unwrap();
    std::fs::write(ctx.path().join("b.bin"), &data[..24 << 20]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let before = gl.tokens.log.lock().unwrap().issued;
    let out = run(job_kiln(&gl, home.path())
        .args([
            "build",
            "--ca-cert",
            &gl.pki.ca.display().to_string(),
            "--destination",
            &format!("{reg}/group/project:ttl"),
        ])
        .arg("--context")
        .arg(ctx.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let issued = gl.tokens.log.lock().unwrap().issued - before;
    assert!(
        issued >= 2,
        "a 2 s token must be refreshed during the build (issued {issued})"
    );
    let cfg = config_with_admin(&gl, "group/project:ttl");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
}

#[test]
fn auth_and_tls_failures_say_what_to_fix_and_leak_nothing() {
    let gl = GitLab::start(300);
    seed_busybox(&gl, "group/base-images/busybox");
    seed_busybox(&gl, "private/base");
    let reg = gl.registry.addr.clone();
    let ca = gl.pki.ca.display().to_string();
    let home = tempfile::tempdir().unwrap();
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {reg}/group/base-images/busybox\nCOPY f /f\n"),
        ),
        ("f", "x"),
    ]);
    let secrets = [gl.cfg.job_token.as_str(), "WrOnG-tOkEn-123"];
    let fail =
        |extra_env: &[(&str, &str)], args: &[&str], dockerfile_ctx: &std::path::Path| -> String {
            let mut cmd = job_kiln(&gl, home.path());
            cmd.arg("build")
                .args(args)
                .arg("--context")
                .arg(dockerfile_ctx);
            for (k, v) in extra_env {
                cmd.env(k, v);
            }
            let out = run(&mut cmd);
            let err = stderr(&out);
            assert!(!out.status.success(), "expected failure:\n{err}");
            for s in secrets {
                assert!(
                    !err.contains(s) && !String::from_utf8_lossy(&out.stdout).contains(s),
                    "a secret was printed:\n{err}"
                );
            }
            err
        };
    let dest = format!("{reg}/group/project:neg");

    // A wrong job token.
    let err = fail(
        &[
            ("CI_REGISTRY_PASSWORD", "WrOnG-tOkEn-123"),
            ("CI_JOB_TOKEN", "WrOnG-tOkEn-123"),
        ],
        &["--ca-cert", &ca, "--destination", &dest],
        ctx.path(),
    );
    assert!(
        err.contains(&reg)
            && err.contains("CI_REGISTRY_USER/CI_REGISTRY_PASSWORD")
            && err.contains("rejected the credentials"),
        "{err}"
    );

    // No CA: the registry's certificate is not trusted.
    let err = fail(&[], &["--destination", &dest], ctx.path());
    assert!(
        err.contains("not signed by a CA kiln trusts")
            && err.contains("--ca-cert")
            && err.contains("CI_SERVER_TLS_CA_FILE"),
        "{err}"
    );

    // A push to a project the job token may not push to.
    let err = fail(
        &[],
        &[
            "--ca-cert",
            &ca,
            "--destination",
            &format!("{reg}/other/project:x"),
        ],
        ctx.path(),
    );
    assert!(
        err.contains("other/project") && err.contains("can push only to its own project"),
        "{err}"
    );
    // Found before the build: no step ran.
    assert!(
        err.contains("checked before the build") && !err.contains("] FROM"),
        "{err}"
    );

    // A pull from a project that has not allowlisted this job.
    let private = context(&[
        (
            "Dockerfile",
            &format!("FROM {reg}/private/base\nCOPY f /f\n"),
        ),
        ("f", "x"),
    ]);
    let err = fail(
        &[],
        &["--ca-cert", &ca, "--destination", &dest],
        private.path(),
    );
    assert!(
        err.contains("private/base") && err.contains("allowlist"),
        "{err}"
    );

    // A malformed CA names its source.
    let bad = home.path().join("bad-ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let err = fail(
        &[("KNUT_CA", bad.to_str().unwrap())],
        &["--ca-cert", bad.to_str().unwrap(), "--destination", &dest],
        ctx.path(),
    );
    assert!(
        err.contains("--ca-cert")
            && err.contains("bad-ca.pem")
            && err.contains("no PEM certificate"),
        "{err}"
    );

    assert!(!gl.registry.storage_contains(&gl.cfg.job_token));
    assert!(!config_with_admin(&gl, "group/base-images/busybox:latest")
        .to_string()
        .contains("neg"));
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("--creds={}:{}", gl.cfg.admin.0, gl.cfg.admin.1))
        .arg(format!("--cert-dir={}", gl.pki.cert_dir.display()))
        .arg(format!("docker://{reg}/group/project:neg")));
    assert!(!out.status.success(), "no failed build pushed a tag");
}

#[test]
fn htpasswd_basic_auth_from_docker_config_and_per_host_tls_options() {
    let pki = support::gitlab::Pki::new();
    let htpasswd = pki.dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("ci-user:{}\n", bcrypt::hash("s3cret-pass", 4).unwrap()),
    )
    .unwrap();
    let reg = Registry::start_with(
        &format!(
            "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            htpasswd.display()
        ),
        Some((&pki.cert, &pki.key)),
    );
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("ci-user:s3cret-pass");
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {reg.addr.clone(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let base = || {
        let mut c = kiln();
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path());
        c.arg("build").arg("--context").arg(ctx.path());
        c
    };
    // --registry-certificate host=path (kaniko's flag).
    let out = run(base().args([
        "--destination",
        &format!("{}/team/app:1", reg.addr),
        "--registry-certificate",
        &format!("{}={}", reg.addr, pki.ca.display()),
    ]));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "credentials for {} from docker config.json",
            reg.addr
        )),
        "{err}"
    );
    assert!(!err.contains("s3cret-pass"));
    let cfg = check(
        Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--config",
                "--creds=ci-user:s3cret-pass",
            ])
            .arg(format!("--cert-dir={}", pki.cert_dir.display()))
            .arg(format!("docker://{}/team/app:1", reg.addr)),
    );
    assert!(cfg.contains("diff_ids"));
    // --skip-tls-verify-registry: works without the CA, and warns.
    let out = run(base().args([
        "--destination",
        &format!("{}/team/app:2", reg.addr),
        "--skip-tls-verify-registry",
        &reg.addr,
    ]));
    let err = stderr(&out);
    assert!(
        out.status.success() && err.contains("TLS verification is OFF"),
        "{err}"
    );
    // A credential helper (credHelpers → docker-credential-<name> get).
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(&helper, "#!/bin/sh\nread host\necho \"{\\\"ServerURL\\\":\\\"$host\\\",\\\"Username\\\":\\\"ci-user\\\",\\\"Secret\\\":\\\"s3cret-pass\\\"}\"\n").unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let helper_home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(helper_home.path().join(".docker")).unwrap();
    std::fs::write(
        helper_home.path().join(".docker/config.json"),
        serde_json::json!({"credHelpers": {reg.addr.clone(): "kilntest"}}).to_string(),
    )
    .unwrap();
    let out = run(base()
        .env("HOME", helper_home.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .args([
            "--destination",
            &format!("{}/team/app:helper", reg.addr),
            "--ca-cert",
            &pki.ca.display().to_string(),
        ]));
    let err = stderr(&out);
    assert!(
        out.status.success()
            && err.contains("docker-credential-kilntest")
            && !err.contains("s3cret-pass"),
        "{err}"
    );
    // --password-stdin.
    let mut child = base()
        .args([
            "--destination",
            &format!("{}/team/app:stdin", reg.addr),
            "--ca-cert",
            &pki.ca.display().to_string(),
            "--username",
            "ci-user",
            "--password-stdin",
        ])
        .env("HOME", tempfile::tempdir().unwrap().path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"s3cret-pass\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        out.status.success() && err.contains("from --username/--password"),
        "{err}"
    );
    // Explicit flags win over config.json; wrong ones fail with the flag named.
    let out = run(base().args([
        "--destination",
        &format!("{}/team/app:3", reg.addr),
        "--ca-cert",
        &pki.ca.display().to_string(),
        "--username",
        "ci-user",
        "--password",
        "nope-nope",
    ]));
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("--username/--password")
            && !err.contains("nope-nope"),
        "{err}"
    );
}

#[test]
fn redirects_to_another_host_carry_no_authorization() {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};
    let blob = b"blob served by the storage host".to_vec();
    let digest = kiln::digest::sha256_bytes(&blob);
    // The storage host: records the Authorization header it receives.
    let storage = TcpListener::bind("127.0.0.1:0").unwrap();
    let storage_port = storage.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::new(Mutex::new(vec![]));
    let (seen2, blob2) = (seen.clone(), blob.clone());
    std::thread::spawn(move || {
        for mut s in storage.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut auth = None;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                if l.to_ascii_lowercase().starts_with("authorization:") {
                    auth = Some(l.trim().to_string());
                }
            }
            seen2.lock().unwrap().push(auth);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                blob2.len()
            );
            let _ = s.write_all(&blob2);
        }
    });
    // The registry: Basic auth, then a 307 to the storage host under another name.
    let registry = TcpListener::bind("127.0.0.1:0").unwrap();
    let reg_addr = registry.local_addr().unwrap().to_string();
    let got_auth = Arc::new(Mutex::new(false));
    let got_auth2 = got_auth.clone();
    std::thread::spawn(move || {
        for mut s in registry.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut auth = false;
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
                auth |= l.to_ascii_lowercase().starts_with("authorization: basic");
            }
            if auth {
                *got_auth2.lock().unwrap() = true;
                let _ = write!(s, "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{storage_port}/storage/blob?sig=x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            } else {
                let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    let opts = kiln::registry::Options {
        insecure: vec![reg_addr.clone()],
        tls: Default::default(),
        creds: kiln::registry::creds::Sources {
            explicit: Some(("user".into(), "pass-word-7".into())),
            explicit_hosts: vec![reg_addr.clone()],
            ..Default::default()
        },
        ..Default::default()
    };
    let client = kiln::registry::Client::new(&opts).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = kiln::store::Store::open(store_dir.path()).unwrap();
    let r = kiln::image::Reference::parse(&format!("{reg_addr}/team/app")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let path = rt.block_on(client.fetch_blob(&r, &digest, &store)).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), blob);
    assert!(
        *got_auth.lock().unwrap(),
        "the registry got the credentials"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0], None,
        "the storage host must not receive Authorization"
    );
}

#[test]
fn client_certificates_for_mtls_registries() {
    let pki = support::gitlab::Pki::new();
    let reg = Registry::start_mtls(&pki.cert, &pki.key, &pki.ca);
    let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let home = tempfile::tempdir().unwrap();
    let build = |extra: &[String]| {
        run(kiln()
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .args([
                "build",
                "--ca-cert",
                &pki.ca.display().to_string(),
                "--destination",
                &format!("{}/m/app:1", reg.addr),
            ])
            .args(extra)
            .arg("--context")
            .arg(ctx.path()))
    };
    let out = build(&[]);
    assert!(
        !out.status.success(),
        "without a client certificate the registry refuses: {}",
        stderr(&out)
    );
    let out = build(&[
        "--registry-client-cert".into(),
        format!(
            "{}={},{}",
            reg.addr,
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
