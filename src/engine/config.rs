//! Metadata instructions applied to an image config, in the manner of
//! go-containerregistry's `mutate`: pure functions of the config, the instruction
//! and the variables in scope. Nothing here does I/O; the engine records the
//! history entry and puts the Dockerfile line on errors.

use crate::dockerfile::parse::{Command, Form, HealthcheckArgs, KeyValue};
use crate::dockerfile::{Lexer, Vars};
use crate::image::config::Healthcheck;
use crate::image::ImageConfig;
use std::collections::BTreeMap;

/// Parse a Go-style duration ("30s", "1m30s", "500ms") into nanoseconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0);
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as u64)
}

/// What a metadata instruction sees besides the config.
pub struct Scope<'a> {
    pub lexer: &'a Lexer,
    /// The ARG and ENV values in scope.
    pub vars: &'a Vars,
    /// The stage set CMD before this instruction (an ENTRYPOINT keeps it then).
    pub cmd_set_before: bool,
}

fn word(scope: &Scope, s: &str) -> Result<String, String> {
    scope.lexer.word(s, scope.vars)
}

fn kv_pairs(scope: &Scope, kvs: &[KeyValue]) -> Result<Vec<(String, String)>, String> {
    kvs.iter()
        .map(|kv| {
            Ok((
                word(scope, &kv.key)?,
                word(scope, kv.value.as_deref().unwrap_or(""))?,
            ))
        })
        .collect()
}

/// The shell form runs through the SHELL in effect.
fn form_to_vec(shell: &[String], f: &Form) -> Vec<String> {
    match f {
        Form::Exec(v) => v.clone(),
        Form::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

fn healthcheck(h: &HealthcheckArgs) -> Result<Healthcheck, String> {
    let Some(cmd) = &h.cmd else {
        return Ok(Healthcheck {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
    };
    let dur = |name: &str, v: &Option<String>| -> Result<Option<u64>, String> {
        match v {
            None => Ok(None),
            Some(s) => parse_duration(s).map(Some).ok_or_else(|| {
                format!("HEALTHCHECK --{name}: invalid duration {s:?} (e.g. 30s, 1m30s)")
            }),
        }
    };
    let test = match cmd {
        Form::Exec(v) => {
            let mut t = vec!["CMD".to_string()];
            t.extend(v.iter().cloned());
            t
        }
        Form::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
    };
    Ok(Healthcheck {
        test: Some(test),
        interval: dur("interval", &h.interval)?,
        timeout: dur("timeout", &h.timeout)?,
        start_period: dur("start-period", &h.start_period)?,
        start_interval: dur("start-interval", &h.start_interval)?,
        retries: match &h.retries {
            None => None,
            Some(r) => Some(
                r.parse()
                    .map_err(|_| format!("HEALTHCHECK --retries: {r:?} is not a number"))?,
            ),
        },
    })
}

/// Apply a metadata instruction (anything but FROM, ARG, RUN, COPY and ADD) to
/// `image`; `shell` is the stage's SHELL, which a SHELL instruction replaces.
/// Returns the history entry's `created_by`, given the instruction's `text`.
pub fn apply(
    image: &mut ImageConfig,
    shell: &mut Vec<String>,
    command: &Command,
    text: &str,
    scope: &Scope,
) -> Result<String, String> {
    Ok(match command {
        Command::Env(kvs) => {
            let pairs = kv_pairs(scope, kvs)?;
            let mut set = Vec::new();
            for (k, v) in pairs {
                image.set_env(&k, &v);
                set.push(format!("{k}={v}"));
            }
            format!("ENV {}", set.join(" "))
        }
        Command::Label(kvs) => {
            let pairs = kv_pairs(scope, kvs)?;
            let labels = image.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &pairs {
                labels.insert(k.clone(), v.clone());
            }
            text.to_string()
        }
        Command::Workdir(p) => {
            let p = word(scope, p)?;
            let joined = if p.starts_with('/') {
                p
            } else {
                format!(
                    "{}/{}",
                    image.config.working_dir.as_deref().unwrap_or("/"),
                    p
                )
            };
            // Cleaned as Go's path.Clean does (BuildKit): `..` removes a component.
            let mut parts: Vec<&str> = Vec::new();
            for c in crate::fs::resolve::components(&joined) {
                if c == ".." {
                    parts.pop();
                } else {
                    parts.push(c);
                }
            }
            let clean = format!("/{}", parts.join("/"));
            image.config.working_dir = Some(clean.clone());
            format!("WORKDIR {clean}")
        }
        Command::User(u) => {
            let u = word(scope, u)?;
            if u.is_empty() {
                return Err("USER is empty after expansion".to_string());
            }
            image.config.user = Some(u.clone());
            format!("USER {u}")
        }
        Command::Expose(ports) => {
            let map = image.config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                for w in scope.lexer.words(p, scope.vars)? {
                    let (port, proto) = w.split_once('/').unwrap_or((&w, "tcp"));
                    let valid = port.split('-').all(|n| n.parse::<u16>().is_ok())
                        && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                    if !valid {
                        return Err(format!(
                            "EXPOSE: invalid port {w:?} (use PORT[/tcp|udp|sctp])"
                        ));
                    }
                    map.insert(
                        format!("{port}/{}", proto.to_ascii_lowercase()),
                        serde_json::json!({}),
                    );
                }
            }
            text.to_string()
        }
        Command::Volume(f) => {
            let paths = match f {
                Form::Exec(v) => v
                    .iter()
                    .map(|p| word(scope, p))
                    .collect::<Result<Vec<_>, String>>()?,
                Form::Shell(s) => scope.lexer.words(s, scope.vars)?,
            };
            let map = image.config.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                if p.is_empty() {
                    return Err("VOLUME: empty path".to_string());
                }
                map.insert(p, serde_json::json!({}));
            }
            text.to_string()
        }
        Command::StopSignal(s) => {
            let s = word(scope, s)?;
            let ok = s.parse::<u32>().is_ok()
                || s.to_ascii_uppercase().starts_with("SIG")
                || s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+');
            if !ok || s.is_empty() {
                return Err(format!("STOPSIGNAL: invalid signal {s:?}"));
            }
            image.config.stop_signal = Some(s);
            text.to_string()
        }
        Command::Healthcheck(h) => {
            let hc = healthcheck(h)?;
            image.config.healthcheck = Some(hc);
            text.to_string()
        }
        Command::Shell(v) => {
            image.config.shell = Some(v.clone());
            *shell = v.clone();
            text.to_string()
        }
        Command::Cmd(f) => {
            let v = form_to_vec(shell, f);
            image.config.cmd = Some(v);
            text.to_string()
        }
        Command::Entrypoint(f) => {
            let v = form_to_vec(shell, f);
            image.config.entrypoint = Some(v);
            // Docker: a new ENTRYPOINT drops a CMD inherited from the base.
            if !scope.cmd_set_before {
                image.config.cmd = None;
            }
            text.to_string()
        }
        Command::Onbuild(t) => {
            image
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(t.clone());
            text.to_string()
        }
        Command::Maintainer(m) => {
            image.author = Some(m.clone());
            text.to_string()
        }
        Command::From { .. }
        | Command::Arg(_)
        | Command::Run { .. }
        | Command::Copy(_)
        | Command::Add(_) => return Err("not a metadata instruction".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Some(500_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }
    use serde_json::json;

    /// Apply each line of `lines` (after `FROM scratch`) to a fresh config, as
    /// one stage would; the config's `config` and `author`, or the first error.
    fn run(lines: &[&str]) -> Result<(serde_json::Value, Vec<String>), String> {
        let text = format!("FROM scratch\n{}\n", lines.join("\n"));
        let df = crate::dockerfile::parse("Dockerfile", &text).map_err(|e| e.to_string())?;
        let mut vars = Vars::new();
        vars.insert("A".into(), "apple".into());
        vars.insert("EMPTY".into(), String::new());
        let lexer = Lexer::default();
        let mut image = ImageConfig::default();
        let mut shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        let mut history = Vec::new();
        for (i, ins) in df.instructions.iter().enumerate().skip(1) {
            let scope = Scope {
                lexer: &lexer,
                vars: &vars,
                cmd_set_before: df.instructions[..i]
                    .iter()
                    .any(|p| matches!(p.command, Command::Cmd(_))),
            };
            history.push(apply(
                &mut image,
                &mut shell,
                &ins.command,
                &ins.text,
                &scope,
            )?);
        }
        let mut v = serde_json::to_value(&image.config).map_err(|e| e.to_string())?;
        if let Some(a) = image.author {
            v["author"] = a.into();
        }
        Ok((v, history))
    }

    #[test]
    fn metadata_instructions_edit_the_config() {
        let cases: &[(&[&str], serde_json::Value)] = &[
            (
                &["ENV A=1 B=\"2 3\"", "ENV A=4"],
                json!({"Env": ["A=4", "B=2 3"]}),
            ),
            (&["ENV X $A"], json!({"Env": ["X=apple"]})),
            (
                &["LABEL a=b \"c d\"=\"e f\""],
                json!({"Labels": {"a": "b", "c d": "e f"}}),
            ),
            (
                &["WORKDIR /app", "WORKDIR sub/../x"],
                json!({"WorkingDir": "/app/x"}),
            ),
            (&["WORKDIR rel"], json!({"WorkingDir": "/rel"})),
            (
                &["WORKDIR /a/b", "WORKDIR ../../../c"],
                json!({"WorkingDir": "/c"}),
            ),
            (&["USER app:staff"], json!({"User": "app:staff"})),
            (
                &["EXPOSE 80 53/UDP 8000-8010/tcp"],
                json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000-8010/tcp": {}}}),
            ),
            (
                &["VOLUME [\"/data\"]", "VOLUME /a /b"],
                json!({"Volumes": {"/data": {}, "/a": {}, "/b": {}}}),
            ),
            (&["STOPSIGNAL SIGTERM"], json!({"StopSignal": "SIGTERM"})),
            (&["STOPSIGNAL 9"], json!({"StopSignal": "9"})),
            (
                &["HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/"],
                json!({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 30_000_000_000u64, "Retries": 3}}),
            ),
            (
                &["HEALTHCHECK NONE"],
                json!({"Healthcheck": {"Test": ["NONE"]}}),
            ),
            (
                &["SHELL [\"/bin/bash\", \"-c\"]", "CMD echo hi"],
                json!({"Shell": ["/bin/bash", "-c"], "Cmd": ["/bin/bash", "-c", "echo hi"]}),
            ),
            (
                &["CMD [\"a\"]", "ENTRYPOINT [\"/e\"]"],
                json!({"Cmd": ["a"], "Entrypoint": ["/e"]}),
            ),
            (&["ONBUILD RUN make"], json!({"OnBuild": ["RUN make"]})),
            (
                &["MAINTAINER me <me@example>"],
                json!({"author": "me <me@example>"}),
            ),
        ];
        for (lines, want) in cases {
            let (got, _) = run(lines).unwrap_or_else(|e| panic!("{lines:?}: {e}"));
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&got[k], v, "{lines:?}: {k} in {got}");
            }
        }
    }

    #[test]
    fn an_entrypoint_drops_the_base_cmd_unless_the_stage_set_one() {
        let mut image = ImageConfig::default();
        image.config.cmd = Some(vec!["from-base".into()]);
        let lexer = Lexer::default();
        let vars = Vars::new();
        let df = crate::dockerfile::parse("Dockerfile", "FROM x\nENTRYPOINT [\"/e\"]\n").unwrap();
        let scope = Scope {
            lexer: &lexer,
            vars: &vars,
            cmd_set_before: false,
        };
        let ins = &df.instructions[1];
        apply(&mut image, &mut vec![], &ins.command, &ins.text, &scope).unwrap();
        assert_eq!(image.config.cmd, None);
    }

    #[test]
    fn history_says_what_was_set_after_expansion() {
        let (_, h) = run(&["ENV X=$A", "WORKDIR /w", "USER $A", "LABEL k=v"]).unwrap();
        assert_eq!(h, ["ENV X=apple", "WORKDIR /w", "USER apple", "LABEL k=v"]);
    }

    #[test]
    fn bad_values_are_errors() {
        for (line, want) in [
            ("USER $EMPTY", "USER is empty after expansion"),
            ("EXPOSE 80/http", "EXPOSE: invalid port"),
            ("STOPSIGNAL bad sig", "STOPSIGNAL: invalid signal"),
            (
                "HEALTHCHECK --interval=soon CMD true",
                "HEALTHCHECK --interval: invalid duration",
            ),
            (
                "HEALTHCHECK --retries=many CMD true",
                "HEALTHCHECK --retries",
            ),
            ("LABEL a=${A", "missing '}'"),
        ] {
            let e = run(&[line]).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }
}
