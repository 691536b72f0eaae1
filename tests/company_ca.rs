//! The company ("KNUT") CA inside RUN steps, against the company's hosts as
//! real builds meet them: a package mirror (an HTTPS apt repository), a PyPI
//! index and a git server, all served over HTTPS by the test with a certificate
//! from the test CA, on the Debian bookworm base. Also a warm `apt-get install`
//! with `RUN --mount=type=cache` downloading nothing again.

mod support;

use sha2::Digest as _;
use std::path::Path;
use std::process::Command;
use support::https::{git_repo, StaticServer};
use support::sandbox::gitlab_job;
use support::*;

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// A flat apt repository under `dir/apt`: one package, `kiln-test-pkg`, that
/// installs /usr/share/kiln-test/hello.
fn apt_repo(dir: &Path) {
    let repo = dir.join("apt");
    let pkg = dir.join("pkgroot");
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(pkg.join("usr/share/kiln-test")).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: kiln-test-pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln <kiln@example.invalid>\nDescription: a package from the company mirror\n",
    )
    .unwrap();
    std::fs::write(
        pkg.join("usr/share/kiln-test/hello"),
        "hello-from-the-knut-mirror\n",
    )
    .unwrap();
    let deb = repo.join("kiln-test-pkg_1.0_all.deb");
    check(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(&deb),
    );
    let data = std::fs::read(&deb).unwrap();
    let packages = format!(
        "Package: kiln-test-pkg\nVersion: 1.0\nArchitecture: all\nMaintainer: kiln <kiln@example.invalid>\nFilename: ./kiln-test-pkg_1.0_all.deb\nSize: {}\nSHA256: {}\nDescription: a package from the company mirror\n\n",
        data.len(),
        sha256_hex(&data)
    );
    std::fs::write(repo.join("Packages"), &packages).unwrap();
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: knut\nLabel: knut\nDate: Thu, 03 Dec 2026 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
            sha256_hex(packages.as_bytes()),
            packages.len()
        ),
    )
    .unwrap();
}

/// A zip archive of `files`, stored (no compression): enough for a wheel.
fn zip(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let mut crc = flate2::Crc::new();
        crc.update(data.as_bytes());
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend_from_slice(&20u16.to_le_bytes()); // version needed
            v.extend_from_slice(&0u16.to_le_bytes()); // flags
            v.extend_from_slice(&0u16.to_le_bytes()); // stored
            v.extend_from_slice(&0u16.to_le_bytes()); // time
            v.extend_from_slice(&0x21u16.to_le_bytes()); // 1980-01-01
            v.extend_from_slice(&crc.sum().to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(name.len() as u16).to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes()); // extra
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data.as_bytes());
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(files.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A PEP 503 index under `dir/simple` with one wheel, `kiln-test-wheel`.
fn pypi_index(dir: &Path) {
    let name = "kiln_test_wheel-1.0-py3-none-any.whl";
    let wheel = zip(&[
        ("kiln_test_wheel/__init__.py", "VALUE = 1\n"),
        (
            "kiln_test_wheel-1.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: kiln-test-wheel\nVersion: 1.0\n",
        ),
        (
            "kiln_test_wheel-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (
            "kiln_test_wheel-1.0.dist-info/RECORD",
            "kiln_test_wheel/__init__.py,,\nkiln_test_wheel-1.0.dist-info/METADATA,,\nkiln_test_wheel-1.0.dist-info/WHEEL,,\nkiln_test_wheel-1.0.dist-info/RECORD,,\n",
        ),
    ]);
    let files = dir.join("files");
    let page = dir.join("simple/kiln-test-wheel");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::create_dir_all(&page).unwrap();
    std::fs::write(files.join(name), &wheel).unwrap();
    std::fs::write(
        page.join("index.html"),
        format!(
            "<!DOCTYPE html><html><body><a href=\"../../files/{name}#sha256={}\">{name}</a></body></html>\n",
            sha256_hex(&wheel)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("simple/index.html"),
        "<!DOCTYPE html><html><body><a href=\"kiln-test-wheel/\">kiln-test-wheel</a></body></html>\n",
    )
    .unwrap();
}

/// A context whose `root/` is the bookworm tree, plus `files`.
fn debian_context(files: &[(&str, &str)]) -> tempfile::TempDir {
    support::debian::context_with_bookworm(files)
}

/// Docker's documented apt pattern: the package cache and the lists as cache
/// mounts (`sharing=locked`). The second build's `apt-get install` takes the
/// .deb from the cache mount: the mirror serves it once. The mirror is HTTPS
/// with the company CA, trusted through `--run-ca-certs` (on by default in
/// GitLab CI with KILN_CA_CERT), in chroot mode in the job sandbox.
#[test]
fn a_warm_apt_install_with_a_cache_mount_downloads_no_package_again() {
    if !need_root("a_warm_apt_install_with_a_cache_mount_downloads_no_package_again") {
        return;
    }
    let pki = support::gitlab::Pki::new();
    let hosts = tempfile::tempdir().unwrap();
    apt_repo(hosts.path());
    let web = StaticServer::start(hosts.path(), &pki.cert, &pki.key);
    let ctx = debian_context(&[(
        "Dockerfile",
        &format!(
            r#"FROM scratch
COPY root/ /
ARG RUN_ID
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked     --mount=type=cache,target=/var/lib/apt/lists,sharing=locked     echo "run=$RUN_ID" && echo 'deb [trusted=yes] https://{}/apt/ ./' > /etc/apt/sources.list.d/knut.list &&     apt-get update -o Dir::Etc::sourcelist=sources.list.d/knut.list -o Dir::Etc::sourceparts=- > /tmp/u.log 2>&1 || (cat /tmp/u.log; exit 1);     apt-get install -y --no-install-recommends kiln-test-pkg && cat /usr/share/kiln-test/hello &&     rm /etc/apt/sources.list.d/knut.list /tmp/u.log
"#,
            web.addr
        ),
    )]);
    let cache = tempfile::tempdir().unwrap();
    let ca = pki.ca.display().to_string();
    let build = |id: &str| {
        let layout = ctx.path().join(format!("oci-{id}"));
        let out = run(gitlab_job(
            kiln()
                .args(["build", "--no-push", "--cache", "--cache-dir"])
                .arg(cache.path())
                .arg("--context")
                .arg(ctx.path())
                .args(["--build-arg", &format!("RUN_ID={id}"), "--oci-layout-path"])
                .arg(&layout)
                .env("GITLAB_CI", "true")
                .env("KILN_CA_CERT", &ca),
        ));
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{id}:\n{log}");
        assert!(log.contains("│ hello-from-the-knut-mirror"), "{id}:\n{log}");
        (log, layout)
    };
    let deb_gets = || {
        web.requests()
            .iter()
            .filter(|p| p.ends_with(".deb"))
            .count()
    };
    let (cold, layout) = build("cold");
    assert_eq!(
        deb_gets(),
        1,
        "the cold build downloads the package:\n{cold}"
    );
    let (warm, _) = build("warm");
    assert!(warm.contains("│ run=warm"), "the step ran again:\n{warm}");
    assert_eq!(
        deb_gets(),
        1,
        "the warm build took the package from the cache mount:\n{warm}"
    );
    assert!(
        !warm.contains("Get:") || !warm.contains("kiln-test-pkg 1.0"),
        "apt downloaded the package again:\n{warm}"
    );
    // The caches are not in the image: the debootstrap tree's own apt cache
    // and lists stay as they were, nothing of the mirror's is added.
    let work = tempfile::tempdir().unwrap();
    let rootfs = unpack(&format!("oci:{}:latest", layout.display()), work.path());
    assert!(
        rootfs.join("usr/share/kiln-test/hello").exists(),
        "installed"
    );
    assert!(
        !rootfs
            .join("var/cache/apt/archives/kiln-test-pkg_1.0_all.deb")
            .exists(),
        "the .deb is in the image"
    );
    let lists: Vec<String> = std::fs::read_dir(rootfs.join("var/lib/apt/lists"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !lists.iter().any(|l| l.contains("127.0.0.1")),
        "the mirror's lists are in the image: {lists:?}"
    );
}

/// The company CA inside RUN steps (`--run-ca-certs`): curl, Python, Node and git
/// reach an HTTPS server signed by the test's "KNUT" CA, and apt, pip and git
/// clone the company's package mirror, PyPI index and git server (all HTTPS), also after the step
/// rebuilt the system bundle, in chroot mode in the job sandbox (on by default
/// there: GITLAB_CI and KILN_CA_CERT are set) and in namespaces mode; without it
/// they fail. The CA is in no layer, config or history, and not in the cache key.
#[test]
fn run_steps_trust_the_company_ca_for_their_duration_only() {
    if !need_root("run_steps_trust_the_company_ca_for_their_duration_only") {
        return;
    }
    let pki = support::gitlab::Pki::new();
    let server = Registry::start_with("", Some((&pki.cert, &pki.key)));
    let url = format!("https://{}/v2/", server.addr);
    let hosts = tempfile::tempdir().unwrap();
    apt_repo(hosts.path());
    pypi_index(hosts.path());
    git_repo(hosts.path());
    let web = StaticServer::start(hosts.path(), &pki.cert, &pki.key);
    let w = &web.addr;
    let ctx = debian_context(&[(
        "Dockerfile",
        &format!(
            r#"FROM scratch
COPY root/ /
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl git python3 python3-pip nodejs ca-certificates > /tmp/apt.log 2>&1 || (tail -40 /tmp/apt.log; exit 1)
ARG MODE
RUN echo "mode=$MODE"; \
    curl -sS -o /dev/null -w 'curl=%{{http_code}}\n' {url} 2>&1 | tail -1; \
    python3 -c "import urllib.request; print('python=%d' % urllib.request.urlopen('{url}').status)" 2>&1 | tail -1; \
    node -e "require('https').get('{url}', r => console.log('node=' + r.statusCode)).on('error', e => console.log('node-error ' + e.code))"; \
    git ls-remote {url} 2>&1 | grep -qi 'certificate' && echo git=tls-refused || echo git=tls-ok; \
    (echo 'deb [trusted=yes] https://{w}/apt/ ./' > /etc/apt/sources.list.d/knut.list && apt-get update -o Dir::Etc::sourcelist=sources.list.d/knut.list -o Dir::Etc::sourceparts=- > /tmp/u.log 2>&1 && apt-get install -y -qq kiln-test-pkg > /dev/null 2>&1 && cat /usr/share/kiln-test/hello && echo apt=ok) || echo apt=fail; rm -f /etc/apt/sources.list.d/knut.list; \
    (pip download -q --no-deps --index-url https://{w}/simple/ -d /tmp/dl kiln-test-wheel > /tmp/pip.log 2>&1 && ls /tmp/dl | grep -q kiln_test_wheel && echo pip=ok) || (tail -3 /tmp/pip.log; echo pip=fail); rm -f /tmp/pip.log; \
    git clone -q https://{w}/repo.git /tmp/clone > /dev/null 2>&1 && grep -q knut-repo /tmp/clone/README && echo git-clone=ok || echo git-clone=fail; rm -rf /tmp/dl /tmp/clone; \
    update-ca-certificates > /dev/null 2>&1; \
    curl -sS -o /dev/null -w 'curl-after-update=%{{http_code}}\n' {url} 2>&1 | tail -1
"#
        ),
    )]);
    let cache = tempfile::tempdir().unwrap();
    let build = |mode: &str, sandboxed: bool, extra: &[&str], env: &[(&str, &str)]| {
        let layout = ctx.path().join(format!("oci-{mode}"));
        let mut cmd = kiln();
        cmd.args(["build", "--no-push", "--cache", "--cache-dir"])
            .arg(cache.path())
            .args(["--context"])
            .arg(ctx.path())
            .args(["--build-arg", &format!("MODE={mode}"), "--oci-layout-path"])
            .arg(&layout)
            .args(extra)
            .env_remove("GITLAB_CI")
            .env_remove("KILN_CA_CERT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        if sandboxed {
            gitlab_job(&mut cmd);
        }
        let out = run(&mut cmd);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{mode}:\n{log}");
        (log, layout)
    };
    let ca = pki.ca.display().to_string();
    let gitlab = [("GITLAB_CI", "true"), ("KILN_CA_CERT", ca.as_str())];
    let (on, on_layout) = build("chroot-on", true, &[], &gitlab);
    let (off, _) = build("chroot-off", true, &["--run-ca-certs", "off"], &gitlab);
    let (ns, _) = build(
        "namespaces-on",
        false,
        &[
            "--isolation",
            "namespaces",
            "--run-ca-certs",
            "on",
            "--ca-cert",
            &ca,
        ],
        &[],
    );
    for (name, log) in [("chroot", &on), ("namespaces", &ns)] {
        for want in [
            "curl=200",
            "python=200",
            "node=200",
            "git=tls-ok",
            "apt=ok",
            "pip=ok",
            "git-clone=ok",
            "curl-after-update=200",
        ] {
            assert!(log.contains(want), "{name}: {want:?} missing:\n{log}");
        }
    }
    assert!(
        off.contains("curl=000") || off.contains("curl: (60)"),
        "without the CA curl must fail:\n{off}"
    );
    assert!(off.contains("git=tls-refused"), "{off}");
    for want in ["apt=fail", "pip=fail", "git-clone=fail"] {
        assert!(off.contains(want), "without the CA: {want} missing:\n{off}");
    }
    // The CA changes no cache key: the apt layer of the first build is reused.
    assert!(
        off.lines()
            .any(|l| l.contains("RUN apt-get update") && l.contains("CACHED")),
        "{off}"
    );
    // Nothing of the CA in the image: layers (unpacked), config and history.
    let pem = std::fs::read_to_string(&pki.ca).unwrap();
    let needle = pem.lines().nth(1).unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let rootfs = unpack(&format!("oci:{}:latest", on_layout.display()), work.path());
    let grep = Command::new("grep")
        .args(["-rlF", &needle])
        .arg(&rootfs)
        .arg(&on_layout)
        .arg(cache.path())
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&grep.stdout);
    assert!(
        found.trim().is_empty(),
        "the CA reached the image or the cache: {found}"
    );
    assert!(!on.contains(&needle), "the CA is in the log");
}
