//! Word expansion, as Docker does it for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR and ARG.
//!
//! - `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//!   `${VAR:?message}`, `${VAR?message}`; the `word` is expanded in turn.
//! - `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/rep}` and
//!   `${VAR//pat/rep}` with shell patterns (see [`super::glob`]).
//! - `$1`...`$9`, `$@`, `$*`, `$#`, `$?`, `$$`, `$!`, `$-`, `$0` and their `${...}`
//!   forms are never set: they expand to the empty string.
//! - A trailing escape character is dropped.
//! - Single quotes are literal; double quotes expand variables and treat the escape
//!   character as an escape only before `$`, `"` and itself; outside quotes the
//!   escape character makes the next character literal.
//! - Quotes are removed. In [`Lexer::words`], unquoted whitespace separates words.
//! - An unset variable expands to the empty string.

use std::collections::HashMap;

/// Variables visible to expansion: ENV values override ARG values of the same name.
pub type Vars = HashMap<String, String>;

#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer { escape }
    }

    /// Expand one word: quotes removed, variables substituted, no splitting.
    pub fn word(&self, s: &str, vars: &Vars) -> Result<String, String> {
        let mut st = State::new(s, self.escape, vars, false);
        st.run()?;
        Ok(st.finish().join(""))
    }

    /// Expand a here-document body with the here-document rules (POSIX 2.7.4):
    /// quotes are ordinary characters, and a backslash escapes only `$`, `` ` ``,
    /// `\` and a newline (which it joins to the next line).
    pub fn heredoc(&self, s: &str, vars: &Vars) -> Result<String, String> {
        let mut st = State::new(s, '\\', vars, false);
        st.heredoc = true;
        st.run()?;
        Ok(st.finish().join(""))
    }

    /// Expand and split on unquoted whitespace.
    pub fn words(&self, s: &str, vars: &Vars) -> Result<Vec<String>, String> {
        let mut st = State::new(s, self.escape, vars, true);
        st.run()?;
        Ok(st.finish())
    }
}

struct State<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a Vars,
    split: bool,
    words: Vec<String>,
    cur: String,
    started: bool,
    /// `${` nesting depth, bounded so hostile input cannot overflow the stack.
    depth: usize,
    /// Here-document rules (see [`Lexer::heredoc`]).
    heredoc: bool,
}

/// Special parameters (`$@`, `$#`, ...): empty in a Dockerfile, as `$1`...`$9`.
const SPECIAL: &str = "@*#?$!-";

/// Deepest `${...${...}}` nesting accepted.
const MAX_DEPTH: usize = 64;
/// Largest expanded word, so chained ARGs cannot grow without bound.
pub const MAX_WORD: usize = 1 << 20;

impl<'a> State<'a> {
    fn new(s: &str, escape: char, vars: &'a Vars, split: bool) -> State<'a> {
        State {
            chars: s.chars().collect(),
            pos: 0,
            escape,
            vars,
            split,
            words: vec![],
            cur: String::new(),
            started: false,
            depth: 0,
            heredoc: false,
        }
    }

    fn finish(mut self) -> Vec<String> {
        if self.started || !self.split {
            self.words.push(std::mem::take(&mut self.cur));
        }
        self.words
    }

    fn end_word(&mut self) {
        if self.started {
            self.words.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }

    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if self.heredoc && c != '$' {
                match (c, self.peek()) {
                    ('\\', Some('\n')) => self.pos += 1,
                    ('\\', Some(n @ ('$' | '`' | '\\'))) => {
                        self.pos += 1;
                        self.push(n);
                    }
                    _ => self.push(c),
                }
                continue;
            }
            if c == self.escape {
                // A trailing escape escapes nothing and is dropped (BuildKit).
                if let Some(n) = self.peek() {
                    self.pos += 1;
                    self.push(n);
                }
            } else if c == '\'' {
                self.started = true;
                let q = self.single_quoted()?;
                self.cur.push_str(&q);
            } else if c == '"' {
                self.started = true;
                let s = self.double_quoted()?;
                self.cur.push_str(&s);
            } else if c == '$' {
                let value = self.dollar(self.cur.len())?;
                match value {
                    None => self.push('$'),
                    Some(v) if self.split => {
                        // Unquoted expansion is split on whitespace, as a shell would.
                        let mut first = true;
                        let starts_ws = v.starts_with(char::is_whitespace);
                        let ends_ws = v.ends_with(char::is_whitespace);
                        for part in v.split_whitespace() {
                            if !first || starts_ws {
                                self.end_word();
                            }
                            first = false;
                            self.cur.push_str(part);
                            self.started = true;
                        }
                        if ends_ws {
                            self.end_word();
                        }
                    }
                    Some(v) => self.cur.push_str(&v),
                }
            } else if self.split && c.is_whitespace() {
                self.end_word();
            } else {
                self.push(c);
            }
        }
        Ok(())
    }

    /// After a `'`: everything up to the closing one, literally.
    fn single_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated single quote".into()),
                Some('\'') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(n) => {
                    self.pos += 1;
                    out.push(n);
                }
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated double quote".into());
            };
            self.pos += 1;
            if c == '"' {
                return Ok(out);
            } else if c == self.escape {
                match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                }
            } else if c == '$' {
                match self.dollar(self.cur.len() + out.len())? {
                    Some(v) => out.push_str(&v),
                    None => out.push('$'),
                }
            } else {
                out.push(c);
            }
        }
    }

    /// After a `$`: the expansion, or None when the `$` is literal. `so_far` is the
    /// length of the word it joins, for the size bound.
    fn dollar(&mut self, so_far: usize) -> Result<Option<String>, String> {
        let value = match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(format!("substitutions nested more than {MAX_DEPTH} deep"));
                }
                let v = self.braced();
                self.depth -= 1;
                v?
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.name();
                self.vars.get(&name).cloned().unwrap_or_default()
            }
            // Positional and special parameters are never set in a Dockerfile.
            // BuildKit reads every digit as the name (`$10` is parameter 10).
            Some(c) if c.is_ascii_digit() => {
                self.digits();
                String::new()
            }
            Some(c) if SPECIAL.contains(c) => {
                self.pos += 1;
                String::new()
            }
            _ => return Ok(None),
        };
        if so_far + value.len() > MAX_WORD {
            return Err(format!("expansion larger than {} MiB", MAX_WORD >> 20));
        }
        Ok(Some(value))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A variable name: letters (any script, as BuildKit's), digits, `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    fn braced(&mut self) -> Result<String, String> {
        let mut name = self.name();
        if name.is_empty() {
            // ${1}, ${10}, ${@}, ${#}...: never set.
            // Never set; the operators apply as to any unset variable
            // (`${@:-x}` is `x`).
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    self.digits();
                    name = "positional parameter".into();
                }
                Some(c) if SPECIAL.contains(c) => {
                    self.pos += 1;
                    name = format!("${c}");
                }
                _ => return Err("bad substitution: expected a variable name after ${".into()),
            }
        }
        let value = self.vars.get(&name).cloned();
        let c = self.peek().ok_or("missing '}' in ${...}")?;
        self.pos += 1;
        if c == '}' {
            return Ok(value.unwrap_or_default());
        }
        if matches!(c, '#' | '%' | '/') {
            return self.pattern_op(c, value.unwrap_or_default());
        }
        let (colon, op) = if c == ':' {
            let op = self.peek().ok_or("missing '}' in ${...}")?;
            self.pos += 1;
            (true, op)
        } else {
            (false, c)
        };
        // The word after the operator is itself expanded, up to the closing brace.
        let word = self.until_brace()?;
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match op {
            '-' => Ok(if set { value.unwrap_or_default() } else { word }),
            '+' => Ok(if set { word } else { String::new() }),
            '?' => {
                if set {
                    Ok(value.unwrap_or_default())
                } else if word.is_empty() {
                    Err(format!("{name}: parameter not set or null"))
                } else {
                    Err(format!("{name}: {word}"))
                }
            }
            other => Err(format!("unsupported modifier '{other}' in ${{{name}...}}")),
        }
    }

    /// `${VAR#pat}`, `##`, `%`, `%%`, `/pat/rep` and `//pat/rep`, after the
    /// operator's first character. As BuildKit reads them: the pattern and the
    /// replacement keep their escapes (the pattern's are read by
    /// [`shell_pattern`]), and `/` needs its second `/` (`${A/p}` is an error;
    /// `${A/p/}` removes `p`).
    fn pattern_op(&mut self, op: char, value: String) -> Result<String, String> {
        let twice = self.peek() == Some(op);
        if twice {
            self.pos += 1;
        }
        if op != '/' {
            let raw = self.until_raw('}')?;
            let pat = super::glob::Pattern::compile(&shell_pattern(&raw)?);
            return if op == '#' {
                pat.strip_prefix(&value, twice)
            } else {
                pat.strip_suffix(&value, twice)
            };
        }
        let raw = self
            .until_raw('/')
            .map_err(|_| "missing '/' in ${...}: write ${VAR/pattern/replacement}".to_string())?;
        let pat = super::glob::Pattern::compile(&shell_pattern(&raw)?);
        let rep = self.until_raw('}')?;
        pat.replace(&value, &rep, twice)
    }

    /// Up to `stop`, with quotes and `$` processed and escapes kept as
    /// written (BuildKit's raw escapes for patterns and replacements).
    fn until_raw(&mut self, stop: char) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("missing '{stop}' in ${{...}}"));
            };
            self.pos += 1;
            if c == stop {
                return Ok(out);
            } else if c == self.escape {
                out.push(c);
                if let Some(n) = self.peek() {
                    self.pos += 1;
                    out.push(n);
                }
            } else if c == '\'' {
                let q = self.single_quoted()?;
                out.push_str(&q);
            } else if c == '"' {
                let q = self.double_quoted()?;
                out.push_str(&q);
            } else if c == '$' {
                match self.dollar(out.len())? {
                    Some(v) => out.push_str(&v),
                    None => out.push('$'),
                }
            } else {
                out.push(c);
            }
        }
    }

    fn until_brace(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err("missing '}' in ${...}".into());
            };
            self.pos += 1;
            if c == '}' {
                return Ok(out);
            } else if c == self.escape {
                if let Some(n) = self.peek() {
                    self.pos += 1;
                    out.push(n);
                }
            } else if c == '\'' {
                let q = self.single_quoted()?;
                out.push_str(&q);
            } else if c == '"' {
                let s = self.double_quoted()?;
                out.push_str(&s);
            } else if c == '$' {
                match self.dollar(out.len())? {
                    Some(v) => out.push_str(&v),
                    None => out.push('$'),
                }
            } else {
                out.push(c);
            }
        }
    }
}

/// A pattern as BuildKit reads it (its `convertShellPatternToRegex`): `*` and
/// `?` are wildcards, even where quotes held them (the quoting is gone by
/// then); `\*`, `\?` and `\\` are literal; `\}` and `\/` are `}` and `/`;
/// any other escape is an error. Everything else is literal, brackets
/// included: BuildKit has no bracket expressions.
fn shell_pattern(raw: &str) -> Result<Vec<(char, bool)>, String> {
    let mut out = Vec::new();
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        match c {
            '*' | '?' => out.push((c, true)),
            '\\' => match it.next() {
                Some(n @ ('*' | '?' | '\\' | '}' | '/')) => out.push((n, false)),
                Some(n) => return Err(format!("invalid escape '\\{n}' in a pattern")),
                None => return Err("invalid escape at the end of a pattern".into()),
            },
            c => out.push((c, false)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        let mut v = Vars::new();
        v.insert("A".into(), "apple".into());
        v.insert("EMPTY".into(), String::new());
        v.insert("SP".into(), "x y".into());
        v
    }

    fn w(s: &str) -> String {
        Lexer::default()
            .word(s, &vars())
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_substitution_forms() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}pie"), "applepie");
        assert_eq!(w("$Apie"), "");
        assert_eq!(w("${UNSET:-def}"), "def");
        assert_eq!(w("${EMPTY:-def}"), "def");
        assert_eq!(w("${EMPTY-def}"), "");
        assert_eq!(w("${UNSET-def}"), "def");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${EMPTY:+alt}"), "");
        assert_eq!(w("${EMPTY+alt}"), "alt");
        assert_eq!(w("${UNSET+alt}"), "");
        assert_eq!(w("${UNSET:-${A}s}"), "apples");
        assert_eq!(w("${A:?must be set}"), "apple");
        assert!(Lexer::default()
            .word("${UNSET:?must be set}", &vars())
            .unwrap_err()
            .contains("must be set"));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A\""), "apple");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\b\""), "a\\b");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("\"two words\""), "two words");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("$1"), "");
        let bt = Lexer::new('`');
        assert_eq!(bt.word("c:\\dir`$A", &vars()).unwrap(), "c:\\dir$A");
    }

    #[test]
    fn splitting() {
        let l = Lexer::default();
        assert_eq!(l.words("a  b", &vars()).unwrap(), vec!["a", "b"]);
        assert_eq!(l.words("\"a  b\" c", &vars()).unwrap(), vec!["a  b", "c"]);
        assert_eq!(l.words("$SP z", &vars()).unwrap(), vec!["x", "y", "z"]);
        assert_eq!(l.words("\"$SP\" z", &vars()).unwrap(), vec!["x y", "z"]);
        assert_eq!(l.words("'' z", &vars()).unwrap(), vec!["", "z"]);
        assert_eq!(l.words("pre$SP", &vars()).unwrap(), vec!["prex", "y"]);
    }

    #[test]
    fn errors() {
        let l = Lexer::default();
        assert!(l.word("'open", &vars()).is_err());
        assert!(l.word("\"open", &vars()).is_err());
        assert!(l.word("${A", &vars()).is_err());
        assert!(l.word("${}", &vars()).is_err());
    }

    #[test]
    fn hostile_input_is_bounded_not_fatal() {
        let lx = Lexer::default();
        // 100,000 nested defaults would overflow the stack.
        let deep = "${A:-".repeat(100_000) + &"}".repeat(100_000);
        let err = lx.word(&deep, &vars()).unwrap_err();
        assert!(err.contains("nested more than 64 deep"), "{err}");
        // Within the bound, nesting still works.
        let ok = "${X:-".repeat(10) + "$A" + &"}".repeat(10);
        assert_eq!(lx.word(&ok, &vars()).unwrap(), "apple");
        // Chained expansion that would grow without bound.
        let mut v = Vars::new();
        v.insert("B".into(), "b".repeat(600 * 1024));
        let err = lx.word("$B$B", &v).unwrap_err();
        assert!(err.contains("larger than 1 MiB"), "{err}");
        let err = lx.word("${X:-$B\"$B\"}", &v).unwrap_err();
        assert!(err.contains("larger than 1 MiB"), "{err}");
        assert_eq!(lx.word("$B", &v).unwrap().len(), 600 * 1024);
    }
}
