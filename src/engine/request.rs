//! What `kiln build` (and `kiln warm`) is asked to do, and what a build made:
//! plain data, filled by the CLI and read by the engine.

use super::{mirrors, mounts};
use crate::image::manifest::Platform;
use crate::image::Reference;
use crate::registry;
use std::path::PathBuf;

/// Where `--sbom` and `--provenance` put their documents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AttestLayout {
    /// OCI 1.1 referrers of each image manifest (the default).
    #[default]
    Referrers,
    /// BuildKit's: attestation manifests inside the image index, which a
    /// single-platform image then also gets.
    BuildKit,
}

/// A tag whose manifest is already in its destination by digest, to be put
/// later: `kiln bake` tags every target only once all of them are built.
#[derive(Debug, Clone)]
pub struct HeldTag {
    pub dest: Reference,
    pub tag: String,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

/// Where a build leaves its tags instead of putting them.
#[derive(Debug, Clone, Default)]
pub struct HeldTags(pub std::sync::Arc<std::sync::Mutex<Vec<HeldTag>>>);

impl HeldTags {
    pub fn take(&self) -> Vec<HeldTag> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// A named build context (`--build-context name=VALUE`).
#[derive(Debug, Clone, PartialEq)]
pub enum NamedContext {
    /// `docker-image://REF`.
    Image(Reference),
    /// `oci-layout://DIR[:TAG]`.
    Layout { dir: PathBuf, tag: Option<String> },
    /// A local directory.
    Dir(PathBuf),
}

/// Everything `kiln build` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// OCI (default) or Docker v2 schema 2 media types for the image.
    pub image_format: crate::image::manifest::Format,
    /// kaniko's `--single-snapshot`: the steps' changes in one layer.
    pub single_snapshot: bool,
    pub context: PathBuf,
    /// Keeps an unpacked `tar://` context for as long as the request lives.
    pub context_guard: Option<std::sync::Arc<crate::fs::workdir::WorkDir>>,
    pub dockerfile: PathBuf,
    /// `--build-context`s, by lower-case name.
    pub build_contexts: Vec<(String, NamedContext)>,
    pub destinations: Vec<Reference>,
    /// `--build-arg`, already resolved (a bare `K` took its value from the environment).
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Fixed timestamps: Some(epoch) from `SOURCE_DATE_EPOCH`, or 0 with `--reproducible`.
    pub source_date_epoch: Option<u64>,
    /// The target platforms (`--platform a,b`); none: the host's. Several make
    /// an image index.
    pub platforms: Vec<Platform>,
    /// `--emulator-dir`: where foreign RUN steps find qemu-user.
    pub emulator_dir: Option<PathBuf>,
    pub registry: registry::Options,
    pub work_dir: Option<PathBuf>,
    /// Compression level (gzip 0-9, zstd 1-19).
    pub compression_level: u32,
    /// zstd instead of gzip for new layers.
    pub zstd: bool,
    pub isolation: crate::exec::Isolation,
    /// Company CAs (PEM) RUN steps trust for their duration (`--run-ca-certs`).
    pub run_ca: Option<String>,
    /// `--secret`s by id.
    pub secrets: Vec<(String, mounts::SecretValue)>,
    /// `--ssh` agents by id.
    pub ssh: Vec<(String, PathBuf)>,
    /// `--skip-push-permission-check`.
    pub skip_push_permission_check: bool,
    /// `--dotenv`: KILN_IMAGE, KILN_IMAGE_DIGEST, KILN_IMAGE_REF.
    pub dotenv: Option<PathBuf>,
    /// `--report`: the JSON build report.
    pub report: Option<PathBuf>,
    /// `--sbom-file`s and their formats.
    pub sbom_files: Vec<(PathBuf, crate::attest::sbom::Format)>,
    /// `--provenance-file`s (SLSA v1 in-toto statements).
    pub provenance_files: Vec<PathBuf>,
    /// The provenance's mode (`--provenance`, `--attest type=provenance,mode=`).
    pub provenance_mode: crate::attest::provenance::Mode,
    /// `--sbom`: attach the SBOM to the pushed image as OCI referrers.
    pub attach_sbom: bool,
    /// `--provenance`: attach the provenance to the pushed image as an OCI referrer.
    pub attach_provenance: bool,
    /// Layer hints in the summary and the report (`--no-hints` turns them off).
    pub hints: bool,
    /// Where attached attestations go: OCI referrers, or BuildKit's layout.
    pub attest_layout: AttestLayout,
    /// `--annotation`s on the image manifest.
    pub annotations: Vec<(String, String)>,
    /// `--image-name-tag-with-digest-file`: `name:tag@digest` lines.
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// `--no-push-cache`: read the cache repo, push nothing to it.
    pub no_push_cache: bool,
    /// Mirrors, maps and the Dependency Proxy, for pulls.
    pub pull: mirrors::PullSources,
    /// Use and fill the cache (local dir, and the registry cache repo if set).
    pub cache: bool,
    pub cache_dir: PathBuf,
    pub cache_repo: Option<Reference>,
    pub cache_ttl_secs: u64,
    /// The bake target this build is (its step lines start with it); empty
    /// for `kiln build`.
    pub label: String,
    /// Push the image by digest only and leave its tags here (`kiln bake`).
    pub hold_tags: Option<HeldTags>,
    /// In a bake: the target's share of `--jobs`, given back while it waits
    /// on a step another target builds.
    pub job_slot: Option<super::flight::JobSlot>,
    /// `kiln warm`: fetch instead of build (base images with all their layers, and
    /// the cache entries the Dockerfile would hit); no outputs.
    pub warm: bool,
    /// `kiln warm --image`: images to fetch besides the Dockerfile's.
    pub warm_images: Vec<Reference>,
}

/// What `kiln build` made.
pub struct Outcome {
    pub digest: String,
    pub size: u64,
    pub layers: usize,
    pub pushed: Vec<String>,
}
