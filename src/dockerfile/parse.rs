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
    /// ADD `--checksum=sha256:…` as written.
    pub checksum: Option<String>,
    /// ADD `--unpack[=bool]`.
    pub unpack: Option<bool>,
    /// COPY `--parents[=bool]`.
    pub parents: bool,
    /// ADD `--keep-git-dir[=bool]`.
    pub keep_git_dir: bool,
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
/// A trigger with a here-document holds its body on the lines after it.
pub fn parse_line(
    file: &str,
    line: usize,
    text: &str,
    escape: char,
) -> Result<Instruction, DockerfileError> {
    let mut p = Parser::new(file, text);
    p.escape = escape;
    p.pos = 1;
    let first = p.lines.first().cloned().unwrap_or_default();
    let (markers, _) = super::heredoc::scan(&first, escape);
    let heredocs = p.read_heredocs(line, &markers)?;
    p.instruction(line, first.trim(), heredocs)
}

pub(super) struct Parser {
    pub(super) file: String,
    /// Lines without their `\r`.
    pub(super) lines: Vec<String>,
    /// Lines as written, for here-document bodies (which keep a `\r`).
    raw: Vec<String>,
    pub(super) pos: usize,
    pub(super) escape: char,
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

impl Parser {
    fn new(file: &str, text: &str) -> Parser {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let raw: Vec<String> = text.split('\n').map(str::to_string).collect();
        let lines = raw
            .iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        Parser {
            file: file.to_string(),
            lines,
            raw,
            pos: 0,
            escape: '\\',
        }
    }

    pub(super) fn err(&self, line: usize, message: impl Into<String>) -> DockerfileError {
        DockerfileError {
            file: self.file.clone(),
            line,
            message: crate::clip::clip_to(&message.into(), crate::clip::MAX_MESSAGE),
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
            let (markers, _) = super::heredoc::scan(&logical, self.escape);
            let heredocs = self.read_heredocs(start, &markers)?;
            instructions.push(self.instruction(start, logical.trim(), heredocs)?);
        }
        if instructions.is_empty() {
            return Err(self.err(
                1,
                "the Dockerfile has no instructions (it is empty or only comments)",
            ));
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
                // `# escape=` with no value is a comment, and ends the directives.
                "escape" if value.is_empty() => break,
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
    /// An escaped escape character (`C:\\` with `\`) does not continue the line.
    fn strip_continuation(&self, line: &str) -> Option<String> {
        let trimmed = line.trim_end_matches([' ', '\t']);
        let escapes = trimmed
            .chars()
            .rev()
            .take_while(|c| *c == self.escape)
            .count();
        if escapes % 2 == 1 {
            trimmed.strip_suffix(self.escape).map(|s| s.to_string())
        } else {
            None
        }
    }

    fn read_heredocs(
        &mut self,
        start: usize,
        markers: &[super::heredoc::Marker],
    ) -> Result<Vec<Heredoc>, DockerfileError> {
        let mut out = Vec::new();
        for m in markers {
            let (name, strip_tabs, expand) = (&m.name, &m.strip_tabs, &m.expand);
            let mut content = String::new();
            let mut found = false;
            while self.pos < self.lines.len() {
                // The body keeps a CRLF file's `\r`; the delimiter line ends
                // without it.
                let raw = self.raw[self.pos].clone();
                let bare = self.lines[self.pos].clone();
                self.pos += 1;
                let (line, bare) = if *strip_tabs {
                    (
                        raw.trim_start_matches('\t').to_string(),
                        bare.trim_start_matches('\t').to_string(),
                    )
                } else {
                    (raw, bare)
                };
                if bare == *name {
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
