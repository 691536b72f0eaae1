//! Conformance tables: each case gives the input, the result BuildKit gives (or
//! its error), and where that behaviour is written down. Written from the
//! documented behaviour (Dockerfile reference, POSIX Shell Command Language),
//! never copied from another project's test files.

use kiln::dockerfile::lex::{Lexer, Vars};

fn vars() -> Vars {
    [
        ("A", "apple"),
        ("P", "a/b/c"),
        ("TARGETPLATFORM", "linux/amd64"),
        ("ARM", "linux/arm64/v8"),
        ("EMPTY", ""),
        ("F", "foo.tar.gz"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const REF: &str = "Dockerfile reference, Environment replacement";
const POSIX: &str = "POSIX 2.6.2 Parameter Expansion";
const POSIX_SP: &str = "POSIX 2.5.2 Special Parameters (never set in a Dockerfile)";
const POSIX_PAT: &str = "POSIX 2.13 Pattern Matching Notation";
/// Where BuildKit's code departs from POSIX, the code wins: its lexer
/// (`frontend/dockerfile/shell/lex.go`: `processName`, `processDollar`,
/// `convertShellPatternToRegex`) and its tests (`lex_test.go`,
/// `TestProcessWithMatches`).
const BK: &str = "BuildKit shell/lex.go and lex_test.go";

/// (word, expected expansion, source)
const WORDS: &[(&str, &str, &str)] = &[
    ("$A", "apple", REF),
    ("${A}s", "apples", REF),
    ("${UNSET:-x}", "x", REF),
    ("${EMPTY:-x}", "x", POSIX),
    ("${EMPTY-x}", "", POSIX),
    ("${A:+x}", "x", REF),
    ("${UNSET:+x}", "", REF),
    ("${EMPTY+x}", "x", POSIX),
    // Prefix and suffix removal.
    ("${TARGETPLATFORM#linux/amd64}", "", REF),
    ("${ARM#linux/amd64}", "linux/arm64/v8", REF),
    ("${P#*/}", "b/c", REF),
    ("${P##*/}", "c", REF),
    ("${P%/*}", "a/b", REF),
    ("${P%%/*}", "a", REF),
    ("${F%.*}", "foo.tar", POSIX),
    ("${F%%.*}", "foo", POSIX),
    ("${F#*.}", "tar.gz", POSIX),
    ("${A#x}", "apple", POSIX),
    ("${UNSET#a}", "", POSIX),
    ("${A#a?p}", "le", POSIX_PAT),
    // No bracket expressions in BuildKit: `[` is itself.
    ("${A#[a-c]}", "apple", BK),
    ("${A#[!a]}", "apple", BK),
    ("${A#\"a\"*}", "pple", POSIX_PAT),
    ("${A#\\*}", "apple", POSIX_PAT),
    // Replacement.
    ("${A/p/P}", "aPple", REF),
    ("${A//p/P}", "aPPle", REF),
    ("${P//\\//-}", "a-b-c", REF),
    ("${A/p*/X}", "aX", REF),
    ("${A/z/X}", "apple", REF),
    ("${A/p/}", "aple", BK),
    // Empty and escaped patterns, and replacements that keep their escapes.
    ("${A/$EMPTY/ww}", "wwapple", BK),
    ("${A///}", "apple", BK),
    ("${A//$EMPTY/-}", "-a-p-p-l-e-", BK),
    ("${P//\\//\\/}", "a\\/b\\/c", BK),
    ("${P/\\//}", "ab/c", BK),
    ("${A%\\*}", "apple", BK),
    // Quotes do not make a wildcard literal: the pattern is read after them.
    ("${A##'*'}", "", BK),
    // Positional and special parameters.
    ("Costs $5", "Costs ", POSIX_SP),
    ("${@}", "", POSIX_SP),
    ("$@", "", POSIX_SP),
    ("a$*b", "ab", POSIX_SP),
    ("$#", "", POSIX_SP),
    ("${#}", "", POSIX_SP),
    ("$?x", "x", POSIX_SP),
    ("a$$b", "ab", POSIX_SP),
    ("$!", "", POSIX_SP),
    ("$-", "", POSIX_SP),
    ("$0", "", POSIX_SP),
    ("${1}", "", POSIX_SP),
    ("${10}", "", POSIX_SP),
    ("${1:-d}", "d", POSIX_SP),
    // Every digit is the name; special parameters take operators.
    ("$999", "", BK),
    ("$001x", "x", BK),
    ("a$10b", "ab", BK),
    ("${@:-x}", "x", BK),
    ("${*:+x}", "", BK),
    ("${#:-x}", "x", BK),
    ("${?-y}", "y", BK),
    ("${!:+z}w", "w", BK),
    ("${--d}", "d", BK),
    // The escape character.
    (
        "hello\\",
        "hello",
        "BuildKit: a trailing escape escapes nothing",
    ),
    ("\\$A", "$A", REF),
    ("'$A'", "$A", REF),
    ("\"$A\"", "apple", REF),
    ("$", "$", REF),
];

#[test]
fn word_expansion_matches_the_table() {
    let lx = Lexer::default();
    let v = vars();
    let mut bad = Vec::new();
    for (word, want, source) in WORDS {
        match lx.word(word, &v) {
            Ok(got) if got == *want => {}
            other => bad.push(format!("{word:?}: want {want:?} ({source}), got {other:?}")),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// (word, part of the error, source)
const WORD_ERRORS: &[(&str, &str, &str)] = &[
    ("${UNSET:?must be set}", "must be set", POSIX),
    ("${A", "missing '}'", REF),
    ("${}", "bad substitution", POSIX),
    ("${A#x", "missing '}'", REF),
    // `/` needs its second `/`: `${A/p/}` removes p.
    ("${A/p}", "missing '/'", BK),
    ("${A//ww}", "missing '/'", BK),
    ("${A//}", "missing '/'", BK),
    ("${A#\\x}", "invalid escape", BK),
    ("${#A}", "unsupported modifier", BK),
];

#[test]
fn word_expansion_errors_match_the_table() {
    let lx = Lexer::default();
    for (word, want, source) in WORD_ERRORS {
        let err = lx.word(word, &vars()).expect_err(word);
        assert!(
            err.contains(want),
            "{word:?}: want {want:?} ({source}), got {err:?}"
        );
    }
}

use kiln::dockerfile::parse::{parse, Command, Dockerfile, Form};

fn df(text: &str) -> Result<Dockerfile, String> {
    parse("Dockerfile", text).map_err(|e| e.to_string())
}

const PARSER: &str = "Dockerfile reference, Format / Parser directives";
const HEREDOC: &str = "Dockerfile reference, Here-Documents; POSIX 2.7.4";
const FLAGS: &str = "BuildKit instruction flags";

/// (Dockerfile, what must hold, source)
type Check = fn(&Result<Dockerfile, String>) -> bool;

fn n(d: &Result<Dockerfile, String>) -> usize {
    d.as_ref().map(|d| d.instructions.len()).unwrap_or(0)
}

fn cmd(d: &Result<Dockerfile, String>, i: usize) -> Option<&Command> {
    d.as_ref()
        .ok()
        .and_then(|d| d.instructions.get(i))
        .map(|i| &i.command)
}

fn err_has(d: &Result<Dockerfile, String>, s: &str) -> bool {
    d.as_ref().err().is_some_and(|e| e.contains(s))
}

fn run_heredoc(d: &Result<Dockerfile, String>, i: usize) -> Option<(String, String, bool)> {
    match cmd(d, i) {
        Some(Command::Run { heredocs, .. }) => heredocs
            .first()
            .map(|h| (h.name.clone(), h.content.clone(), h.expand)),
        _ => None,
    }
}

const PARSE: &[(&str, Check, &str)] = &[
    // An escaped escape at the end of a line ends the line.
    (
        "FROM scratch\nENV C trailing\\\\\nUSER 1\n",
        |d| n(d) == 3,
        PARSER,
    ),
    (
        "# escape=`\nFROM scratch\nENV P C:\\tools``\nUSER 1\n",
        |d| n(d) == 3,
        PARSER,
    ),
    (
        "FROM scratch\nENV C con\\\ntinued\nUSER 1\n",
        |d| n(d) == 3,
        PARSER,
    ),
    // Here-document delimiters, found as a shell finds them.
    (
        "FROM scratch\nRUN << EOF\necho hi\nEOF\n",
        |d| run_heredoc(d, 1) == Some(("EOF".into(), "echo hi\n".into(), true)),
        HEREDOC,
    ),
    (
        "FROM scratch\nRUN cat <<E\"O\"F\n$X\nEOF\n",
        |d| run_heredoc(d, 1) == Some(("EOF".into(), "$X\n".into(), false)),
        HEREDOC,
    ),
    (
        "FROM scratch\nRUN cat <<'one two'\nx\none two\n",
        |d| run_heredoc(d, 1).is_some_and(|h| h.0 == "one two"),
        HEREDOC,
    ),
    (
        "FROM scratch\nRUN cat <<$EOF\nx\n$EOF\n",
        |d| run_heredoc(d, 1).is_some_and(|h| h.0 == "$EOF"),
        HEREDOC,
    ),
    (
        "FROM scratch\nRUN echo $((1<<2))\nUSER 1\n",
        |d| n(d) == 3 && run_heredoc(d, 1).is_none(),
        HEREDOC,
    ),
    (
        "FROM scratch\nRUN cat <<<word\nUSER 1\n",
        |d| n(d) == 3 && run_heredoc(d, 1).is_none(),
        HEREDOC,
    ),
    (
        "FROM scratch\r\nRUN cat <<EOF\r\nline\r\nEOF\r\nUSER 1\r\n",
        |d| run_heredoc(d, 1).is_some_and(|h| h.1 == "line\r\n") && n(d) == 3,
        HEREDOC,
    ),
    (
        "FROM scratch\nONBUILD RUN <<EOF\necho on-build\nEOF\nUSER 1\n",
        |d| {
            matches!(cmd(d, 1), Some(Command::Onbuild(t)) if t == "RUN <<EOF\necho on-build\nEOF")
                && n(d) == 3
        },
        HEREDOC,
    ),
    (
        "FROM scratch\nCOPY << EOF /dest\nbody\nEOF\n",
        |d| matches!(cmd(d, 1), Some(Command::Copy(c)) if c.args == Form::Shell("/dest".into()) && c.heredocs.len() == 1),
        HEREDOC,
    ),
    // Flags.
    (
        "FROM scratch\nCOPY --chown=\"1:2\" a /b\n",
        |d| matches!(cmd(d, 1), Some(Command::Copy(c)) if c.chown.as_deref() == Some("1:2")),
        FLAGS,
    ),
    (
        "FROM scratch\nCOPY --FROM=x a /b\n",
        |d| err_has(d, "unknown flag for COPY: --FROM"),
        FLAGS,
    ),
    (
        "FROM scratch\nCOPY -- --odd /b\n",
        |d| matches!(cmd(d, 1), Some(Command::Copy(c)) if c.args == Form::Shell("--odd /b".into())),
        FLAGS,
    ),
    (
        "FROM scratch\nCMD --foo x\n",
        |d| err_has(d, "Dockerfile:2: CMD takes no flags: --foo"),
        FLAGS,
    ),
    (
        "FROM scratch\nENTRYPOINT --foo x\n",
        |d| err_has(d, "ENTRYPOINT takes no flags"),
        FLAGS,
    ),
    // JSON arrays hold strings.
    (
        "FROM scratch\nCMD [\"sleep\", 5]\n",
        |d| err_has(d, "Dockerfile:2: a JSON array's items must be strings"),
        "Dockerfile reference, Shell and exec form",
    ),
    (
        "FROM scratch\nCMD [[\"a\"]]\n",
        |d| err_has(d, "must be strings"),
        "Dockerfile reference, Shell and exec form",
    ),
    (
        "FROM scratch\nCMD [not json\n",
        |d| matches!(cmd(d, 1), Some(Command::Cmd(Form::Shell(_)))),
        "Dockerfile reference, Shell and exec form",
    ),
    // Empty files.
    ("", |d| err_has(d, "no instructions"), PARSER),
    (
        "# just a comment\n\n",
        |d| err_has(d, "Dockerfile:1: the Dockerfile has no instructions"),
        PARSER,
    ),
    // What BuildKit accepts.
    (
        "ARG ${name}=v\nFROM scratch\n",
        |d| n(d) == 2,
        "BuildKit: ARG keys are expanded",
    ),
    (
        "FROM scratch\nARG 1FOO=bar\n",
        |d| n(d) == 2,
        "BuildKit: ARG names",
    ),
    (
        "FROM scratch\nRUN\n",
        |d| matches!(cmd(d, 1), Some(Command::Run { cmd: Form::Shell(s), .. }) if s.is_empty()),
        "BuildKit: a bare RUN",
    ),
    (
        "FROM scratch\nUSER name group\n",
        |d| matches!(cmd(d, 1), Some(Command::User(u)) if u == "name group"),
        "BuildKit: USER takes the line",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=5s NONE\n",
        |d| matches!(cmd(d, 1), Some(Command::Healthcheck(h)) if h.cmd.is_none()),
        "BuildKit: HEALTHCHECK NONE",
    ),
    (
        "# escape=\nFROM scratch\n",
        |d| d.as_ref().is_ok_and(|d| d.escape == '\\'),
        PARSER,
    ),
];

#[test]
fn the_parser_matches_the_table() {
    let mut bad = Vec::new();
    for (text, check, source) in PARSE {
        let d = df(text);
        if !check(&d) {
            bad.push(format!("{text:?} ({source}): got {d:?}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn copy_heredoc_bodies_expand_with_here_document_rules() {
    let lx = Lexer::default();
    let v = vars();
    // Quotes are ordinary characters in a here-document; \" stays as written.
    assert_eq!(
        lx.heredoc("echo \\\"quoted\\\" $A\n", &v).unwrap(),
        "echo \\\"quoted\\\" apple\n"
    );
    assert_eq!(
        lx.heredoc("'$A' \"$A\"\n", &v).unwrap(),
        "'apple' \"apple\"\n"
    );
    assert_eq!(lx.heredoc("\\$A \\\\ \\`\n", &v).unwrap(), "$A \\ `\n");
    assert_eq!(lx.heredoc("a\\\nb\n", &v).unwrap(), "ab\n");
}

#[test]
fn no_line_with_multibyte_characters_panics_the_parser() {
    let pieces = [
        "€", "é", "日本", "🦀", "\u{feff}", "\\", "`", "<<", "\"", "'", "[", "--", "=", "$",
    ];
    for kw in [
        "FROM",
        "RUN",
        "COPY",
        "ENV",
        "ARG",
        "LABEL",
        "HEALTHCHECK",
        "ONBUILD",
        "USER",
    ] {
        for a in pieces {
            for b in pieces {
                let text = format!("FROM scratch\n{kw} {a}x{b} {b}{a}\n");
                let _ = parse("Dockerfile", &text);
                let text = format!("{a}{kw}{b}\n");
                let _ = parse("Dockerfile", &text);
            }
        }
    }
}

use kiln::dockerfile::ignore::Ignore;

const IGN: &str = "Dockerfile reference, .dockerignore file (Go filepath.Match plus **)";

/// (.dockerignore, path, ignored?, source)
const IGNORE: &[(&str, &str, bool, &str)] = &[
    ("{a,b}.txt", "{a,b}.txt", true, IGN),
    (
        "{a,b}.txt",
        "a.txt",
        false,
        "Go filepath.Match: {} is not alternation",
    ),
    (
        "[!a]x",
        "!x",
        true,
        "Go filepath.Match: [!a] is the class of ! and a",
    ),
    (
        "[!a]x",
        "ax",
        true,
        "Go filepath.Match: [!a] is the class of ! and a",
    ),
    (
        "[!a]x",
        "bx",
        false,
        "Go filepath.Match: [!a] is the class of ! and a",
    ),
    ("[^a].txt", "b.txt", true, "Go filepath.Match: [^a] negates"),
    (
        "[^a].txt",
        "a.txt",
        false,
        "Go filepath.Match: [^a] negates",
    ),
    (
        "[^a].txt",
        "é.txt",
        true,
        "Go filepath.Match: one character, not one byte",
    ),
    (
        "?.txt",
        "é.txt",
        true,
        "Go filepath.Match: one character, not one byte",
    ),
    ("?.txt", "ab.txt", false, IGN),
    ("**.log", "x.log", true, IGN),
    ("**.log", "a/b/c.log", true, IGN),
    ("**/node_modules", "node_modules", true, IGN),
    ("**/node_modules", "web/node_modules/x.js", true, IGN),
    ("logs/**", "logs/2024/x", true, IGN),
    ("*/temp*", "somedir/temporary.txt", true, IGN),
    ("*/temp*", "temporary.txt", false, IGN),
    ("  #x", "#x", true, IGN),
    ("#x", "#x", false, IGN),
    ("docs", "docs/a/b.md", true, IGN),
    ("docs\n!docs/keep.md", "docs/keep.md", false, IGN),
    (
        "*.md\n!README*.md\nREADME-secret.md",
        "README-secret.md",
        true,
        IGN,
    ),
    ("a|b", "a|b", true, IGN),
    ("a+", "a+", true, IGN),
    ("a.c", "abc", false, IGN),
    ("lit\\*", "lit*", true, IGN),
    ("lit\\*", "litx", false, IGN),
    (
        "[\\]]x",
        "]x",
        true,
        "Go filepath.Match: an escaped ] is a member",
    ),
    (
        "[a&&b]",
        "&",
        true,
        "Go filepath.Match: no class intersection",
    ),
];

#[test]
fn dockerignore_matches_the_table() {
    let mut bad = Vec::new();
    for (text, path, want, source) in IGNORE {
        match Ignore::parse(".dockerignore", text) {
            Ok(i) if i.is_ignored(path) == *want => {}
            Ok(_) => bad.push(format!(
                "{text:?} on {path:?}: want ignored={want} ({source})"
            )),
            Err(e) => bad.push(format!("{text:?}: {e} ({source})")),
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn dockerignore_errors_name_the_line() {
    for (text, want) in [
        ("ok\n!\n", ".dockerignore:2"),
        ("[z-a]\n", ".dockerignore:1"),
        ("ok\n[abc\n", ".dockerignore:2"),
        // Malformed classes and a trailing escape: Go's filepath.Match returns
        // ErrBadPattern for each (patternmatcher checks every pattern with it).
        ("[]a]\n", ".dockerignore:1"),
        ("ok\n[-]\n", ".dockerignore:2"),
        ("[x-]\n", ".dockerignore:1"),
        ("[a-b-c]\n", ".dockerignore:1"),
        ("ok\nok\nend\\\n", ".dockerignore:3"),
    ] {
        let err = Ignore::parse(".dockerignore", text)
            .expect_err(text)
            .to_string();
        assert!(err.starts_with(want), "{text:?}: {err}");
    }
    // Pathological patterns are errors or plain matches, never a panic or a hang.
    for text in [
        "*".repeat(100_000),
        "[".repeat(10_000),
        "**/".repeat(20_000),
        "?".repeat(200_000),
    ] {
        let _ = Ignore::parse(".dockerignore", &text).map(|i| i.is_ignored("a/b/c"));
    }
}

/// Dockerfiles written for this suite in the shapes popular public images and
/// tools use (multi-stage Node/Go/Rust/Java/.NET/PHP builds, cache and secret
/// mounts, heredocs, `# escape=`, ONBUILD bases, ADD with checksums and git):
/// every one parses, and every `RUN --mount` in them is understood.
#[test]
fn the_corpus_parses_and_its_mounts_are_understood() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus has {} files", files.len());
    let mut mounts = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let d = parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!d.instructions.is_empty(), "{name}");
        // Stages, FROM references and meta ARGs plan without an error.
        let input = kiln::engine::plan::PlanInput {
            build_args: vec![],
            target: None,
            platform: None,
            label_prefix: String::new(),
            named: vec![],
        };
        if let Err(e) = kiln::engine::plan::Plan::new(d.clone(), input) {
            panic!("{name}: {e:#}");
        }
        for ins in &d.instructions {
            if let Command::Run { flags, .. } = &ins.command {
                for fl in flags.iter().filter(|f| f.name == "mount") {
                    let v = fl.value.as_deref().unwrap_or("");
                    kiln::engine::mounts::parse(v, "/", 0, &|s| Ok(s.to_string()))
                        .unwrap_or_else(|e| panic!("{name}:{}: --mount={v}: {e}", ins.line));
                    mounts += 1;
                }
            }
        }
    }
    assert!(mounts >= 15, "{mounts} mounts in the corpus");
    // Spot checks of what the shapes rely on.
    let moby = std::fs::read_to_string(dir.join("moby-like.Dockerfile")).unwrap();
    let d = parse("moby-like", &moby).unwrap();
    let arg = d.instructions.iter().find_map(|i| match &i.command {
        Command::Arg(kvs) => kvs.iter().find(|kv| kv.key == "DOCKER_STATIC").cloned(),
        _ => None,
    });
    let v = arg.and_then(|kv| kv.value).unwrap();
    let lx = Lexer::default();
    let mut vars = Vars::new();
    vars.insert("TARGETPLATFORM".into(), "linux/amd64".into());
    assert_eq!(lx.word(&v, &vars).unwrap(), "");
    vars.insert("TARGETPLATFORM".into(), "linux/arm64".into());
    assert_eq!(lx.word(&v, &vars).unwrap(), "linux/arm64");
    let win = std::fs::read_to_string(dir.join("windows-escape.Dockerfile")).unwrap();
    let d = parse("windows-escape", &win).unwrap();
    assert_eq!(d.escape, '`');
    assert!(matches!(
        d.instructions.last().map(|i| &i.command),
        Some(Command::User(_))
    ));
}
