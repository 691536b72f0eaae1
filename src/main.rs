use anyhow::{Context, Result};
use clap::Parser;
use kiln::cli::{Cli, Cmd, IndexArgs, PushArgs};
use kiln::engine::sink::push_files;
use kiln::image::{layout, Reference};
use kiln::registry::Client;
use kiln::report::{human_bytes, Reporter};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // RUN steps may run with kiln's uid: without this they could ptrace kiln or
    // read its memory and environment (credentials). Forks inherit it.
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let cli = Cli::parse_from(kiln::cli::kaniko::argv(std::env::args_os().collect()));
    // kaniko's --verbosity=debug|trace count as -v and -vv.
    let verbose = match &cli.command {
        Cmd::Build(a) => cli.verbose.max(a.kaniko.shared.verbose()),
        Cmd::Warm(a) => cli.verbose.max(a.kaniko.verbose()),
        _ => cli.verbose,
    };
    let level = match verbose {
        0 => "warn",
        1 => "kiln=debug,warn",
        _ => "kiln=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let json = match &cli.command {
        Cmd::Build(a) => a.kaniko.shared.json(),
        Cmd::Warm(a) => a.kaniko.json(),
        _ => false,
    };
    if json {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        kiln::report::json::enable();
        tracing_subscriber::registry()
            .with(filter)
            .with(kiln::report::json::Layer)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            // Colours on a terminal and in GitLab's log, which renders them; never
            // escape codes in a plain file or pipe.
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    || std::env::var("GITLAB_CI").is_ok_and(|v| v == "true"),
            )
            .init();
    }
    if let Some(code) = rootless_reexec(&cli) {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            kiln::report::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            kiln::report::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// A non-root `kiln build` that may run steps re-executes itself inside a user
/// namespace with the user's /etc/subuid and /etc/subgid ranges (see
/// `kiln::exec::userns`), before any thread starts. `None`: go on in this process.
fn rootless_reexec(cli: &Cli) -> Option<ExitCode> {
    use kiln::exec::{userns, Isolation};
    let Cmd::Build(args) = &cli.command else {
        return None;
    };
    if nix::unistd::Uid::effective().is_root()
        || std::env::var_os(userns::ENV).is_some()
        || !matches!(args.isolation, Isolation::Auto | Isolation::Rootless)
    {
        return None;
    }
    let (maps, newuidmap, newgidmap) = match userns::plan() {
        Ok(p) => p,
        Err(why) => {
            tracing::debug!("rootless RUN maps only your uid: {why}");
            return None;
        }
    };
    match userns::reexec(
        &maps,
        &newuidmap,
        &newgidmap,
        std::env::args_os().skip(1).collect(),
    ) {
        Ok(code) => Some(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        Err(e) => {
            tracing::warn!(
                "cannot use your subordinate ids ({e}); rootless RUN steps can only run as root"
            );
            None
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let report = Reporter::default();
    match cli.command {
        Cmd::Build(args) => {
            let req = args.request()?;
            if args.kaniko.dryrun {
                for l in kiln::engine::plan_only(&req)? {
                    report.line(&l);
                }
                report.line("dry run: nothing was pulled, built, written or pushed");
                return Ok(());
            }
            if (req.attach_sbom || req.attach_provenance)
                && (req.no_push || req.destinations.is_empty())
            {
                report.line("note: --sbom and --provenance attach documents to a pushed image; nothing is pushed, so write them with --sbom-file and --provenance-file");
            }
            let out = kiln::engine::build(&req, &report).await?;
            let seconds = report.start.elapsed().as_secs_f64();
            let line = format!(
                "built {} ({} layer{}, {}) in {seconds:.2}s",
                out.digest,
                out.layers,
                if out.layers == 1 { "" } else { "s" },
                human_bytes(out.size),
            );
            if kiln::report::json::on() {
                use serde_json::json;
                kiln::report::json::emit(
                    "info",
                    "built",
                    &line,
                    kiln::report::json::fields([
                        ("digest", json!(out.digest)),
                        ("layers", json!(out.layers)),
                        ("size", json!(out.size)),
                        ("seconds", json!((seconds * 1000.0).round() / 1000.0)),
                        ("pushed", json!(out.pushed)),
                    ]),
                );
            } else {
                report.line(&line);
                for p in &out.pushed {
                    report.line(&format!("pushed {p}"));
                }
            }
            println!("{}", out.digest);
            Ok(())
        }
        Cmd::Push(args) => push(*args, &report).await,
        Cmd::Index(args) => index(*args, &report).await,
        Cmd::Bake(args) => bake(*args, &report).await,
        Cmd::Warm(args) => {
            let req = args.request()?;
            let out = kiln::engine::warm(&req, &report).await?;
            report.line(&format!(
                "warmed {} into {}: {} image(s), {} cache entr{}{}, {} downloaded, in {:.2}s",
                if out.missing > 0 { "partly" } else { "all" },
                req.cache_dir.display(),
                out.images,
                out.entries,
                if out.entries == 1 { "y" } else { "ies" },
                if out.missing > 0 {
                    format!(" ({} step(s) not in the cache)", out.missing)
                } else {
                    String::new()
                },
                human_bytes(out.downloaded),
                report.start.elapsed().as_secs_f64()
            ));
            Ok(())
        }
    }
}

async fn bake(args: kiln::cli::bake::BakeArgs, report: &Reporter) -> Result<()> {
    use kiln::cli::bake_summary as summary;
    let cwd = std::env::current_dir().context("no current directory")?;
    let files = kiln::cli::bake::read_files(&args, &cwd)?;
    let mut overrides = args.set.clone();
    if args.no_cache {
        overrides.push("*.no-cache=true".into());
    }
    let inputs = kiln::bake::Inputs {
        files,
        env: std::env::vars().collect(),
        local_platform: kiln::platform::Platform::host().to_string(),
        requested: args.targets.clone(),
        overrides,
    };
    let def = kiln::bake::resolve(&inputs).map_err(|e| anyhow::anyhow!(e))?;
    if args.print {
        println!("{}", serde_json::to_string_pretty(&def.to_json())?);
        return Ok(());
    }
    let inline = tempfile::tempdir().context("cannot create a directory for dockerfile-inline")?;
    let targets = kiln::cli::bake::requests(&def, &args, inline.path())?;
    let tags: std::collections::BTreeMap<String, Vec<String>> = def
        .targets
        .iter()
        .map(|t| (t.name.clone(), t.tags.clone().unwrap_or_default()))
        .collect();
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    report.line(&format!(
        "bake: {} target(s), {} at a time: {}",
        targets.len(),
        jobs.min(targets.len()).max(1),
        targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let out = kiln::engine::bake::bake(targets, jobs, args.partial, report).await?;
    for l in summary::lines(&out) {
        report.line(&l);
    }
    if let Some(p) = &args.metadata_file {
        let text = serde_json::to_vec_pretty(&summary::metadata(&out, &tags))?;
        layout::write_atomic(p, &text)?;
    }
    if let Some(p) = &args.dotenv {
        layout::write_atomic(p, summary::dotenv(&out, &tags).as_bytes())?;
    }
    if let Some(p) = &args.report {
        layout::write_atomic(p, &serde_json::to_vec_pretty(&summary::report(&out))?)?;
    }
    for t in &out.targets {
        if let Ok(o) = &t.outcome {
            println!("{} {}", t.name, o.digest);
        }
    }
    let failed = out.failed();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} target(s) failed{}",
            out.targets.len(),
            if out.held_back {
                "; no target was tagged (--partial tags the ones that were built)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

async fn index(args: IndexArgs, report: &Reporter) -> Result<()> {
    let dest = Reference::parse(&args.destination).context("in --destination")?;
    let sources = args
        .sources
        .iter()
        .map(|s| Reference::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let platforms = match &args.platforms {
        Some(l) => Some(
            kiln::platform::Platform::parse_list(l)
                .map_err(|e| anyhow::anyhow!("--platforms: {e}"))?,
        ),
        None => None,
    };
    let client = Client::new(&args.registry.options(vec![dest.registry.clone()])?)?;
    client.declare(&dest, true);
    for s in &sources {
        client.declare(s, false);
    }
    // Blobs copied across registries pass through a work dir of kiln's.
    let work = kiln::fs::workdir::WorkDir::create(&std::env::temp_dir())?;
    let store = kiln::store::Store::open(work.path())?;
    let req = kiln::engine::index::IndexRequest {
        destination: dest.clone(),
        sources,
        platforms,
    };
    let out = kiln::engine::index::index(&client, &store, &req).await?;
    let name_digest = format!("{}@{}", dest.name(), out.digest);
    if let Some(p) = &args.digest_file {
        layout::write_atomic(p, out.digest.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.image_name_with_digest_file {
        layout::write_atomic(p, format!("{name_digest}\n").as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &args.dotenv {
        let text =
            kiln::engine::dotenv_text(&dest.to_string(), &out.digest, &name_digest, &out.manifests);
        layout::write_atomic(p, text.as_bytes())
            .with_context(|| format!("cannot write --dotenv {}", p.display()))?;
    }
    report.line(&format!(
        "index {dest}: {} ({} blob(s) already there, {} mounted, {} copied) in {:.2}s",
        out.platforms.join(", "),
        out.present,
        out.mounted,
        out.copied,
        report.start.elapsed().as_secs_f64()
    ));
    report.line(&format!("pushed {name_digest}"));
    println!("{}", out.digest);
    Ok(())
}

async fn push(args: PushArgs, report: &Reporter) -> Result<()> {
    let dest = Reference::parse(&args.destination)?;
    let client = Client::new(&args.registry.options(vec![dest.registry.clone()])?)?;
    client.declare(&dest, true);
    // A kiln work dir: locked while the push lives, reclaimed if it is killed.
    let work = kiln::fs::workdir::WorkDir::create(&std::env::temp_dir())?;
    let source = args.source.as_str();
    let (kind, spec) = if let Some(s) = source.strip_prefix("oci:") {
        ("oci", s)
    } else if let Some(s) = source.strip_prefix("docker-archive:") {
        ("archive", s)
    } else if Path::new(layout::split_spec(source).0)
        .join("index.json")
        .is_file()
    {
        ("oci", source)
    } else if Path::new(source).is_file() {
        ("archive", source)
    } else {
        anyhow::bail!(
            "{source}: not an OCI layout directory (no index.json) nor a docker-archive file"
        );
    };
    let digest = if kind == "oci" {
        let img = layout::read(spec)?;
        push_files(
            &client,
            &dest,
            &img.blobs,
            &img.children,
            &img.top,
            &img.top_media_type,
        )
        .await?
    } else {
        let store = kiln::store::Store::open(work.path())?;
        let path = Path::new(spec).to_path_buf();
        let s2 = store.clone();
        let (img, _) =
            tokio::task::spawn_blocking(move || kiln::image::archive::read(&path, &s2, 6, None))
                .await??;
        let blobs: Vec<_> = img.blobs().cloned().collect();
        push_files(
            &client,
            &dest,
            &blobs,
            &[],
            &img.manifest,
            &img.manifest_media_type,
        )
        .await?
    };
    if let Some(p) = &args.digest_file {
        std::fs::write(p, &digest).with_context(|| format!("cannot write {}", p.display()))?;
    }
    report.line(&format!(
        "pushed {}@{digest} in {:.2}s",
        dest.name(),
        report.start.elapsed().as_secs_f64()
    ));
    println!("{digest}");
    Ok(())
}
