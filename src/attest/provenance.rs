//! SLSA provenance v1 as an in-toto v1 Statement, a pure writer: what was
//! built (the subject: the image manifest), from what (the Dockerfile and its
//! digest, target, platforms, build arguments; every resolved dependency: base
//! images by the digest really pulled, ADD URLs by content digest, git sources
//! by commit, the GitLab project at its commit), by what (kiln's version) and
//! where (GitLab's job, pipeline and runner), with start and finish times.
//!
//! No crate models SLSA v1 and in-toto v1 as they are today, so the few types
//! are here, serialised field for field as the specs name them.
//!
//! `min` mode (the default, as buildx's) names the build arguments and the
//! secret and ssh ids without values; `max` adds the build arguments' values.
//! `--secret` and `--ssh` content never appears in either.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What `externalParameters` means: documented in the README.
pub const BUILD_TYPE: &str = "https://gitlab.com/kiln/kiln/-/blob/main/README.md#slsa-provenance";
/// kiln's builder identity when no CI job names a better one.
pub const BUILDER_ID: &str = "https://gitlab.com/kiln/kiln";

/// How much of the request the provenance shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Min,
    Max,
}

/// A SLSA ResourceDescriptor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Resource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub uri: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Resource {
    /// `sha256:abc…` → `{"sha256": "abc…"}`.
    pub fn digest_of(d: &str) -> BTreeMap<String, String> {
        match d.split_once(':') {
            Some((alg, hex)) => BTreeMap::from([(alg.to_string(), hex.to_string())]),
            None => BTreeMap::new(),
        }
    }
}

/// A URL as the provenance may show it: no user or password, and the values
/// of query parameters that carry credentials (`private_token`, `X-Amz-Signature`,
/// `sig`, …) replaced, since a build argument may have put a token there.
pub fn public_uri(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return raw.to_string();
    };
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "token",
                "sig",
                "key",
                "password",
                "secret",
                "auth",
                "credential",
            ]
            .iter()
            .any(|w| k.contains(w))
        };
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "REDACTED".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A package URL for an image reference as pulled (`pkg:docker/…`), with the
/// platform it was pulled for.
pub fn docker_purl(registry: &str, repository: &str, version: &str, platform: &str) -> String {
    let (ns, name) = match repository.rsplit_once('/') {
        Some((dir, name)) => (format!("{registry}/{dir}"), name),
        None => (registry.to_string(), repository),
    };
    let mut p = match packageurl::PackageUrl::new("docker", name) {
        Ok(p) => p,
        Err(_) => return format!("pkg:docker/{registry}/{repository}@{version}"),
    };
    let _ = p.with_namespace(ns.as_str());
    let _ = p.with_version(version);
    let _ = p.add_qualifier("platform", platform);
    p.to_string()
}

/// A dependency the build resolved, with the platform it was resolved for
/// (images only: each platform's provenance lists its own bases).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Material {
    pub platform: Option<String>,
    pub resource: Resource,
}

/// The dependencies a build resolves as it goes (pulls, ADD URLs, git
/// sources), each once.
#[derive(Debug, Default)]
pub struct Materials(Mutex<Vec<Material>>);

impl Materials {
    pub fn record(&self, m: Material) {
        if let Ok(mut all) = self.0.lock() {
            if !all.contains(&m) {
                all.push(m);
            }
        }
    }

    /// The dependencies of `platform`'s image: its own and the build
    /// platform's images, and every other source, sorted.
    pub fn for_platform(&self, platform: &str, build_platform: &str) -> Vec<Resource> {
        let all = self.0.lock().map(|a| a.clone()).unwrap_or_default();
        let mut out: Vec<Resource> = all
            .into_iter()
            .filter(|m| match &m.platform {
                None => true,
                Some(p) => p == platform || p == build_platform,
            })
            .map(|m| m.resource)
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Everything a provenance document says.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The image: its name and manifest digest.
    pub subject_name: String,
    pub subject_digest: String,
    pub mode: Mode,
    /// The Dockerfile as the user named it, and the digest of its bytes.
    pub dockerfile: String,
    pub dockerfile_digest: String,
    pub target: Option<String>,
    pub platform: String,
    pub platforms: Vec<String>,
    pub build_args: Vec<(String, String)>,
    pub secret_ids: Vec<String>,
    pub ssh_ids: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    pub reproducible: bool,
    pub dependencies: Vec<Resource>,
    /// The build's source: the GitLab project at its commit.
    pub source: Option<Resource>,
    pub kiln_version: String,
    /// GitLab's variables that identify the job (`CI_JOB_URL`, …), as found.
    pub ci: BTreeMap<String, String>,
    pub started: String,
    pub finished: String,
}

#[derive(Serialize)]
struct Subject<'a> {
    name: &'a str,
    digest: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Statement<'a> {
    #[serde(rename = "_type")]
    type_: &'static str,
    subject: Vec<Subject<'a>>,
    predicate_type: &'static str,
    predicate: Predicate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Predicate {
    build_definition: BuildDefinition,
    run_details: RunDetails,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildDefinition {
    build_type: &'static str,
    external_parameters: serde_json::Value,
    internal_parameters: serde_json::Value,
    resolved_dependencies: Vec<Resource>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunDetails {
    builder: Builder,
    metadata: Metadata,
}

#[derive(Serialize)]
struct Builder {
    id: String,
    version: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    invocation_id: Option<String>,
    started_on: String,
    finished_on: String,
}

fn statement(f: &Facts) -> Statement<'_> {
    let args: serde_json::Value = match f.mode {
        Mode::Min => f
            .build_args
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>()
            .into(),
        Mode::Max => f
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    };
    let mut external = serde_json::json!({
        "configSource": {
            "path": f.dockerfile,
            "digest": Resource::digest_of(&f.dockerfile_digest),
        },
        "platforms": f.platforms,
        "buildArgs": args,
        "noCache": f.no_cache,
        "reproducible": f.reproducible,
    });
    if let Some(t) = &f.target {
        external["target"] = t.clone().into();
    }
    if let Some(s) = &f.source {
        external["source"] = serde_json::to_value(s).unwrap_or_default();
    }
    if f.mode == Mode::Max {
        external["secretIds"] = f.secret_ids.clone().into();
        external["sshIds"] = f.ssh_ids.clone().into();
        external["labels"] = f
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let mut deps = f.dependencies.clone();
    if let Some(s) = &f.source {
        deps.insert(0, s.clone());
    }
    let builder_id =
        f.ci.get("CI_PROJECT_URL")
            .zip(f.ci.get("CI_RUNNER_ID"))
            // The runner, as GitLab's own provenance names it.
            .map(|(project, runner)| format!("{project}/-/runners/{runner}"))
            .unwrap_or_else(|| BUILDER_ID.to_string());
    let mut version = BTreeMap::from([("kiln".to_string(), f.kiln_version.clone())]);
    if let Some(v) = f.ci.get("CI_RUNNER_VERSION") {
        version.insert("gitlab-runner".into(), v.clone());
    }
    Statement {
        type_: STATEMENT_TYPE,
        subject: vec![Subject {
            name: &f.subject_name,
            digest: Resource::digest_of(&f.subject_digest),
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: Predicate {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: external,
                internal_parameters: serde_json::json!({
                    "platform": f.platform,
                    "ci": f.ci,
                }),
                resolved_dependencies: deps,
            },
            run_details: RunDetails {
                builder: Builder {
                    id: builder_id,
                    version,
                },
                metadata: Metadata {
                    invocation_id: f.ci.get("CI_JOB_URL").cloned(),
                    started_on: f.started.clone(),
                    finished_on: f.finished.clone(),
                },
            },
        },
    }
}

/// The statement as JSON bytes (pretty, with a final newline).
pub fn write(f: &Facts) -> serde_json::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(&statement(f))?;
    out.push(b'\n');
    Ok(out)
}

/// GitLab's predefined variables that say which job built the image. None of
/// them is a secret (CI_JOB_TOKEN and the like are never read here).
pub const CI_VARIABLES: &[&str] = &[
    "CI_SERVER_URL",
    "CI_PROJECT_URL",
    "CI_PROJECT_PATH",
    "CI_COMMIT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "CI_JOB_ID",
    "CI_JOB_URL",
    "CI_JOB_NAME",
    "CI_RUNNER_ID",
    "CI_RUNNER_DESCRIPTION",
    "CI_RUNNER_VERSION",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mode: Mode) -> Facts {
        Facts {
            subject_name: "registry.example/group/app".into(),
            subject_digest: "sha256:abcd".into(),
            mode,
            dockerfile: "Dockerfile".into(),
            dockerfile_digest: "sha256:dfdf".into(),
            target: Some("runtime".into()),
            platform: "linux/amd64".into(),
            platforms: vec!["linux/amd64".into()],
            build_args: vec![("VERSION".into(), "1.2".into())],
            secret_ids: vec!["npmrc".into()],
            ssh_ids: vec![],
            labels: vec![],
            no_cache: false,
            reproducible: true,
            dependencies: vec![Resource {
                name: Some("debian:bookworm".into()),
                uri: "pkg:docker/mirror.example/library/debian@bookworm?platform=linux%2Famd64"
                    .into(),
                digest: Resource::digest_of("sha256:1111"),
                annotations: BTreeMap::new(),
            }],
            source: Some(Resource {
                name: None,
                uri: "git+https://gitlab.example/group/app".into(),
                digest: BTreeMap::from([("gitCommit".to_string(), "c0ffee".to_string())]),
                annotations: BTreeMap::new(),
            }),
            kiln_version: "0.1.0".into(),
            ci: BTreeMap::from([
                (
                    "CI_JOB_URL".to_string(),
                    "https://gitlab.example/group/app/-/jobs/7".to_string(),
                ),
                (
                    "CI_PROJECT_URL".to_string(),
                    "https://gitlab.example/group/app".to_string(),
                ),
                ("CI_RUNNER_ID".to_string(), "12".to_string()),
            ]),
            started: "1970-01-01T00:00:00Z".into(),
            finished: "1970-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_statement_with_the_slsa_v1_predicate() {
        let v: serde_json::Value =
            serde_json::from_slice(&write(&facts(Mode::Min)).unwrap()).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["subject"][0]["digest"]["sha256"], "abcd");
        let def = &v["predicate"]["buildDefinition"];
        assert_eq!(
            def["externalParameters"]["configSource"]["digest"]["sha256"],
            "dfdf"
        );
        assert_eq!(
            def["externalParameters"]["buildArgs"],
            serde_json::json!(["VERSION"])
        );
        assert!(def["externalParameters"].get("secretIds").is_none());
        let deps = def["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps[0]["digest"]["gitCommit"], "c0ffee");
        assert_eq!(deps[1]["name"], "debian:bookworm");
        let run = &v["predicate"]["runDetails"];
        assert_eq!(
            run["builder"]["id"],
            "https://gitlab.example/group/app/-/runners/12"
        );
        assert_eq!(
            run["metadata"]["invocationId"],
            "https://gitlab.example/group/app/-/jobs/7"
        );
    }

    #[test]
    fn max_mode_adds_values_and_ids_only() {
        let v: serde_json::Value =
            serde_json::from_slice(&write(&facts(Mode::Max)).unwrap()).unwrap();
        let ext = &v["predicate"]["buildDefinition"]["externalParameters"];
        assert_eq!(ext["buildArgs"]["VERSION"], "1.2");
        assert_eq!(ext["secretIds"], serde_json::json!(["npmrc"]));
    }

    #[test]
    fn uris_lose_their_credentials() {
        assert_eq!(
            public_uri("https://oauth2:glpat-secret@gitlab.example/g/r.git"),
            "https://gitlab.example/g/r.git"
        );
        assert_eq!(
            public_uri("https://s3.example/f.tgz?X-Amz-Signature=abc&v=1&private_token=t"),
            "https://s3.example/f.tgz?X-Amz-Signature=REDACTED&v=1&private_token=REDACTED"
        );
        assert_eq!(public_uri("https://example/x.tgz"), "https://example/x.tgz");
    }

    #[test]
    fn docker_purls() {
        assert_eq!(
            docker_purl("docker.io", "library/debian", "bookworm", "linux/arm64"),
            "pkg:docker/docker.io/library/debian@bookworm?platform=linux%2Farm64"
        );
        assert_eq!(
            docker_purl("127.0.0.1:5000", "base", "sha256:ab", "linux/amd64"),
            "pkg:docker/127.0.0.1:5000/base@sha256:ab?platform=linux%2Famd64"
        );
    }

    #[test]
    fn materials_per_platform() {
        let m = Materials::default();
        let img = |p: &str, d: &str| Material {
            platform: Some(p.into()),
            resource: Resource {
                name: None,
                uri: format!("pkg:docker/x?platform={p}"),
                digest: Resource::digest_of(d),
                annotations: BTreeMap::new(),
            },
        };
        m.record(img("linux/arm64", "sha256:a"));
        m.record(img("linux/amd64", "sha256:b"));
        m.record(img("linux/amd64", "sha256:b"));
        m.record(Material {
            platform: None,
            resource: Resource {
                name: None,
                uri: "https://example/x.tgz".into(),
                digest: Resource::digest_of("sha256:c"),
                annotations: BTreeMap::new(),
            },
        });
        assert_eq!(m.for_platform("linux/arm64", "linux/amd64").len(), 3);
        assert_eq!(m.for_platform("linux/amd64", "linux/amd64").len(), 2);
        assert_eq!(m.for_platform("linux/s390x", "linux/amd64").len(), 2);
    }
}
