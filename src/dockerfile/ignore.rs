//! `.dockerignore` matching with Docker's semantics.
//!
//! - One pattern per line; blank lines and lines starting with `#` are skipped;
//!   surrounding whitespace is trimmed.
//! - Patterns are anchored at the context root (a leading `/` changes nothing) and
//!   are cleaned like Go's `filepath.Clean`.
//! - `*` and `?` do not cross `/`; `**` matches any number of directories, zero included.
//! - `!pattern` re-includes what an earlier pattern excluded; the last match wins.
//! - A pattern that matches a directory matches everything below it.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::Path;

#[derive(Debug, Clone)]
struct Pattern {
    matcher: GlobSet,
    exclusion: bool,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    patterns: Vec<Pattern>,
    has_exclusions: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: invalid pattern {pattern:?}: {reason}")]
pub struct IgnoreError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

/// Go's `filepath.Clean`, on a relative slash path; `.` for empty.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !path.starts_with('/') {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}

impl Ignore {
    /// Load `<dockerfile>.dockerignore` if it exists, else `<context>/.dockerignore`.
    pub fn load(
        context: &Path,
        dockerfile: &Path,
    ) -> Result<(Ignore, Option<String>), anyhow::Error> {
        let mut candidates = Vec::new();
        if let Some(name) = dockerfile.file_name() {
            let mut n = name.to_os_string();
            n.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(n));
        }
        candidates.push(context.join(".dockerignore"));
        for c in candidates {
            match std::fs::read_to_string(&c) {
                Ok(text) => {
                    let name = c.display().to_string();
                    return Ok((Ignore::parse(&name, &text)?, Some(name)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", c.display())),
            }
        }
        Ok((Ignore::default(), None))
    }

    pub fn parse(file: &str, text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pat.trim_start_matches('/'));
            if cleaned == "." {
                // Docker ignores a pattern that cleans to the root.
                continue;
            }
            let matcher = compile(&cleaned).map_err(|reason| IgnoreError {
                file: file.to_string(),
                line: i + 1,
                pattern: line.to_string(),
                reason,
            })?;
            patterns.push(Pattern { matcher, exclusion });
        }
        let has_exclusions = patterns.iter().any(|p| p.exclusion);
        Ok(Ignore {
            patterns,
            has_exclusions,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when `!` patterns exist, so an excluded directory may still hold
    /// re-included files and must be walked.
    pub fn has_exclusions(&self) -> bool {
        self.has_exclusions
    }

    /// Is `rel` (a clean, slash-separated path relative to the context) ignored?
    pub fn is_ignored(&self, rel: &str) -> bool {
        let mut ignored = false;
        for p in &self.patterns {
            if matches_self_or_parent(&p.matcher, rel) {
                ignored = !p.exclusion;
            }
        }
        ignored
    }
}

fn matches_self_or_parent(m: &GlobSet, rel: &str) -> bool {
    if m.is_match(rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(i) = rel[..end].rfind('/') {
        if m.is_match(&rel[..i]) {
            return true;
        }
        end = i;
    }
    false
}

/// A one-pattern set rather than `Glob::compile_matcher`, which panics when the
/// pattern's regex is too big; the set's build reports it as an error.
fn compile(pattern: &str) -> Result<GlobSet, String> {
    let glob = GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(false)
        .build()
        .map_err(|e| e.kind().to_string())?;
    GlobSetBuilder::new()
        .add(glob)
        .build()
        .map_err(|e| match e.kind() {
            globset::ErrorKind::Regex(_) => "the pattern is too large to match".to_string(),
            k => k.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(".dockerignore", text).expect("valid patterns")
    }

    /// The examples of Docker's `.dockerignore` documentation.
    #[test]
    fn docker_documented_examples() {
        let i = ig("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(i.is_ignored("somedir/temporary.txt"));
        assert!(i.is_ignored("somedir/temp"));
        assert!(i.is_ignored("somedir/subdir/temporary.txt"));
        assert!(i.is_ignored("tempa"));
        assert!(i.is_ignored("tempb"));
        assert!(
            !i.is_ignored("temporary.txt"),
            "*/temp* needs one directory level"
        );
        assert!(
            !i.is_ignored("a/b/c/temp"),
            "*/*/temp* is exactly two levels"
        );
        assert!(!i.is_ignored("# comment"));

        let i = ig("**/*.go\n");
        assert!(i.is_ignored("main.go"));
        assert!(i.is_ignored("cmd/tool/main.go"));
        assert!(!i.is_ignored("main.gox"));

        let i = ig("*.md\n!README.md\n");
        assert!(i.is_ignored("CHANGES.md"));
        assert!(!i.is_ignored("README.md"));

        // Last match wins.
        let i = ig("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(i.is_ignored("README-secret.md"));
        assert!(!i.is_ignored("README-public.md"));
        let i = ig("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!i.is_ignored("README-secret.md"));
    }

    #[test]
    fn anchored_at_root_and_cleaned() {
        let i = ig("/build\n./dist/\nfoo/../secret\n");
        assert!(i.is_ignored("build"));
        assert!(
            i.is_ignored("build/out.o"),
            "a directory match covers its contents"
        );
        assert!(i.is_ignored("dist/a.js"));
        assert!(i.is_ignored("secret"));
        assert!(
            !i.is_ignored("src/build"),
            "patterns are anchored at the root"
        );
    }

    #[test]
    fn double_star() {
        let i = ig("**/node_modules\nlogs/**\na/**/z\n");
        assert!(i.is_ignored("node_modules/x.js"));
        assert!(i.is_ignored("web/app/node_modules/y/z.js"));
        assert!(i.is_ignored("logs/2024/x.log"));
        assert!(i.is_ignored("a/z"));
        assert!(i.is_ignored("a/b/c/z"));
        assert!(!i.is_ignored("b/z"));
    }

    #[test]
    fn reinclusion_inside_excluded_dir() {
        let i = ig("docs\n!docs/keep.md\n");
        assert!(i.is_ignored("docs/other.md"));
        assert!(!i.is_ignored("docs/keep.md"));
        assert!(i.has_exclusions());
    }

    #[test]
    fn character_classes_and_escapes() {
        let i = ig("file[0-9].txt\nlit\\*\n");
        assert!(i.is_ignored("file3.txt"));
        assert!(!i.is_ignored("filea.txt"));
        assert!(i.is_ignored("lit*"));
        assert!(!i.is_ignored("litx"));
    }

    #[test]
    fn bad_pattern_names_line() {
        let e = Ignore::parse(".dockerignore", "ok\n[unclosed\n").unwrap_err();
        assert!(e.to_string().starts_with(".dockerignore:2:"), "{e}");
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a/./b//c/"), "a/b/c");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean("./"), ".");
    }

    #[test]
    fn a_pattern_too_big_to_match_is_an_error_not_a_panic() {
        let text = format!("ok\n{}\n", "*".repeat(200_000));
        let err = Ignore::parse(".dockerignore", &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(".dockerignore:2") && err.contains("too large"),
            "{err}"
        );
    }
}
