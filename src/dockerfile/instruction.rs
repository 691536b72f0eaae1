//! One instruction's arguments: the keyword, its `--flags`, exec (JSON) or
//! shell form, key=value pairs, and the checks each instruction makes on them
//! (ONBUILD triggers, HEALTHCHECK options, FROM's `AS name`).
//!
//! It owns what an instruction line means; how lines are joined, directives read
//! and heredoc bodies collected is `parse`'s. Nothing is expanded here.

use super::parse::*;

impl Parser {
    pub(super) fn instruction(
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
        if !heredocs.is_empty() && !matches!(kw, "RUN" | "COPY" | "ADD" | "ONBUILD") {
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
                    // BuildKit takes any key (`ARG 1FOO`, `ARG ${name}=v`: keys
                    // are expanded when the ARG applies).
                    if key.is_empty() {
                        return Err(self.err(line, format!("invalid ARG {w:?}: empty name")));
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
                // A bare RUN is accepted, as BuildKit does: an empty command.
                Command::Run {
                    cmd: self.form(line, rest)?,
                    heredocs,
                    flags,
                }
            }
            "CMD" | "ENTRYPOINT" => {
                if let Some(flag) = rest
                    .split_whitespace()
                    .next()
                    .filter(|w| w.starts_with("--"))
                {
                    return Err(self.err(line, format!("{kw} takes no flags: {flag}")));
                }
                let form = self.form(line, rest)?;
                if kw == "CMD" {
                    Command::Cmd(form)
                } else {
                    Command::Entrypoint(form)
                }
            }
            "SHELL" => match self.form(line, rest)? {
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
                // The here-document openers stand for their bodies, which are
                // sources of their own.
                let rest = if heredocs.is_empty() || rest.starts_with('[') {
                    rest.to_string()
                } else {
                    let (_, opening) = super::heredoc::scan(&format!("{kw} {rest}"), self.escape);
                    super::heredoc::without_openers(rest, self.escape, &opening)
                };
                let args = self.form(line, &rest)?;
                let count = match &args {
                    Form::Exec(v) => v.len(),
                    Form::Shell(s) => s.split_whitespace().count(),
                };
                // Here-documents are the sources of `COPY <<EOF /dest`.
                if count + heredocs.len() < 2 || count == 0 {
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
                    checksum: flag_value(&flags, "checksum"),
                    parents: flags
                        .iter()
                        .any(|f| f.name == "parents" && f.value.as_deref() != Some("false")),
                    keep_git_dir: flags
                        .iter()
                        .any(|f| f.name == "keep-git-dir" && f.value.as_deref() != Some("false")),
                    unpack: flags
                        .iter()
                        .rev()
                        .find(|f| f.name == "unpack")
                        .map(|f| f.value.as_deref() != Some("false")),
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
                // BuildKit takes the rest of the line (`USER name group` included).
                need_args("a user")?;
                Command::User(rest.to_string())
            }
            "EXPOSE" => {
                need_args("at least one port")?;
                Command::Expose(rest.split_whitespace().map(str::to_string).collect())
            }
            "VOLUME" => {
                need_args("at least one path")?;
                Command::Volume(self.form(line, rest)?)
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
                    // Options before NONE are accepted and mean nothing (BuildKit).
                    "NONE" if cmd_rest.is_empty() => None,
                    "NONE" => {
                        return Err(self.err(line, "HEALTHCHECK NONE takes no other arguments"))
                    }
                    "CMD" if !cmd_rest.is_empty() => Some(self.form(line, cmd_rest)?),
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
                self.instruction(line, rest, heredocs.clone())?;
                // A trigger keeps its here-documents' bodies on the lines after it,
                // as the image config stores it.
                let mut trigger = rest.to_string();
                for h in &heredocs {
                    trigger.push('\n');
                    trigger.push_str(&h.content);
                    trigger.push_str(&h.name);
                }
                Command::Onbuild(trigger)
            }
            "MAINTAINER" => {
                need_args("a name")?;
                Command::Maintainer(rest.to_string())
            }
            _ => return Err(self.err(line, format!("unknown instruction: {}", kw))),
        })
    }

    /// Leading `--name[=value]` words, as BuildKit reads them: names are
    /// case-sensitive, quotes are removed from values (`--chown="1:1"`), an
    /// escape character escapes the next one, and a bare `--` ends the flags.
    /// Unknown flags are errors.
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
            // One word: up to unquoted whitespace, quotes removed.
            let mut word = String::new();
            let mut quote: Option<char> = None;
            let mut end = rest.len();
            let mut it = rest.char_indices();
            while let Some((i, c)) = it.next() {
                match quote {
                    Some(q) if c == q => quote = None,
                    None if c.is_whitespace() => {
                        end = i;
                        break;
                    }
                    None if c == '"' || c == '\'' => quote = Some(c),
                    _ if c == self.escape => {
                        if let Some((_, n)) = it.next() {
                            word.push(n);
                        }
                    }
                    _ => word.push(c),
                }
            }
            if quote.is_some() {
                return Err(self.err(line, format!("{kw}: unterminated quote in a flag")));
            }
            rest = &rest[end..];
            if word == "--" {
                break;
            }
            let word = &word[2..];
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.to_string(), None),
            };
            if !allowed.contains(&name.as_str()) {
                return Err(self.err(line, format!("unknown flag for {kw}: --{name}")));
            }
            flags.push(Flag { name, value });
        }
        Ok((flags, rest.trim()))
    }

    /// Exec form (a JSON array of strings) or shell form. An array with
    /// anything but strings is an error, never shell form; text that is not
    /// JSON at all is shell form.
    fn form(&self, line: usize, rest: &str) -> Result<Form, DockerfileError> {
        if rest.starts_with('[') {
            if let Ok(serde_json::Value::Array(items)) =
                serde_json::from_str::<serde_json::Value>(rest)
            {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        serde_json::Value::String(s) => out.push(s),
                        other => {
                            return Err(self.err(
                                line,
                                format!("a JSON array's items must be strings, not {other}"),
                            ))
                        }
                    }
                }
                return Ok(Form::Exec(out));
            }
        }
        Ok(Form::Shell(rest.to_string()))
    }

    /// Split on unquoted whitespace, keeping quotes and escapes for word expansion.
    fn words(&self, line: usize, s: &str) -> Result<Vec<String>, DockerfileError> {
        let (words, closed) = self.split_words(s);
        if !closed {
            return Err(self.err(line, "unterminated quote"));
        }
        Ok(words)
    }

    /// [`Self::words`], and whether every quote closed. BuildKit's parser
    /// splits words the same way and never fails on a quote; its expansion
    /// does, when a built stage uses the value.
    fn split_words(&self, s: &str) -> (Vec<String>, bool) {
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
        if in_word {
            words.push(cur);
        }
        (words, quote.is_none())
    }

    /// ENV and LABEL: `key=value ...`, or the legacy `key value with spaces`.
    fn key_values(
        &self,
        line: usize,
        kw: &str,
        rest: &str,
    ) -> Result<Vec<KeyValue>, DockerfileError> {
        let (words, closed) = self.split_words(rest);
        let first_has_eq = words.first().is_some_and(|w| w.contains('='));
        if first_has_eq && !closed {
            return Err(self.err(line, "unterminated quote"));
        }
        if !first_has_eq {
            // The value is taken as written; a quote in it that does not close
            // is an error where the value is expanded (a built stage), as in
            // BuildKit: `ENV a 'x\'y'` in an unused stage is fine.
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
