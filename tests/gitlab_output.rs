//! GitLab-native output: collapsible log sections in GitLab CI, the dotenv
//! report for later jobs, and the JSON build report.

mod support;

use std::process::Command;
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

/// kiln's output for a build that pulls a base, runs a step and pushes, on a
/// terminal (a pty from util-linux `script`) or not.
fn progress_output(tty: bool) -> String {
    let reg = Registry::start();
    push_busybox_base(&reg, "base");
    let ctx = context(&[(
        "Dockerfile",
        &format!("FROM {}/base\nCOPY big /big\nRUN test -s /big\n", reg.addr),
    )]);
    // Random bytes, so the layer stays big compressed and the push takes a while.
    let mut big = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in big.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(ctx.path().join("big"), &big).expect("write");
    let home = tempfile::tempdir().expect("home");
    let args = format!(
        "{} build --insecure-registry {} --context {} --destination {}/app:1",
        env!("CARGO_BIN_EXE_kiln"),
        reg.addr,
        ctx.path().display(),
        reg.addr
    );
    let mut c = if tty {
        let mut c = Command::new("script");
        c.args(["-q", "-e", "-c", &args, "/dev/null"])
            .env("TERM", "xterm");
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &args]);
        c
    };
    let out = run(c
        .env("HOME", home.path())
        .env_remove("GITLAB_CI")
        .env_remove("CI")
        .env_remove("SOURCE_DATE_EPOCH"));
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn progress_bars_on_a_terminal_and_plain_timed_lines_elsewhere() {
    let tty = progress_output(true);
    assert!(tty.contains("pulling layers"), "no download bar:\n{tty}");
    assert!(tty.contains("pushing 127.0.0.1:"), "no upload bar:\n{tty}");
    assert!(tty.contains("MiB"), "no byte counts:\n{tty}");
    let plain = progress_output(false);
    for line in [
        "[stage-0 2/3] COPY big /big",
        "[push] 127.0.0.1:",
        "built sha256:",
    ] {
        assert!(plain.contains(line), "no {line:?} line:\n{plain}");
    }
    assert!(
        !plain.contains("pulling layers") && !plain.contains("pushing 127.0.0.1"),
        "{plain}"
    );
    assert!(
        !plain.contains('\u{1b}') && !plain.contains('\r'),
        "control characters in a log:\n{plain:?}"
    );
}

/// `--log-format=json`: every line on stderr is one JSON object (jq reads them
/// one by one) with `time`, `level`, `event` and `msg`; a build's events are
/// the pull, each step's start and end (cache result, time, layer), the RUN's
/// output, the push and the result; a failure ends with an `error` event.
#[test]
fn json_logs_are_one_object_per_event() {
    let reg = Registry::start();
    push_busybox_base(&reg, "base/busybox");
    let ctx = context(&[
        (
            "Dockerfile",
            &format!(
                "FROM {}/base/busybox\nCOPY f /f\nRUN echo from-the-step\nENV A=1\n",
                reg.addr
            ),
        ),
        ("f", "x"),
    ]);
    let dest = format!("{}/json/app:1", reg.addr);
    let build = |extra: &[&str]| {
        run(kiln()
            .args([
                "build",
                "--log-format=json",
                "--insecure-registry",
                &reg.addr,
            ])
            .args(["--destination", &dest, "--context"])
            .arg(ctx.path())
            .args(extra))
    };
    let out = build(&[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let events = parse_with_jq(&err);
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["event"] == kind).collect()
    };
    for e in &events {
        for k in ["time", "level", "event", "msg"] {
            assert!(e.get(k).is_some(), "{k} missing in {e}");
        }
    }
    assert_eq!(
        of("pull")[0]["image"],
        format!("{}/base/busybox:latest", reg.addr)
    );
    let copy = of("step")
        .into_iter()
        .find(|e| e["instruction"] == "COPY f /f")
        .expect("the COPY's step event");
    assert_eq!(copy["result"], "BUILT");
    assert!(copy["layer"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(copy["seconds"].is_number());
    assert!(of("step_start")
        .iter()
        .any(|e| e["instruction"] == "COPY f /f"));
    if is_root() {
        assert!(
            of("run_output").iter().any(|e| e["msg"] == "from-the-step"),
            "{err}"
        );
    }
    assert_eq!(of("push")[0]["destination"], dest);
    assert!(of("built")[0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // A second build: the COPY is CACHED, and said so.
    let out = build(&[
        "--cache",
        "--cache-dir",
        ctx.path().join(".c").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let out = build(&[
        "--cache",
        "--cache-dir",
        ctx.path().join(".c").to_str().unwrap(),
    ]);
    let events = parse_with_jq(&String::from_utf8_lossy(&out.stderr));
    assert!(events
        .iter()
        .any(|e| e["event"] == "step" && e["result"] == "CACHED"));
    // A failing build: its last line is the error, as JSON.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing /m\n",
    )
    .unwrap();
    let out = build(&[]);
    assert!(!out.status.success());
    let events = parse_with_jq(&String::from_utf8_lossy(&out.stderr));
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("Dockerfile:2"),
        "{last}"
    );
}

/// Each line of `text` through `jq -c .` on its own: every one must be a JSON
/// object.
fn parse_with_jq(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| {
            let mut jq = Command::new("jq")
                .args(["-c", "."])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("jq must be installed");
            std::io::Write::write_all(&mut jq.stdin.take().unwrap(), line.as_bytes()).unwrap();
            let out = jq.wait_with_output().unwrap();
            assert!(out.status.success(), "jq refused the line: {line}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert!(v.is_object(), "{line}");
            v
        })
        .collect()
}
