//! Every GitLab CI file of the repo (`.gitlab-ci.yml`, `ci/*.yml`,
//! `examples/*.yml`) read by gitlab-ci-local, a GitLab CI parser with GitLab's
//! semantics: its JSON schema, `include:` with `inputs:`, `extends:`, `rules:`,
//! `needs:`. And two of them run for real by it (shell executor), with this
//! kiln, against the GitLab-like registry: the template's job and the
//! branches-and-tags example with its dotenv hand-over.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::gitlab::{seed_busybox, GitLab};
use support::*;

fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// gitlab-ci-local's entry point: ci/test installs it under target/.
fn parser() -> PathBuf {
    let p = std::env::var_os("KILN_GITLAB_CI_LOCAL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo_dir().join("target/gitlab-ci-local/node_modules/gitlab-ci-local/src/index.js")
        });
    assert!(
        p.is_file(),
        "{}: run ci/test, which installs gitlab-ci-local",
        p.display()
    );
    p
}

const TEMPLATE: &str = "ci/kiln.gitlab-ci.yml";

/// A git checkout of group/project with `pipeline` as its .gitlab-ci.yml, kiln's
/// template at ci/kiln.gitlab-ci.yml, and `files`.
fn project(pipeline: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let mut all = vec![(".gitlab-ci.yml", pipeline)];
    let template = std::fs::read_to_string(repo_dir().join(TEMPLATE)).expect("template");
    all.push((TEMPLATE, &template));
    all.extend_from_slice(files);
    let dir = context(&all);
    let git = |args: &[&str]| {
        check(
            Command::new("git")
                .current_dir(dir.path())
                .args(["-c", "user.name=CI", "-c", "user.email=ci@example.com"])
                .args(args),
        )
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "pipeline"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example.com/group/project.git",
    ]);
    dir
}

/// gitlab-ci-local in `dir` with `args`: (success, stdout and stderr).
fn glci(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = run(Command::new("node")
        .arg(parser())
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0"));
    let text = output_text(&out);
    (out.status.success(), text)
}

/// The merged pipeline, checked against GitLab's schema.
fn preview(dir: &Path) -> String {
    let (ok, text) = glci(dir, &["--preview"]);
    assert!(ok, "gitlab-ci-local refused the pipeline:\n{text}");
    assert!(text.contains("json schema validated"), "{text}");
    text
}

fn jobs_in(preview: &str) -> Vec<String> {
    preview
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('-') && l.ends_with(':'))
        .map(|l| l.trim_end_matches(':').trim_matches('"').to_string())
        .filter(|j| {
            !matches!(
                j.as_str(),
                "stages" | "variables" | "include" | "default" | "workflow"
            )
        })
        .collect()
}

/// An example that includes the template from kiln's project, made to include
/// it from the checkout (the parser cannot reach GitLab).
fn local_include(pipeline: &str) -> String {
    let from = "  - project: kiln/kiln\n    ref: main\n    file: ci/kiln.gitlab-ci.yml\n";
    if !pipeline.contains(from) {
        return pipeline.to_string();
    }
    pipeline.replace(from, "  - local: ci/kiln.gitlab-ci.yml\n")
}

#[test]
fn every_ci_file_parses_with_gitlab_semantics() {
    let mut files = vec![PathBuf::from(".gitlab-ci.yml")];
    for dir in ["ci", "examples"] {
        for e in std::fs::read_dir(repo_dir().join(dir))
            .expect("read_dir")
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                files.push(p.strip_prefix(repo_dir()).expect("prefix").to_path_buf());
            }
        }
    }
    files.sort();
    let expected: &[(&str, &[&str])] = &[
        (
            ".gitlab-ci.yml",
            &[
                "test",
                "build",
                "job-image",
                "job-image-emulators",
                "job-image-smoke",
            ],
        ),
        ("ci/kiln.gitlab-ci.yml", &["kiln-build"]),
        ("examples/gitlab-ci.yml", &["build-image", "deploy"]),
        (
            "examples/gitlab-ci-bake.yml",
            &["kiln-build", "deploy-worker"],
        ),
        (
            "examples/gitlab-ci-cache.yml",
            &["warm-kiln-cache", "build-image"],
        ),
        ("examples/gitlab-ci-company-ca.yml", &["build-image"]),
        ("examples/gitlab-ci-dependency-proxy.yml", &["build-image"]),
        (
            "examples/gitlab-ci-include.yml",
            &["kiln-build", "build-worker"],
        ),
        ("examples/gitlab-ci-kaniko.yml", &["build"]),
        ("examples/gitlab-ci-multi-platform.yml", &["kiln-build"]),
        (
            "examples/gitlab-ci-native-runners.yml",
            &["build-image", "image-index"],
        ),
        (
            "examples/gitlab-ci-merge-request.yml",
            &["build-merge-request"],
        ),
        (
            "examples/gitlab-ci-push.yml",
            &["build-image", "check-image", "push-image"],
        ),
    ];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
    listed.sort();
    assert_eq!(
        names, listed,
        "a CI file without expectations here (or one gone)"
    );
    for (file, jobs) in expected {
        let text = std::fs::read_to_string(repo_dir().join(file)).expect("read");
        // The template is a file to include: include it with its defaults.
        let pipeline = if *file == TEMPLATE {
            format!("include:\n  - local: {TEMPLATE}\n")
        } else {
            local_include(&text)
        };
        let dir = project(&pipeline, &[]);
        let merged = preview(dir.path());
        let mut found = jobs_in(&merged);
        found.retain(|j| !j.starts_with('.'));
        let mut want: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
        found.sort();
        want.sort();
        assert_eq!(found, want, "{file}:\n{merged}");
    }
}

#[test]
fn the_templates_inputs_are_declared_used_and_applied() {
    let text = std::fs::read_to_string(repo_dir().join(TEMPLATE)).expect("template");
    let (spec, body) = text.split_once("\n---\n").expect("spec, then ---");
    let declared: Vec<&str> = spec
        .lines()
        .filter(|l| l.starts_with("    ") && !l.starts_with("     ") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    let mut used: Vec<&str> = body
        .split("$[[ inputs.")
        .skip(1)
        .map(|s| s.split(" ]]").next().expect("]]"))
        .collect();
    used.sort();
    used.dedup();
    let mut d = declared.clone();
    d.sort();
    assert_eq!(d, used, "every input declared is used, and only those");
    for input in [
        "context",
        "dockerfile",
        "destinations",
        "build-args",
        "target",
        "cache",
        "cache-repo",
        "platform",
        "platforms",
        "extra-flags",
        "image",
        "ca-cert",
        "sbom",
        "bake",
        "bake-targets",
        "bake-push",
    ] {
        assert!(declared.contains(&input), "no `{input}` input");
    }
    // Every input given: the job is named and placed by them, and `.kiln-build`
    // is there to extend.
    let pipeline = format!(
        "include:\n  - local: {TEMPLATE}\n    inputs:\n      job: app-image\n      stage: test\n      image: registry.example/kiln:1\n      dockerfile: docker/Dockerfile\n      destinations: $CI_REGISTRY_IMAGE:a $CI_REGISTRY_IMAGE:b\n      build-args: A=1 B\n      target: runtime\n      cache: false\n      platform: linux/arm64\n      platforms: linux/amd64,linux/arm64\n      extra-flags: --reproducible\n      ca-cert: $KNUT_CA\n      sbom: false\n      bake: docker-bake.hcl\n      bake-targets: app worker\n      bake-push: false\n\nsecond:\n  extends: .kiln-build\n  stage: test\n  variables:\n    KILN_TARGET: debug\n"
    );
    let dir = project(&pipeline, &[]);
    let merged = preview(dir.path());
    for want in [
        "app-image:\n",
        "second:\n",
        "name: registry.example/kiln:1",
        "KILN_DOCKERFILE: docker/Dockerfile",
        "KILN_DESTINATIONS: $CI_REGISTRY_IMAGE:a $CI_REGISTRY_IMAGE:b",
        "KILN_BUILD_ARGS: A=1 B",
        "KILN_TARGET: runtime",
        "KILN_TARGET: debug",
        "KILN_CACHE: 'false'",
        "KILN_PLATFORM: linux/arm64",
        "KILN_PLATFORMS: linux/amd64,linux/arm64",
        "KILN_EXTRA_FLAGS: '--reproducible'",
        "KILN_CA_CERT: $KNUT_CA",
        "KILN_SBOM: 'false'",
        "KILN_BAKE: docker-bake.hcl",
        "KILN_BAKE_TARGETS: app worker",
        "KILN_BAKE_PUSH: 'false'",
        "stage: test",
    ] {
        assert!(merged.contains(want), "no {want:?} in:\n{merged}");
    }
    assert!(!merged.contains("kiln-build:"), "{merged}");
    // A job name starting with "." adds only the hidden job.
    let dir = project(
        &format!("include:\n  - local: {TEMPLATE}\n    inputs:\n      job: .kiln-unused\n"),
        &[],
    );
    let merged = preview(dir.path());
    let visible: Vec<String> = jobs_in(&merged)
        .into_iter()
        .filter(|j| !j.starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
}

#[test]
fn the_parser_refuses_a_broken_pipeline() {
    let dir = project("build:\n  stage: build\n  scirpt:\n    - kiln build\n", &[]);
    let (ok, text) = glci(dir.path(), &["--preview"]);
    assert!(!ok, "a job without script passed:\n{text}");
    let dir = project(
        "build:\n  stage: build\n  script: [kiln build]\n  rules: when-always\n",
        &[],
    );
    let (ok, text) = glci(dir.path(), &["--preview"]);
    assert!(!ok, "a schema error passed:\n{text}");
}

/// gitlab-ci-local's variables for a job of group/project at the GitLab-like
/// registry, plus `extra`.
fn job_vars(gl: &GitLab, extra: &[(&str, &str)]) -> Vec<String> {
    let mut v: Vec<(String, String)> = gl
        .job_env()
        .into_iter()
        .filter(|(k, _)| k != "CI_PROJECT_DIR")
        .collect();
    v.push((
        "CI_SERVER_TLS_CA_FILE".into(),
        gl.pki.ca.display().to_string(),
    ));
    v.extend(
        extra
            .iter()
            .map(|(k, val)| (k.to_string(), val.to_string())),
    );
    v.into_iter()
        .flat_map(|(k, val)| ["--variable".to_string(), format!("{k}={val}")])
        .collect()
}

/// Run jobs of the checkout with the shell executor and this kiln on PATH.
fn run_jobs(dir: &Path, vars: &[String], jobs: &[&str]) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_kiln"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = Command::new("node");
    // The shell executor runs in the checkout, but keeps the Docker path in
    // CI_PROJECT_DIR.
    let project_dir = format!("CI_PROJECT_DIR={}", dir.display());
    c.arg(parser())
        .args(jobs)
        .args(["--force-shell-executor", "--needs"])
        .args(vars)
        .args(["--variable", &project_dir])
        .current_dir(dir)
        .env("HOME", dir)
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env(
            "GCL_IGNORE_PREDEFINED_VARS",
            "GITLAB_CI,CI,CI_REGISTRY,CI_REGISTRY_IMAGE,CI_PROJECT_PATH,CI_COMMIT_SHORT_SHA",
        )
        .env_remove("SOURCE_DATE_EPOCH");
    let out = run(&mut c);
    let text = output_text(&out);
    assert!(out.status.success(), "the pipeline failed:\n{text}");
    text
}

fn digest_of(gl: &GitLab, reference: &str) -> String {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--format", "{{.Digest}}"])
        .args(gl.skopeo_admin(""));
    check(c.arg(format!("docker://{}/{reference}", gl.registry.addr)))
        .trim()
        .to_string()
}

const APP: &[(&str, &str)] = &[
    ("Dockerfile", "ARG CI_REGISTRY\nFROM ${CI_REGISTRY}/group/base-images/busybox\nCOPY . /app/\nRUN test -f /app/index.html\n"),
    ("index.html", "<h1>hello</h1>\n"),
];

#[test]
fn the_template_job_runs_as_written_and_pushes() {
    let gl = GitLab::start(300);
    seed_busybox(&gl, "group/base-images/busybox");
    let pipeline = format!(
        "include:\n  - local: {TEMPLATE}\n    inputs:\n      destinations: $CI_REGISTRY_IMAGE/web:$CI_COMMIT_SHORT_SHA $CI_REGISTRY_IMAGE/web:edge\n      build-args: CI_REGISTRY\n"
    );
    let dir = project(&pipeline, APP);
    let log = run_jobs(dir.path(), &job_vars(&gl, &[]), &["kiln-build"]);
    let a = digest_of(&gl, "group/project/web:1a2b3c4d");
    assert_eq!(a, digest_of(&gl, "group/project/web:edge"), "{log}");
    // The dotenv report names that digest; the JSON report lists the steps.
    let art = dir.path().join(".gitlab-ci-local/artifacts/kiln-build");
    let dotenv = std::fs::read_to_string(art.join(".gitlab-ci-reports/dotenv/kiln.env"))
        .unwrap_or_else(|e| panic!("kiln.env: {e}\n{log}"));
    assert!(
        dotenv.contains(&format!("KILN_IMAGE_DIGEST={a}")),
        "{dotenv}"
    );
    let report = std::fs::read_to_string(art.join("kiln-report.json")).expect("kiln-report.json");
    let report: serde_json::Value = serde_json::from_str(&report).expect("report JSON");
    assert!(
        report["steps"].as_array().is_some_and(|s| s.len() >= 3),
        "{report}"
    );
    // The SBOM, on by default, as GitLab's cyclonedx report, of that image.
    let sbom = std::fs::read_to_string(art.join("gl-sbom-kiln.cdx.json"))
        .unwrap_or_else(|e| panic!("gl-sbom-kiln.cdx.json: {e}\n{log}"));
    let sbom: serde_json::Value = serde_json::from_str(&sbom).expect("SBOM JSON");
    assert_eq!(sbom["specVersion"], "1.6");
    assert_eq!(sbom["metadata"]["component"]["version"], a.as_str());
}

#[test]
fn the_bake_example_builds_app_worker_and_debug_in_one_job() {
    let gl = GitLab::start(300);
    seed_busybox(&gl, "group/base-images/busybox");
    let example =
        std::fs::read_to_string(repo_dir().join("examples/gitlab-ci-bake.yml")).expect("example");
    let read = |f: &str| {
        std::fs::read_to_string(repo_dir().join("examples/bake").join(f)).expect("examples/bake")
    };
    let (bake, dockerfile, app, worker) = (
        read("docker-bake.hcl"),
        read("Dockerfile"),
        read("app.sh"),
        read("worker.sh"),
    );
    let dir = project(
        &local_include(&example),
        &[
            ("docker-bake.hcl", &bake),
            ("Dockerfile", &dockerfile),
            ("app.sh", &app),
            ("worker.sh", &worker),
        ],
    );
    let base = format!("{}/group/base-images/busybox", gl.registry.addr);
    let vars = job_vars(&gl, &[("BASE_IMAGE", &base)]);
    let log = run_jobs(dir.path(), &vars, &["deploy-worker"]);
    let app = digest_of(&gl, "group/project/app:1a2b3c4d");
    let debug = digest_of(&gl, "group/project/app:1a2b3c4d-debug");
    let worker = digest_of(&gl, "group/project/worker:1a2b3c4d");
    assert_ne!(app, debug, "{log}");
    assert!(
        log.contains(&format!(
            "deploying {}/group/project/worker@{worker}",
            gl.registry.addr
        )),
        "the deploy job got the worker's digest from the dotenv report:\n{log}"
    );
    let art = dir.path().join(".gitlab-ci-local/artifacts/kiln-build");
    for t in ["app", "worker", "app-debug"] {
        let sbom = art.join(format!("gl-sbom-kiln-{t}.cdx.json"));
        assert!(sbom.is_file(), "no {}\n{log}", sbom.display());
    }
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(art.join("kiln-report.json")).expect("kiln-report.json"),
    )
    .expect("report JSON");
    assert!(
        report["shared"].as_array().is_some_and(|s| !s.is_empty()),
        "the targets shared the base stage: {report}"
    );
}

#[test]
fn the_branch_and_tag_example_pushes_tags_and_hands_the_digest_on() {
    let gl = GitLab::start(300);
    seed_busybox(&gl, "group/base-images/busybox");
    let example =
        std::fs::read_to_string(repo_dir().join("examples/gitlab-ci.yml")).expect("example");
    // The example takes no build args; this app names its base by CI_REGISTRY.
    let app: Vec<(&str, &str)> = vec![
        (
            "Dockerfile",
            "FROM 127.0.0.1:PORT/group/base-images/busybox\nCOPY . /app/\n",
        ),
        ("index.html", "hi\n"),
    ];
    let port = gl
        .registry
        .addr
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let dockerfile = app[0].1.replace("PORT", &port);
    let dir = project(&example, &[("Dockerfile", &dockerfile), app[1]]);
    let vars = job_vars(&gl, &[("CI_COMMIT_TAG", "v1.2.0")]);
    let log = run_jobs(dir.path(), &vars, &["deploy"]);
    let tag = digest_of(&gl, "group/project:v1.2.0");
    assert_eq!(tag, digest_of(&gl, "group/project:latest"));
    assert!(
        log.contains(&format!(
            "deploying {}/group/project@{tag}",
            gl.registry.addr
        )),
        "the deploy job got the digest from the dotenv report:\n{log}"
    );
}

/// The native-runners example: a `parallel: matrix:` job per architecture
/// pushes its platform's image, then `kiln index` joins them (here both matrix
/// jobs run on this machine's shell executor; the runner tags pick the machines
/// on GitLab).
#[test]
fn the_native_runners_example_joins_the_matrix_jobs_images_into_an_index() {
    let gl = GitLab::start(300);
    let example = std::fs::read_to_string(repo_dir().join("examples/gitlab-ci-native-runners.yml"))
        .expect("example");
    let dir = project(
        &example,
        &[
            ("Dockerfile", "FROM scratch\nCOPY index.html /\n"),
            ("index.html", "hi\n"),
        ],
    );
    let log = run_jobs(dir.path(), &job_vars(&gl, &[]), &["image-index"]);
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw"]).args(gl.skopeo_admin(""));
    let raw = check(c.arg(format!(
        "docker://{}/group/project:1a2b3c4d",
        gl.registry.addr
    )));
    let ix: serde_json::Value = serde_json::from_str(&raw).expect("index JSON");
    let archs: Vec<&str> = ix["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {raw}\n{log}"))
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().expect("arch"))
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{log}");
    let arm = digest_of(&gl, "group/project:1a2b3c4d-arm64");
    let art = dir.path().join(".gitlab-ci-local/artifacts/image-index");
    let dotenv = std::fs::read_to_string(art.join(".gitlab-ci-reports/dotenv/kiln.env"))
        .unwrap_or_else(|e| panic!("kiln.env: {e}\n{log}"));
    assert!(
        dotenv.contains(&format!("KILN_IMAGE_DIGEST_LINUX_ARM64={arm}\n")),
        "{dotenv}"
    );
    assert!(dotenv.contains("KILN_IMAGE_DIGEST=sha256:"), "{dotenv}");
}
