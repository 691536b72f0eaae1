//! kaniko's executor flags that kiln has no flag of its own for: each is
//! either given kaniko's meaning, accepted with a one-line note that says why it
//! changes nothing in kiln, or refused with the kiln way. So a kaniko job
//! migrates by changing the binary's name. (kaniko flags kiln has under the same
//! name, such as `--destination` or `--cache-repo`, are ordinary flags.)

use anyhow::{bail, Result};
use clap::Args;
use std::ffi::OsString;
use std::path::Path;

/// kaniko's command line as kiln reads it: its binary names (see [`names`]),
/// then the spellings Go's pflag accepts that clap does not (see
/// [`pflag_spellings`]).
pub fn argv(args: Vec<OsString>) -> Vec<OsString> {
    let args = names(args);
    let sub = args.get(1).and_then(|a| a.to_str()).unwrap_or_default();
    let bools = bool_flags(sub);
    pflag_spellings(args, &bools)
}

/// The long names (aliases included) of `kiln SUB`'s on/off flags.
fn bool_flags(sub: &str) -> Vec<String> {
    use clap::CommandFactory;
    let cmd = super::Cli::command();
    let Some(sc) = cmd.get_subcommands().find(|c| c.get_name() == sub) else {
        return vec![];
    };
    sc.get_arguments()
        .filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue))
        .flat_map(|a| {
            a.get_long()
                .into_iter()
                .chain(a.get_all_aliases().unwrap_or_default())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// kaniko's log levels, which `-v LEVEL` takes there.
const LEVELS: &[&str] = &[
    "panic", "fatal", "error", "warn", "warning", "info", "debug", "trace",
];

/// What pflag accepts and clap does not, rewritten for clap:
/// - `--flag=true` and `--flag=false` (any of Go's `strconv.ParseBool`
///   spellings) on an on/off flag: `--flag`, or nothing;
/// - `-v LEVEL`, `-v=LEVEL` and `-vLEVEL`: kaniko's `-v` takes a log level
///   (`--verbosity`); kiln's `-v` and `-vv` still count.
///
/// Everything after `--` is left as it is.
pub fn pflag_spellings(args: Vec<OsString>, bools: &[String]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            out.push(a);
            out.extend(it);
            break;
        }
        if let Some((name, value)) = s.strip_prefix("--").and_then(|f| f.split_once('=')) {
            if bools.iter().any(|b| b == name) {
                match go_bool(value) {
                    Some(true) => out.push(format!("--{name}").into()),
                    Some(false) => {}
                    None => out.push(a),
                }
                continue;
            }
        }
        if let Some(level) = s.strip_prefix("-v") {
            let level = level.strip_prefix('=').unwrap_or(level);
            if LEVELS.contains(&level) {
                out.push(format!("--verbosity={level}").into());
                continue;
            }
            if s == "-v" {
                if let Some(next) = it.as_slice().first().and_then(|n| n.to_str()) {
                    if LEVELS.contains(&next) {
                        out.push(format!("--verbosity={next}").into());
                        it.next();
                        continue;
                    }
                }
            }
        }
        out.push(a);
    }
    out
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// kaniko's binary names: run as `executor` (`/kaniko/executor`), kiln is
/// `kiln build`; as `warmer`, `kiln warm`. So an unchanged kaniko job runs kiln
/// from the job image's symlinks. `executor version` prints the version.
fn names(mut args: Vec<OsString>) -> Vec<OsString> {
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let sub = match name {
        "executor" => "build",
        "warmer" => "warm",
        _ => return args,
    };
    if args.get(1).is_some_and(|a| a == "version") {
        args[1] = "--version".into();
    } else {
        args.insert(1, sub.into());
    }
    args
}

/// The flags kaniko's executor and warmer share: logging, and pulls over plain
/// HTTP or without TLS verification.
#[derive(Debug, Args, Default)]
pub struct SharedArgs {
    /// kaniko's log level: debug and trace are -v and -vv.
    #[arg(long, hide = true, value_name = "LEVEL")]
    pub verbosity: Option<String>,
    #[arg(long, hide = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    #[arg(long, hide = true)]
    pub log_timestamp: bool,
    #[arg(long, hide = true)]
    pub insecure_pull: bool,
    #[arg(long, hide = true)]
    pub skip_tls_verify_pull: bool,
    /// A hidden flag both kaniko binaries inherit from a vendored Azure library.
    #[arg(long, hide = true, value_name = "FILE")]
    pub azure_container_registry_config: Option<String>,
}

impl SharedArgs {
    /// The notes for accepted flags; errors for refused ones.
    pub fn check(&self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        if self.log_timestamp {
            notes.push(
                "note: --log-timestamp changes nothing in kiln: each step line has its time"
                    .to_string(),
            );
        }
        if self.azure_container_registry_config.is_some() {
            notes.push(
                "note: --azure-container-registry-config changes nothing in kiln: for ACR, name docker-credential-acr-env in config.json's credHelpers, or log in with --username/--password"
                    .to_string(),
            );
        }
        if let Some(f) = &self.log_format {
            if !matches!(f.as_str(), "text" | "color" | "json") {
                bail!("--log-format={f}: use text, color or json");
            }
        }
        if let Some(v) = &self.verbosity {
            if !LEVELS.contains(&v.as_str()) {
                bail!("--verbosity={v}: use panic, fatal, error, warn, info, debug or trace");
            }
        }
        if self.insecure_pull {
            bail!("--insecure-pull: name the plain-HTTP registry: --insecure-registry HOST[:PORT]");
        }
        if self.skip_tls_verify_pull {
            bail!("--skip-tls-verify-pull: trust the registry's CA with --ca-cert, or name it: --skip-tls-verify-registry HOST");
        }
        Ok(notes)
    }

    /// `--log-format=json`: one JSON object per event.
    pub fn json(&self) -> bool {
        self.log_format.as_deref() == Some("json")
    }

    /// `-v` levels from `--verbosity`.
    pub fn verbose(&self) -> u8 {
        match self.verbosity.as_deref() {
            Some("debug") => 1,
            Some("trace") => 2,
            _ => 0,
        }
    }
}

#[derive(Debug, Args, Default)]
pub struct KanikoArgs {
    #[command(flatten)]
    pub shared: SharedArgs,
    // Accepted, and why they change nothing.
    #[arg(long, hide = true)]
    pub cleanup: bool,
    #[arg(long, hide = true)]
    pub force: bool,
    #[arg(long, hide = true, alias = "snapshotMode", value_name = "MODE")]
    pub snapshot_mode: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub use_new_run: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub cache_run_layers: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub compressed_caching: Option<String>,
    #[arg(long, hide = true, value_name = "DIR")]
    pub kaniko_dir: Option<String>,
    #[arg(long, hide = true, alias = "whitelist-var-run", num_args = 0..=1, default_missing_value = "true")]
    pub ignore_var_run: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub skip_unused_stages: Option<String>,
    #[arg(long, hide = true, value_name = "N")]
    pub image_fs_extract_retry: Option<String>,
    #[arg(long, hide = true)]
    pub preserve_context: bool,
    #[arg(long, hide = true)]
    pub materialize: bool,
    #[arg(long, hide = true, value_name = "PATH")]
    pub ignore_path: Vec<String>,
    #[arg(long, hide = true)]
    pub push_ignore_immutable_tag_errors: bool,
    #[arg(long, hide = true)]
    pub pre_cleanup: bool,
    #[arg(long, hide = true)]
    pub force_build_metadata: bool,
    /// kaniko v1.24's built-in credential helpers (env, google, ecr, acr, gitlab).
    #[arg(long, hide = true, value_name = "HELPERS", num_args = 0..=1, default_missing_value = "")]
    pub credential_helpers: Vec<String>,
    // Given kaniko's meaning.
    /// Push to the destinations over plain HTTP.
    #[arg(long, hide = true)]
    pub insecure: bool,
    /// Turn TLS verification off for the destinations.
    #[arg(long, hide = true)]
    pub skip_tls_verify: bool,
    /// Use the cache repo, but push nothing to it.
    #[arg(long, hide = true)]
    pub no_push_cache: bool,
    /// The context is this directory below --context.
    #[arg(long, hide = true, value_name = "PATH")]
    pub context_sub_path: Option<String>,
    /// Write `name:tag@digest` for each destination.
    #[arg(long, hide = true, value_name = "FILE")]
    pub image_name_tag_with_digest_file: Option<std::path::PathBuf>,
    /// KEY=VALUE annotations on the image manifest. Repeatable.
    #[arg(long = "annotation", hide = true, value_name = "KEY=VALUE")]
    pub annotation: Vec<String>,
    /// The fork's `--dryrun`: plan the build, print it, build nothing.
    #[arg(long, hide = true)]
    pub dryrun: bool,
    // Refused, with the kiln way.
    #[arg(long, short = 'b', hide = true, value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// The image is its base and one layer of every step's changes.
    #[arg(long, hide = true)]
    pub single_snapshot: bool,
    #[arg(long, hide = true, value_name = "OPTIONS")]
    pub git: Option<String>,
}

impl KanikoArgs {
    /// The notes for accepted flags; errors for refused ones.
    pub fn check(&self) -> Result<Vec<String>> {
        let set = |o: &Option<String>| o.is_some();
        // (given?, flag, why it changes nothing in kiln)
        let no_ops = [
            (self.cleanup, "cleanup", "kiln never builds in its own root; its work dir is removed at the end"),
            (self.force, "force", "kiln runs anywhere, not only in a container"),
            (set(&self.snapshot_mode), "snapshot-mode", "snapshots compare inode, ctime, mode, owner and size, which is exact and needs no hashing"),
            (set(&self.use_new_run), "use-new-run", "RUN always snapshots only what changed"),
            (set(&self.cache_run_layers), "cache-run-layers", "RUN layers are always cached with --cache"),
            (set(&self.compressed_caching), "compressed-caching", "layers are compressed once, in one pass"),
            (set(&self.kaniko_dir), "kaniko-dir", "kiln's work dir is --work-dir"),
            (set(&self.ignore_var_run), "ignore-var-run", "kiln never snapshots its own filesystem"),
            (set(&self.skip_unused_stages), "skip-unused-stages", "kiln always builds only the stages the target needs"),
            (set(&self.image_fs_extract_retry), "image-fs-extract-retry", "layers are verified while they stream and downloads retry with --image-download-retry"),
            (self.preserve_context, "preserve-context", "the build context is never changed"),
            (self.materialize, "materialize", "stage filesystems are materialized when a step needs them"),
            (!self.ignore_path.is_empty(), "ignore-path", "kiln builds in a root of its own, never over the job's files"),
            (self.push_ignore_immutable_tag_errors, "push-ignore-immutable-tag-errors", "a registry's refusal is reported with its message"),
            (self.pre_cleanup, "pre-cleanup", "kiln never builds in its own root, so there is nothing to clean before a build"),
            (self.force_build_metadata, "force-build-metadata", "metadata instructions change only the config, as in BuildKit's images"),
            (!self.credential_helpers.is_empty(), "credential-helpers", "kiln runs the helpers that config.json names (credHelpers, credsStore: docker-credential-ecr-login, -gcr, -acr-env, ...) and reads GitLab's CI variables itself"),
        ];
        let mut notes: Vec<String> = no_ops
            .iter()
            .filter(|(given, _, _)| *given)
            .map(|(_, flag, why)| format!("note: --{flag} changes nothing in kiln: {why}"))
            .collect();
        notes.extend(self.shared.check()?);
        if self.bucket.is_some() {
            bail!("--bucket: kiln reads no context from object storage; fetch it in the job and pass --context DIR or --context tar://FILE");
        }
        if self.git.is_some() {
            bail!("--git: give the repository as the context is checked out by the job (GitLab clones it), or ADD it in the Dockerfile");
        }
        Ok(notes)
    }

    pub fn annotations(&self) -> Result<Vec<(String, String)>> {
        self.annotation
            .iter()
            .map(|a| match a.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => bail!("--annotation {a:?}: use KEY=VALUE"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{argv, pflag_spellings};
    use std::ffi::OsString;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn kanikos_binary_names_are_kiln_build_and_warm() {
        assert_eq!(
            argv(v(&["/kaniko/executor", "--context", "."])),
            v(&["/kaniko/executor", "build", "--context", "."])
        );
        assert_eq!(argv(v(&["executor"])), v(&["executor", "build"]));
        assert_eq!(
            argv(v(&["/kaniko/warmer", "--image", "x"])),
            v(&["/kaniko/warmer", "warm", "--image", "x"])
        );
        assert_eq!(
            argv(v(&["executor", "version"])),
            v(&["executor", "--version"])
        );
        assert_eq!(argv(v(&["kiln", "build"])), v(&["kiln", "build"]));
        assert_eq!(
            argv(v(&["/usr/bin/executor-x"])),
            v(&["/usr/bin/executor-x"])
        );
    }

    #[test]
    fn pflag_spellings_become_clap_spellings() {
        let bools = vec!["no-push".to_string(), "reproducible".to_string()];
        let p = |a: &[&str]| pflag_spellings(v(a), &bools);
        assert_eq!(
            p(&[
                "kiln",
                "build",
                "--no-push=true",
                "--reproducible=False",
                "-c",
                "."
            ]),
            v(&["kiln", "build", "--no-push", "-c", "."])
        );
        // Not a boolean value, or not an on/off flag: left for clap to judge.
        assert_eq!(p(&["k", "--no-push=maybe"]), v(&["k", "--no-push=maybe"]));
        assert_eq!(p(&["k", "--label=a=true"]), v(&["k", "--label=a=true"]));
        for (args, want) in [
            (vec!["-v", "debug"], "--verbosity=debug"),
            (vec!["-v=info"], "--verbosity=info"),
            (vec!["-vtrace"], "--verbosity=trace"),
        ] {
            let mut a = vec!["k"];
            a.extend(args);
            assert_eq!(p(&a), v(&["k", want]));
        }
        // kiln's own -v and -vv, and -v before something that is not a level.
        assert_eq!(p(&["k", "-vv"]), v(&["k", "-vv"]));
        assert_eq!(p(&["k", "-v", "build"]), v(&["k", "-v", "build"]));
        assert_eq!(
            p(&["k", "--", "--no-push=true"]),
            v(&["k", "--", "--no-push=true"])
        );
    }

    #[test]
    fn the_on_off_flags_come_from_the_command_itself() {
        let b = super::bool_flags("build");
        for f in [
            "no-push",
            "reproducible",
            "insecure",
            "skip-tls-verify",
            "cleanup",
        ] {
            assert!(b.iter().any(|x| x == f), "{f}: {b:?}");
        }
        assert!(!b.iter().any(|x| x == "destination"));
        assert!(super::bool_flags("nope").is_empty());
    }
}
