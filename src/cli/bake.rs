//! `kiln bake`: which bake files to read (buildx's lookup), and each resolved
//! target as the `kiln build` flags that mean the same, so that a target
//! builds exactly as `kiln build` would with those flags.

use crate::bake::target::{Opts, Target};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct BakeArgs {
    /// Targets or groups to build (default: the group or target named `default`).
    pub targets: Vec<String>,
    /// A bake file (HCL or JSON; `-` reads stdin). Repeatable; default: buildx's
    /// lookup (docker-bake.json, docker-bake.override.json, docker-bake.hcl,
    /// docker-bake.override.hcl) in the current directory.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// Override a key: TARGET.KEY=VALUE, TARGET.KEY+=VALUE (TARGET may be a
    /// pattern such as `*`). Repeatable.
    #[arg(long = "set", value_name = "TARGET.KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the resolved definition as JSON (as buildx does) and build nothing.
    #[arg(long)]
    pub print: bool,
    /// Push every target's tags (buildx's `--set *.output=type=registry`).
    #[arg(long)]
    pub push: bool,
    /// Build without the cache (`--set *.no-cache=true`).
    #[arg(long)]
    pub no_cache: bool,
    /// Tag the targets that were built even when another target failed
    /// (by default a failure anywhere tags nothing).
    #[arg(long)]
    pub partial: bool,
    /// Write buildx's metadata file: each target's digest and image names (JSON).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Write KILN_BAKE_<TARGET>_DIGEST, _IMAGE and _REF for every target (for
    /// GitLab's `artifacts:reports:dotenv`).
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// Write a JSON report: every target's digest and tags, and the steps
    /// targets shared.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write each target's SBOM (as kiln build's --sbom-file: .spdx.json or
    /// .cdx.json); `{target}` in the name is the target's name. Repeatable.
    #[arg(long = "sbom-file", value_name = "FILE")]
    pub sbom_file: Vec<String>,
    /// Targets built at once (default: the number of cores).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// buildx's `--load`: refused (kiln has no daemon to load into).
    #[arg(long, hide = true)]
    pub load: bool,
    /// Progress style (accepted for buildx's sake; kiln prints step lines).
    #[arg(long, hide = true, value_name = "auto|plain|tty")]
    pub progress: Option<String>,
    /// `kiln build` flags for every target (cache, registries, isolation…),
    /// after `--`: `kiln bake app -- --cache=true --cache-repo=REPO`.
    #[arg(last = true, value_name = "BUILD_FLAGS")]
    pub build_flags: Vec<String>,
}

/// buildx's lookup order; every one found is read, in this order.
const DEFAULT_FILES: [&str; 4] = [
    "docker-bake.json",
    "docker-bake.override.json",
    "docker-bake.hcl",
    "docker-bake.override.hcl",
];

/// Compose files buildx would also read: kiln does not, and says so.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The bake files to read, as (name for messages, text).
pub fn read_files(args: &BakeArgs, dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    if args.file.is_empty() {
        for c in COMPOSE_FILES {
            if dir.join(c).exists() {
                crate::report::message(&format!(
                    "note: {c} is not read: kiln bake takes docker-bake.hcl and docker-bake.json files"
                ));
            }
        }
        for name in DEFAULT_FILES {
            let p = dir.join(name);
            if p.exists() {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                out.push((name.to_string(), text));
            }
        }
        if out.is_empty() {
            bail!(
                "no bake file in {}: write docker-bake.hcl (or docker-bake.json), or name one with -f FILE",
                dir.display()
            );
        }
        return Ok(out);
    }
    for f in &args.file {
        let name = f.display().to_string();
        if name.ends_with(".yml") || name.ends_with(".yaml") {
            bail!("-f {name}: kiln bake reads bake files (HCL or JSON), not compose files");
        }
        let text = if name == "-" {
            std::io::read_to_string(std::io::stdin())
                .context("cannot read the bake file from stdin")?
        } else {
            std::fs::read_to_string(f).with_context(|| format!("cannot read bake file {name}"))?
        };
        out.push((name, text));
    }
    Ok(out)
}

/// What a target's outputs ask of `kiln build`.
#[derive(Debug, Default, PartialEq)]
struct Outputs {
    push: bool,
    flags: Vec<String>,
}

fn outputs(t: &Target, push_all: bool) -> Result<Outputs> {
    let mut o = Outputs {
        push: push_all,
        flags: vec![],
    };
    let at = |key: &str| t.at.get(key).map(|l| format!("{l}: ")).unwrap_or_default();
    for out in t.output.iter().flatten() {
        let kind = out.get("type").map(String::as_str).unwrap_or("");
        let dest = out.get("dest").filter(|d| !d.is_empty());
        let yes = |k: &str| out.get(k).is_some_and(|v| v == "true" || v == "1");
        match (kind, dest) {
            ("registry", _) => o.push = true,
            ("image", _) if yes("push") => o.push = true,
            ("image", _) => {}
            ("cacheonly", _) => {}
            ("oci", Some(d)) if out.get("tar").is_some_and(|v| v == "false") => {
                o.flags.push(format!("--oci-layout-path={d}"))
            }
            ("oci", _) => bail!(
                "{}target {:?}: output type=oci: kiln writes an OCI layout directory: add tar=false and dest=DIR",
                at("output"),
                t.name
            ),
            ("docker", Some(d)) => o.flags.push(format!("--tar-path={d}")),
            ("docker", None) => bail!(
                "{}target {:?}: output type=docker without dest: kiln has no daemon to load into; give dest=FILE for a docker-archive",
                at("output"),
                t.name
            ),
            (other, _) => bail!(
                "{}target {:?}: output type={other} is not one kiln writes (registry, image, oci with tar=false, docker with dest, cacheonly)",
                at("output"),
                t.name
            ),
        }
    }
    Ok(o)
}

/// cache-from / cache-to as kiln's cache: one registry cache repo (read
/// only when only cache-from names it), or a local cache dir.
fn cache_flags(t: &Target) -> Result<Vec<String>> {
    let at = |key: &str| t.at.get(key).map(|l| format!("{l}: ")).unwrap_or_default();
    let mut repo_from: Option<String> = None;
    let mut repo_to: Option<String> = None;
    let mut dir: Option<String> = None;
    let mut notes = vec![];
    for (key, list) in [("cache-from", &t.cache_from), ("cache-to", &t.cache_to)] {
        for c in list.iter().flatten() {
            let kind = c.get("type").map(String::as_str).unwrap_or("registry");
            match kind {
                "registry" => {
                    let r = c.get("ref").ok_or_else(|| {
                        anyhow::anyhow!(
                            "{}target {:?}: {key} type=registry needs ref=",
                            at(key),
                            t.name
                        )
                    })?;
                    let repo = crate::image::Reference::parse(r)
                        .with_context(|| format!("{}target {:?}: {key}", at(key), t.name))?
                        .name();
                    if key == "cache-from" {
                        repo_from.get_or_insert(repo);
                    } else {
                        repo_to = Some(repo);
                    }
                }
                "local" => {
                    let d = c
                        .get(if key == "cache-from" { "src" } else { "dest" })
                        .cloned();
                    if let Some(d) = d {
                        dir = Some(d);
                    }
                }
                "inline" => notes.push(
                    "cache type=inline: kiln's cache lives in its cache repo, not in the image",
                ),
                other => bail!(
                    "{}target {:?}: {key} type={other} is not a cache kiln has (registry, local)",
                    at(key),
                    t.name
                ),
            }
        }
    }
    for n in notes {
        crate::report::message(&format!("note: target {:?}: {n}", t.name));
    }
    let mut flags = vec![];
    match (&repo_from, &repo_to) {
        (Some(f), Some(to)) if f != to => bail!(
            "{}target {:?}: cache-from {f} and cache-to {to} differ: kiln reads and writes one cache repo",
            at("cache-to"),
            t.name
        ),
        (_, Some(r)) => flags.extend(["--cache=true".into(), format!("--cache-repo={r}")]),
        (Some(r), None) => flags.extend([
            "--cache=true".into(),
            format!("--cache-repo={r}"),
            "--no-push-cache".into(),
        ]),
        (None, None) => {}
    }
    if let Some(d) = dir {
        flags.extend(["--cache=true".into(), format!("--cache-dir={d}")]);
    }
    Ok(flags)
}

fn opts_csv(o: &Opts) -> String {
    o.iter()
        .map(|(k, v)| {
            if v.contains(',') || v.contains('"') {
                format!("\"{k}={}\"", v.replace('"', "\"\""))
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A target as `kiln build` arguments (after `kiln build`), and whether it
/// pushes. `inline_dir` is where a `dockerfile-inline` is written.
pub fn build_argv(t: &Target, args: &BakeArgs, inline_dir: &Path) -> Result<(Vec<OsString>, bool)> {
    // The flags for every target first: what the bake file says of this
    // target comes after, and wins (a flag given twice keeps its last value).
    let mut a: Vec<OsString> = vec!["kiln".into(), "build".into()];
    a.extend(args.build_flags.iter().map(OsString::from));
    let context = t.context.clone().unwrap_or_else(|| ".".into());
    a.push(format!("--context={context}").into());
    if let Some(inline) = &t.dockerfile_inline {
        let p = inline_dir.join(format!("{}.Dockerfile", t.name));
        std::fs::write(&p, inline).with_context(|| format!("cannot write {}", p.display()))?;
        a.push("--dockerfile".into());
        a.push(p.into());
    } else {
        // buildx reads a relative Dockerfile path from the context.
        let df = t.dockerfile.clone().unwrap_or_else(|| "Dockerfile".into());
        let p = Path::new(&df);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            Path::new(&context).join(p)
        };
        a.push("--dockerfile".into());
        a.push(p.into());
    }
    if let Some(s) = &t.target {
        a.push(format!("--target={s}").into());
    }
    for (k, v) in &t.args {
        a.push(format!("--build-arg={k}={v}").into());
    }
    for (k, v) in &t.labels {
        a.push(format!("--label={k}={v}").into());
    }
    for an in t.annotations.iter().flatten() {
        a.push(format!("--annotation={an}").into());
    }
    for tag in t.tags.iter().flatten() {
        a.push(format!("--destination={tag}").into());
    }
    if let Some(p) = t.platforms.as_ref().filter(|p| !p.is_empty()) {
        a.push(format!("--platform={}", p.join(",")).into());
    }
    for s in t.secret.iter().flatten() {
        a.push(format!("--secret={}", opts_csv(s)).into());
    }
    for s in t.ssh.iter().flatten() {
        let id = s.get("id").cloned().unwrap_or_else(|| "default".into());
        let v = match s.get("paths") {
            Some(p) => format!("{id}={p}"),
            None => id,
        };
        a.push(format!("--ssh={v}").into());
    }
    for at in t.attest.iter().flatten() {
        a.push(format!("--attest={}", opts_csv(at)).into());
    }
    // `target:NAME` contexts are the engine's: NAME's image, once built.
    for (name, value) in &t.contexts {
        if !value.starts_with("target:") {
            a.push(format!("--build-context={name}={value}").into());
        }
    }
    a.extend(cache_flags(t)?.into_iter().map(OsString::from));
    if args.no_cache || t.no_cache == Some(true) {
        a.push("--cache=false".into());
    }
    let mut out = outputs(t, args.push)?;
    a.extend(out.flags.into_iter().map(OsString::from));
    // A target without tags has nothing to push (a base other targets use).
    out.push &= t.tags.as_ref().is_some_and(|t| !t.is_empty());
    if !out.push {
        a.push("--no-push".into());
    }
    Ok((a, out.push))
}

/// Flags that name what a bake file says per target (or one file per build):
/// refused after `--`, with the bake key to use instead.
const PER_TARGET: &[(&str, &str)] = &[
    ("--context", "context"),
    ("-c", "context"),
    ("--dockerfile", "dockerfile"),
    ("-f", "dockerfile"),
    ("--destination", "tags"),
    ("-d", "tags"),
    ("--target", "target"),
    ("--build-arg", "args"),
    ("--label", "labels"),
    ("--platform", "platforms"),
    ("--tar-path", "output (type=docker,dest=FILE)"),
    ("--oci-layout-path", "output (type=oci,tar=false,dest=DIR)"),
    ("--no-push", "output, or kiln bake without --push"),
    ("--digest-file", "kiln bake --metadata-file"),
    ("--image-name-with-digest-file", "kiln bake --metadata-file"),
    (
        "--image-name-tag-with-digest-file",
        "kiln bake --metadata-file",
    ),
    ("--dotenv", "kiln bake --dotenv"),
    ("--report", "kiln bake --report"),
    ("--sbom-file", "attest"),
    ("--provenance-file", "attest"),
];

fn check_build_flags(flags: &[String]) -> Result<()> {
    for f in flags {
        let name = f.split('=').next().unwrap_or(f);
        if let Some((flag, key)) = PER_TARGET.iter().find(|(p, _)| *p == name) {
            bail!("{flag} after --: each target's comes from the bake file ({key}); the flags after -- apply to every target");
        }
    }
    Ok(())
}

/// Each resolved target as the request `kiln build` would make of its flags.
pub fn requests(
    def: &crate::bake::Definition,
    args: &BakeArgs,
    inline_dir: &Path,
) -> Result<Vec<crate::engine::bake::BakeTarget>> {
    if args.load {
        bail!("--load: kiln has no daemon to load into; push (--push), or write a docker-archive with --set '*.output=type=docker,dest=FILE'");
    }
    check_build_flags(&args.build_flags)?;
    if def.targets.len() > 1 {
        if let Some(f) = args.sbom_file.iter().find(|f| !f.contains("{target}")) {
            bail!("--sbom-file {f}: with several targets, put {{target}} in the name (gl-sbom-{{target}}.cdx.json)");
        }
    }
    let mut out = vec![];
    for t in &def.targets {
        let (mut argv, _) = build_argv(t, args, inline_dir)?;
        for f in &args.sbom_file {
            argv.push(format!("--sbom-file={}", f.replace("{target}", &t.name)).into());
        }
        let cli = super::Cli::try_parse_from(super::kaniko::argv(argv))
            .map_err(|e| anyhow::anyhow!("target {:?}: {}", t.name, e.to_string().trim()))?;
        let super::Cmd::Build(b) = cli.command else {
            bail!("target {:?}: not a build", t.name);
        };
        let req = b
            .request()
            .with_context(|| format!("target {:?}", t.name))?;
        out.push(crate::engine::bake::BakeTarget {
            name: t.name.clone(),
            req,
            needs: t
                .contexts
                .iter()
                .filter_map(|(ctx, v)| {
                    v.strip_prefix("target:")
                        .map(|n| (ctx.to_ascii_lowercase(), n.to_string()))
                })
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bake::target::opts_from_csv;

    fn args(push: bool) -> BakeArgs {
        BakeArgs {
            targets: vec![],
            file: vec![],
            set: vec![],
            print: false,
            push,
            no_cache: false,
            partial: false,
            metadata_file: None,
            dotenv: None,
            report: None,
            sbom_file: vec![],
            jobs: None,
            load: false,
            progress: None,
            build_flags: vec!["--isolation=chroot".into()],
        }
    }

    fn argv(t: &Target, push: bool) -> Vec<String> {
        let d = tempfile::tempdir().unwrap();
        build_argv(t, &args(push), d.path())
            .unwrap()
            .0
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_target_becomes_the_build_flags_that_mean_the_same() {
        let t = Target {
            name: "app".into(),
            context: Some("app".into()),
            dockerfile: Some("Dockerfile.prod".into()),
            target: Some("release".into()),
            args: [("V".to_string(), "1".to_string())].into(),
            tags: Some(vec!["r/app:1".into()]),
            platforms: Some(vec!["linux/amd64".into(), "linux/arm64".into()]),
            cache_to: Some(vec![opts_from_csv(
                "cache-to",
                "type=registry,ref=r/cache:app",
            )
            .unwrap()]),
            output: Some(vec![opts_from_csv("output", "type=registry").unwrap()]),
            ssh: Some(vec![opts_from_csv("ssh", "default").unwrap()]),
            ..Default::default()
        };
        let a = argv(&t, false);
        for want in [
            "--context=app",
            "app/Dockerfile.prod",
            "--target=release",
            "--build-arg=V=1",
            "--destination=r/app:1",
            "--platform=linux/amd64,linux/arm64",
            "--cache-repo=docker.io/r/cache",
            "--ssh=default",
            "--isolation=chroot",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
        }
        assert!(!a.iter().any(|x| x == "--no-push"), "{a:?}");
        // Without an output that pushes, nothing is pushed (as buildx).
        let plain = Target {
            name: "x".into(),
            tags: Some(vec!["r/x".into()]),
            ..Default::default()
        };
        assert!(argv(&plain, false).iter().any(|x| x == "--no-push"));
        assert!(!argv(&plain, true).iter().any(|x| x == "--no-push"));
    }

    #[test]
    fn the_bake_files_word_on_a_target_beats_the_flags_for_every_target() {
        let t = Target {
            name: "app".into(),
            no_cache: Some(true),
            ..Default::default()
        };
        let mut a = args(false);
        a.build_flags = vec!["--cache=true".into()];
        let d = tempfile::tempdir().unwrap();
        let (argv, _) = build_argv(&t, &a, d.path()).unwrap();
        let cli = super::super::Cli::try_parse_from(argv).unwrap();
        let super::super::Cmd::Build(b) = cli.command else {
            panic!("not a build")
        };
        assert_eq!(b.cache, Some(false));
    }

    #[test]
    fn outputs_and_caches_kiln_cannot_write_are_refused_by_name() {
        let mut t = Target {
            name: "app".into(),
            output: Some(vec![opts_from_csv("output", "type=docker").unwrap()]),
            ..Default::default()
        };
        let d = tempfile::tempdir().unwrap();
        let e = build_argv(&t, &args(false), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no daemon"), "{e}");
        t.output = Some(vec![
            opts_from_csv("output", "type=oci,dest=out,tar=false").unwrap()
        ]);
        assert!(argv(&t, false).iter().any(|x| x == "--oci-layout-path=out"));
        t.cache_from = Some(vec![opts_from_csv("cache-from", "type=gha").unwrap()]);
        let e = build_argv(&t, &args(false), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("type=gha is not a cache kiln has"), "{e}");
        t.cache_from = Some(vec![opts_from_csv("cache-from", "r/a:cache").unwrap()]);
        t.cache_to = Some(vec![opts_from_csv("cache-to", "r/b:cache").unwrap()]);
        let e = build_argv(&t, &args(false), d.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("differ"), "{e}");
    }
}
