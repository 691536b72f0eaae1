//! GitLab-native output: collapsible log sections in GitLab CI, the dotenv
//! report for later jobs, and the JSON build report.

mod support;

use support::*;

#[test]
fn sections_dotenv_and_the_json_report() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox\nCOPY f /f\nRUN echo from-the-step > /g\nENV A=1\n",
                reg.addr
            ),
        ),
        ("f", "x"),
    ]);
    let out_dir = tempfile::tempdir().unwrap();
    let dotenv = out_dir.path().join("build.env");
    let report = out_dir.path().join("report.json");
    let dest = format!("{}/app/img:1", reg.addr);
    let out = run(kiln()
        .args(["build", "--insecure-registry", &reg.addr, "--context"])
        .arg(ctx.path())
        .args(["--destination", &dest, "--dotenv"])
        .arg(&dotenv)
        .arg("--report")
        .arg(&report)
        .env("GITLAB_CI", "true"));
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // A stage section (open) holding the steps, and a collapsed one for the RUN.
    assert!(
        log.contains("section_start:") && log.contains(":kiln_stage_0\r"),
        "{log:?}"
    );
    assert!(
        log.contains("[collapsed=true]\r\x1b[0K[stage-0 3/4] RUN echo"),
        "{log:?}"
    );
    assert_eq!(
        log.matches("section_start:").count(),
        log.matches("section_end:").count(),
        "{log:?}"
    );
    let env = std::fs::read_to_string(&dotenv).unwrap();
    assert_eq!(
        env,
        format!(
            "KILN_IMAGE={dest}\nKILN_IMAGE_DIGEST={digest}\nKILN_IMAGE_REF={}/app/img@{digest}\n",
            reg.addr
        )
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["digest"], digest.as_str());
    assert_eq!(
        r["bases"][0]["name"],
        format!("{}/base/busybox:latest", reg.addr)
    );
    // The build's steps (the output lines, such as the push, follow them).
    let steps: Vec<&serde_json::Value> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"].as_str().unwrap().starts_with("stage-"))
        .collect();
    assert!(
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["step"] == "push"),
        "{r}"
    );
    let results: Vec<&str> = steps
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, vec!["", "BUILT", "BUILT", ""], "{r}");
    // The report's layers are the pushed image's last two layers.
    let raw = check(
        std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{dest}")),
    );
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let layers: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(steps[1]["layer"]["digest"], layers[1]);
    assert_eq!(steps[2]["layer"]["digest"], layers[2]);
    assert!(r["bytes_up"].as_u64().unwrap() > 0);
}
