//! Platforms as containerd and BuildKit read them, pure.
//!
//! - **Parsing**: `os`, `arch`, `os/arch` or `os/arch/variant`; one word is an OS
//!   when it names one (the host's architecture then), else an architecture
//!   (Linux then). Lists (`--platform a,b`) are comma-separated, as buildx takes
//!   them.
//! - **Normalizing**: `aarch64` → `arm64`, `x86_64`/`x86-64` → `amd64`, `i386` →
//!   `386`, `armhf` → `arm/v7`, `armel` → `arm/v6`, `arm` → `arm/v7`, `arm/7` →
//!   `arm/v7`; the common variants are dropped: `arm64/v8` → `arm64`, `amd64/v1`
//!   → `amd64`. So `TARGETPLATFORM` of `linux/arm64/v8` is `linux/arm64`, as in
//!   BuildKit.
//! - **Picking from an index** ([`select`]): the best match first, in
//!   containerd's order: `arm/v7` also takes `arm/v6` and `arm/v5`; `arm64` takes
//!   lower `v8.x`/`v9.x` variants and then 32-bit `arm/v8` … `arm/v5`; `amd64/vN`
//!   takes lower levels, then plain `amd64`, then `386`. Among manifests of one
//!   platform the first in the index wins.

use oci_spec::image::{Descriptor, ImageIndex};

/// A normalized platform: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// (arch, variant) in their canonical spelling.
fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let (arch, variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let (a, v): (&str, String) = match arch.as_str() {
        "i386" => ("386", String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64",
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => (
            "arm64",
            if matches!(variant.as_str(), "8" | "v8") {
                String::new()
            } else {
                variant
            },
        ),
        "armhf" => ("arm", "v7".into()),
        "armel" => ("arm", "v6".into()),
        "arm" => (
            "arm",
            match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            },
        ),
        other => (other, variant),
    };
    (a.to_string(), (!v.is_empty()).then_some(v))
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Platform {
    /// A platform from its parts, normalized.
    pub fn new(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let os = match os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            o => o.to_string(),
        };
        let (arch, variant) = normalize_arch(arch, variant.unwrap_or(""));
        Platform { os, arch, variant }
    }

    /// Parse one specifier, normalized. Errors say what is wrong and how it is
    /// spelt.
    pub fn parse(s: &str) -> Result<Platform, String> {
        let bad = |why: &str| {
            format!("invalid platform {s:?}: {why}; write os/arch[/variant], e.g. linux/amd64 or linux/arm/v7")
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        if parts.iter().any(|p| !valid_part(p)) {
            return Err(bad("each part is letters, digits, '.', '_' or '-'"));
        }
        match parts.as_slice() {
            [one] => {
                let lower = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&lower.as_str()) || lower == "macos" {
                    let host = Platform::host();
                    return Ok(Platform::new(&lower, &host.arch, host.variant.as_deref()));
                }
                let p = Platform::new("linux", one, None);
                if KNOWN_ARCH.contains(&p.arch.as_str()) {
                    Ok(p)
                } else {
                    Err(bad("not a known operating system or architecture"))
                }
            }
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad("too many parts")),
        }
    }

    /// A comma-separated list (`linux/amd64,linux/arm64`), each once, in order.
    pub fn parse_list(s: &str) -> Result<Vec<Platform>, String> {
        let mut out: Vec<Platform> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = Platform::parse(part)?;
            if !out.contains(&p) {
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(format!("invalid platform list {s:?}: it names no platform"));
        }
        Ok(out)
    }

    /// The platform kiln runs on.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            other => other,
        };
        Platform::new("linux", arch, None)
    }

    /// The platforms an image of which this platform runs, best first
    /// (containerd's `platforms.Only`).
    pub fn candidates(&self) -> Vec<Platform> {
        let with = |arch: &str, v: Option<String>| Platform {
            os: self.os.clone(),
            arch: arch.to_string(),
            variant: v,
        };
        let mut out = vec![self.clone()];
        let level = |v: &Option<String>| -> Option<u32> {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse().ok())
        };
        match self.arch.as_str() {
            "amd64" => {
                if let Some(n) = level(&self.variant) {
                    for k in (2..n).rev() {
                        out.push(with("amd64", Some(format!("v{k}"))));
                    }
                    out.push(with("amd64", None));
                }
                out.push(with("386", None));
            }
            "arm" => {
                if let Some(n) = level(&self.variant) {
                    for k in (5..n).rev() {
                        out.push(with("arm", Some(format!("v{k}"))));
                    }
                }
            }
            "arm64" => {
                let v = self.variant.clone().unwrap_or_else(|| "v8".into());
                let (major, minor) = match v
                    .strip_prefix('v')
                    .map(|m| m.split_once('.').unwrap_or((m, "0")))
                {
                    Some((a, b)) => (a.parse::<u32>().unwrap_or(8), b.parse::<u32>().unwrap_or(0)),
                    None => (8, 0),
                };
                let name = |maj: u32, min: u32| match (maj, min) {
                    (8, 0) => None,
                    (m, 0) => Some(format!("v{m}")),
                    (m, n) => Some(format!("v{m}.{n}")),
                };
                let mut v8_minor = minor;
                if major == 9 {
                    for k in (0..minor).rev() {
                        out.push(with("arm64", name(9, k)));
                    }
                    // v9.x runs what v8.(x+5) does, up to v8.9.
                    v8_minor = (minor + 5).min(9);
                    out.push(with("arm64", name(8, v8_minor)));
                }
                if major >= 8 {
                    for k in (0..v8_minor).rev() {
                        out.push(with("arm64", name(8, k)));
                    }
                }
                // Every arm64 runs 32-bit arm/v8 and below.
                for k in (5..=8).rev() {
                    out.push(with("arm", Some(format!("v{k}"))));
                }
            }
            _ => {}
        }
        let mut seen = Vec::new();
        out.retain(|p| {
            let new = !seen.contains(p);
            seen.push(p.clone());
            new
        });
        out
    }

    /// The platform a descriptor of an index names, normalized.
    pub fn of_descriptor(d: &Descriptor) -> Option<Platform> {
        let p = d.platform().as_ref()?;
        Some(Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        ))
    }

    /// `TARGETOS`, `TARGETARCH`, `TARGETVARIANT` (empty when none) and
    /// `TARGETPLATFORM`, under `prefix` (`TARGET` or `BUILD`).
    pub fn args(&self, prefix: &str) -> [(String, String); 4] {
        [
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.arch.clone()),
            (
                format!("{prefix}VARIANT"),
                self.variant.clone().unwrap_or_default(),
            ),
        ]
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Pick the manifest for `platform` from an index: the best candidate that the
/// index has, the first of its manifests for that candidate.
pub fn select(index: &ImageIndex, platform: &Platform) -> Option<Descriptor> {
    let listed: Vec<(Platform, &Descriptor)> = index
        .manifests()
        .iter()
        .filter_map(|d| Platform::of_descriptor(d).map(|p| (p, d)))
        .collect();
    platform.candidates().iter().find_map(|want| {
        listed
            .iter()
            .find(|(p, _)| p == want)
            .map(|(_, d)| (*d).clone())
    })
}

/// The platforms an index lists, for error messages.
pub fn listed(index: &ImageIndex) -> Vec<String> {
    index
        .manifests()
        .iter()
        .filter_map(Platform::of_descriptor)
        .map(|p| p.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Platform::parse(s)
            .map(|p| p.to_string())
            .unwrap_or_else(|e| e)
    }

    #[test]
    fn specifiers_normalize_as_in_containerd() {
        for (given, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Linux/AMD64", "linux/amd64"),
            ("macos/arm64", "darwin/arm64"),
            ("arm64", "linux/arm64"),
            ("s390x", "linux/s390x"),
            ("linux/riscv64", "linux/riscv64"),
        ] {
            assert_eq!(p(given), want, "{given}");
        }
        assert_eq!(p("linux"), Platform::host().to_string());
    }

    #[test]
    fn bad_specifiers_say_how_to_write_one() {
        for bad in [
            "",
            "linux/",
            "linux/arm64/v8/x",
            "linux/*",
            "frobnicate",
            "linux/am d64",
        ] {
            let e = Platform::parse(bad).unwrap_err();
            assert!(e.contains("os/arch[/variant]"), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_are_comma_separated_and_each_platform_counts_once() {
        let l = Platform::parse_list("linux/amd64, linux/arm64,linux/aarch64").unwrap();
        let s: Vec<String> = l.iter().map(|p| p.to_string()).collect();
        assert_eq!(s, ["linux/amd64", "linux/arm64"]);
        assert!(Platform::parse_list(" , ").is_err());
        assert!(Platform::parse_list("linux/amd64,bogus/").is_err());
    }

    fn cands(s: &str) -> Vec<String> {
        Platform::parse(s)
            .unwrap()
            .candidates()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn candidates_follow_containerds_order() {
        assert_eq!(cands("linux/amd64"), ["linux/amd64", "linux/386"]);
        assert_eq!(
            cands("linux/amd64/v3"),
            [
                "linux/amd64/v3",
                "linux/amd64/v2",
                "linux/amd64",
                "linux/386"
            ]
        );
        assert_eq!(
            cands("linux/arm/v7"),
            ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]
        );
        assert_eq!(
            cands("linux/arm64"),
            [
                "linux/arm64",
                "linux/arm/v8",
                "linux/arm/v7",
                "linux/arm/v6",
                "linux/arm/v5"
            ]
        );
        assert_eq!(
            cands("linux/arm64/v8.2")[..3],
            ["linux/arm64/v8.2", "linux/arm64/v8.1", "linux/arm64"]
        );
        assert_eq!(
            cands("linux/arm64/v9.1")[..4],
            [
                "linux/arm64/v9.1",
                "linux/arm64/v9",
                "linux/arm64/v8.6",
                "linux/arm64/v8.5"
            ]
        );
        assert_eq!(cands("linux/s390x"), ["linux/s390x"]);
    }

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let manifests: Vec<serde_json::Value> = platforms
            .iter()
            .enumerate()
            .map(|(i, (os, arch, v))| {
                let mut plat = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = v {
                    plat["variant"] = serde_json::json!(v);
                }
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{:064x}", i + 1),
                    "size": 100,
                    "platform": plat,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn pick(ix: &ImageIndex, want: &str) -> Option<u64> {
        select(ix, &Platform::parse(want).unwrap())
            .map(|d| u64::from_str_radix(&d.digest().to_string()[60..], 16).unwrap())
    }

    #[test]
    fn an_index_gives_the_best_manifest_for_each_platform() {
        // Docker Hub's usual shapes: arm64 listed with and without v8.
        let ix = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v5")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
            ("linux", "386", None),
            ("unknown", "unknown", None),
        ]);
        assert_eq!(pick(&ix, "linux/amd64"), Some(1));
        assert_eq!(pick(&ix, "linux/arm64"), Some(4));
        assert_eq!(pick(&ix, "linux/arm64/v8"), Some(4));
        assert_eq!(pick(&ix, "linux/arm/v7"), Some(3));
        assert_eq!(pick(&ix, "linux/arm/v6"), Some(2), "v6 runs v5");
        assert_eq!(pick(&ix, "linux/386"), Some(5));
        assert_eq!(pick(&ix, "linux/s390x"), None);
        // Only 32-bit arm: arm64 takes its best, amd64 takes 386.
        let ix = index(&[("linux", "arm", Some("v6")), ("linux", "386", None)]);
        assert_eq!(pick(&ix, "linux/arm64"), Some(1));
        assert_eq!(pick(&ix, "linux/amd64"), Some(2));
        // A plain `arm` entry means arm/v7.
        let ix = index(&[("linux", "arm", None)]);
        assert_eq!(pick(&ix, "linux/arm/v7"), Some(1));
        assert_eq!(pick(&ix, "linux/arm/v6"), None);
        assert_eq!(listed(&ix), ["linux/arm/v7"]);
    }

    #[test]
    fn platform_args_are_buildkits() {
        let a = Platform::parse("linux/arm/v7").unwrap().args("TARGET");
        assert_eq!(a[0], ("TARGETPLATFORM".into(), "linux/arm/v7".into()));
        assert_eq!(a[3], ("TARGETVARIANT".into(), "v7".into()));
        let b = Platform::parse("linux/arm64/v8").unwrap().args("BUILD");
        assert_eq!(b[0].1, "linux/arm64");
        assert_eq!(b[3], ("BUILDVARIANT".into(), String::new()));
    }
}
