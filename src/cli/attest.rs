//! `kiln build`'s supply-chain flags, as buildx spells them where buildx has
//! them (`--sbom`, `--provenance`, `--attest`): which documents are attached
//! to the pushed image as OCI referrers, and which are written to files.

use crate::attest::provenance::Mode;
use crate::attest::sbom::Format;
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct AttestArgs {
    /// Attach the image's SBOM (SPDX 2.3 and CycloneDX 1.6) to each pushed
    /// image as OCI referrers, as buildx's `--sbom=true`. Off by default.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub sbom: Option<String>,
    /// Attach SLSA provenance v1 to each pushed image as an OCI referrer, as
    /// buildx's flag: `mode=min` (build argument names, no values; `true` is
    /// the same) or `mode=max` (their values, and the ids of secrets and ssh
    /// agents; never their content); `false`: none. Off by default.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "mode=min|mode=max|false")]
    pub provenance: Option<String>,
    /// buildx's general form: `type=sbom`, `type=provenance[,mode=max]`, or
    /// either with `disabled=true`. Repeatable.
    #[arg(long = "attest", value_name = "type=sbom|type=provenance[,mode=max]")]
    pub attest: Vec<String>,
    /// Write the image's SBOM to FILE: SPDX 2.3 JSON for a name ending in
    /// `.spdx.json`, CycloneDX 1.6 JSON for `.cdx.json` (what GitLab's
    /// `artifacts:reports:cyclonedx` reads). Repeatable. With several platforms,
    /// one file each: `sbom.linux-arm64.cdx.json`.
    #[arg(long = "sbom-file", value_name = "FILE")]
    pub sbom_file: Vec<PathBuf>,
    /// Write the image's SLSA provenance v1 (an in-toto Statement, JSON) to
    /// FILE, in the mode `--provenance` gives (min by default). Repeatable; with
    /// several platforms, one file each (`provenance.linux-arm64.json`).
    #[arg(long = "provenance-file", value_name = "FILE")]
    pub provenance_file: Vec<PathBuf>,
    /// Where `--sbom` and `--provenance` put their documents: `referrers`
    /// (OCI 1.1 referrers of each image manifest; the default) or `buildkit`
    /// (attestation manifests inside the image index, as BuildKit writes them,
    /// for tools that read only that; a single platform then gets an index too).
    #[arg(long, value_name = "referrers|buildkit", default_value = "referrers")]
    pub attest_layout: String,
    /// No layer hints (caches left in a layer, bytes a later layer deletes,
    /// the largest files) in the summary and the report.
    #[arg(long)]
    pub no_hints: bool,
}

/// What the attestation flags ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attach {
    pub sbom: bool,
    pub provenance: bool,
    pub mode: Mode,
}

fn bool_of(flag: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        v => bail!("{flag} {}: kiln takes true or false", crate::clip::clip(v)),
    }
}

/// `mode=min`, `mode=max`, `true`, `false` (provenance's values).
fn provenance_of(v: &str) -> Result<Option<Mode>> {
    Ok(match v {
        "true" | "mode=min" | "min" => Some(Mode::Min),
        "mode=max" | "max" => Some(Mode::Max),
        "false" => None,
        v => bail!(
            "--provenance {}: kiln takes mode=min, mode=max, true or false",
            crate::clip::clip(v)
        ),
    })
}

impl AttestArgs {
    /// The documents to attach, and the provenance's mode.
    pub fn attach(&self) -> Result<Attach> {
        let mut a = Attach::default();
        if let Some(v) = &self.sbom {
            if v.starts_with("generator=") {
                bail!("--sbom {}: kiln scans the image itself and runs no generator image; use --sbom=true", crate::clip::clip(v));
            }
            a.sbom = bool_of("--sbom", v)?;
        }
        if let Some(v) = &self.provenance {
            if let Some(m) = provenance_of(v)? {
                a.provenance = true;
                a.mode = m;
            } else if !self.provenance_file.is_empty() {
                bail!("--provenance=false and --provenance-file contradict each other; drop one");
            }
        }
        for spec in &self.attest {
            let mut kind = None;
            let mut disabled = false;
            let mut mode = None;
            for part in spec.split(',') {
                match part.split_once('=') {
                    Some(("type", t)) => kind = Some(t),
                    Some(("disabled", d)) => disabled = bool_of("--attest disabled", d)?,
                    Some(("mode", m)) => mode = provenance_of(&format!("mode={m}"))?,
                    _ => bail!(
                        "--attest {}: kiln takes type=sbom or type=provenance, with mode= (provenance) and disabled=",
                        crate::clip::clip(spec)
                    ),
                }
            }
            match kind {
                Some("sbom") => a.sbom = !disabled,
                Some("provenance") => {
                    a.provenance = !disabled;
                    if let Some(m) = mode {
                        a.mode = m;
                    }
                }
                _ => bail!(
                    "--attest {}: name the type: type=sbom or type=provenance",
                    crate::clip::clip(spec)
                ),
            }
        }
        Ok(a)
    }

    /// `--attest-layout`.
    pub fn layout(&self) -> Result<crate::engine::AttestLayout> {
        match self.attest_layout.as_str() {
            "referrers" => Ok(crate::engine::AttestLayout::Referrers),
            "buildkit" => Ok(crate::engine::AttestLayout::BuildKit),
            v => bail!(
                "--attest-layout {}: kiln takes referrers or buildkit",
                crate::clip::clip(v)
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(sbom: Option<&str>, provenance: Option<&str>, attest: &[&str]) -> AttestArgs {
        AttestArgs {
            sbom: sbom.map(str::to_string),
            provenance: provenance.map(str::to_string),
            attest: attest.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn buildx_spellings() {
        assert_eq!(args(None, None, &[]).attach().unwrap(), Attach::default());
        let a = args(Some("true"), Some("mode=max"), &[]).attach().unwrap();
        assert!(a.sbom && a.provenance && a.mode == Mode::Max);
        let a = args(None, None, &["type=sbom", "type=provenance,mode=max"])
            .attach()
            .unwrap();
        assert!(a.sbom && a.provenance && a.mode == Mode::Max);
        let a = args(Some("true"), None, &["type=sbom,disabled=true"])
            .attach()
            .unwrap();
        assert!(!a.sbom);
        assert!(!args(None, Some("false"), &[]).attach().unwrap().provenance);
        for bad in [
            args(Some("generator=docker/scout-sbom-indexer"), None, &[]),
            args(Some("yes"), None, &[]),
            args(None, Some("mode=full"), &[]),
            args(None, None, &["type=vex"]),
            args(None, None, &["sbom"]),
        ] {
            assert!(bad.attach().is_err(), "{bad:?}");
        }
    }
}
