//! `kiln build`'s supply-chain flags: where the SBOM goes.

use crate::attest::provenance::Mode;
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
    /// Write the image's SLSA provenance v1 (an in-toto Statement, JSON) to
    /// FILE. Repeatable; with several platforms, one file each
    /// (`provenance.linux-arm64.json`).
    #[arg(long = "provenance-file", value_name = "FILE")]
    pub provenance_file: Vec<PathBuf>,
    /// How much the provenance shows, as buildx's flag: `mode=min` (the
    /// default: build argument names, no values) or `mode=max` (their values,
    /// and the ids of secrets and ssh agents; never their content); `false`
    /// for none.
    #[arg(long = "provenance", value_name = "mode=min|mode=max|false")]
    pub provenance: Option<String>,
}

impl AttestArgs {
    /// `--provenance`'s mode; `false` (buildx's way to turn it off) is None.
    pub fn provenance_mode(&self) -> Result<Option<Mode>> {
        let mode = match self.provenance.as_deref() {
            None | Some("mode=min") | Some("min") | Some("true") => Some(Mode::Min),
            Some("mode=max") | Some("max") => Some(Mode::Max),
            Some("false") => None,
            Some(v) => {
                return Err(anyhow!(
                    "--provenance {}: kiln takes mode=min, mode=max or false",
                    crate::clip::clip(v)
                ))
            }
        };
        if mode.is_none() && !self.provenance_file.is_empty() {
            return Err(anyhow!(
                "--provenance=false and --provenance-file contradict each other; drop one"
            ));
        }
        Ok(mode)
    }

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
