//! `COPY --chmod` and `ADD --chmod`: an octal mode (`0755`) or a symbolic one
//! (`u=rwX,go=rX`, `go=u`, `+x`), as BuildKit accepts them since Dockerfile 1.14.
//!
//! Symbolic modes follow chmod(1) with a zero umask (BuildKit clears it): a
//! clause is `[ugoa]*` then one or more `[-+=]` actions, each with permission
//! letters (`rwxXst`) or one class to copy from (`u`, `g`, `o`); no class means
//! `a`. `X` is execute when the file is a directory or already has an execute
//! bit. Pure: it knows no files.

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Class bits the clause touches: 0o4700 user, 0o2070 group, 0o1007 other.
    who: u32,
    actions: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    /// Letters from `rwxXst`.
    Letters(String),
    /// Copy the bits of class `u`, `g` or `o`.
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    /// Parse `--chmod`'s value; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
            return u32::from_str_radix(s, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(|| {
                    format!("invalid chmod parameter {s:?}: an octal mode is between 0 and 07777")
                });
        }
        let bad = |why: &str| format!("invalid chmod parameter {s:?}: {why}");
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                who = USER | GROUP | OTHER;
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad(&format!("expected +, - or = before {op:?}")));
                }
                let mut letters = String::new();
                let mut copy = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' | 'w' | 'x' | 'X' | 's' | 't' if copy.is_none() => letters.push(c),
                        'u' | 'g' | 'o' if letters.is_empty() && copy.is_none() => copy = Some(c),
                        '+' | '-' | '=' => break,
                        other => return Err(bad(&format!("unexpected {other:?}"))),
                    }
                    chars.next();
                }
                actions.push((
                    op,
                    match copy {
                        Some(c) => Perm::Copy(c),
                        None => Perm::Letters(letters),
                    },
                ));
            }
            if actions.is_empty() {
                return Err(bad("a clause needs +, - or ="));
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file of mode `mode` (permission bits) gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for (op, perm) in &clause.actions {
                let bits = match perm {
                    Perm::Letters(l) => letter_bits(l, mode, is_dir),
                    Perm::Copy(c) => copied_bits(*c, mode),
                } & clause.who;
                match op {
                    '+' => mode |= bits,
                    '-' => mode &= !bits,
                    _ => mode = (mode & !clause.who) | bits,
                }
            }
        }
        mode
    }

    /// The value as it enters cache keys.
    pub fn key(&self) -> String {
        match self {
            Chmod::Octal(m) => format!("{m:o}"),
            Chmod::Symbolic(c) => format!("{c:?}"),
        }
    }
}

/// `rwxXst` for every class; the clause's classes mask them afterwards.
fn letter_bits(letters: &str, mode: u32, is_dir: bool) -> u32 {
    letters.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => 0o444,
            'w' => 0o222,
            'x' => 0o111,
            'X' if is_dir || mode & 0o111 != 0 => 0o111,
            's' => 0o6000,
            't' => 0o1000,
            _ => 0,
        }
    })
}

/// The `rwx` bits of class `c`, spread to every class.
fn copied_bits(c: char, mode: u32) -> u32 {
    let rwx = match c {
        'u' => (mode >> 6) & 7,
        'g' => (mode >> 3) & 7,
        _ => mode & 7,
    };
    rwx << 6 | rwx << 3 | rwx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_modes() {
        assert_eq!(Chmod::parse("0755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("644").unwrap().apply(0o777, false), 0o644);
        assert!(Chmod::parse("10000").is_err());
        assert!(Chmod::parse("0999").is_err());
    }

    #[test]
    fn symbolic_modes_as_chmod_applies_them() {
        // (mode string, before, is a directory, after): chmod(1) with umask 0.
        let cases: &[(&str, u32, bool, u32)] = &[
            ("go=u", 0o640, false, 0o666),
            ("go=u", 0o750, true, 0o777),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("a-w", 0o666, false, 0o444),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            ("u=rwX,go=rX", 0o700, false, 0o755),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("o=", 0o777, false, 0o770),
            ("g+s,u+s", 0o755, false, 0o6755),
            ("+t", 0o755, true, 0o1755),
            ("u=r,g=u-r", 0o777, false, 0o407),
            ("ug=rw,o-rwx", 0o777, false, 0o660),
        ];
        for (s, before, dir, after) in cases {
            assert_eq!(sym(s, *before, *dir), *after, "{s} on {before:o}");
        }
    }

    #[test]
    fn malformed_symbolic_modes_are_errors() {
        for bad in ["", "u", "z+x", "u+q", "u+x,", "=ru"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?}");
        }
    }
}
