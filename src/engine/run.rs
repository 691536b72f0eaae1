//! What a RUN step needs before `exec` takes over: the isolation mode, the
//! environment, the user and groups from the image, and the snapshot that turns
//! the step's changes into a layer.
//!
//! It owns what a step sees (and, for the credentials of the job, what it never
//! sees). Running the process is `exec`'s job; the layer is the snapshot's.

use super::mounts::{Kind, MountSpec};
use super::plan::Plan;
use super::session::Session;
use super::stage::{SourceKey, Stage};
use crate::dockerfile::parse::{Flag, Form, Heredoc, Instruction};
use crate::layer::BuiltLayer;
use anyhow::{anyhow, Result};
use std::time::Instant;

/// Where a `#!` here-document's script is for its step (removed afterwards,
/// like every mount).
pub const HEREDOC_SCRIPT: &str = "/.kiln-heredoc-script";

/// A RUN as planned: its command line and what it runs with, from the stage
/// state at its position.
pub struct RunPrep {
    /// `--network=none`.
    pub network_none: bool,
    /// `--mount`s, parsed and expanded.
    pub mounts: Vec<MountSpec>,
    /// The stage or image each mount's `from` names (set by the engine).
    pub mount_from: Vec<Option<SourceKey>>,
    /// What the mounts add to the cache key (set by the engine).
    pub mount_keys: Vec<String>,
    /// A `#!` here-document, given to its interpreter as a file at
    /// [`HEREDOC_SCRIPT`].
    pub script: Option<String>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: String,
    pub workdir: String,
}

/// The isolation mode, chosen at the first RUN of the build.
#[derive(Default)]
pub struct Runner {
    mode: Option<crate::exec::Mode>,
}

impl Runner {
    /// The isolation mode, chosen (and reported) at the first RUN of the build.
    fn isolation_mode(
        &mut self,
        sess: &Session,
        plan: &Plan,
        line: usize,
    ) -> Result<crate::exec::Mode> {
        if let Some(m) = self.mode {
            return Ok(m);
        }
        let m = crate::exec::choose(sess.req.isolation).map_err(|e| plan.err(line, e))?;
        use crate::exec::{Isolation, Mode};
        let mut notes: Vec<String> = Vec::new();
        match (sess.req.isolation, m) {
            (Isolation::Auto, Mode::Chroot) => {
                notes.push("namespaces are not permitted here".into())
            }
            (Isolation::Auto, _) => notes.push("auto".into()),
            _ => {}
        }
        if m == Mode::Chroot {
            notes.push(match crate::exec::procfs::available() {
                Ok(()) => "/proc served by kiln".into(),
                Err(why) => format!("RUN has no /proc: {why}"),
            });
        }
        let why = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        match crate::exec::userns::inside() {
            Some(maps) => sess
                .report
                .line(&format!("RUN isolation: rootless ({maps}; {m} inside)")),
            None => sess.report.line(&format!("RUN isolation: {m}{why}")),
        }
        self.mode = Some(m);
        Ok(m)
    }
}

/// The environment of a RUN step: the image's ENV, the build args in scope,
/// default PATH, and proxy variables (HOME is added when the user is known).
/// Nothing else from kiln's environment, so CI_JOB_TOKEN and friends never
/// reach a step.
fn run_env(plan: &Plan, stage: &Stage) -> Vec<(String, String)> {
    let mut env = stage.config.env_pairs();
    let has = |env: &Vec<(String, String)>, k: &str| env.iter().any(|(e, _)| e == k);
    for (k, v) in &stage.args {
        if !has(&env, k) {
            env.push((k.clone(), v.clone()));
        }
    }
    if !has(&env, "PATH") {
        env.push(("PATH".into(), crate::image::config::DEFAULT_PATH.into()));
    }

    for k in [
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "ftp_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        "ALL_PROXY",
    ] {
        if has(&env, k) {
            continue;
        }
        if let Some(v) = plan.build_arg(k).or_else(|| std::env::var(k).ok()) {
            env.push((k.to_string(), v));
        }
    }
    env
}

/// USER as uid, gid, supplementary groups and home, resolved in the rootfs.
fn run_user(
    plan: &Plan,
    line: usize,
    stage: &Stage,
    spec: &str,
) -> Result<(u32, u32, Vec<u32>, String)> {
    let rootfs = stage
        .rootfs
        .as_ref()
        .ok_or_else(|| anyhow!("rootfs missing"))?;
    let spec = spec.to_string();
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (spec.clone(), None),
    };
    let entry = rootfs.passwd_entry(&user);
    let (name, uid, primary, home) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => e,
        (None, Ok(uid)) => (String::new(), uid, 0, "/".to_string()),
        (None, Err(_)) => {
            return Err(plan.err(
                line,
                format!("USER {user}: no such user in the image's /etc/passwd"),
            ))
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => rootfs.lookup_group(&g).ok_or_else(|| {
                plan.err(
                    line,
                    format!("USER {spec}: no such group {g:?} in the image's /etc/group"),
                )
            })?,
        },
    };
    let mut groups = if name.is_empty() {
        vec![]
    } else {
        rootfs.supplementary_groups(&name)
    };
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    let home = if home.is_empty() { "/".into() } else { home };
    Ok((uid, gid, groups, home))
}

/// Plan a RUN: its command line and environment at this point.
pub fn prepare(
    plan: &Plan,
    stage: &Stage,
    ins: &Instruction,
    cmd: &Form,
    heredocs: &[Heredoc],
    flags: &[Flag],
) -> Result<RunPrep> {
    let line = ins.line;
    let mut network_none = false;
    let mut mounts: Vec<MountSpec> = Vec::new();
    let (vars, workdir) = (stage.vars(), stage.workdir());
    for f in flags {
        match (f.name.as_str(), f.value.as_deref()) {
            ("mount", v) => {
                let v = v.unwrap_or("");
                let ssh = mounts
                    .iter()
                    .filter(|m| matches!(m.kind, Kind::Ssh { .. }))
                    .count();
                let m = super::mounts::parse(v, &workdir, ssh, &|s| plan.lexer.word(s, &vars))
                    .map_err(|e| plan.err(line, format!("RUN --mount={v}: {e}")))?;
                mounts.push(m);
            }
            ("network", Some("default" | "host")) => network_none = false,
            ("network", Some("none")) => network_none = true,
            ("network", v) => {
                return Err(plan.err(
                    line,
                    format!("RUN --network={}: use default, host or none", v.unwrap_or("")),
                ))
            }
            ("security", Some("sandbox")) => {}
            ("security", Some("insecure")) => {
                return Err(plan.err(
                    line,
                    "RUN --security=insecure is refused: kiln never gives a step more than Docker's default capabilities (that takes a privileged runner, the thing kiln exists to avoid)",
                ))
            }
            ("security", v) => {
                return Err(plan.err(
                    line,
                    format!("RUN --security={}: use sandbox", v.unwrap_or("")),
                ))
            }
            (name, _) => {
                return Err(plan.err(
                    line,
                    format!("RUN --{name}: unknown flag (RUN takes --mount, --network and --security)"),
                ))
            }
        }
    }
    let mut script = None;
    let argv = match cmd {
        Form::Exec(v) if v.is_empty() => return Err(plan.err(line, "RUN [] is an empty command")),
        Form::Exec(v) => v.clone(),
        Form::Shell(s)
            if heredocs.len() == 1
                && heredocs[0].content.starts_with("#!")
                && crate::dockerfile::heredoc::only_openers(s, plan.lexer.escape) =>
        {
            // `RUN <<EOF` whose body starts with `#!`: run with that
            // interpreter, the body as a script file (Docker's documented rule).
            let content = &heredocs[0].content;
            let first = content.lines().next().unwrap_or("");
            let mut v: Vec<String> = first[2..].split_whitespace().map(str::to_string).collect();
            if v.is_empty() {
                return Err(plan.err(line, "RUN <<: the #! line names no interpreter"));
            }
            v.push(HEREDOC_SCRIPT.to_string());
            script = Some(content.clone());
            v
        }
        Form::Shell(s) => {
            let only_heredoc = heredocs.len() == 1
                && crate::dockerfile::heredoc::only_openers(s, plan.lexer.escape);
            let script = if only_heredoc {
                // `RUN <<EOF`: the heredoc is the script.
                heredocs[0].content.clone()
            } else {
                // `RUN cmd <<EOF`: let the shell read the heredoc as written.
                let mut t = s.clone();
                for h in heredocs {
                    t.push('\n');
                    t.push_str(&h.content);
                    t.push_str(&h.name);
                }
                t
            };
            let mut v = stage.shell.clone();
            v.push(script);
            v
        }
    };
    Ok(RunPrep {
        network_none,
        script,
        mount_from: vec![None; mounts.len()],
        mounts,
        mount_keys: vec![],
        argv,
        env: run_env(plan, stage),
        user: stage.user(),
        workdir: stage.workdir(),
    })
}

/// One RUN to perform: the instruction, its plan, its step label and the roots
/// of its mounts' `from` sources.
pub struct RunStep<'a> {
    pub ins: &'a Instruction,
    pub prep: &'a RunPrep,
    pub label: &'a str,
    pub roots: &'a [Option<std::path::PathBuf>],
}

impl Runner {
    /// Run a planned RUN in the stage's rootfs and snapshot its changes: the
    /// layer (None when nothing changed) and where the time went, for the step line.
    pub async fn perform(
        &mut self,
        sess: &Session<'_>,
        plan: &Plan,
        stage: &mut Stage,
        step: RunStep<'_>,
    ) -> Result<(Option<BuiltLayer>, String)> {
        let RunStep {
            ins,
            prep,
            label,
            roots,
        } = step;
        let line = ins.line;
        // A step of another architecture: the host's binfmt_misc handler, or a
        // clear error before anything runs.
        let target = stage.config.platform();
        use crate::exec::emulate::{self, Emulation};
        let emulation = emulate::plan(&target, sess.req.emulator_dir.as_deref())
            .map_err(|e| plan.err(line, e))?;
        let emulated = match &emulation {
            Emulation::Native => String::new(),
            e => {
                sess.report
                    .emulated(label, &target.to_string(), &e.describe());
                format!("{target} {}, ", e.describe())
            }
        };
        let emulator = match emulation {
            Emulation::Traced { arch, emulator } => Some((arch, emulator)),
            _ => None,
        };
        let mode = self.isolation_mode(sess, plan, line)?;
        let (mut mounts, secret_env) =
            super::mount_sources::resolve_mounts(sess, plan, line, &prep.mounts, roots)?;
        if let Some(script) = &prep.script {
            mounts.push(crate::exec::mounts::Mount {
                target: HEREDOC_SCRIPT.to_string(),
                source: crate::exec::mounts::Source::Secret {
                    data: script.clone().into_bytes(),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                },
            });
        }
        let t_rootfs = Instant::now();
        sess.materialize(stage).await?;
        let rootfs_time = t_rootfs.elapsed();
        let (uid, gid, groups, home) = run_user(plan, line, stage, &prep.user)?;
        let argv = &prep.argv;
        let workdir = &prep.workdir;
        let mut env = prep.env.clone();
        if !env.iter().any(|(k, _)| k == "HOME") {
            env.push(("HOME".into(), home));
        }
        let spec = crate::exec::RunSpec {
            argv: argv.to_vec(),
            env,
            cwd: workdir.to_string(),
            uid,
            gid,
            groups,
            ca: sess.req.run_ca.clone(),
            network_none: prep.network_none,
            mounts,
            secret_env,
            emulator,
        };
        let mut rootfs = stage
            .rootfs
            .take()
            .ok_or_else(|| anyhow!("rootfs missing"))?;
        let store = sess.store.clone();
        let level = sess.codec();
        let clamp = sess.req.source_date_epoch;
        let step_label = label.to_string();
        // GitLab: the step's output in a collapsed section (the step line and,
        // on failure, its last output lines follow outside it).
        let section = format!("kiln_step_{label}");
        let header: String = ins.text.chars().take(80).collect();
        sess.report
            .section_start(&section, &format!("[{label}] {header}"), true);
        let t_step = Instant::now();
        let (rootfs, res) = tokio::task::spawn_blocking(move || {
            let res = (|| -> std::io::Result<(crate::exec::Outcome, Option<crate::layer::BuiltLayer>, std::time::Duration)> {
                // The snapshot's cost: the walk before the step plus the walk, diff
                // and layer after it.
                let t = Instant::now();
                rootfs.ensure_baseline()?;
                let mut snapshot = t.elapsed();
                let out = crate::exec::run(rootfs.dir(), mode, &spec, &mut |l| crate::report::run_output(&step_label, l))?;
                let t = Instant::now();
                rootfs.kiln_touched(&out.touched);
                let layer = if out.code == 0 { rootfs.commit_changes(&store, level, clamp)? } else { None };
                snapshot += t.elapsed();
                Ok((out, layer, snapshot))
            })();
            (rootfs, res)
        })
        .await?;
        stage.rootfs = Some(rootfs);
        sess.report.section_end(&section);
        let (out, layer, snapshot) = res.map_err(|e| plan.err(line, format!("RUN: {e}")))?;
        let bytes = layer.as_ref().map_or(0, |l| l.size);
        sess.report.phase("snapshot", snapshot, bytes);
        sess.report
            .phase("run", t_step.elapsed().saturating_sub(snapshot), 0);
        let timing = format!(
            "({emulated}rootfs {:.2}s, snapshot {:.2}s)",
            rootfs_time.as_secs_f64(),
            snapshot.as_secs_f64()
        );
        if out.code != 0 {
            let shown: Vec<&String> = out
                .tail
                .iter()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let mut msg = format!(
                "RUN failed with exit code {}: {}",
                out.code,
                ins.text.trim_start_matches("RUN ").trim()
            );
            if !shown.is_empty() {
                msg.push_str("\nlast output:");
                for l in shown {
                    msg.push_str("\n  ");
                    msg.push_str(l);
                }
            }
            return Err(plan.err(line, msg));
        }
        Ok((layer, timing))
    }
}
