//! `.dockerignore` matching with Docker's semantics: Go's `filepath.Match`
//! rules plus `**`, compiled to a regular expression the way
//! moby/patternmatcher does it.
//!
//! - One pattern per line; a line that starts with `#` is a comment (`  #x`, with
//!   leading spaces, is a pattern); surrounding whitespace is trimmed; blank
//!   lines are skipped.
//! - Patterns are anchored at the context root (a leading `/` changes nothing) and
//!   are cleaned like Go's `filepath.Clean`.
//! - `*` and `?` match any characters (one character for `?`, not one byte)
//!   except `/`; `**` matches any number of directories, zero included, and a
//!   leading `**` (`**.log`) matches at any depth.
//! - `[a-z]` and `[^a]` are classes (`[!a]` is the class of `!` and `a`, as in Go);
//!   `{}`, `|`, `(`, `)`, `+` and `.` are literal; `\` escapes the next character.
//! - `!pattern` re-includes what an earlier pattern excluded; the last match
//!   wins. A bare `!` and an invalid class are errors.
//! - A pattern that matches a directory matches everything below it.

use regex::Regex;
use std::path::Path;

/// How a pattern matches, as patternmatcher decides it: literal patterns need
/// no regular expression.
#[derive(Debug, Clone)]
enum Match {
    /// The path is the pattern.
    Exact(String),
    /// `dir/**`: the path starts with `dir/`.
    Prefix(String),
    /// `**/name` or `**name` with no other wildcard: the path ends with it
    /// (`**/name` also matches `name`).
    Suffix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Pattern {
    matcher: Match,
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
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            // A comment only where the line itself starts with `#`.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| IgnoreError {
                file: file.to_string(),
                line: i + 1,
                pattern: crate::clip::clip(line),
                reason: crate::clip::clip(&reason),
            };
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(p) if p.trim().is_empty() => {
                    return Err(bad("a bare \"!\" excludes nothing".into()))
                }
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let cleaned = clean(pat.trim_start_matches('/'));
            if cleaned == "." {
                // Docker ignores a pattern that cleans to the root.
                continue;
            }
            let matcher = compile(&cleaned).map_err(bad)?;
            patterns.push(Pattern { matcher, exclusion });
        }
        let has_exclusions = patterns.iter().any(|p| p.exclusion);
        Ok(Ignore {
            patterns,
            has_exclusions,
        })
    }

    /// Leave `rel` (a clean path relative to the context) and all below it out,
    /// whatever the patterns say: kiln's own cache, work and output paths.
    pub fn exclude_own(&mut self, rel: &str) {
        self.patterns.push(Pattern {
            matcher: Match::Exact(rel.to_string()),
            exclusion: false,
        });
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

impl Match {
    fn is_match(&self, path: &str) -> bool {
        match self {
            Match::Exact(p) => path == p,
            Match::Prefix(p) => path.starts_with(p.as_str()),
            Match::Suffix(sfx) => {
                path.ends_with(sfx.as_str())
                    || sfx.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Match::Regex(r) => r.is_match(path),
        }
    }
}

fn matches_self_or_parent(m: &Match, rel: &str) -> bool {
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

/// Compile a cleaned pattern the way patternmatcher does: `*` is `[^/]*`, `?`
/// is `[^/]`, `**` is `(.*/)?` (or `.*` at the end), `.+()|{}$` are literal, `\`
/// escapes, `[` and `]` keep their class meaning (Go's, so `[!a]` is not a
/// negation). A pattern with no wildcard matches without a regex.
fn compile(pattern: &str) -> Result<Match, String> {
    go_syntax(pattern)?;
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut kind = Kind::Exact;
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    // Inside a class, Rust's regex gives `[`, `&&`, `--` and `~~` meanings Go's
    // does not: they are escaped there.
    let mut in_class = false;
    let mut class_start = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        i += 1;
        if in_class {
            match c {
                ']' if at > class_start => {
                    in_class = false;
                    re.push(']');
                }
                '\\' => {
                    re.push('\\');
                    if let Some(n) = chars.get(i) {
                        re.push(*n);
                        i += 1;
                    }
                }
                '[' | '&' | '~' => {
                    re.push('\\');
                    re.push(c);
                }
                '-' if chars.get(i) == Some(&'-') => re.push_str("\\-"),
                _ => re.push(c),
            }
            continue;
        }
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    // `**` at the end: everything below.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if at == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '^' | '#' | ' ' => {
                re.push('\\');
                re.push(c);
            }
            // An escaped character is literal, as in filepath.Match (so the
            // pattern is not compared as text, backslash and all).
            '\\' => {
                kind = Kind::Regex;
                match chars.get(i) {
                    Some(n) => {
                        i += 1;
                        re.push_str(&regex::escape(&n.to_string()));
                    }
                    None => re.push_str("\\\\"),
                }
            }
            '[' => {
                re.push('[');
                kind = Kind::Regex;
                in_class = true;
                // `]` right after `[` or `[^` is a member.
                class_start = if chars.get(i) == Some(&'^') {
                    re.push('^');
                    i += 1;
                    i
                } else {
                    i
                };
            }
            ']' => {
                re.push_str("\\]");
                kind = Kind::Regex;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if in_class {
        return Err("unterminated character class".into());
    }
    match kind {
        Kind::Exact => return Ok(Match::Exact(pattern.to_string())),
        Kind::Prefix => {
            return Ok(Match::Prefix(
                pattern.strip_suffix("**").unwrap_or(pattern).to_string(),
            ))
        }
        Kind::Suffix => return Ok(Match::Suffix(pattern[2..].to_string())),
        Kind::Regex => {}
    }
    re.push('$');
    regex::RegexBuilder::new(&re)
        .size_limit(1 << 20)
        .build()
        .map(Match::Regex)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => "the pattern is too large to match".to_string(),
            other => format!(
                "invalid pattern: {}",
                other.to_string().lines().last().unwrap_or("")
            ),
        })
}

/// The pattern syntax Go's `filepath.Match` accepts (patternmatcher checks
/// every pattern with it): a class needs at least one member, a range's ends
/// may be neither `-` nor `]` (so `[]a]`, `[-]`, `[x-]` and `[a-b-c]` are
/// malformed), and an escape needs a character after it.
fn go_syntax(pattern: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("malformed pattern: {why}"));
    let mut chars = pattern.chars().peekable();
    // One end of a range: a character, or an escaped one; `-` and `]` are not.
    fn end(chars: &mut std::iter::Peekable<std::str::Chars>) -> bool {
        match chars.next() {
            None | Some('-') | Some(']') => false,
            Some('\\') => chars.next().is_some(),
            Some(_) => true,
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return bad("it ends with an escape"),
            '[' => {
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                let mut members = 0;
                loop {
                    if chars.peek() == Some(&']') && members > 0 {
                        chars.next();
                        break;
                    }
                    if !end(&mut chars) {
                        return bad("a character class is empty, unclosed, or has a range with no start or end");
                    }
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        if !end(&mut chars) {
                            return bad("a range in a character class has no end");
                        }
                    }
                    if chars.peek().is_none() {
                        return bad("a character class is not closed");
                    }
                    members += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
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
    fn malformed_classes_are_errors_as_in_go() {
        // filepath.Match's ErrBadPattern cases, which patternmatcher reports.
        for bad in [
            "[]a]", "[-]", "[x-]", "[a-b-c]", "a\\", "[", "[a", "[^]", "[a-", "[\\",
        ] {
            assert!(Ignore::parse(".dockerignore", bad).is_err(), "{bad:?}");
        }
        for ok in [
            "[a]", "[^a]", "[a-c]", "[a-cx]", "[\\]]", "[\\-]", "a\\*", "[*]",
        ] {
            assert!(Ignore::parse(".dockerignore", ok).is_ok(), "{ok:?}");
        }
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
