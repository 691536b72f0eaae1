//! Finding here-documents in RUN, COPY and ADD (also as ONBUILD triggers), as a
//! shell finds them: the instruction is split into words (quotes and escapes
//! kept), and a word that starts with `<<` (after an optional fd number) opens
//! a here-document; its delimiter is the rest of the word, or the next word
//! after a bare `<<`. Quote characters anywhere in the delimiter make the body
//! literal, and are removed from the delimiter (`<<E"O"F` ends at `EOF`).
//!
//! So `$((1<<2))` (the `<<` is inside a word) and the here-string `cat <<<word`
//! are not here-documents.

/// A here-document opened on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The delimiter, unquoted.
    pub name: String,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub strip_tabs: bool,
    /// The delimiter had no quotes: the body expands variables.
    pub expand: bool,
}

/// The instruction's arguments split as a shell splits words, each word raw
/// (quotes and escapes kept).
fn shell_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '\'' || c == '"' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// A delimiter word without its quotes and escapes, and whether quotes were
/// used in it; None when a quote does not close (then, as in BuildKit, the
/// word opens no here-document). As BuildKit decides it, only quotes stop the
/// body's expansion: `<<E\OF` and `<<eo\'f` expand (BuildKit compares the
/// quote characters left after lexing with and without raw quotes).
fn unquote(word: &str, escape: char) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == escape => {
                if let Some(n) = chars.next() {
                    if !matches!(n, '"' | '$') && n != escape {
                        out.push(c);
                    }
                    out.push(n);
                }
            }
            Some(_) => out.push(c),
            None if c == '\'' || c == '"' => {
                quoted = true;
                quote = Some(c);
            }
            None if c == escape => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            None => out.push(c),
        }
    }
    quote.is_none().then_some((out, quoted))
}

/// The keyword that takes heredocs (RUN, COPY, ADD) and its arguments, looking
/// through an ONBUILD prefix; None for other instructions.
fn heredoc_args(text: &str) -> Option<(String, &str)> {
    let split = |t: &str| -> (String, usize) {
        let t = t.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        (t[..end].to_ascii_uppercase(), end)
    };
    let mut rest = text.trim_start();
    let (mut kw, mut end) = split(rest);
    if kw == "ONBUILD" {
        rest = rest[end..].trim_start();
        (kw, end) = split(rest);
    }
    if !matches!(kw.as_str(), "RUN" | "COPY" | "ADD") {
        return None;
    }
    let args = rest[end..].trim_start();
    // The exec form has no here-documents.
    if args.starts_with('[') {
        return None;
    }
    Some((kw, args))
}

/// The here-documents an instruction opens, in order, and the raw words that
/// open them (`<<EOF`, or `<<` and `EOF`).
pub fn scan(text: &str, escape: char) -> (Vec<Marker>, Vec<String>) {
    let Some((_, args)) = heredoc_args(text) else {
        return (vec![], vec![]);
    };
    let words = shell_words(args, escape);
    let mut markers = Vec::new();
    let mut used = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let body = w.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(after) = body.strip_prefix("<<") else {
            continue;
        };
        if after.starts_with('<') {
            continue;
        }
        let (strip_tabs, after) = match after.strip_prefix('-') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let mut opening = vec![w.clone()];
        let delim = if after.is_empty() {
            match words.get(i) {
                Some(n) => {
                    i += 1;
                    opening.push(n.clone());
                    n.clone()
                }
                None => continue,
            }
        } else {
            after.to_string()
        };
        let Some((name, quoted)) = unquote(&delim, escape) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        markers.push(Marker {
            name,
            strip_tabs,
            expand: !quoted,
        });
        used.extend(opening);
    }
    (markers, used)
}

/// COPY/ADD arguments in shell form with the here-document openers taken out
/// (their bodies stand in as sources).
pub fn without_openers(args: &str, escape: char, opening: &[String]) -> String {
    let mut left: Vec<&String> = opening.iter().collect();
    shell_words(args, escape)
        .into_iter()
        .filter(|w| match left.iter().position(|o| *o == w) {
            Some(i) => {
                left.remove(i);
                false
            }
            None => true,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A RUN in shell form that is only here-document openers (`RUN <<EOF`,
/// `RUN << EOF`): the first body is the script.
pub fn only_openers(args: &str, escape: char) -> bool {
    let (markers, opening) = scan(&format!("RUN {args}"), escape);
    !markers.is_empty() && shell_words(args, escape).len() == opening.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, bool, bool)> {
        scan(text, '\\')
            .0
            .into_iter()
            .map(|m| (m.name, m.strip_tabs, m.expand))
            .collect()
    }

    #[test]
    fn delimiters_are_found_as_a_shell_finds_them() {
        let n = |s: &str, b: bool| (s.to_string(), false, b);
        assert_eq!(names("RUN <<EOF"), vec![n("EOF", true)]);
        assert_eq!(names("RUN << EOF"), vec![n("EOF", true)]);
        assert_eq!(names("RUN cat <<E\"O\"F"), vec![n("EOF", false)]);
        assert_eq!(names("RUN cat <<'one two'"), vec![n("one two", false)]);
        assert_eq!(names("RUN cat <<$EOF"), vec![n("$EOF", true)]);
        assert_eq!(names("RUN cat 3<<EOF"), vec![n("EOF", true)]);
        assert_eq!(names("ONBUILD RUN <<EOF"), vec![n("EOF", true)]);
        assert_eq!(
            names("RUN <<-A cat - <<B"),
            vec![("A".to_string(), true, true), n("B", true)]
        );
        assert_eq!(names("COPY <<EOF /dest"), vec![n("EOF", true)]);
        // Only quotes stop expansion in BuildKit; an escaped quote is a
        // character of the name.
        assert_eq!(names("RUN cat <<eo\\'f"), vec![n("eo'f", true)]);
        assert_eq!(names("RUN cat <<E\\OF"), vec![n("EOF", true)]);
    }

    #[test]
    fn shift_operators_here_strings_quotes_and_exec_form_open_nothing() {
        for text in [
            "RUN echo $((1<<2))",
            "RUN cat <<<word",
            "RUN echo '<<EOF'",
            "RUN echo \"a <<EOF\"",
            "RUN echo \\<<EOF",
            "RUN [\"sh\", \"-c\", \"cat <<EOF\"]",
            "ENV A <<EOF",
            "RUN cat <<",
            // A quote that does not close: no here-document (BuildKit's
            // lexer fails on the word, and the line keeps it as text).
            "RUN cat <<eo'f",
        ] {
            assert!(names(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn copy_arguments_lose_the_openers() {
        let (_, opening) = scan("COPY << EOF <<\"B\" /dest", '\\');
        assert_eq!(
            without_openers("<< EOF <<\"B\" /dest", '\\', &opening),
            "/dest"
        );
        assert!(only_openers("<< EOF", '\\'));
        assert!(only_openers("<<EOF", '\\'));
        assert!(!only_openers("cat <<EOF", '\\'));
    }
}
