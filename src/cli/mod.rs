//! Command-line flags and environment → request structs. No build logic here.
//! Flag names follow kaniko's executor where kaniko has the same option.

use crate::engine::BuildRequest;
use crate::image::manifest::Format;
use crate::image::{Platform, Reference};
use crate::registry;
use anyhow::{bail, Context, Result};
mod attest;
pub mod bake;
pub mod bake_summary;
pub mod kaniko;
pub mod pull;
mod tar_context;

use clap::{ArgAction, Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    // A flag given twice keeps its last value, as kaniko's pflag does.
    args_override_self = true,
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles without a daemon or privileges"
)]
pub struct Cli {
    /// More detail (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build an image from a Dockerfile and push it and/or write it to disk.
    Build(Box<BuildArgs>),
    /// Push an OCI layout directory or a docker-archive tarball to a registry.
    Push(Box<PushArgs>),
    /// Fetch base images and cache entries into the cache dir, for cache-warming jobs.
    Warm(Box<WarmArgs>),
    /// Assemble single-platform images (one per native runner) into one image
    /// index under the destination's tag.
    Index(Box<IndexArgs>),
    /// Build the targets of buildx bake files (docker-bake.hcl, .json) in one
    /// run: shared steps once, targets side by side, tags only when all succeed.
    Bake(Box<bake::BakeArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormatArg {
    Oci,
    Docker,
}

#[derive(Debug, Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    pub pull: pull::PullArgs,
    /// Registry (host[:port]) to reach over plain HTTP. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Username for the destination registry (before CI variables and config.json).
    #[arg(long, requires = "password_source")]
    pub username: Option<String>,
    /// Password or token for the destination registry (prefer --password-stdin).
    #[arg(long, group = "password_source")]
    pub password: Option<String>,
    /// Read the password or token for the destination registry from stdin.
    #[arg(long, group = "password_source")]
    pub password_stdin: bool,
    /// Extra CA to trust for every registry: a PEM file path or inline PEM
    /// (`--ca-cert "$KNUT_CA"` works for File and plain CI variables). Repeatable.
    #[arg(long = "ca-cert", value_name = "FILE|PEM", allow_hyphen_values = true)]
    pub ca_cert: Vec<String>,
    /// CA certificate for one registry (kaniko-compatible). Repeatable.
    #[arg(long = "registry-certificate", value_name = "HOST=PATH")]
    pub registry_certificate: Vec<String>,
    /// Client certificate and key for one registry (mTLS). Repeatable.
    #[arg(long = "registry-client-cert", value_name = "HOST=CERT,KEY")]
    pub registry_client_cert: Vec<String>,
    /// Turn TLS verification off for this registry only (warned about on every run). Repeatable.
    #[arg(long = "skip-tls-verify-registry", value_name = "HOST[:PORT]")]
    pub skip_tls_verify_registry: Vec<String>,
    /// Retries of a failed push request or upload (kaniko's flag). Retries back
    /// off from 0.5 s to 10 s, honour Retry-After, and stop 60 s after the first
    /// attempt; 0 turns them off.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub push_retry: u32,
    /// Retries of a failed pull request or download (kaniko's flag), as --push-retry.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub image_download_retry: u32,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory (kaniko's `dir://` prefix is accepted).
    #[arg(short = 'c', long, default_value = ".")]
    pub context: String,
    /// Dockerfile path (relative to the current directory, else to the context).
    /// Default: `Dockerfile` in the context, as docker build and buildx read it.
    #[arg(short = 'f', long)]
    pub dockerfile: Option<PathBuf>,
    /// Image reference to push to. Repeatable.
    #[arg(short = 'd', long)]
    pub destination: Vec<String>,
    /// Build argument KEY=VALUE; a bare KEY takes its value from the environment. Repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_arg: Vec<String>,
    /// Stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// A named context for `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME`: a directory, docker-image://REF or
    /// oci-layout://DIR[:TAG] (as buildx). Repeatable.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_context: Vec<String>,
    /// Label KEY=VALUE added to the image. Repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Build (and write local outputs) but push nothing.
    #[arg(long)]
    pub no_push: bool,
    /// Write a docker-archive tarball (docker load, podman load, skopeo).
    #[arg(long, alias = "tarPath", value_name = "FILE")]
    pub tar_path: Option<PathBuf>,
    /// Write an OCI image layout directory (skopeo, umoci).
    #[arg(long, value_name = "DIR")]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Write `name@digest` for each destination to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Byte-identical output for identical inputs: timestamps from SOURCE_DATE_EPOCH, or 0.
    #[arg(long)]
    pub reproducible: bool,
    /// The image's media types: oci (default, as BuildKit) or docker (v2 schema 2,
    /// for registries and tools that want it; gzip layers, no annotations).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub image_format: Option<ImageFormatArg>,
    /// Target platform(s), os/arch[/variant]: comma-separated or repeated, as
    /// buildx takes them (default: the host's). Several make an image index.
    #[arg(long, value_name = "OS/ARCH[,...]")]
    pub platform: Vec<String>,
    /// kaniko's --custom-platform: one platform.
    #[arg(long, hide = true, alias = "customPlatform", value_name = "OS/ARCH")]
    pub custom_platform: Option<String>,
    /// Where RUN steps of another architecture find static qemu-user emulators
    /// (qemu-ARCH-static or qemu-ARCH, as Debian's qemu-user-static names them),
    /// when the host has no binfmt_misc handler. Default: kiln's emulator job
    /// image's libexec/kiln/emulators, then /usr/bin.
    #[arg(long, env = "KILN_EMULATOR_DIR", value_name = "DIR")]
    pub emulator_dir: Option<PathBuf>,
    /// A secret for `RUN --mount=type=secret`, as buildx takes it: id=ID,src=FILE
    /// or id=ID,env=VAR (a bare id=ID reads $ID). In GitLab, give a File-type
    /// variable as src. Never in a layer, the config, the cache key or a log.
    /// Repeatable.
    #[arg(long = "secret", value_name = "id=ID,src=FILE|env=VAR")]
    pub secret: Vec<String>,
    /// An ssh agent for `RUN --mount=type=ssh`: `default` (the agent at
    /// $SSH_AUTH_SOCK) or ID=SOCKET. Repeatable.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    pub ssh: Vec<String>,
    /// Write KILN_IMAGE, KILN_IMAGE_DIGEST and KILN_IMAGE_REF (name@digest) for
    /// GitLab's `artifacts:reports:dotenv`.
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// Write a JSON build report: steps (cache result, time, layer), bases,
    /// bytes up and down.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Do not check before the build that every --destination accepts a push
    /// (kaniko's flag); the check starts an upload and cancels it.
    #[arg(long)]
    pub skip_push_permission_check: bool,
    #[command(flatten)]
    pub attest: attest::AttestArgs,
    #[command(flatten)]
    pub compression: CompressionArgs,
    /// Use and fill the layer cache; `--cache=false` turns it off. Default: on in CI
    /// (CI=true) when a cache repo is known, off elsewhere.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cache: Option<bool>,
    #[command(flatten)]
    pub cache_args: CacheArgs,
    /// Accepted for kaniko compatibility; COPY is always cached.
    #[arg(long, hide = true)]
    pub cache_copy_layers: bool,
    #[command(flatten)]
    pub kaniko: kaniko::KanikoArgs,
    /// How RUN steps are isolated: auto picks namespaces, else chroot (root), or
    /// rootless (non-root).
    #[arg(long, value_enum, default_value_t = crate::exec::Isolation::Auto)]
    pub isolation: crate::exec::Isolation,
    /// Where kiln keeps its temporary work (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Make RUN steps trust the company CAs kiln trusts (--ca-cert, KILN_CA_CERT,
    /// CI_SERVER_TLS_CA_FILE, ADDITIONAL_CA_CERT_BUNDLE), for the step only: never in
    /// the image. auto: on in GitLab CI when one of them is set.
    #[arg(long, value_enum, default_value_t = RunCa::Auto, env = "KILN_RUN_CA_CERTS", value_name = "WHEN")]
    pub run_ca_certs: RunCa,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunCa {
    Auto,
    On,
    Off,
}

/// The PEM text RUN steps trust besides the image's roots, per `--run-ca-certs`.
fn run_ca(when: RunCa, tls: &crate::registry::tls::TlsOptions) -> Result<Option<String>> {
    let in_gitlab = std::env::var("GITLAB_CI").is_ok_and(|v| v == "true");
    if when == RunCa::Off || (when == RunCa::Auto && !in_gitlab) {
        return Ok(None);
    }
    let cas = crate::registry::tls::company_cas(tls, &crate::registry::tls::process_env)?;
    if cas.is_empty() {
        if when == RunCa::On {
            bail!("--run-ca-certs on: no company CA is set (give --ca-cert, KILN_CA_CERT, CI_SERVER_TLS_CA_FILE or ADDITIONAL_CA_CERT_BUNDLE)");
        }
        return Ok(None);
    }
    Ok(Some(cas.iter().map(|c| c.pem.as_str()).collect()))
}

/// The largest secret kiln takes (BuildKit's limit is 500 KiB).
const MAX_SECRET: u64 = 1 << 20;

/// `--secret id=ID,src=FILE|env=VAR[,type=file|env]`: the id and its value.
/// Errors name the flag and the source, never the value.
fn secret(spec: &str) -> Result<(String, crate::engine::mounts::SecretValue)> {
    let (mut id, mut src, mut env, mut ty) = (None, None, None, None);
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k.trim() {
            "id" => id = Some(v.to_string()),
            "src" | "source" => src = Some(v.to_string()),
            "env" => env = Some(v.to_string()),
            "type" if v == "file" || v == "env" => ty = Some(v.to_string()),
            other => bail!(
                "--secret {spec:?}: unknown field {other:?} (use id=ID,src=FILE or id=ID,env=VAR)"
            ),
        }
    }
    let Some(id) = id.filter(|i| !i.is_empty()) else {
        bail!("--secret {spec:?}: give the id (id=ID,src=FILE or id=ID,env=VAR)");
    };
    if ty.as_deref() == Some("env") && env.is_none() {
        env = src.take().or_else(|| Some(id.clone()));
    }
    let value = match (src, env) {
        (Some(path), None) => {
            let md = std::fs::metadata(&path)
                .with_context(|| format!("--secret id={id}: cannot read {path}"))?;
            if md.len() > MAX_SECRET {
                bail!("--secret id={id}: {path} is larger than 1 MiB; a secret is a token or a small file");
            }
            std::fs::read(&path).with_context(|| format!("--secret id={id}: cannot read {path}"))?
        }
        (None, env) => {
            let var = env.unwrap_or_else(|| id.clone());
            match std::env::var_os(&var) {
                Some(v) => std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec(),
                None => bail!("--secret id={id}: the environment variable {var} is not set (give src=FILE for a file)"),
            }
        }
        (Some(_), Some(_)) => bail!("--secret id={id}: give src= or env=, not both"),
    };
    Ok((id, crate::engine::mounts::SecretValue(value)))
}

/// `--ssh default` or `--ssh ID=SOCKET`: the id and the agent's socket.
fn ssh_agent(spec: &str) -> Result<(String, PathBuf)> {
    let (id, path) = match spec.split_once('=') {
        Some((id, p)) => (id.to_string(), PathBuf::from(p)),
        None => match std::env::var_os("SSH_AUTH_SOCK").filter(|v| !v.is_empty()) {
            Some(p) => (spec.to_string(), PathBuf::from(p)),
            None => bail!("--ssh {spec}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent -s); ssh-add KEY) or give --ssh {spec}=SOCKET"),
        },
    };
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(&path) {
        Ok(m) if m.file_type().is_socket() => Ok((id, path)),
        _ => bail!("--ssh {spec}: {} is not an ssh agent socket (kiln forwards an agent; load keys with ssh-add)", path.display()),
    }
}

/// Where the cache lives, shared by `kiln build` and `kiln warm`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Local cache directory (default: $XDG_CACHE_HOME/kiln or ~/.cache/kiln).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Registry repository for shared cache entries (default: $CI_REGISTRY_IMAGE/cache).
    #[arg(long, value_name = "REF")]
    pub cache_repo: Option<String>,
    /// How old a cache entry may be (Go duration, e.g. 336h).
    #[arg(long, default_value = "336h", value_name = "DURATION")]
    pub cache_ttl: String,
}

impl CacheArgs {
    fn dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    fn ttl_secs(&self) -> Result<u64> {
        duration_secs(&self.cache_ttl, "--cache-ttl")
    }
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Image to fetch (manifest, config, every layer). Repeatable.
    #[arg(short = 'i', long = "image", value_name = "REF")]
    pub image: Vec<String>,
    /// Fetch every base image of this Dockerfile (ARGs resolved); with --cache-repo,
    /// also the cache entries a build of it would hit.
    #[arg(short = 'd', long)]
    pub dockerfile: Option<PathBuf>,
    /// Build context, for the keys of COPY steps (with --cache-repo).
    #[arg(long, default_value = ".")]
    pub context: String,
    /// The cache dir, as kaniko's warmer takes it (`-c`; same as --cache-dir).
    #[arg(short = 'c', value_name = "DIR")]
    pub cache_dir_short: Option<PathBuf>,
    /// Accepted for kaniko's warmer: kiln re-verifies what the cache dir holds
    /// and fetches what is missing, so there is nothing to force.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_arg: Vec<String>,
    #[arg(long)]
    pub target: Option<String>,
    /// Platform(s) whose base images to fetch (comma-separated or repeated).
    #[arg(long, aliases = ["custom-platform", "customPlatform"], value_name = "OS/ARCH[,...]")]
    pub platform: Vec<String>,
    #[command(flatten)]
    pub cache_args: CacheArgs,
    /// The build's compression settings: they are part of every cache key.
    #[command(flatten)]
    pub compression: CompressionArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// kaniko's warmer flags for logs and pulls.
    #[command(flatten)]
    pub kaniko: kaniko::SharedArgs,
}

/// Default gzip level. Chosen by measurement (README, "Benchmark"): on real trees
/// level 3 is about a third faster than 6 for a few percent more bytes; level 1
/// costs a third more bytes.
pub const DEFAULT_GZIP_LEVEL: u32 = 3;

/// Layer compression, shared by `build` and `warm` (whose cache keys must agree).
#[derive(Args, Debug, Clone)]
pub struct CompressionArgs {
    /// Layer compression: gzip (default; parallel, readable everywhere) or zstd
    /// (faster and smaller; needs containerd >= 1.5, Docker >= 23, podman >= 4.1).
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub compression: CompressionArg,
    /// Compression level: gzip 0-9 (default 3), zstd 1-19 (default 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=19))]
    pub compression_level: Option<u32>,
}

impl CompressionArgs {
    pub fn zstd(&self) -> bool {
        self.compression == CompressionArg::Zstd
    }

    pub fn level(&self) -> Result<u32> {
        Ok(match (self.compression, self.compression_level) {
            (CompressionArg::Gzip, Some(l)) if l > 9 => {
                bail!("--compression-level {l}: gzip levels are 0-9")
            }
            (_, Some(l)) => l,
            (CompressionArg::Gzip, None) => DEFAULT_GZIP_LEVEL,
            (CompressionArg::Zstd, None) => 3,
        })
    }
}

impl WarmArgs {
    pub fn request(&self) -> Result<BuildRequest> {
        let images = self
            .image
            .iter()
            .map(|i| Reference::parse(i).context("in --image"))
            .collect::<Result<Vec<_>>>()?;
        if images.is_empty() && self.dockerfile.is_none() {
            bail!("nothing to warm: give --image REF and/or --dockerfile PATH");
        }
        if self.force {
            crate::report::message("note: --force changes nothing in kiln warm: what the cache dir holds is verified, and what is missing is fetched");
        }
        for n in self.kaniko.check()? {
            crate::report::message(&n);
        }
        let cache_repo = match &self.dockerfile {
            Some(_) => cache_repo(self.cache_args.cache_repo.as_deref())?,
            None => None,
        };
        Ok(BuildRequest {
            context: PathBuf::from(self.context.strip_prefix("dir://").unwrap_or(&self.context)),
            dockerfile: self.dockerfile.clone().unwrap_or_default(),
            build_args: resolve_build_args(&self.build_arg),
            target: self.target.clone(),
            no_push: true,
            platforms: platform_list(&self.platform, None)?,
            registry: self.registry.options(vec![])?,
            pull: self.registry.pull.sources()?,
            compression_level: self.compression.level()?,
            zstd: self.compression.zstd(),
            cache: true,
            cache_dir: self
                .cache_dir_short
                .clone()
                .unwrap_or_else(|| self.cache_args.dir()),
            cache_repo,
            cache_ttl_secs: self.cache_args.ttl_secs()?,
            warm: true,
            warm_images: images,
            ..Default::default()
        })
    }
}

impl BuildArgs {
    /// `--build-context`s, each name once.
    fn build_contexts(&self) -> Result<Vec<(String, crate::engine::NamedContext)>> {
        let mut out: Vec<(String, crate::engine::NamedContext)> = vec![];
        for spec in &self.build_context {
            let (name, ctx) = crate::engine::parse_build_context(spec)?;
            if out.iter().any(|(n, _)| *n == name) {
                bail!("--build-context {name} is given twice");
            }
            out.push((name, ctx));
        }
        Ok(out)
    }
}

/// `--build-arg` values: `K=V`, or a bare `K` taking its value from the environment
/// (left out when unset).
fn resolve_build_args(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// OCI layout directory (`DIR` or `DIR:TAG`, optionally prefixed `oci:`) or
    /// docker-archive tarball (optionally prefixed `docker-archive:`).
    pub source: String,
    /// Destination image reference.
    pub destination: String,
    /// Write the pushed digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Where the index goes (its tag is set last).
    #[arg(long, short = 'd', value_name = "REF")]
    pub destination: String,
    /// The platforms the index must hold, each once and no other (comma-separated,
    /// as --platform takes them).
    #[arg(long, value_name = "LIST")]
    pub platforms: Option<String>,
    /// Write the index digest to this file.
    #[arg(long, value_name = "FILE")]
    pub digest_file: Option<PathBuf>,
    /// Write `name@digest` of the index to this file.
    #[arg(long, value_name = "FILE")]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write KILN_IMAGE, KILN_IMAGE_DIGEST, KILN_IMAGE_REF and each platform's
    /// KILN_IMAGE_DIGEST_<PLATFORM> (GitLab's artifacts:reports:dotenv), as
    /// kiln build --dotenv does.
    #[arg(long, value_name = "FILE")]
    pub dotenv: Option<PathBuf>,
    /// The single-platform images, by tag or digest.
    #[arg(required = true, value_name = "SRC")]
    pub sources: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `--platform` values (each a comma-separated list), or kaniko's one
/// `--custom-platform`; each platform once. Empty: the host's.
fn platform_list(given: &[String], custom: Option<&str>) -> Result<Vec<Platform>> {
    let mut out: Vec<Platform> = Vec::new();
    for g in given {
        for p in Platform::parse_list(g).map_err(|e| anyhow::anyhow!("--platform: {e}"))? {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    if let Some(c) = custom {
        if !out.is_empty() {
            bail!("give --platform or kaniko's --custom-platform, not both");
        }
        if c.contains(',') {
            bail!("--custom-platform {c:?}: kaniko's flag takes one platform; for several, use --platform {c}");
        }
        out.push(Platform::parse(c).map_err(|e| anyhow::anyhow!("--custom-platform: {e}"))?);
    }
    Ok(out)
}

fn split_kv(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("{what} {s:?}: expected KEY=VALUE"),
    }
}

impl RegistryArgs {
    /// Registry options; explicit credentials apply to `destination_hosts`.
    pub fn options(&self, destination_hosts: Vec<String>) -> Result<registry::Options> {
        let password = if self.password_stdin {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read the password from stdin")?;
            Some(s.trim_end_matches(['\n', '\r']).to_string())
        } else {
            self.password.clone()
        };
        let explicit = match (&self.username, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (None, Some(_)) => bail!("--password/--password-stdin needs --username"),
            _ => None,
        };
        let registry_certificates = self
            .registry_certificate
            .iter()
            .map(|v| split_kv(v, "--registry-certificate").map(|(h, p)| (h, PathBuf::from(p))))
            .collect::<Result<Vec<_>>>()?;
        let client_certs = self
            .registry_client_cert
            .iter()
            .map(|v| {
                let (h, pair) = split_kv(v, "--registry-client-cert")?;
                match pair.split_once(',') {
                    Some((c, k)) => Ok((h, PathBuf::from(c), PathBuf::from(k))),
                    None => bail!("--registry-client-cert {v:?}: expected HOST=CERT,KEY"),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let plain_mirrors = self.pull.plain_http_hosts();
        Ok(registry::Options {
            insecure: self
                .insecure_registry
                .iter()
                .cloned()
                .chain(plain_mirrors)
                .collect(),
            tls: registry::tls::TlsOptions {
                ca_certs: self.ca_cert.clone(),
                registry_certificates,
                client_certs,
                skip_verify: self.skip_tls_verify_registry.clone(),
                certs_d_roots: vec![],
            },
            creds: registry::creds::Sources::from_process(explicit, destination_hosts),
            push_retry: registry::retry::Policy {
                retries: self.push_retry,
                ..Default::default()
            },
            pull_retry: registry::retry::Policy {
                retries: self.image_download_retry,
                ..Default::default()
            },
        })
    }
}

/// The default local cache directory.
pub fn default_cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("kiln"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join(".cache/kiln"),
    }
}

/// `--cache-repo`, else `$CI_REGISTRY_IMAGE/cache` when that is set.
pub fn cache_repo(flag: Option<&str>) -> Result<Option<Reference>> {
    Ok(match (flag, std::env::var("CI_REGISTRY_IMAGE")) {
        (Some(r), _) => Some(Reference::parse(r).context("in --cache-repo")?),
        (None, Ok(img)) if !img.is_empty() => Reference::parse(&format!("{img}/cache")).ok(),
        _ => None,
    })
}

/// A Go-style duration as whole seconds.
pub fn duration_secs(s: &str, flag: &str) -> Result<u64> {
    match crate::engine::parse_duration(s) {
        Some(ns) => Ok(ns / 1_000_000_000),
        None => bail!("{flag} {s:?}: use a duration such as 336h, 90m or 3600s"),
    }
}

impl BuildArgs {
    /// (cache on?, cache dir, cache repo, ttl seconds).
    fn cache_settings(&self) -> Result<(bool, PathBuf, Option<Reference>, u64)> {
        let repo = cache_repo(self.cache_args.cache_repo.as_deref())?;
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        let on = self.cache.unwrap_or(in_ci && repo.is_some());
        if self.cache_copy_layers {
            crate::report::message(
                "note: --cache-copy-layers is not needed: kiln always caches COPY",
            );
        }
        let dir = self.cache_args.dir();
        Ok((on, dir, repo, self.cache_args.ttl_secs()?))
    }

    pub fn request(&self) -> Result<BuildRequest> {
        for n in self.kaniko.check()? {
            crate::report::message(&n);
        }
        // kaniko's tar:// contexts are unpacked; its s3://, gs://, … are not
        // kiln's business.
        let (mut context, context_guard) = match self.context.strip_prefix("tar://") {
            Some(spec) => {
                let (work, dir) = tar_context::unpack(spec, self.work_dir.as_deref())?;
                (dir, Some(work))
            }
            None if self.context.contains("://") && !self.context.starts_with("dir://") => {
                bail!("--context {}: kiln takes a directory (dir:// or a path) or a tar archive (tar://PATH, tar://stdin); fetch other sources in an earlier script line, or let GitLab check the project out", self.context);
            }
            None => (
                PathBuf::from(self.context.strip_prefix("dir://").unwrap_or(&self.context)),
                None,
            ),
        };
        if let Some(sub) = &self.kaniko.context_sub_path {
            context = context.join(sub.trim_start_matches('/'));
        }
        let destinations = self
            .destination
            .iter()
            .map(|d| Reference::parse(d).with_context(|| "in --destination".to_string()))
            .collect::<Result<Vec<_>>>()?;
        if destinations.is_empty()
            && self.tar_path.is_none()
            && self.oci_layout_path.is_none()
            && !self.no_push
        {
            bail!("nothing to do: give --destination to push, or --tar-path / --oci-layout-path to write the image locally");
        }
        let hosts = destinations.iter().map(|d| d.registry.clone()).collect();
        let build_args = resolve_build_args(&self.build_arg);
        let labels = self
            .label
            .iter()
            .map(|l| split_kv(l, "--label"))
            .collect::<Result<Vec<_>>>()?;
        let sde = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => {
                Some(v.trim().parse::<u64>().with_context(|| {
                    format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
                })?)
            }
            _ => None,
        };
        let source_date_epoch = sde.or(if self.reproducible { Some(0) } else { None });
        let (cache, cache_dir, cache_repo, cache_ttl_secs) = self.cache_settings()?;
        let platforms = platform_list(&self.platform, self.custom_platform.as_deref())?;
        let dest_hosts: Vec<String> = destinations.iter().map(|d| d.registry.clone()).collect();
        let mut registry = self.registry.options(hosts)?;
        if self.kaniko.insecure {
            registry.insecure.extend(dest_hosts.iter().cloned());
        }
        if self.kaniko.skip_tls_verify {
            registry.tls.skip_verify.extend(dest_hosts.iter().cloned());
        }
        let run_ca = run_ca(self.run_ca_certs, &registry.tls)?;
        let secrets = self
            .secret
            .iter()
            .map(|s| secret(s))
            .collect::<Result<Vec<_>>>()?;
        let ssh = self
            .ssh
            .iter()
            .map(|s| ssh_agent(s))
            .collect::<Result<Vec<_>>>()?;
        // Without --dockerfile, the context's (never a Dockerfile that happens
        // to be in the current directory).
        let dockerfile = match &self.dockerfile {
            Some(f) => f.clone(),
            None => context.join("Dockerfile"),
        };
        let image_format = match self.image_format {
            None | Some(ImageFormatArg::Oci) => Format::Oci,
            Some(ImageFormatArg::Docker) => {
                if self.compression.zstd() {
                    bail!("--image-format=docker: Docker's image format has no zstd layers; use --compression gzip, or --image-format=oci");
                }
                if self.oci_layout_path.is_some() {
                    bail!("--image-format=docker: an OCI layout holds OCI manifests (skopeo and umoci read no other); drop --oci-layout-path (--tar-path and registries take Docker's format), or use --image-format=oci");
                }
                if !self.kaniko.annotation.is_empty() {
                    bail!("--image-format=docker: Docker's image format has no annotations; drop --annotation, or use --image-format=oci");
                }
                Format::Docker
            }
        };
        let attach = self.attest.attach()?;
        Ok(BuildRequest {
            image_format,
            single_snapshot: self.kaniko.single_snapshot,
            context,
            context_guard,
            dockerfile,
            destinations,
            build_args,
            target: self.target.clone(),
            labels,
            no_push: self.no_push,
            tar_path: self.tar_path.clone(),
            oci_layout_path: self.oci_layout_path.clone(),
            digest_file: self.digest_file.clone(),
            image_name_with_digest_file: self.image_name_with_digest_file.clone(),
            source_date_epoch,
            platforms,
            emulator_dir: self.emulator_dir.clone(),
            registry,
            run_ca,
            secrets,
            ssh,
            skip_push_permission_check: self.skip_push_permission_check,
            dotenv: self.dotenv.clone(),
            annotations: self.kaniko.annotations()?,
            image_name_tag_with_digest_file: self.kaniko.image_name_tag_with_digest_file.clone(),
            no_push_cache: self.kaniko.no_push_cache,
            report: self.report.clone(),
            sbom_files: self.attest.sbom_files()?,
            provenance_files: self.attest.provenance_file.clone(),
            provenance_mode: attach.mode,
            attach_sbom: attach.sbom,
            attach_provenance: attach.provenance,
            hints: !self.attest.no_hints,
            attest_layout: self.attest.layout()?,
            pull: self.registry.pull.sources()?,
            work_dir: self.work_dir.clone(),
            compression_level: self.compression.level()?,
            zstd: self.compression.zstd(),
            isolation: self.isolation,
            cache,
            cache_dir,
            cache_repo,
            cache_ttl_secs,
            warm: false,
            warm_images: vec![],
            hold_tags: None,
            job_slot: None,
            label: String::new(),
            build_contexts: self.build_contexts()?,
        })
    }
}
