//! Shell patterns for the `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/rep}` forms
//! of word expansion, as BuildKit's lexer matches them: `*` and `?`, every
//! other character literal (BuildKit has no bracket expressions: `[a-z]` is
//! those five characters). The lexer says which characters are wildcards.
//!
//! Matching runs as a set of pattern positions advanced one character at a
//! time, so one pass answers "which prefixes match" with no backtracking, and
//! the cost is bounded by the value's length times the pattern's.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

#[derive(Debug, Clone)]
pub struct Pattern(Vec<Tok>);

/// Most steps (value characters × pattern positions) one expansion may take.
const BUDGET: usize = 50_000_000;

impl Pattern {
    /// Compile characters marked active (`true`: may be a glob character) or
    /// literal (quoted or escaped).
    pub fn compile(chars: &[(char, bool)]) -> Pattern {
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let (c, active) = chars[i];
            i += 1;
            if !active {
                toks.push(Tok::Lit(c));
                continue;
            }
            match c {
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                c => toks.push(Tok::Lit(c)),
            }
        }
        Pattern(toks)
    }

    fn reversed(&self) -> Pattern {
        Pattern(self.0.iter().rev().cloned().collect())
    }

    /// Positions reachable from `set` without consuming (a star may match nothing).
    fn close(&self, set: &mut [bool]) {
        for k in 0..self.0.len() {
            if set[k] && self.0[k] == Tok::Star {
                set[k + 1] = true;
            }
        }
    }

    fn step(&self, set: &[bool], c: char, next: &mut [bool]) {
        next.iter_mut().for_each(|b| *b = false);
        for (k, t) in self.0.iter().enumerate() {
            if !set[k] {
                continue;
            }
            let ok = match t {
                Tok::Star => {
                    next[k] = true;
                    continue;
                }
                Tok::Lit(l) => *l == c,
                Tok::Any => true,
            };
            if ok {
                next[k + 1] = true;
            }
        }
        self.close(next);
    }

    /// For each length `n` (0..=s.len()), whether `s[..n]` matches the whole
    /// pattern.
    fn prefixes(&self, s: &[char], budget: &mut usize) -> Result<Vec<bool>, String> {
        let m = self.0.len();
        let mut set = vec![false; m + 1];
        set[0] = true;
        self.close(&mut set);
        let mut out = vec![set[m]];
        let mut next = vec![false; m + 1];
        for &c in s {
            *budget = budget
                .checked_sub(m + 1)
                .ok_or("pattern too costly to match")?;
            self.step(&set, c, &mut next);
            std::mem::swap(&mut set, &mut next);
            out.push(set[m]);
            if !set.iter().any(|b| *b) {
                out.resize(s.len() + 1, false);
                break;
            }
        }
        Ok(out)
    }

    /// `${v#p}` (`longest`: `##`): `v` without the shortest (longest) prefix
    /// matching the pattern.
    pub fn strip_prefix(&self, v: &str, longest: bool) -> Result<String, String> {
        let s: Vec<char> = v.chars().collect();
        let ok = self.prefixes(&s, &mut BUDGET.clone())?;
        let n = if longest {
            ok.iter().rposition(|b| *b)
        } else {
            ok.iter().position(|b| *b)
        };
        Ok(match n {
            Some(n) => s[n..].iter().collect(),
            None => v.to_string(),
        })
    }

    /// `${v%p}` (`longest`: `%%`): `v` without the shortest (longest) suffix
    /// matching the pattern.
    pub fn strip_suffix(&self, v: &str, longest: bool) -> Result<String, String> {
        let mut s: Vec<char> = v.chars().collect();
        s.reverse();
        let ok = self.reversed().prefixes(&s, &mut BUDGET.clone())?;
        let n = if longest {
            ok.iter().rposition(|b| *b)
        } else {
            ok.iter().position(|b| *b)
        };
        Ok(match n {
            Some(n) => {
                let keep = s.len() - n;
                v.chars().take(keep).collect()
            }
            None => v.to_string(),
        })
    }

    /// `${v/p/r}` (`all`: `//`): the longest match at the leftmost position
    /// replaced by `rep` (every non-overlapping one with `all`). Empty matches
    /// count as in Go's regexp, which BuildKit uses: `${V/$EMPTY/x}` puts `x`
    /// in front, and an empty match right after a match is skipped.
    pub fn replace(&self, v: &str, rep: &str, all: bool) -> Result<String, String> {
        let s: Vec<char> = v.chars().collect();
        let mut budget = BUDGET;
        let mut out = String::new();
        let mut i = 0;
        let mut done = false;
        let mut last_end = None;
        while i <= s.len() {
            if !done {
                let ok = self.prefixes(&s[i..], &mut budget)?;
                if let Some(n) = ok.iter().rposition(|b| *b) {
                    if n > 0 || last_end != Some(i) {
                        out.push_str(rep);
                        done = !all;
                        last_end = Some(i + n);
                        if n > 0 {
                            i += n;
                            continue;
                        }
                    }
                }
            }
            if let Some(c) = s.get(i) {
                out.push(*c);
            }
            i += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::compile(&s.chars().map(|c| (c, true)).collect::<Vec<_>>())
    }

    #[test]
    fn prefix_and_suffix_removal_shortest_and_longest() {
        // POSIX, "Parameter Expansion": ${x#*/} and ${x##*/}, ${x%/*} and ${x%%/*}.
        let v = "linux/amd64/v3";
        assert_eq!(p("*/").strip_prefix(v, false).unwrap(), "amd64/v3");
        assert_eq!(p("*/").strip_prefix(v, true).unwrap(), "v3");
        assert_eq!(p("/*").strip_suffix(v, false).unwrap(), "linux/amd64");
        assert_eq!(p("/*").strip_suffix(v, true).unwrap(), "linux");
        assert_eq!(
            p("linux/amd64").strip_prefix("linux/amd64", false).unwrap(),
            ""
        );
        assert_eq!(
            p("linux/amd64").strip_prefix("linux/arm64", false).unwrap(),
            "linux/arm64"
        );
        assert_eq!(p("").strip_prefix("abc", true).unwrap(), "abc");
        assert_eq!(p("?").strip_suffix("héllo", false).unwrap(), "héll");
        // No bracket expressions: brackets are themselves.
        assert_eq!(p("[0-9]*").strip_prefix("3rd", false).unwrap(), "3rd");
        assert_eq!(p("[0-9]*").strip_prefix("[0-9]x", true).unwrap(), "");
    }

    #[test]
    fn replacement_first_and_all() {
        assert_eq!(p("o").replace("foo", "0", false).unwrap(), "f0o");
        assert_eq!(p("o").replace("foo", "0", true).unwrap(), "f00");
        assert_eq!(
            p("o*").replace("foo bar", "X", false).unwrap(),
            "fX",
            "longest match"
        );
        assert_eq!(p("a").replace("bbb", "X", true).unwrap(), "bbb");
        // Empty matches as Go's regexp (BuildKit) counts them.
        assert_eq!(p("*").replace("", "X", true).unwrap(), "X");
        assert_eq!(p("").replace("xxyy", "ww", false).unwrap(), "wwxxyy");
        assert_eq!(p("").replace("xy", "-", true).unwrap(), "-x-y-");
        assert_eq!(p("").replace("xxyy", "", true).unwrap(), "xxyy");
        assert_eq!(p("*").replace("ab", "X", true).unwrap(), "X");
    }

    #[test]
    fn literal_characters() {
        let lit = Pattern::compile(&[('*', false)]);
        assert_eq!(lit.strip_prefix("*x", false).unwrap(), "x");
        assert_eq!(lit.strip_prefix("ax", false).unwrap(), "ax");
        assert_eq!(p("[a").strip_prefix("[ab", false).unwrap(), "b");
        assert_eq!(p("[]]").strip_prefix("[]]x", false).unwrap(), "x");
    }

    #[test]
    fn pathological_patterns_end_with_an_error_not_a_hang() {
        let v = "a".repeat(200_000);
        let pat = p(&"*a".repeat(300));
        assert!(pat.replace(&v, "", true).is_err());
        // Linear cases stay fast.
        assert_eq!(p("*a").strip_prefix(&v, true).unwrap(), "");
    }
}
