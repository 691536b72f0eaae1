//! The SBOM and SLSA provenance of quick builds on a busybox base: all pass the
//! official validators (tests/support/attest.rs); the
//! provenance names the base as the Dockerfile wrote it and by the reference
//! and digest really pulled (a registry map here), the GitLab project at its
//! commit and the job's runner; `--reproducible` builds give byte-identical
//! documents; no planted secret (a `--secret`'s content, CI_JOB_TOKEN, the
//! registry password) appears in any document in either provenance mode, and a
//! build argument's value appears only in `mode=max`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::attest::{validate_cyclonedx, validate_provenance, validate_spdx};
use support::*;

const SECRET: &str = "planted-secret-content-4711";
const JOB_TOKEN: &str = "planted-job-token-0815";
const PASSWORD: &str = "planted-registry-password-42";
const ARG_VALUE: &str = "planted-build-arg-value-7";

struct Docs {
    spdx: PathBuf,
    cdx: PathBuf,
    provenance: PathBuf,
    digest: String,
}

fn build(reg: &Registry, ctx: &Path, out: &Path, extra: &[&str]) -> Docs {
    let d = Docs {
        spdx: out.join("sbom.spdx.json"),
        cdx: out.join("sbom.cdx.json"),
        provenance: out.join("provenance.json"),
        digest: String::new(),
    };
    let res = run(kiln()
        .args(["build", "--no-push", "--reproducible", "--context"])
        .arg(ctx)
        .args(["--insecure-registry", &reg.addr])
        .args(["--registry-map", &format!("quay.io={}/quaycopy", reg.addr)])
        .args(["--skip-default-registry-fallback", "--destination"])
        .arg(format!("{}/team/app:1.0", reg.addr))
        .args(["--build-arg", &format!("TOKEN={ARG_VALUE}")])
        .args(["--secret", "id=npmrc,env=KILN_TEST_NPMRC"])
        .args(["--username", "ci", "--password", PASSWORD])
        .arg("--sbom-file")
        .arg(&d.spdx)
        .arg("--sbom-file")
        .arg(&d.cdx)
        .arg("--provenance-file")
        .arg(&d.provenance)
        .args(extra)
        .env("KILN_TEST_NPMRC", SECRET)
        .env("CI_JOB_TOKEN", JOB_TOKEN)
        .env("CI_PROJECT_URL", "https://gitlab.example/group/app")
        .env("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("CI_COMMIT_REF_NAME", "main")
        .env("CI_JOB_URL", "https://gitlab.example/group/app/-/jobs/99")
        .env("CI_RUNNER_ID", "7"));
    assert!(res.status.success(), "{}", output_text(&res));
    Docs {
        digest: String::from_utf8_lossy(&res.stdout).trim().to_string(),
        ..d
    }
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn provenance_and_sbom_name_what_was_pulled_repeat_byte_for_byte_and_hold_no_secret() {
    let reg = Registry::start();
    push_busybox_base(&reg, "quaycopy/org/tool");
    let base_digest = check(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
            .arg(format!("docker://{}/quaycopy/org/tool:latest", reg.addr)),
    )
    .trim()
    .to_string();
    let ctx = context(&[
        (
            "Dockerfile",
            "FROM quay.io/org/tool\nARG TOKEN\n\
             RUN --mount=type=secret,id=npmrc grep -q planted /run/secrets/npmrc && echo \"$TOKEN\" > /arg\n\
             COPY f /f\n",
        ),
        ("f", "x"),
    ]);
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let max = tempfile::tempdir().unwrap();
    let a = build(&reg, ctx.path(), one.path(), &[]);
    let b = build(&reg, ctx.path(), two.path(), &[]);
    let m = build(&reg, ctx.path(), max.path(), &["--provenance", "mode=max"]);
    assert!(a.digest.starts_with("sha256:"), "{}", a.digest);

    // The same inputs: the same bytes, every document.
    for (x, y) in [
        (&a.spdx, &b.spdx),
        (&a.cdx, &b.cdx),
        (&a.provenance, &b.provenance),
    ] {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{}",
            x.display()
        );
    }

    // Valid documents, in both modes.
    for docs in [&a, &m] {
        validate_spdx(&docs.spdx);
        validate_cyclonedx(&docs.cdx);
        validate_provenance(&docs.provenance);
    }

    // No secret anywhere; the build argument's value only in max mode.
    for docs in [&a, &m] {
        for p in [&docs.spdx, &docs.cdx, &docs.provenance] {
            let text = std::fs::read_to_string(p).unwrap();
            for planted in [SECRET, JOB_TOKEN, PASSWORD] {
                assert!(!text.contains(planted), "{planted} in {}", p.display());
            }
        }
    }
    assert!(!std::fs::read_to_string(&a.provenance)
        .unwrap()
        .contains(ARG_VALUE));
    let pm = json(&m.provenance);
    let ext = &pm["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(ext["buildArgs"]["TOKEN"], ARG_VALUE);
    assert_eq!(ext["secretIds"], serde_json::json!(["npmrc"]));

    // The statement: the image, its Dockerfile, what was really pulled.
    let p = json(&a.provenance);
    assert_eq!(p["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(p["subject"][0]["name"], format!("{}/team/app", reg.addr));
    assert_eq!(
        format!(
            "sha256:{}",
            p["subject"][0]["digest"]["sha256"].as_str().unwrap()
        ),
        a.digest
    );
    let def = &p["predicate"]["buildDefinition"];
    assert_eq!(
        def["externalParameters"]["buildArgs"],
        serde_json::json!(["TOKEN"])
    );
    let dockerfile = std::fs::read(ctx.path().join("Dockerfile")).unwrap();
    assert_eq!(
        def["externalParameters"]["configSource"]["digest"]["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&dockerfile))
    );
    let deps = def["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["uri"], "git+https://gitlab.example/group/app");
    assert_eq!(
        deps[0]["digest"]["gitCommit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    let base = deps
        .iter()
        .find(|d| d["name"] == "quay.io/org/tool:latest")
        .unwrap_or_else(|| panic!("no base in {deps:?}"));
    assert_eq!(
        format!("sha256:{}", base["digest"]["sha256"].as_str().unwrap()),
        base_digest
    );
    let uri = base["uri"].as_str().unwrap();
    assert!(
        uri.starts_with(&format!("pkg:docker/{}/quaycopy/org/tool@latest", reg.addr)),
        "{uri}"
    );
    let run = &p["predicate"]["runDetails"];
    assert_eq!(
        run["builder"]["id"],
        "https://gitlab.example/group/app/-/runners/7"
    );
    assert_eq!(
        run["metadata"]["invocationId"],
        "https://gitlab.example/group/app/-/jobs/99"
    );
    assert_eq!(run["metadata"]["startedOn"], "1970-01-01T00:00:00Z");

    // The SBOM names the same image and its base's layer by the FROM line.
    let cdx = json(&a.cdx);
    assert_eq!(cdx["metadata"]["component"]["version"], a.digest.as_str());
    assert_eq!(cdx["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    let spdx = json(&a.spdx);
    assert_eq!(spdx["packages"][0]["versionInfo"], a.digest.as_str());
}

/// A context whose image is `from` plus a Debian 12 os-release and a dpkg
/// status listing libc6.
fn libc6_context(from: &str) -> tempfile::TempDir {
    context(&[
        ("Dockerfile", &format!("FROM {from}\nCOPY root/ /\n")),
        ("root/etc/os-release", "ID=debian\nVERSION_ID=12\n"),
        (
            "root/var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nArchitecture: all\nVersion: 2.36-9\n",
        ),
    ])
}

/// `len` incompressible bytes (xorshift), the same every time.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E3779B97F4A7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A cache hit brings its layer's SBOM facts: a new runner (an empty cache dir,
/// the registry cache repo warm) writes the same SBOM without downloading the
/// 4 MiB layer its packages came from.
#[test]
fn an_sbom_from_registry_cache_hits_downloads_no_layer() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!("FROM {}/base\nCOPY root/ /\n", reg.addr),
        ),
        (
            "root/var/lib/dpkg/status",
            "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a\n",
        ),
        ("root/etc/os-release", "ID=debian\nVERSION_ID=12\n"),
        (
            "root/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
            "Name: six\nVersion: 1.16.0\nLicense: MIT\n",
        ),
    ]);
    // Incompressible, so that downloading the layer would show.
    std::fs::write(ctx.path().join("root/noise.bin"), noise(4 << 20)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let build = |runner: &str| {
        let sbom = out.path().join(format!("{runner}.cdx.json"));
        let res = run(kiln()
            .args(["build", "--reproducible", "--cache", "--context"])
            .arg(ctx.path())
            .args(["--insecure-registry", &reg.addr, "--cache-dir"])
            .arg(out.path().join(format!("cache-{runner}")))
            .args(["--cache-repo", &format!("{}/cache", reg.addr)])
            .args(["--destination", &format!("{}/app:1", reg.addr)])
            .arg("--sbom-file")
            .arg(&sbom)
            .arg("--report")
            .arg(out.path().join(format!("{runner}.json"))));
        let log = output_text(&res);
        assert!(res.status.success(), "{log}");
        (std::fs::read_to_string(&sbom).unwrap(), log)
    };
    let (first, _) = build("first");
    let (other, log) = build("other");
    // The report counts the bytes the build downloaded.
    let downloaded = json(&out.path().join("other.json"))["bytes_down"]
        .as_f64()
        .unwrap();
    assert!(log.contains("CACHED"), "{log}");
    assert!(first == other, "not the same SBOM:\n{first}\n{other}");
    let got = downloaded;
    assert!(
        got < 3.0 * 1048576.0,
        "the new runner downloaded {got} bytes:\n{log}"
    );
    let doc: serde_json::Value = serde_json::from_str(&other).unwrap();
    let names: Vec<&str> = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["libc6", "tzdata", "six"]);
}

/// A client of the distribution spec's referrers, written from the spec: ask
/// the referrers API (`GET /v2/<name>/referrers/<digest>`); where the registry
/// has none (404), read the index under the fallback tag `<alg>-<hex>`.
/// Returns the artifact manifests' descriptors.
fn referrers_of(addr: &str, repo: &str, digest: &str) -> Vec<serde_json::Value> {
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let (status, body) = http(
        addr,
        "GET",
        &format!("/v2/{repo}/referrers/{digest}"),
        INDEX,
        &[],
    )
    .expect("referrers API request");
    let index = if status == 200 {
        body
    } else {
        assert_eq!(status, 404, "{body}");
        let tag = digest.replacen(':', "-", 1);
        let (status, body) = http(
            addr,
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            INDEX,
            &[],
        )
        .expect("fallback tag request");
        assert_eq!(status, 200, "no referrers index under {tag}: {body}");
        body
    };
    let v: serde_json::Value = serde_json::from_str(&index).unwrap();
    assert_eq!(v["mediaType"], INDEX);
    v["manifests"].as_array().unwrap().clone()
}

/// `--sbom` and `--provenance` attach SPDX, CycloneDX and SLSA provenance to
/// the pushed image as OCI referrers; on Debian's docker-registry (no
/// referrers API) under the fallback tag, found from the image digest alone by
/// a client that follows the spec. The image's manifest is untouched: no index,
/// no extra entry, and its tags name it.
#[test]
fn attestations_are_referrers_that_a_spec_client_finds_from_the_image_digest() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let ctx = libc6_context(&format!("{}/base", reg.addr));
    let res = run(kiln()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--insecure-registry", &reg.addr])
        .args(["--destination", &format!("{}/team/app:1", reg.addr)])
        .args(["--destination", &format!("{}/team/app:latest", reg.addr)])
        .args(["--sbom", "--provenance=mode=max"]));
    let log = output_text(&res);
    assert!(res.status.success(), "{log}");
    assert!(log.contains("referrers of sha256:"), "{log}");
    let digest = String::from_utf8_lossy(&res.stdout).trim().to_string();

    // The tags name the image itself: a plain manifest, no index, no extra entry.
    let (status, m) = http_get(&reg.addr, "/v2/team/app/manifests/1").unwrap();
    assert_eq!(status, 200);
    assert_eq!(kiln::digest::sha256_bytes(m.as_bytes()), digest);
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert!(m.get("subject").is_none());

    let found = referrers_of(&reg.addr, "team/app", &digest);
    let types: Vec<&str> = found
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ],
        "{found:?}"
    );
    let out = tempfile::tempdir().unwrap();
    for d in &found {
        let (status, body) = http_get(
            &reg.addr,
            &format!("/v2/team/app/manifests/{}", d["digest"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(status, 200);
        let am: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(am["subject"]["digest"], digest.as_str());
        assert_eq!(am["artifactType"], d["artifactType"]);
        let layer = &am["layers"][0];
        let (status, doc) = http_get(
            &reg.addr,
            &format!("/v2/team/app/blobs/{}", layer["digest"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(status, 200);
        assert!(!doc.contains(SECRET));
        let ext = match d["artifactType"].as_str().unwrap() {
            "application/spdx+json" => "spdx.json",
            "application/vnd.cyclonedx+json" => "cdx.json",
            _ => "intoto.json",
        };
        let path = out.path().join(format!(
            "{}.{ext}",
            d["digest"].as_str().unwrap().replace(':', "-")
        ));
        std::fs::write(&path, &doc).unwrap();
        match d["artifactType"].as_str().unwrap() {
            "application/spdx+json" => {
                validate_spdx(&path);
                assert!(doc.contains("libc6"));
            }
            "application/vnd.cyclonedx+json" => validate_cyclonedx(&path),
            _ => {
                validate_provenance(&path);
                assert_eq!(
                    d["annotations"]["in-toto.io/predicate-type"],
                    "https://slsa.dev/provenance/v1"
                );
                let p: serde_json::Value = serde_json::from_str(&doc).unwrap();
                assert_eq!(
                    format!(
                        "sha256:{}",
                        p["subject"][0]["digest"]["sha256"].as_str().unwrap()
                    ),
                    digest
                );
            }
        }
    }
}

/// Layer hints: a pip cache left in a layer and a file a later layer deletes
/// are named with their sizes, layers, Dockerfile lines and fixes, in the
/// summary and the report; `--no-hints` silences them.
#[test]
fn layer_hints_name_caches_and_bytes_paid_twice() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let ctx = context(&[(
        "Dockerfile",
        &format!(
            "FROM {}/base\nCOPY big.bin /opt/big.bin\n\
             RUN mkdir -p /root/.cache/pip && head -c 3145728 /opt/big.bin > /root/.cache/pip/wheel && rm /opt/big.bin\n",
            reg.addr
        ),
    )]);
    std::fs::write(ctx.path().join("big.bin"), noise(4 << 20)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let build = |extra: &[&str]| {
        let report = out.path().join("report.json");
        let res = run(kiln()
            .args(["build", "--no-push", "--cache=false", "--context"])
            .arg(ctx.path())
            .args(["--insecure-registry", &reg.addr, "--report"])
            .arg(&report)
            .args(extra));
        let log = output_text(&res);
        assert!(res.status.success(), "{log}");
        (log, json(&report))
    };
    let (log, report) = build(&[]);
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("hint: ")).collect();
    assert!(
        lines.iter().any(|l| l.contains("layer 3 (")
            && l.contains("Dockerfile:3")
            && l.contains("keeps /root/.cache/pip (3.0 MiB)")
            && l.contains("--no-cache-dir")),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l.contains("layer 2 (")
            && l.contains("holds 4.0 MiB that layer 3")
            && l.contains("/opt/big.bin")),
        "{log}"
    );
    let hints = report["hints"].as_array().unwrap();
    let cache = hints.iter().find(|h| h["kind"] == "cache").unwrap();
    assert_eq!(
        (cache["layer"].as_u64(), cache["line"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(cache["bytes"], 3 << 20);
    let twice = hints.iter().find(|h| h["kind"] == "deleted-later").unwrap();
    assert_eq!(
        (twice["layer"].as_u64(), twice["by_layer"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(hints
        .iter()
        .any(|h| h["kind"] == "largest" && h["path"] == "/opt/big.bin"));

    let (log, report) = build(&["--no-hints"]);
    assert!(!log.contains("hint: "), "{log}");
    assert_eq!(report["hints"], serde_json::json!([]));
}

/// With several platforms, each platform's image gets its own documents as
/// referrers and files, and the index lists the platforms only: no
/// `unknown/unknown` entry.
#[test]
fn each_platform_has_its_own_referrers_and_the_index_only_its_platforms() {
    let reg = Registry::start();
    let ctx = libc6_context("scratch");
    let out = tempfile::tempdir().unwrap();
    let res = run(kiln()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--insecure-registry", &reg.addr])
        .args(["--destination", &format!("{}/multi/app:1", reg.addr)])
        .args([
            "--platform",
            "linux/amd64,linux/arm64",
            "--sbom",
            "--provenance",
        ])
        .arg("--sbom-file")
        .arg(out.path().join("sbom.cdx.json")));
    let log = output_text(&res);
    assert!(res.status.success(), "{log}");
    let (status, index) = http(
        &reg.addr,
        "GET",
        "/v2/multi/app/manifests/1",
        "application/vnd.oci.image.index.v1+json",
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{index}");
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for (m, p) in entries.iter().zip(["linux-amd64", "linux-arm64"]) {
        let digest = m["digest"].as_str().unwrap();
        let found = referrers_of(&reg.addr, "multi/app", digest);
        assert_eq!(found.len(), 3, "{p}: {found:?}");
        let sbom = json(&out.path().join(format!("sbom.{p}.cdx.json")));
        assert_eq!(sbom["metadata"]["component"]["version"], digest);
    }
}

/// `--attest-layout buildkit`, for tools that read only BuildKit's layout: the
/// tag names an index holding the image and, as `unknown/unknown`, an
/// attestation manifest that points at it, whose layers are in-toto
/// Statements about the image (the SPDX document wrapped in one, valid),
/// holding no planted secret in this layout either.
#[test]
fn buildkit_layout_puts_attestation_manifests_in_the_index() {
    let reg = Registry::start();
    let ctx = libc6_context("scratch");
    let res = run(kiln()
        .args(["build", "--context"])
        .arg(ctx.path())
        .args(["--insecure-registry", &reg.addr])
        .args(["--destination", &format!("{}/bk/app:1", reg.addr)])
        .args([
            "--sbom",
            "--provenance=mode=max",
            "--attest-layout",
            "buildkit",
        ])
        .args(["--secret", "id=npmrc,env=KILN_TEST_NPMRC"])
        .env("KILN_TEST_NPMRC", SECRET)
        .env("CI_JOB_TOKEN", JOB_TOKEN));
    let log = output_text(&res);
    assert!(res.status.success(), "{log}");
    let top = String::from_utf8_lossy(&res.stdout).trim().to_string();
    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    let (status, index) = http(&reg.addr, "GET", "/v2/bk/app/manifests/1", INDEX, &[]).unwrap();
    assert_eq!(status, 200, "{index}");
    assert_eq!(
        kiln::digest::sha256_bytes(index.as_bytes()),
        top,
        "the digest printed is the index's"
    );
    let index: serde_json::Value = serde_json::from_str(&index).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_eq!(entries[0]["platform"]["architecture"], "amd64");
    let image = entries[0]["digest"].as_str().unwrap();
    let att = &entries[1];
    assert_eq!(att["platform"]["os"], "unknown");
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(att["annotations"]["vnd.docker.reference.digest"], image);
    let (_, m) = http_get(
        &reg.addr,
        &format!("/v2/bk/app/manifests/{}", att["digest"].as_str().unwrap()),
    )
    .unwrap();
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        types,
        [
            "https://spdx.dev/Document",
            "https://cyclonedx.org/bom",
            "https://slsa.dev/provenance/v1"
        ]
    );
    let out = tempfile::tempdir().unwrap();
    for (l, t) in m["layers"].as_array().unwrap().iter().zip(&types) {
        let (status, body) = http_get(
            &reg.addr,
            &format!("/v2/bk/app/blobs/{}", l["digest"].as_str().unwrap()),
        )
        .unwrap();
        assert_eq!(status, 200);
        for planted in [SECRET, JOB_TOKEN] {
            assert!(!body.contains(planted), "{planted} in a {t} statement");
        }
        let st: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(st["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(
            format!(
                "sha256:{}",
                st["subject"][0]["digest"]["sha256"].as_str().unwrap()
            ),
            image
        );
        if *t == "https://spdx.dev/Document" {
            let p = out.path().join("sbom.spdx.json");
            std::fs::write(&p, serde_json::to_vec(&st["predicate"]).unwrap()).unwrap();
            validate_spdx(&p);
        }
    }
    // No referrers tag in this layout.
    let tag = image.replacen(':', "-", 1);
    let (status, _) = http_get(&reg.addr, &format!("/v2/bk/app/manifests/{tag}")).unwrap();
    assert_eq!(status, 404);
}
