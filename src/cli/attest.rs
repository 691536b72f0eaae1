//! `kiln build`'s supply-chain flags: where the SBOM goes.

use crate::attest::sbom::Format;
use anyhow::{anyhow, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AttestArgs {
    /// Write the image's SBOM to FILE: SPDX 2.3 JSON for a name ending in
    /// `.spdx.json`, CycloneDX 1.6 JSON for `.cdx.json` (what GitLab's
    /// `artifacts:reports:cyclonedx` reads). Repeatable. With several platforms,
    /// one file each: `sbom.linux-arm64.cdx.json`.
    #[arg(long = "sbom-file", value_name = "FILE")]
    pub sbom_file: Vec<PathBuf>,
}

impl AttestArgs {
    /// The SBOM files with their formats; a name with neither suffix is refused.
    pub fn sbom_files(&self) -> Result<Vec<(PathBuf, Format)>> {
        self.sbom_file
            .iter()
            .map(|p| {
                Ok((
                    p.clone(),
                    Format::of_path(p).map_err(|e| anyhow!("--sbom-file {e}"))?,
                ))
            })
            .collect()
    }
}
