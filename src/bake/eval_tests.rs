//! The resolved definitions buildx documents for its bake reference's
//! examples, and kiln's refusals.

use super::*;
use serde_json::json;

fn inputs(
    files: &[(&str, &str)],
    env: &[(&str, &str)],
    requested: &[&str],
    sets: &[&str],
) -> Inputs {
    Inputs {
        files: files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        local_platform: "linux/amd64".into(),
        requested: requested.iter().map(|s| s.to_string()).collect(),
        overrides: sets.iter().map(|s| s.to_string()).collect(),
    }
}

fn print(files: &[(&str, &str)], env: &[(&str, &str)], requested: &[&str]) -> serde_json::Value {
    resolve(&inputs(files, env, requested, &[]))
        .unwrap_or_else(|e| panic!("{e}"))
        .to_json()
}

fn err(files: &[(&str, &str)], requested: &[&str], sets: &[&str]) -> String {
    resolve(&inputs(files, &[], requested, sets)).unwrap_err()
}

const INHERITS: &str = r#"
target "app-dev" {
  args = {
    GO_VERSION = "1.20"
    BUILDX_EXPERIMENTAL = 1
  }
  tags = ["docker.io/username/myapp"]
  dockerfile = "app.Dockerfile"
  labels = {
    "org.opencontainers.image.source" = "https://github.com/username/myapp"
  }
}

target "_release" {
  args = {
    BUILDKIT_CONTEXT_KEEP_GIT_DIR = 1
    BUILDX_EXPERIMENTAL = 0
  }
}

target "app-release" {
  inherits = ["app-dev", "_release"]
  platforms = ["linux/amd64", "linux/arm64"]
}
"#;

#[test]
fn inherits_as_the_bake_reference_prints_it() {
    assert_eq!(
        print(&[("docker-bake.hcl", INHERITS)], &[], &["app-release"]),
        json!({
          "group": { "default": { "targets": ["app-release"] } },
          "target": {
            "app-release": {
              "context": ".",
              "dockerfile": "app.Dockerfile",
              "args": {
                "BUILDKIT_CONTEXT_KEEP_GIT_DIR": "1",
                "BUILDX_EXPERIMENTAL": "0",
                "GO_VERSION": "1.20"
              },
              "labels": { "org.opencontainers.image.source": "https://github.com/username/myapp" },
              "tags": ["docker.io/username/myapp"],
              "platforms": ["linux/amd64", "linux/arm64"]
            }
          }
        })
    );
}

#[test]
fn variables_take_the_environment_and_functions_compute() {
    let file = r#"
variable "TAG" { default = "latest" }
function "increment" {
  params = [number]
  result = number + 1
}
group "default" { targets = ["webapp"] }
target "webapp" {
  tags = ["docker.io/username/webapp:${TAG}", notequal("", TAG) ? "x:${TAG}" : ""]
  args = { buildno = "${increment(123)}", sum = "${add(1, 2)}" }
}
"#;
    let p = print(&[("docker-bake.hcl", file)], &[], &[]);
    assert_eq!(
        p["target"]["webapp"],
        json!({
          "context": ".",
          "dockerfile": "Dockerfile",
          "args": { "buildno": "124", "sum": "3" },
          "tags": ["docker.io/username/webapp:latest", "x:latest"]
        })
    );
    assert_eq!(p["group"]["default"], json!({ "targets": ["webapp"] }));
    let p = print(
        &[("docker-bake.hcl", file)],
        &[("TAG", "985e9e9")],
        &["webapp"],
    );
    assert_eq!(
        p["target"]["webapp"]["tags"][0],
        "docker.io/username/webapp:985e9e9"
    );
    let p = print(&[("docker-bake.hcl", file)], &[("TAG", "")], &["webapp"]);
    assert_eq!(
        p["target"]["webapp"]["tags"],
        json!(["docker.io/username/webapp:"])
    );
}

#[test]
fn a_matrix_forks_targets_named_by_name() {
    let file = r#"
target "app" {
  name = "app-${tgt}-${replace(version, ".", "-")}"
  matrix = {
    tgt = ["foo", "bar"]
    version = ["1.0", "2.0"]
  }
  target = tgt
  args = { VERSION = version }
}
"#;
    let p = print(&[("docker-bake.hcl", file)], &[], &["app"]);
    assert_eq!(
        p["group"]["app"]["targets"],
        json!(["app-foo-1-0", "app-foo-2-0", "app-bar-1-0", "app-bar-2-0"])
    );
    assert_eq!(p["group"]["default"]["targets"], json!(["app"]));
    assert_eq!(
        p["target"]["app-bar-2-0"],
        json!({ "context": ".", "dockerfile": "Dockerfile", "args": { "VERSION": "2.0" }, "target": "bar" })
    );
    let maps = r#"
target "app" {
  name = "app-${item.tgt}"
  matrix = { item = [{ tgt = "foo", version = "1.0" }, { tgt = "bar", version = "2.0" }] }
  target = item.tgt
  args = { VERSION = item.version }
}
"#;
    let p = print(&[("docker-bake.hcl", maps)], &[], &["app"]);
    assert_eq!(p["target"]["app-foo"]["args"]["VERSION"], "1.0");
    assert!(err(
        &[("b.hcl", "target \"a\" {\n matrix = { x = [1, 2] }\n}\n")],
        &["a"],
        &[]
    )
    .contains("b.hcl:1: target \"a\": a matrix of 2 targets needs name"));
}

#[test]
fn override_files_merge_as_buildx_merges_them() {
    let base = r#"
target "webapp" {
  tags = ["bar"]
  labels = { "com.example.foo" = "foo", "com.example.name" = "Alice" }
}
"#;
    let over = r#"
target "webapp" {
  tags = ["foo"]
  labels = { "com.example.bar" = "bar", "com.example.name" = "Bob" }
}
"#;
    let p = print(
        &[
            ("docker-bake.hcl", base),
            ("docker-bake.override.hcl", over),
        ],
        &[],
        &["webapp"],
    );
    assert_eq!(
        p["target"]["webapp"],
        json!({
          "context": ".",
          "dockerfile": "Dockerfile",
          "labels": { "com.example.foo": "foo", "com.example.bar": "bar", "com.example.name": "Bob" },
          "tags": ["foo"]
        })
    );
}

#[test]
fn groups_win_over_targets_and_nest() {
    let file = r#"
target "default" { dockerfile-inline = "FROM ubuntu" }
group "default" { targets = ["alpine", "both"] }
group "both" { targets = ["debian", "alpine"] }
target "alpine" { dockerfile-inline = "FROM alpine" }
target "debian" { dockerfile-inline = "FROM debian" }
"#;
    let d = resolve(&inputs(&[("docker-bake.hcl", file)], &[], &[], &[])).unwrap();
    let names: Vec<&str> = d.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alpine", "debian"]);
    assert_eq!(d.groups["default"], ["alpine", "both"]);
    assert_eq!(d.groups["both"], ["debian", "alpine"]);
}

#[test]
fn json_files_interpolate_like_hcl() {
    let file = r#"{
  "variable": { "TAG": { "default": "latest" } },
  "group": { "default": { "targets": ["webapp"] } },
  "target": { "webapp": { "dockerfile": "Dockerfile", "tags": ["docker.io/username/webapp:${TAG}"] } }
}"#;
    let p = print(&[("docker-bake.json", file)], &[("TAG", "v1")], &[]);
    assert_eq!(
        p["target"]["webapp"]["tags"],
        json!(["docker.io/username/webapp:v1"])
    );
}

#[test]
fn set_overrides_and_structured_options() {
    let file = r#"
target "app" {
  cache-from = ["user/app:cache", "type=local,src=path/to/cache"]
  cache-to = [{ type = "registry", ref = "user/app:cache", mode = "max" }]
  output = ["type=registry"]
  secret = ["id=aws,src=/home/u/.aws/credentials"]
  ssh = ["default"]
  no-cache = 1
}
target "db" {}
"#;
    let d = resolve(&inputs(
        &[("docker-bake.hcl", file)],
        &[],
        &["app", "db"],
        &[
            "*.args.V=2",
            "app.tags=r/app:1",
            "app.tags=r/app:2",
            "db.platform=linux/arm64",
        ],
    ))
    .unwrap();
    let p = d.to_json();
    assert_eq!(
        p["target"]["app"]["cache-from"],
        json!([{ "type": "registry", "ref": "user/app:cache" }, { "type": "local", "src": "path/to/cache" }])
    );
    assert_eq!(
        p["target"]["app"]["cache-to"],
        json!([{ "type": "registry", "ref": "user/app:cache", "mode": "max" }])
    );
    assert_eq!(
        p["target"]["app"]["output"],
        json!([{ "type": "registry" }])
    );
    assert_eq!(p["target"]["app"]["ssh"], json!([{ "id": "default" }]));
    assert_eq!(p["target"]["app"]["no-cache"], json!(true));
    assert_eq!(p["target"]["app"]["tags"], json!(["r/app:1", "r/app:2"]));
    assert_eq!(p["target"]["db"]["args"], json!({ "V": "2" }));
    assert_eq!(p["target"]["db"]["platforms"], json!(["linux/arm64"]));
    assert!(err(&[("b.hcl", file)], &["db"], &["nope.tags=x"])
        .contains("no target being built matches"));
}

#[test]
fn what_kiln_cannot_honour_is_named_with_file_and_line() {
    let e = err(
        &[(
            "docker-bake.hcl",
            "target \"a\" {\n  tags = [\"x\"]\n  network = \"host\"\n}\n",
        )],
        &["a"],
        &[],
    );
    assert!(
        e.starts_with("docker-bake.hcl:3: target \"a\": kiln does not honour network"),
        "{e}"
    );
    let e = err(
        &[("docker-bake.hcl", "target \"a\" {\n  colour = \"red\"\n}\n")],
        &["a"],
        &[],
    );
    assert!(
        e.contains("docker-bake.hcl:2: target \"a\": unknown key \"colour\""),
        "{e}"
    );
    let e = err(
        &[("docker-bake.hcl", "target \"a\" {\n  tags = [BASE]\n}\n")],
        &["a"],
        &[],
    );
    assert!(e.starts_with("docker-bake.hcl:2:"), "{e}");
    assert!(e.contains("BASE"), "{e}");
    let e = err(&[("docker-bake.hcl", "target \"a\" {}\n")], &["b"], &[]);
    assert!(
        e.contains("no target or group named \"b\" (defined: a)"),
        "{e}"
    );
    let e = err(
        &[("docker-bake.hcl", "target \"a\" { inherits = [\"a\"] }\n")],
        &["a"],
        &[],
    );
    assert!(e.contains("inherits from itself"), "{e}");
    let e = err(
        &[("docker-bake.hcl", "target \"a\" { tags = [uuidv4()] }\n")],
        &["a"],
        &[],
    );
    assert!(e.contains("uuidv4"), "{e}");
}

#[test]
fn variables_refer_to_each_other_in_any_order_and_validate() {
    let file = r#"
variable "IMAGE" { default = "${REGISTRY}/app" }
variable "REGISTRY" { default = "registry.example.com" }
variable "PUSH" { default = false }
variable "VERSION" {
  default = "1.0"
  validation {
    condition = VERSION != ""
    error_message = "VERSION must not be empty"
  }
}
target "app" {
  tags = ["${IMAGE}:${VERSION}"]
  args = { PUSH = PUSH }
}
"#;
    let p = print(
        &[("b.hcl", file)],
        &[("PUSH", "true"), ("REGISTRY", "r.local")],
        &["app"],
    );
    assert_eq!(p["target"]["app"]["tags"], json!(["r.local/app:1.0"]));
    assert_eq!(p["target"]["app"]["args"]["PUSH"], "true");
    let e = resolve(&inputs(
        &[("b.hcl", file)],
        &[("PUSH", "maybe")],
        &["app"],
        &[],
    ))
    .unwrap_err();
    assert!(e.contains("variable PUSH is a bool"), "{e}");
    let e = resolve(&inputs(
        &[("b.hcl", file)],
        &[("VERSION", "")],
        &["app"],
        &[],
    ))
    .unwrap_err();
    assert!(e.contains("VERSION must not be empty"), "{e}");
    let cycle = "variable \"A\" { default = B }\nvariable \"B\" { default = A }\ntarget \"t\" {}\n";
    assert!(resolve(&inputs(&[("c.hcl", cycle)], &[], &["t"], &[])).is_err());
}

#[test]
fn a_target_context_brings_its_target_into_the_run_and_cycles_are_refused() {
    let file = r#"
target "base" { dockerfile = "base.Dockerfile" }
target "app" { contexts = { baseapp = "target:base", src = "../src" } }
"#;
    let d = resolve(&inputs(&[("b.hcl", file)], &[], &["app"], &[])).unwrap();
    let names: Vec<&str> = d.targets.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["app", "base"]);
    assert_eq!(d.targets[0].needs().collect::<Vec<_>>(), ["base"]);
    let cycle = r#"
target "a" { contexts = { x = "target:b" } }
target "b" { contexts = { y = "target:a" } }
"#;
    let e = resolve(&inputs(&[("c.hcl", cycle)], &[], &["a"], &[])).unwrap_err();
    assert!(e.contains("cycle: a → b → a"), "{e}");
}

#[test]
fn a_set_on_a_parent_reaches_the_targets_that_inherit_it() {
    let file = r#"
target "_common" { args = { A = "1" } }
target "app" {
  inherits = ["_common"]
  tags = ["r/app"]
}
"#;
    let d = resolve(&inputs(
        &[("b.hcl", file)],
        &[],
        &["app"],
        &["_common.args.A=2", "_common.tags=r/common"],
    ))
    .unwrap();
    assert_eq!(d.targets[0].args["A"], "2");
    // The child's own tags still win over what it inherits.
    assert_eq!(d.targets[0].tags, Some(vec!["r/app".to_string()]));
}
