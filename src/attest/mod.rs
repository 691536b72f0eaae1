//! Supply-chain documents of a built image. One scanner per ecosystem reads
//! the image's metadata files as its layers stream past (`scan`, pure; the
//! tar reading is `layers`), and the formats are pure writers of what they
//! found (`sbom`: SPDX 2.3 and CycloneDX 1.6), with package URLs (`purl`) and
//! licences read as SPDX expressions (`license`), and SLSA provenance v1
//! in an in-toto Statement (`provenance`), also a pure writer; the artifact
//! manifests and referrers index that attach them to an image (`referrers`);
//! BuildKit's layout of them inside the image index, on request (`buildkit`);
//! the layer hints drawn from the same pass (`hints`).

pub mod buildkit;
pub mod hints;
pub mod layers;
pub mod license;
pub mod provenance;
pub mod purl;
pub mod referrers;
pub mod sbom;
pub mod scan;
