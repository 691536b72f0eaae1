//! Dockerfile lexer and parser.
//!
//! Follows BuildKit's documented rules: parser directives (`# syntax=`, `# escape=`,
//! `# check=`) only at the very top, comments only at the start of a line, line
//! continuations with the escape character (comment and blank lines inside a
//! continuation are dropped), JSON (exec) and shell forms, `--flag` options, and
//! heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) on RUN, COPY and ADD.
//!
//! Every instruction keeps the line it starts on, so every later error can name
//! `file:line`. Nothing is expanded here: variable substitution needs the build
//! state, and happens in [`super::lex`] when a step runs.

use std::fmt;

/// An error in a Dockerfile, located at `file:line`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct DockerfileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Arguments in exec (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    Exec(Vec<String>),
    Shell(String),
}

/// `--name=value` (or bare `--name`) before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// The body of a `<<NAME` here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: the body is taken literally.
    pub expand: bool,
}

/// A key/value pair of ENV, LABEL or ARG, with quotes still in place (they are
/// removed by word expansion, as Docker does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Sources and destination, unexpanded; the last word is the destination.
    pub args: Form,
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckArgs {
    /// `None` for `HEALTHCHECK NONE`.
    pub cmd: Option<Form>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

/// One instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Arg(Vec<KeyValue>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Run {
        cmd: Form,
        heredocs: Vec<Heredoc>,
        flags: Vec<Flag>,
    },
    Cmd(Form),
    Entrypoint(Form),
    Shell(Vec<String>),
    Copy(CopyArgs),
    Add(CopyArgs),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Form),
    StopSignal(String),
    Healthcheck(HealthcheckArgs),
    Onbuild(String),
    Maintainer(String),
}

impl Command {
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From { .. } => "FROM",
            Command::Arg(_) => "ARG",
            Command::Env(_) => "ENV",
            Command::Label(_) => "LABEL",
            Command::Run { .. } => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Shell(_) => "SHELL",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Workdir(_) => "WORKDIR",
            Command::User(_) => "USER",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Onbuild(_) => "ONBUILD",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// The instruction as written (continuations joined), for history and messages.
    pub text: String,
    pub command: Command,
}

#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// Name used in error messages (usually the path given by the user).
    pub file: String,
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Form::Shell(s) => f.write_str(s),
            Form::Exec(v) => {
                let json = serde_json::to_string(v).map_err(|_| fmt::Error)?;
                f.write_str(&json)
            }
        }
    }
}

/// Parse a whole Dockerfile. `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    Parser::new(file, text).run()
}

/// Parse one instruction line (used for ONBUILD triggers), reported at `line`.
pub fn parse_line(
    file: &str,
    line: usize,
    text: &str,
    escape: char,
) -> Result<Instruction, DockerfileError> {
    let p = Parser {
        file: file.to_string(),
        lines: vec![],
        pos: 0,
        escape,
    };
    p.instruction(line, text, vec![])
}

struct Parser {
    file: String,
    lines: Vec<String>,
    pos: usize,
    escape: char,
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

impl Parser {
    fn new(file: &str, text: &str) -> Parser {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        Parser {
            file: file.to_string(),
            lines,
            pos: 0,
            escape: '\\',
        }
    }

    fn err(&self, line: usize, message: impl Into<String>) -> DockerfileError {
        DockerfileError {
            file: self.file.clone(),
            line,
            message: message.into(),
        }
    }

    fn run(mut self) -> Result<Dockerfile, DockerfileError> {
        let syntax = self.directives()?;
        let mut instructions = Vec::new();
        while self.pos < self.lines.len() {
            let start = self.pos + 1;
            let line = self.lines[self.pos].clone();
            self.pos += 1;
            if line.trim().is_empty() || is_comment(&line) {
                continue;
            }
            let mut logical = line.trim_start().to_string();
            while let Some(stripped) = self.strip_continuation(&logical) {
                logical = stripped;
                // Pull in the next line that is neither a comment nor blank.
                let mut next = None;
                while self.pos < self.lines.len() {
                    let l = self.lines[self.pos].clone();
                    self.pos += 1;
                    if is_comment(&l) || l.trim().is_empty() {
                        continue;
                    }
                    next = Some(l);
                    break;
                }
                match next {
                    Some(l) => logical.push_str(&l),
                    None => break,
                }
            }
            let heredoc_names = heredoc_markers(&logical, self.escape);
            let heredocs = self.read_heredocs(start, &heredoc_names)?;
            instructions.push(self.instruction(start, logical.trim(), heredocs)?);
        }
        Ok(Dockerfile {
            file: self.file,
            escape: self.escape,
            syntax,
            instructions,
        })
    }

    /// Parser directives: `# key=value` lines at the very top, before anything else.
    fn directives(&mut self) -> Result<Option<String>, DockerfileError> {
        let mut syntax = None;
        let mut seen = Vec::new();
        while self.pos < self.lines.len() {
            let line = self.lines[self.pos].trim();
            let Some(body) = line.strip_prefix('#') else {
                break;
            };
            let Some((key, value)) = body.split_once('=') else {
                break;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                break;
            }
            if seen.contains(&key) {
                return Err(self.err(
                    self.pos + 1,
                    format!("only one '{key}' parser directive is allowed"),
                ));
            }
            match key.as_str() {
                "escape" => {
                    self.escape = match value {
                        "\\" => '\\',
                        "`" => '`',
                        _ => {
                            return Err(self.err(
                                self.pos + 1,
                                format!("invalid escape character {value:?}: it must be ` or \\"),
                            ))
                        }
                    }
                }
                "syntax" => syntax = Some(value.to_string()),
                // Linter configuration; accepted and ignored.
                "check" => {}
                _ => break,
            }
            seen.push(key);
            self.pos += 1;
        }
        Ok(syntax)
    }

    /// If `line` ends with the escape character (then optional spaces), return it
    /// without that tail.
    fn strip_continuation(&self, line: &str) -> Option<String> {
        let trimmed = line.trim_end_matches([' ', '\t']);
        trimmed.strip_suffix(self.escape).map(|s| s.to_string())
    }

    fn read_heredocs(
        &mut self,
        start: usize,
        markers: &[(String, bool, bool)],
    ) -> Result<Vec<Heredoc>, DockerfileError> {
        let mut out = Vec::new();
        for (name, strip_tabs, expand) in markers {
            let mut content = String::new();
            let mut found = false;
            while self.pos < self.lines.len() {
                let raw = self.lines[self.pos].clone();
                self.pos += 1;
                let line = if *strip_tabs {
                    raw.trim_start_matches('\t').to_string()
                } else {
                    raw
                };
                if line == *name {
                    found = true;
                    break;
                }
                content.push_str(&line);
                content.push('\n');
            }
            if !found {
                return Err(self.err(
                    start,
                    format!("unterminated heredoc: no line {name:?} ends <<{name}"),
                ));
            }
            out.push(Heredoc {
                name: name.clone(),
                content,
                expand: *expand,
            });
        }
        Ok(out)
    }

    fn instruction(
        &self,
        line: usize,
        text: &str,
        heredocs: Vec<Heredoc>,
    ) -> Result<Instruction, DockerfileError> {
        let (keyword, rest) = match text.find(|c: char| c.is_whitespace()) {
            Some(i) => (&text[..i], text[i..].trim()),
            None => (text, ""),
        };
        let kw = keyword.to_ascii_uppercase();
        let command = self.command(line, &kw, rest, heredocs)?;
        Ok(Instruction {
            line,
            text: format!("{kw} {rest}").trim_end().to_string(),
            command,
        })
    }

    fn command(
        &self,
        line: usize,
        kw: &str,
        rest: &str,
        heredocs: Vec<Heredoc>,
    ) -> Result<Command, DockerfileError> {
        let need_args = |what: &str| -> Result<(), DockerfileError> {
            if rest.is_empty() {
                Err(self.err(line, format!("{kw} requires {what}")))
            } else {
                Ok(())
            }
        };
        if !heredocs.is_empty() && !matches!(kw, "RUN" | "COPY" | "ADD") {
            return Err(self.err(line, format!("{kw} does not accept a heredoc")));
        }
        Ok(match kw {
            "FROM" => {
                let (flags, rest) = self.flags(line, kw, rest, &["platform"])?;
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (image, name) = match words.as_slice() {
                    [image] => (image.to_string(), None),
                    [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                        (image.to_string(), Some(name.to_ascii_lowercase()))
                    }
                    [] => return Err(self.err(line, "FROM requires an image")),
                    _ => {
                        return Err(self.err(line, "FROM takes: [--platform=P] IMAGE [AS NAME]"));
                    }
                };
                if let Some(n) = &name {
                    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                    if !ok {
                        return Err(self.err(line, format!("invalid stage name {n:?}: use letters, digits, '.', '_' and '-', starting with a letter")));
                    }
                }
                Command::From {
                    image,
                    name,
                    platform: flag_value(&flags, "platform"),
                }
            }
            "ARG" => {
                need_args("a name")?;
                let words = self.words(line, rest)?;
                let mut kvs = Vec::new();
                for w in words {
                    let (key, value) = match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w.clone(), None),
                    };
                    if !valid_name(&key) {
                        return Err(self.err(line, format!("invalid ARG name {key:?}")));
                    }
                    kvs.push(KeyValue { key, value });
                }
                Command::Arg(kvs)
            }
            "ENV" | "LABEL" => {
                need_args("at least one key=value pair")?;
                let kvs = self.key_values(line, kw, rest)?;
                if kw == "ENV" {
                    Command::Env(kvs)
                } else {
                    Command::Label(kvs)
                }
            }
            "RUN" => {
                let (flags, rest) =
                    self.flags(line, kw, rest, &["mount", "network", "security"])?;
                if rest.is_empty() && heredocs.is_empty() {
                    return Err(self.err(line, "RUN requires a command"));
                }
                Command::Run {
                    cmd: self.form(rest),
                    heredocs,
                    flags,
                }
            }
            "CMD" => Command::Cmd(self.form(rest)),
            "ENTRYPOINT" => Command::Entrypoint(self.form(rest)),
            "SHELL" => match self.form(rest) {
                Form::Exec(v) if !v.is_empty() => Command::Shell(v),
                _ => {
                    return Err(self.err(
                        line,
                        "SHELL requires a JSON array, e.g. SHELL [\"/bin/bash\", \"-c\"]",
                    ))
                }
            },
            "COPY" | "ADD" => {
                let allowed: &[&str] = if kw == "COPY" {
                    &["from", "chown", "chmod", "link", "parents", "exclude"]
                } else {
                    &[
                        "chown",
                        "chmod",
                        "link",
                        "checksum",
                        "keep-git-dir",
                        "exclude",
                        "unpack",
                    ]
                };
                let (flags, rest) = self.flags(line, kw, rest, allowed)?;
                if flags.iter().any(|f| f.name == "parents") {
                    return Err(self.err(line, format!("{kw} --parents is not supported yet")));
                }
                let args = self.form(rest);
                let count = match &args {
                    Form::Exec(v) => v.len(),
                    Form::Shell(s) => s.split_whitespace().count(),
                };
                // A heredoc may stand in for the only source: `COPY <<EOF /dest`.
                if count < 2 && (count != 1 || heredocs.is_empty()) {
                    return Err(self.err(
                        line,
                        format!("{kw} requires at least one source and a destination"),
                    ));
                }
                let c = CopyArgs {
                    args,
                    heredocs,
                    from: flag_value(&flags, "from"),
                    chown: flag_value(&flags, "chown"),
                    chmod: flag_value(&flags, "chmod"),
                    link: flags
                        .iter()
                        .any(|f| f.name == "link" && f.value.as_deref() != Some("false")),
                    exclude: flags
                        .iter()
                        .filter(|f| f.name == "exclude")
                        .filter_map(|f| f.value.clone())
                        .collect(),
                };
                if kw == "COPY" {
                    Command::Copy(c)
                } else {
                    Command::Add(c)
                }
            }
            "WORKDIR" => {
                need_args("a path")?;
                Command::Workdir(rest.to_string())
            }
            "USER" => {
                need_args("a user")?;
                if rest.split_whitespace().count() != 1 {
                    return Err(self.err(line, "USER takes exactly one user[:group]"));
                }
                Command::User(rest.to_string())
            }
            "EXPOSE" => {
                need_args("at least one port")?;
                Command::Expose(rest.split_whitespace().map(str::to_string).collect())
            }
            "VOLUME" => {
                need_args("at least one path")?;
                Command::Volume(self.form(rest))
            }
            "STOPSIGNAL" => {
                need_args("a signal")?;
                Command::StopSignal(rest.to_string())
            }
            "HEALTHCHECK" => {
                let (flags, rest) = self.flags(
                    line,
                    kw,
                    rest,
                    &[
                        "interval",
                        "timeout",
                        "start-period",
                        "start-interval",
                        "retries",
                    ],
                )?;
                let (word, cmd_rest) = match rest.find(char::is_whitespace) {
                    Some(i) => (&rest[..i], rest[i..].trim()),
                    None => (rest, ""),
                };
                let cmd = match word.to_ascii_uppercase().as_str() {
                    "NONE" if cmd_rest.is_empty() && flags.is_empty() => None,
                    "NONE" => {
                        return Err(self.err(line, "HEALTHCHECK NONE takes no other arguments"))
                    }
                    "CMD" if !cmd_rest.is_empty() => Some(self.form(cmd_rest)),
                    _ => {
                        return Err(
                            self.err(line, "HEALTHCHECK takes [OPTIONS] CMD command, or NONE")
                        )
                    }
                };
                Command::Healthcheck(HealthcheckArgs {
                    cmd,
                    interval: flag_value(&flags, "interval"),
                    timeout: flag_value(&flags, "timeout"),
                    start_period: flag_value(&flags, "start-period"),
                    start_interval: flag_value(&flags, "start-interval"),
                    retries: flag_value(&flags, "retries"),
                })
            }
            "ONBUILD" => {
                need_args("an instruction")?;
                let inner = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(self.err(
                        line,
                        format!("{inner} is not allowed as an ONBUILD trigger"),
                    ));
                }
                // Validate the trigger now so a typo fails at its own line.
                self.instruction(line, rest, vec![])?;
                Command::Onbuild(rest.to_string())
            }
            "MAINTAINER" => {
                need_args("a name")?;
                Command::Maintainer(rest.to_string())
            }
            _ => return Err(self.err(line, format!("unknown instruction: {}", kw))),
        })
    }

    /// Leading `--name[=value]` words. Unknown flags are errors.
    fn flags<'a>(
        &self,
        line: usize,
        kw: &str,
        mut rest: &'a str,
        allowed: &[&str],
    ) -> Result<(Vec<Flag>, &'a str), DockerfileError> {
        let mut flags = Vec::new();
        loop {
            rest = rest.trim_start();
            if !rest.starts_with("--") {
                break;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[2..end];
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), Some(v.to_string())),
                None => (word.to_ascii_lowercase(), None),
            };
            if !allowed.contains(&name.as_str()) {
                return Err(self.err(line, format!("unknown flag for {kw}: --{name}")));
            }
            flags.push(Flag { name, value });
            rest = &rest[end..];
        }
        Ok((flags, rest.trim()))
    }

    fn form(&self, rest: &str) -> Form {
        if rest.starts_with('[') {
            if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
                return Form::Exec(v);
            }
        }
        Form::Shell(rest.to_string())
    }

    /// Split on unquoted whitespace, keeping quotes and escapes for word expansion.
    fn words(&self, line: usize, s: &str) -> Result<Vec<String>, DockerfileError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut quote: Option<char> = None;
        let mut chars = s.chars().peekable();
        let mut in_word = false;
        while let Some(c) = chars.next() {
            match quote {
                Some(q) => {
                    cur.push(c);
                    if c == self.escape && q == '"' {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                None => {
                    in_word = true;
                    cur.push(c);
                    if c == self.escape {
                        if let Some(n) = chars.next() {
                            cur.push(n);
                        }
                    } else if c == '"' || c == '\'' {
                        quote = Some(c);
                    }
                }
            }
        }
        if quote.is_some() {
            return Err(self.err(line, "unterminated quote"));
        }
        if in_word {
            words.push(cur);
        }
        Ok(words)
    }

    /// ENV and LABEL: `key=value ...`, or the legacy `key value with spaces`.
    fn key_values(
        &self,
        line: usize,
        kw: &str,
        rest: &str,
    ) -> Result<Vec<KeyValue>, DockerfileError> {
        let words = self.words(line, rest)?;
        let first_has_eq = words.first().is_some_and(|w| w.contains('='));
        if !first_has_eq {
            // Legacy form: the first word is the key, the rest of the line the value.
            let key = words.first().cloned().unwrap_or_default();
            let value = rest[rest.find(char::is_whitespace).unwrap_or(rest.len())..].trim();
            if value.is_empty() {
                return Err(self.err(
                    line,
                    format!("{kw} {key} needs a value: write {kw} {key}=value"),
                ));
            }
            return Ok(vec![KeyValue {
                key,
                value: Some(value.to_string()),
            }]);
        }
        let mut kvs = Vec::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self.err(
                    line,
                    format!("{kw}: {w:?} is not key=value (mixing the two forms is not allowed)"),
                ));
            };
            if k.is_empty() {
                return Err(self.err(line, format!("{kw}: empty key in {w:?}")));
            }
            kvs.push(KeyValue {
                key: k.to_string(),
                value: Some(v.to_string()),
            });
        }
        Ok(kvs)
    }
}

fn flag_value(flags: &[Flag], name: &str) -> Option<String> {
    flags
        .iter()
        .rev()
        .find(|f| f.name == name)
        .map(|f| f.value.clone().unwrap_or_default())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Find `<<[-]["']NAME["']` heredoc markers in an instruction's text. Returns
/// (name, strip leading tabs, expand variables). A `<<` inside quotes or a JSON
/// array is not a heredoc.
fn heredoc_markers(text: &str, escape: char) -> Vec<(String, bool, bool)> {
    let upper: String = text
        .chars()
        .take(4)
        .collect::<String>()
        .to_ascii_uppercase();
    let kw_len = if upper.starts_with("RUN") || upper.starts_with("ADD") {
        3
    } else if text
        .get(..4)
        .is_some_and(|k| k.eq_ignore_ascii_case("COPY"))
    {
        4
    } else {
        return vec![];
    };
    let rest = text[kw_len..].trim_start();
    if rest.starts_with('[') {
        return vec![];
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == escape {
            i += 2;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == '<' && chars.get(i + 1) == Some(&'<') && chars.get(i + 2) != Some(&'<') {
            let mut j = i + 2;
            let strip = chars.get(j) == Some(&'-');
            if strip {
                j += 1;
            }
            let q = match chars.get(j) {
                Some('"') | Some('\'') => {
                    j += 1;
                    Some(chars[j - 1])
                }
                _ => None,
            };
            let start = j;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || "_.-".contains(chars[j]))
            {
                j += 1;
            }
            if j > start {
                let name: String = chars[start..j].iter().collect();
                let closed = match q {
                    Some(qc) => chars.get(j) == Some(&qc),
                    None => true,
                };
                if closed {
                    out.push((name, strip, q.is_none()));
                    i = j + usize::from(q.is_some());
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Dockerfile {
        match parse("Dockerfile", text) {
            Ok(d) => d,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn perr(text: &str) -> String {
        match parse("Dockerfile", text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn directives_and_escape() {
        let d = p("# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nCOPY a `\n  b /c/\n");
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '`');
        assert_eq!(d.instructions.len(), 2);
        assert_eq!(d.instructions[1].line, 4);
        match &d.instructions[1].command {
            Command::Copy(c) => assert_eq!(
                c.args,
                Form::Shell("COPY a   b /c/".replace("COPY ", "").to_string())
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn directive_after_instruction_is_a_comment() {
        let d = p("FROM scratch\n# escape=`\nCOPY a \\\n b /\n");
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions.len(), 2);
    }

    #[test]
    fn continuation_skips_comments_and_blank_lines() {
        let d = p("FROM scratch\nLABEL a=1 \\\n# comment inside\n\n    b=2\nUSER 1\n");
        assert_eq!(d.instructions.len(), 3);
        match &d.instructions[1].command {
            Command::Label(kv) => {
                assert_eq!(kv.len(), 2);
                assert_eq!(kv[1].key, "b");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.instructions[2].line, 6);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let d = p("from scratch AS Build\ncopy a /b\nWorkDir /x\n");
        match &d.instructions[0].command {
            Command::From { name, .. } => assert_eq!(name.as_deref(), Some("build")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(d.instructions[2].command, Command::Workdir(_)));
    }

    #[test]
    fn exec_and_shell_forms() {
        let d = p("FROM scratch\nCMD [\"a\", \"b c\"]\nENTRYPOINT echo hi\nCMD [not json\n");
        assert_eq!(
            d.instructions[1].command,
            Command::Cmd(Form::Exec(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(
            d.instructions[2].command,
            Command::Entrypoint(Form::Shell("echo hi".into()))
        );
        assert_eq!(
            d.instructions[3].command,
            Command::Cmd(Form::Shell("[not json".into()))
        );
    }

    #[test]
    fn from_forms() {
        let d = p(
            "ARG V=1\nFROM --platform=linux/arm64 alpine:${V} AS base\nFROM base\nFROM scratch\n",
        );
        assert!(matches!(&d.instructions[0].command, Command::Arg(_)));
        assert_eq!(
            d.instructions[1].command,
            Command::From {
                image: "alpine:${V}".into(),
                name: Some("base".into()),
                platform: Some("linux/arm64".into())
            }
        );
    }

    #[test]
    fn env_forms() {
        let d = p("FROM scratch\nENV A=1 B=\"two words\" C=a\\ b\nENV LEGACY some value here\n");
        match &d.instructions[1].command {
            Command::Env(kv) => {
                assert_eq!(kv[1].value.as_deref(), Some("\"two words\""));
                assert_eq!(kv[2].value.as_deref(), Some("a\\ b"));
            }
            other => panic!("{other:?}"),
        }
        match &d.instructions[2].command {
            Command::Env(kv) => assert_eq!(kv[0].value.as_deref(), Some("some value here")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heredocs() {
        let d = p("FROM scratch\nCOPY <<EOF /etc/x\nhello $X\nEOF\nRUN <<-'END' bash\n\techo hi\n\tEND\nUSER 1\n");
        match &d.instructions[1].command {
            Command::Copy(c) => {
                assert_eq!(c.heredocs[0].content, "hello $X\n");
                assert!(c.heredocs[0].expand);
            }
            other => panic!("{other:?}"),
        }
        match &d.instructions[2].command {
            Command::Run { heredocs, .. } => {
                assert_eq!(heredocs[0].content, "echo hi\n");
                assert!(!heredocs[0].expand);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.instructions[3].line, 8);
    }

    #[test]
    fn errors_name_file_and_line() {
        assert_eq!(
            perr("FROM scratch\n\nFOO bar\n"),
            "Dockerfile:3: unknown instruction: FOO"
        );
        assert!(perr("FROM scratch\nCOPY onlyone\n").starts_with("Dockerfile:2:"));
        assert!(perr("FROM scratch\nCOPY --frm=x a b\n").contains("unknown flag for COPY: --frm"));
        assert!(perr("FROM scratch\nSHELL /bin/sh\n")
            .starts_with("Dockerfile:2: SHELL requires a JSON array"));
        assert!(perr("FROM a b c d\n").starts_with("Dockerfile:1:"));
        assert!(perr("FROM scratch\nENV\n").starts_with("Dockerfile:2:"));
        assert!(perr("FROM scratch\nENV A=1 B\n").starts_with("Dockerfile:2:"));
        assert!(perr("FROM scratch\nLABEL a=\"open\n").contains("unterminated quote"));
        assert!(perr("# escape=x\nFROM scratch\n").starts_with("Dockerfile:1: invalid escape"));
        assert!(perr("FROM scratch\nRUN <<EOF\nno end\n").contains("unterminated heredoc"));
        assert!(perr("FROM scratch\nONBUILD FOO x\n")
            .starts_with("Dockerfile:2: unknown instruction: FOO"));
    }

    #[test]
    fn healthcheck() {
        let d = p("FROM scratch\nHEALTHCHECK --interval=5s --retries=3 CMD curl -f http://x/\nHEALTHCHECK NONE\n");
        match &d.instructions[1].command {
            Command::Healthcheck(h) => {
                assert_eq!(h.interval.as_deref(), Some("5s"));
                assert_eq!(h.cmd, Some(Form::Shell("curl -f http://x/".into())));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&d.instructions[2].command, Command::Healthcheck(h) if h.cmd.is_none()));
    }

    #[test]
    fn crlf_and_bom() {
        let d = p("\u{feff}FROM scratch\r\nUSER 1\r\n");
        assert_eq!(d.instructions.len(), 2);
        assert_eq!(d.instructions[1].command, Command::User("1".into()));
    }

    #[test]
    fn a_multibyte_character_in_the_keyword_is_an_error_not_a_panic() {
        for text in [
            "FR\u{20ac} x\n",
            "CO\u{20ac}\n",
            "C\u{20ac}PY a b\n",
            "\u{20ac}\n",
        ] {
            let err = parse("Dockerfile", text).unwrap_err().to_string();
            assert!(err.contains("Dockerfile:1"), "{text:?}: {err}");
        }
    }
}
