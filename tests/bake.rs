//! `kiln bake`: real bake files resolved as buildx documents them and built to
//! the local registry; a shared stage built once; independent targets side by
//! side; a failure that tags nothing; refusals that name file and line.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::*;

/// Copy `testdata/bake/NAME` into a fresh directory (the test's cwd).
fn project(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/bake")
        .join(name);
    check(
        Command::new("cp")
            .arg("-a")
            .arg(src.join("."))
            .arg(d.path()),
    );
    d
}

fn bake(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run(kiln()
        .current_dir(dir)
        .arg("bake")
        .args(args)
        .envs(env.iter().copied()))
}

fn ok(out: &Output) -> String {
    let text = output_text(out);
    assert!(out.status.success(), "kiln bake failed:\n{text}");
    text
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// `--print` against the project's expected.json ({REG} is the registry).
fn assert_prints(dir: &Path, args: &[&str], env: &[(&str, &str)], reg: &str) {
    let mut a = args.to_vec();
    a.push("--print");
    let out = bake(dir, &a, env);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--print is not JSON ({e}):\n{}", output_text(&out)));
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json"))
            .unwrap()
            .replace("{REG}", reg),
    )
    .unwrap();
    assert_eq!(got, want, "--print differs from the resolved definition");
}

/// Each target's tags exist in the registry and name the digest kiln reported.
fn assert_pushed(reg: &Registry, metadata: &serde_json::Value, expected: &serde_json::Value) {
    let targets = expected["target"].as_object().unwrap();
    for (name, t) in targets {
        let digest = metadata[name]["containerimage.digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest for {name} in {metadata}"));
        for tag in t["tags"].as_array().unwrap() {
            let tag = tag.as_str().unwrap().replace("{REG}", &reg.addr);
            let out = check(
                Command::new("skopeo")
                    .args(["inspect", "--raw", "--tls-verify=false"])
                    .arg(format!("docker://{tag}")),
            );
            assert_eq!(
                format!("sha256:{}", sha256_hex(out.as_bytes())),
                digest,
                "{tag} is not {name}'s image"
            );
        }
    }
}

/// `kiln bake --jobs 2` in `dir`, pushing to `reg`: its report.
fn bake_with_two_jobs(dir: &Path, reg: &Registry) -> serde_json::Value {
    let report = dir.join("report.json");
    let args = [
        "--jobs",
        "2",
        "--report",
        report.to_str().unwrap(),
        "--",
        "--insecure-registry",
        &reg.addr,
    ];
    ok(&bake(dir, &args, &[]));
    json_file(&report)
}

/// When target `i` of a bake report started and finished.
fn span(r: &serde_json::Value, i: usize) -> (f64, f64) {
    let t = &r["targets"][i];
    (
        t["started_s"].as_f64().unwrap(),
        t["finished_s"].as_f64().unwrap(),
    )
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_json_file_and_its_hcl_override_print_as_buildx_merges_them_and_push() {
    let reg = Registry::start();
    let dir = project("json-override");
    let env = [("REGISTRY", reg.addr.as_str()), ("VERSION", "2.1.0")];
    assert_prints(dir.path(), &[], &env, &reg.addr);
    let meta = dir.path().join("meta.json");
    ok(&bake(
        dir.path(),
        &[
            "--push",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--",
            "--insecure-registry",
            &reg.addr,
        ],
        &env,
    ));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    assert_pushed(&reg, &json_file(&meta), &expected);
    let cfg = config_of(&reg, "svc/api:2.1.0-14c2529");
    assert_eq!(
        cfg["config"]["Labels"]["com.example.version"], "2.1.0",
        "{cfg}"
    );
    assert_eq!(cfg["config"]["Labels"]["com.example.tier"], "api", "{cfg}");
}

#[test]
fn a_monorepo_bake_builds_its_shared_base_once_and_pushes_every_target() {
    if !need_root("a_monorepo_bake_builds_its_shared_base_once_and_pushes_every_target") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let dir = project("monorepo");
    let base = format!("{}/base/busybox", reg.addr);
    let env = [
        ("REGISTRY", reg.addr.as_str()),
        ("TAG", "1.0"),
        ("BASE_IMAGE", base.as_str()),
    ];
    let set = [
        "all",
        "--set",
        "app.labels.org.opencontainers.image.revision=abc123",
    ];
    assert_prints(dir.path(), &set, &env, &reg.addr);

    let meta = dir.path().join("meta.json");
    let report = dir.path().join("report.json");
    let mut args = set.to_vec();
    args.extend([
        "--push",
        "--metadata-file",
        meta.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--",
        "--insecure-registry",
        &reg.addr,
    ]);
    let text = ok(&bake(dir.path(), &args, &env));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap())
            .unwrap();
    assert_pushed(&reg, &json_file(&meta), &expected);

    // The base stage's layer went up once: the four images in two repositories
    // share it, and the second repository mounted it from the first.
    let raw = check(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/shop/worker:1.0", reg.addr)),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let stamp_layer = m["layers"][1]["digest"].as_str().unwrap();
    let hex = stamp_layer.trim_start_matches("sha256:");
    let log = reg.access_log();
    let uploads = log
        .lines()
        .filter(|l| l.contains("\"PUT ") && l.contains("/blobs/uploads/") && l.contains(hex))
        .count();
    let mounts = log
        .lines()
        .filter(|l| {
            l.contains("\"POST ")
                && l.contains("mount=")
                && l.contains(hex)
                && l.contains("\" 201 ")
        })
        .count();
    assert_eq!(
        (uploads, mounts),
        (1, 1),
        "uploads and mounts of {stamp_layer}:\n{log}"
    );

    // The base stage's RUN ran once: every image has the same random stamp.
    let work = tempfile::tempdir().unwrap();
    let mut stamps = std::collections::BTreeSet::new();
    for (name, file, want) in [
        ("app:1.0", "app.txt", "app release\n"),
        ("app:1.0-debug", "app.txt", "app debug\n"),
        ("app:1.0-slim", "app.txt", "app slim\n"),
        ("worker:1.0", "worker.txt", "worker\n"),
    ] {
        let root = unpack(
            &format!("docker://{}/shop/{name}", reg.addr),
            &work.path().join(name.replace(':', "-")),
        );
        assert_eq!(
            std::fs::read_to_string(root.join(file)).unwrap(),
            want,
            "{name}"
        );
        stamps.insert(std::fs::read_to_string(root.join("stamp")).unwrap());
    }
    assert_eq!(
        stamps.len(),
        1,
        "the base stage ran more than once: {stamps:?}\n{text}"
    );
    // The report says who built it and who shared it.
    let r = json_file(&report);
    let shared = r["shared"].as_array().unwrap();
    let builder = shared
        .iter()
        .find(|s| s["step"].as_str().unwrap().contains("base 2/2"))
        .unwrap_or_else(|| panic!("no shared base step in {r}"))["built_by"]
        .as_str()
        .unwrap()
        .to_string();
    let sharers: std::collections::BTreeSet<&str> = shared
        .iter()
        .filter(|s| s["step"].as_str().unwrap().contains("base 2/2"))
        .map(|s| s["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        sharers.len(),
        3,
        "three targets reuse the base built by {builder}: {r}"
    );
    assert!(!sharers.contains(builder.as_str()), "{r}");
}

#[test]
fn independent_targets_build_at_the_same_time() {
    if !need_root("independent_targets_build_at_the_same_time") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let from = format!("FROM {}/base/busybox\n", reg.addr);
    let ctx = context(&[
        ("a.Dockerfile", &format!("{from}RUN sleep 3 && echo a > /a\n")),
        ("b.Dockerfile", &format!("{from}RUN sleep 3 && echo b > /b\n")),
        (
            "docker-bake.hcl",
            "group \"default\" { targets = [\"a\", \"b\"] }\ntarget \"a\" { dockerfile = \"a.Dockerfile\" }\ntarget \"b\" { dockerfile = \"b.Dockerfile\" }\n",
        ),
    ]);
    let r = bake_with_two_jobs(ctx.path(), &reg);
    let (a, b) = (span(&r, 0), span(&r, 1));
    assert!(
        a.0 < b.1 && b.0 < a.1,
        "the two targets did not overlap: a {a:?}, b {b:?}"
    );
}

#[test]
fn a_target_waiting_on_a_shared_step_leaves_its_job_to_another() {
    if !need_root("a_target_waiting_on_a_shared_step_leaves_its_job_to_another") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    // Three targets on one slow base stage, two jobs: while one builds the
    // base, the other two only wait for it, so all three are under way.
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox AS base\nRUN sleep 3 && echo base > /base\n\
                 FROM base AS a\nRUN echo a > /a\nFROM base AS b\nRUN echo b > /b\nFROM base AS c\nRUN echo c > /c\n",
                reg.addr
            ),
        ),
        (
            "docker-bake.hcl",
            "group \"default\" { targets = [\"a\", \"b\", \"c\"] }\n\
             target \"a\" { target = \"a\" }\ntarget \"b\" { target = \"b\" }\ntarget \"c\" { target = \"c\" }\n",
        ),
    ]);
    let r = bake_with_two_jobs(ctx.path(), &reg);
    let spans: Vec<(f64, f64)> = (0..3).map(|i| span(&r, i)).collect();
    let first_end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(
        spans.iter().all(|s| s.0 < first_end),
        "a target started only after another finished: {spans:?}"
    );
    assert_eq!(r["shared"].as_array().unwrap().len(), 2, "{r}");
}

#[test]
fn a_failing_target_tags_no_target_unless_partial() {
    if !need_root("a_failing_target_tags_no_target_unless_partial") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox AS base\nFROM base AS ok\nRUN echo ok > /ok\nFROM base AS bad\nRUN echo failing; exit 3\n",
                reg.addr
            ),
        ),
        (
            "docker-bake.hcl",
            &format!(
                "target \"ok\" {{\n  target = \"ok\"\n  tags = [\"{r}/t/ok:1\"]\n}}\ntarget \"also\" {{\n  target = \"ok\"\n  tags = [\"{r}/t/also:1\"]\n}}\ntarget \"bad\" {{\n  target = \"bad\"\n  tags = [\"{r}/t/bad:1\"]\n}}\n",
                r = reg.addr
            ),
        ),
    ]);
    let args = [
        "ok",
        "also",
        "bad",
        "--push",
        "--",
        "--insecure-registry",
        &reg.addr,
    ];
    let out = bake(ctx.path(), &args, &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("1 of 3 target(s) failed; no target was tagged"),
        "{text}"
    );
    for repo in ["t/ok", "t/also", "t/bad"] {
        assert!(!reg.has_tag(repo, "1"), "{repo}:1 was tagged:\n{text}");
    }
    let mut partial = args.to_vec();
    partial.insert(3, "--partial");
    let out = bake(ctx.path(), &partial, &[]);
    let text = output_text(&out);
    assert!(
        !out.status.success(),
        "a failed target still fails the bake:\n{text}"
    );
    assert!(
        reg.has_tag("t/ok", "1") && reg.has_tag("t/also", "1"),
        "{text}"
    );
    assert!(!reg.has_tag("t/bad", "1"), "{text}");
}

#[test]
fn what_kiln_cannot_honour_fails_fast_and_names_where() {
    let ctx = context(&[
        ("Dockerfile", "FROM scratch\n"),
        (
            "docker-bake.hcl",
            "target \"app\" {\n  tags = [\"r/app\"]\n  network = \"host\"\n}\ntarget \"ok\" {}\n",
        ),
        ("compose.yaml", "services: {}\n"),
    ]);
    let out = bake(ctx.path(), &["app"], &[]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("docker-bake.hcl:3: target \"app\": kiln does not honour network"),
        "{text}"
    );
    assert!(text.contains("compose.yaml is not read"), "{text}");
    let refusals: [(&[&str], &str); 4] = [
        (&["ok", "--load"], "no daemon to load into"),
        (
            &["ok", "--set", "nope.tags=x"],
            "no target being built matches",
        ),
        (&["nope"], "no target or group named \"nope\""),
        (
            &["ok", "--", "--destination", "r/x"],
            "--destination after --",
        ),
    ];
    for (args, want) in refusals {
        let out = bake(ctx.path(), args, &[]);
        let text = output_text(&out);
        assert!(
            !out.status.success() && text.contains(want),
            "{args:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
    let empty = tempfile::tempdir().unwrap();
    let out = bake(empty.path(), &[], &[]);
    assert!(
        output_text(&out).contains("no bake file"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn contexts_name_a_directory_an_image_and_another_target() {
    if !need_root("contexts_name_a_directory_an_image_and_another_target") {
        return;
    }
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let tools = context(&[
        ("Dockerfile", "FROM scratch\nCOPY tool.txt /tool.txt\n"),
        ("tool.txt", "a tool\n"),
    ]);
    let o = run(kiln()
        .args(["build", "--insecure-registry", &reg.addr, "--context"])
        .arg(tools.path())
        .args(["--destination", &format!("{}/tools:1", reg.addr)]));
    assert!(o.status.success(), "{}", output_text(&o));
    let ctx = context(&[
        ("base.Dockerfile", &format!("FROM {}/base/busybox\nRUN echo base > /base.txt\n", reg.addr)),
        (
            "app.Dockerfile",
            "FROM baseapp\nCOPY --from=src hello.txt /hello.txt\nCOPY --from=tools /tool.txt /tool.txt\nRUN cat /base.txt /hello.txt > /both.txt\n",
        ),
        ("src/hello.txt", "hello from src\n"),
        (
            "docker-bake.hcl",
            &format!(
                "target \"base\" {{\n  dockerfile = \"base.Dockerfile\"\n}}\ntarget \"app\" {{\n  dockerfile = \"app.Dockerfile\"\n  contexts = {{\n    baseapp = \"target:base\"\n    src = \"./src\"\n    tools = \"docker-image://{r}/tools:1\"\n  }}\n  tags = [\"{r}/app:1\"]\n}}\n",
                r = reg.addr
            ),
        ),
    ]);
    // --print: the contexts as written, and base brought into the run.
    let printed: serde_json::Value =
        serde_json::from_slice(&bake(ctx.path(), &["app", "--print"], &[]).stdout).unwrap();
    assert_eq!(
        printed["target"]["app"]["contexts"],
        serde_json::json!({
            "baseapp": "target:base",
            "src": "./src",
            "tools": format!("docker-image://{}/tools:1", reg.addr)
        })
    );
    assert_eq!(printed["target"]["base"]["dockerfile"], "base.Dockerfile");
    assert_eq!(
        printed["group"]["default"]["targets"],
        serde_json::json!(["app"])
    );
    let report = ctx.path().join("report.json");
    let text = ok(&bake(
        ctx.path(),
        &[
            "app",
            "--push",
            "--report",
            report.to_str().unwrap(),
            "--",
            "--insecure-registry",
            &reg.addr,
        ],
        &[],
    ));
    let work = tempfile::tempdir().unwrap();
    let root = unpack(&format!("docker://{}/app:1", reg.addr), work.path());
    assert_eq!(
        std::fs::read_to_string(root.join("both.txt")).unwrap(),
        "base\nhello from src\n",
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("tool.txt")).unwrap(),
        "a tool\n"
    );
    // base, brought in by app's context, was built first.
    let r = json_file(&report);
    let t = |name: &str| {
        r["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {r}"))
            .clone()
    };
    assert!(
        t("app")["started_s"].as_f64() >= t("base")["finished_s"].as_f64(),
        "{r}"
    );
}
