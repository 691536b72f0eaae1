//! What `kiln bake` says and writes when it is done: the summary lines,
//! buildx's `--metadata-file`, the `--dotenv` variables and the `--report`
//! JSON. Pure text from the bake's outcome.

use crate::engine::bake::BakeOutcome;
use serde_json::json;
use std::collections::BTreeMap;

/// One line per target, then the steps targets shared (grouped).
pub fn lines(out: &BakeOutcome) -> Vec<String> {
    let mut lines = vec![];
    for t in &out.targets {
        lines.push(match &t.outcome {
            Ok(o) if !t.tagged.is_empty() => {
                format!("{}: {} tagged {}", t.name, o.digest, t.tagged.join(", "))
            }
            Ok(o) if out.held_back => format!(
                "{}: {} (not tagged: another target failed)",
                t.name, o.digest
            ),
            Ok(o) => format!("{}: {}", t.name, o.digest),
            Err(e) => format!("{}: failed: {}", t.name, crate::clip::clip(e)),
        });
    }
    let mut shared: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (who, by, step) in &out.shared {
        let step = step
            .strip_prefix(who.as_str())
            .map_or(step.as_str(), str::trim_start);
        shared.entry((who, by)).or_default().push(step);
    }
    for ((who, by), steps) in shared {
        lines.push(format!(
            "{who}: {} step(s) built once, by {by}: {}",
            steps.len(),
            steps.join(", ")
        ));
    }
    lines
}

/// buildx's metadata file: per target, `containerimage.digest` and `image.name`.
pub fn metadata(out: &BakeOutcome, tags: &BTreeMap<String, Vec<String>>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for t in &out.targets {
        if let Ok(o) = &t.outcome {
            let names = tags.get(&t.name).cloned().unwrap_or_default().join(",");
            m.insert(
                t.name.clone(),
                json!({ "containerimage.digest": o.digest, "image.name": names }),
            );
        }
    }
    serde_json::Value::Object(m)
}

/// `KILN_BAKE_<TARGET>_DIGEST`, `_IMAGE` (the first tag) and `_REF`
/// (`name@digest`) for each target that was built.
pub fn dotenv(out: &BakeOutcome, tags: &BTreeMap<String, Vec<String>>) -> String {
    let mut text = String::new();
    for t in &out.targets {
        let Ok(o) = &t.outcome else { continue };
        let v = crate::engine::env_name(&t.name);
        text.push_str(&format!("KILN_BAKE_{v}_DIGEST={}\n", o.digest));
        if let Some(first) = tags.get(&t.name).and_then(|t| t.first()) {
            let name = crate::image::Reference::parse(first)
                .map(|r| r.name())
                .unwrap_or_else(|_| first.clone());
            text.push_str(&format!("KILN_BAKE_{v}_IMAGE={first}\n"));
            text.push_str(&format!("KILN_BAKE_{v}_REF={name}@{}\n", o.digest));
        }
    }
    text
}

fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The JSON report: each target's result with when it started and finished
/// (seconds since the bake began), and the steps shared.
pub fn report(out: &BakeOutcome) -> serde_json::Value {
    let targets: Vec<serde_json::Value> = out
        .targets
        .iter()
        .map(|t| match &t.outcome {
            Ok(o) => json!({
                "name": t.name, "ok": true, "digest": o.digest, "size": o.size,
                "layers": o.layers, "tagged": t.tagged,
                "started_s": secs(t.started), "finished_s": secs(t.finished),
            }),
            Err(e) => json!({
                "name": t.name, "ok": false, "error": e,
                "started_s": secs(t.started), "finished_s": secs(t.finished),
            }),
        })
        .collect();
    let shared: Vec<serde_json::Value> = out
        .shared
        .iter()
        .map(|(who, by, step)| json!({ "target": who, "built_by": by, "step": step }))
        .collect();
    json!({ "targets": targets, "shared": shared, "tags_held_back": out.held_back })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::bake::TargetResult;
    use crate::engine::Outcome;

    fn outcome() -> BakeOutcome {
        BakeOutcome {
            targets: vec![
                TargetResult {
                    name: "app-debug".into(),
                    outcome: Ok(Outcome {
                        digest: "sha256:aa".into(),
                        size: 1,
                        layers: 1,
                        pushed: vec![],
                    }),
                    tagged: vec![],
                    started: Default::default(),
                    finished: Default::default(),
                },
                TargetResult {
                    name: "worker".into(),
                    outcome: Err("RUN false: exit 1".into()),
                    tagged: vec![],
                    started: Default::default(),
                    finished: Default::default(),
                },
            ],
            shared: vec![
                (
                    "worker".into(),
                    "app-debug".into(),
                    "worker base 1/2".into(),
                ),
                (
                    "worker".into(),
                    "app-debug".into(),
                    "worker base 2/2".into(),
                ),
            ],
            held_back: true,
        }
    }

    #[test]
    fn summary_names_each_target_and_what_was_shared() {
        let l = lines(&outcome());
        assert_eq!(
            l[0],
            "app-debug: sha256:aa (not tagged: another target failed)"
        );
        assert!(l[1].starts_with("worker: failed: RUN false"));
        assert_eq!(
            l[2],
            "worker: 2 step(s) built once, by app-debug: base 1/2, base 2/2"
        );
        let tags: BTreeMap<String, Vec<String>> = [(
            "app-debug".to_string(),
            vec!["r.local/app:debug".to_string()],
        )]
        .into();
        assert_eq!(
            dotenv(&outcome(), &tags),
            "KILN_BAKE_APP_DEBUG_DIGEST=sha256:aa\nKILN_BAKE_APP_DEBUG_IMAGE=r.local/app:debug\nKILN_BAKE_APP_DEBUG_REF=r.local/app@sha256:aa\n"
        );
        assert_eq!(
            metadata(&outcome(), &tags)["app-debug"]["containerimage.digest"],
            "sha256:aa"
        );
        assert_eq!(report(&outcome())["targets"][1]["ok"], false);
    }
}
