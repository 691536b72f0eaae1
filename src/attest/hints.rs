//! Layer hints from the same pass as the SBOM's scan: per layer, the package
//! managers' caches and VCS directories it keeps, the big files a later layer
//! deletes or overwrites (the image still carries them), and its largest
//! files, each with its size and a fix. [`Usage`] is gathered while a layer's
//! entries stream by; [`hints`] is pure.

use serde::{Deserialize, Serialize};

/// A file this big is listed among a layer's big files.
pub const BIG: u64 = 1 << 20;
/// At most this many big files are kept per layer.
const MAX_BIG: usize = 2000;
/// A cache or waste smaller than this is not worth a hint.
pub const WORTH: u64 = 1 << 20;

/// A cache or VCS directory a layer keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheUse {
    pub kind: String,
    pub dir: String,
    pub bytes: u64,
}

/// What a layer's files weigh, where it matters for hints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub caches: Vec<CacheUse>,
    /// Files of at least [`BIG`] bytes: (path, size).
    pub big: Vec<(String, u64)>,
}

/// The cache (or VCS directory) a path lies in: its kind and directory.
pub fn classify(path: &str) -> Option<(&'static str, String)> {
    const FIXED: &[(&str, &str)] = &[
        ("var/lib/apt/lists", "apt-lists"),
        ("var/cache/apt", "apt-archives"),
        ("var/cache/apk", "apk"),
        ("root/.cache/pip", "pip"),
        ("root/.npm/_cacache", "npm"),
        ("usr/local/share/.cache/yarn", "yarn"),
        ("usr/local/cargo/registry", "cargo"),
        ("root/.cargo/registry", "cargo"),
        ("root/go/pkg/mod", "go-mod"),
        ("go/pkg/mod", "go-mod"),
        ("root/.cache/go-build", "go-build"),
    ];
    for (dir, kind) in FIXED {
        if path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')) {
            return Some((kind, dir.to_string()));
        }
    }
    // Another user's caches: home/NAME/.cache/pip, home/NAME/.npm/_cacache.
    if let Some(rest) = path.strip_prefix("home/") {
        let (user, under) = rest.split_once('/')?;
        for (sub, kind) in [
            (".cache/pip", "pip"),
            (".npm/_cacache", "npm"),
            (".cache/go-build", "go-build"),
        ] {
            if under.strip_prefix(sub).is_some_and(|r| r.starts_with('/')) {
                return Some((kind, format!("home/{user}/{sub}")));
            }
        }
    }
    let mut end = 0;
    for part in path.split('/') {
        end += part.len();
        if matches!(part, ".git" | ".hg" | ".svn") && end < path.len() {
            return Some(("vcs", path[..end].to_string()));
        }
        end += 1;
    }
    None
}

impl Usage {
    /// A regular file of the layer.
    pub fn file(&mut self, path: &str, size: u64) {
        if let Some((kind, dir)) = classify(path) {
            match self.caches.iter_mut().find(|c| c.dir == dir) {
                Some(c) => c.bytes += size,
                None => self.caches.push(CacheUse {
                    kind: kind.to_string(),
                    dir,
                    bytes: size,
                }),
            }
        }
        if size >= BIG && self.big.len() < MAX_BIG {
            self.big.push((path.to_string(), size));
        }
    }
}

/// The fix for a cache of `kind` kept in a layer.
fn fix(kind: &str, dir: &str) -> String {
    match kind {
        "apt-lists" => "add `&& rm -rf /var/lib/apt/lists/*` to the RUN that runs apt-get update, or mount a cache there: `RUN --mount=type=cache,target=/var/lib/apt/lists,sharing=locked`".into(),
        "apt-archives" => "run `apt-get clean` in the same RUN, or `RUN --mount=type=cache,target=/var/cache/apt,sharing=locked`".into(),
        "apk" => "use `apk add --no-cache`".into(),
        "pip" => format!("use `pip install --no-cache-dir`, or `RUN --mount=type=cache,target=/{dir}`"),
        "npm" => format!("run `npm cache clean --force` in the same RUN, or `RUN --mount=type=cache,target=/{}`", dir.trim_end_matches("/_cacache")),
        "yarn" => "run `yarn cache clean` in the same RUN, or mount a cache at /usr/local/share/.cache/yarn".into(),
        "cargo" => format!("`RUN --mount=type=cache,target=/{dir}` keeps crates out of the layer"),
        "go-mod" | "go-build" => format!("`RUN --mount=type=cache,target=/{dir}` keeps Go's caches out of the layer"),
        _ => format!("leave /{dir} out: `.dockerignore` it for a COPY, or remove it in the same RUN that fetched it"),
    }
}

/// One hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hint {
    /// Index of the layer in the image (0 is the bottom).
    pub layer: usize,
    /// `cache`, `deleted-later` or `largest`.
    pub kind: &'static str,
    pub path: String,
    pub bytes: u64,
    /// For `deleted-later`: the layer that deletes or overwrites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_layer: Option<usize>,
    pub fix: String,
}

/// What one image layer offers the hints: its usage and what it removes
/// (None for a layer whose facts are not known, e.g. a base's).
pub struct LayerView<'a> {
    pub usage: Option<&'a Usage>,
    pub removed: &'a [String],
    pub opaque: &'a [String],
}

fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// The hints of an image's layers (bottom first), biggest first within a layer.
pub fn hints(layers: &[LayerView<'_>]) -> Vec<Hint> {
    let mut out = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let Some(u) = l.usage else {
            continue;
        };
        let mut caches: Vec<&CacheUse> = u.caches.iter().filter(|c| c.bytes >= WORTH).collect();
        caches.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.dir.cmp(&b.dir)));
        for c in caches {
            out.push(Hint {
                layer: i,
                kind: "cache",
                path: format!("/{}", c.dir),
                bytes: c.bytes,
                by_layer: None,
                fix: fix(&c.kind, &c.dir),
            });
        }
        // Big files of this layer that a later layer removes or writes again.
        let mut wasted: Vec<(usize, u64, String)> = Vec::new();
        for (path, size) in &u.big {
            let later = layers.iter().enumerate().skip(i + 1).find(|(_, m)| {
                m.removed.iter().any(|r| r == path || under(path, r))
                    || m.opaque.iter().any(|d| under(path, d))
                    || m.usage
                        .is_some_and(|mu| mu.big.iter().any(|(p, _)| p == path))
            });
            if let Some((j, _)) = later {
                match wasted.iter_mut().find(|(lj, _, _)| *lj == j) {
                    Some(w) => w.1 += size,
                    None => wasted.push((j, *size, path.clone())),
                }
            }
        }
        for (j, bytes, example) in wasted.into_iter().filter(|w| w.1 >= WORTH) {
            out.push(Hint {
                layer: i,
                kind: "deleted-later",
                path: format!("/{example}"),
                bytes,
                by_layer: Some(j),
                fix: "the image still carries what a later layer deletes or overwrites: remove files in the same RUN that makes them, or make them in a stage of their own and COPY --from what is kept".into(),
            });
        }
        let mut big: Vec<&(String, u64)> = u.big.iter().collect();
        big.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (path, size) in big.into_iter().take(3) {
            out.push(Hint {
                layer: i,
                kind: "largest",
                path: format!("/{path}"),
                bytes: *size,
                by_layer: None,
                fix: String::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_and_vcs_dirs_by_path() {
        for (p, want) in [
            (
                "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
                Some(("apt-lists", "var/lib/apt/lists")),
            ),
            (
                "var/cache/apt/archives/x.deb",
                Some(("apt-archives", "var/cache/apt")),
            ),
            ("root/.cache/pip/http/a/b", Some(("pip", "root/.cache/pip"))),
            (
                "home/app/.npm/_cacache/index-v5/x",
                Some(("npm", "home/app/.npm/_cacache")),
            ),
            (
                "src/app/.git/objects/pack/p.pack",
                Some(("vcs", "src/app/.git")),
            ),
            ("var/lib/apt/listsx", None),
            ("usr/bin/git", None),
        ] {
            let got = classify(p);
            assert_eq!(got.as_ref().map(|(k, d)| (*k, d.as_str())), want, "{p}");
        }
    }

    #[test]
    fn caches_deleted_files_and_the_largest() {
        let mut l0 = Usage::default();
        l0.file("var/lib/apt/lists/a", 3 << 20);
        l0.file("var/lib/apt/lists/b", 1 << 19);
        l0.file("root/.cache/pip/x", 1000);
        l0.file("opt/sdk.tar.gz", 50 << 20);
        l0.file("opt/sdk/bin/tool", 8 << 20);
        l0.file("usr/lib/libbig.so", 20 << 20);
        let mut l2 = Usage::default();
        l2.file("usr/lib/libbig.so", 21 << 20);
        let removed = vec!["opt/sdk.tar.gz".to_string()];
        let layers = [
            LayerView {
                usage: Some(&l0),
                removed: &[],
                opaque: &[],
            },
            LayerView {
                usage: None,
                removed: &removed,
                opaque: &[],
            },
            LayerView {
                usage: Some(&l2),
                removed: &[],
                opaque: &[],
            },
        ];
        let h = hints(&layers);
        let kinds: Vec<(usize, &str, &str, u64, Option<usize>)> = h
            .iter()
            .map(|h| (h.layer, h.kind, h.path.as_str(), h.bytes, h.by_layer))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    0,
                    "cache",
                    "/var/lib/apt/lists",
                    (3 << 20) + (1 << 19),
                    None
                ),
                (0, "deleted-later", "/opt/sdk.tar.gz", 50 << 20, Some(1)),
                (0, "deleted-later", "/usr/lib/libbig.so", 20 << 20, Some(2)),
                (0, "largest", "/opt/sdk.tar.gz", 50 << 20, None),
                (0, "largest", "/usr/lib/libbig.so", 20 << 20, None),
                (0, "largest", "/opt/sdk/bin/tool", 8 << 20, None),
                (2, "largest", "/usr/lib/libbig.so", 21 << 20, None),
            ]
        );
        assert!(
            h[0].fix.contains("rm -rf /var/lib/apt/lists"),
            "{}",
            h[0].fix
        );
    }
}
