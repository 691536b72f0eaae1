//! A package's licence as its metadata states it, read as an SPDX licence
//! expression where it is one (after the usual fix-ups: `Apache 2.0`,
//! `GPLv2+`, `MIT/X11`), else kept as a plain name.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum License {
    /// A valid SPDX expression, canonical spelling.
    Expression(String),
    /// Anything else, as written.
    Name(String),
}

pub fn read(raw: &str) -> License {
    let raw = raw.trim();
    let fixed = match spdx::Expression::canonicalize(raw) {
        Ok(Some(f)) => f,
        Ok(None) => raw.to_string(),
        Err(_) => return License::Name(raw.to_string()),
    };
    match spdx::Expression::parse(&fixed) {
        Ok(_) => License::Expression(fixed),
        Err(_) => License::Name(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_names_and_fixups() {
        assert_eq!(read("MIT"), License::Expression("MIT".into()));
        assert_eq!(
            read("MIT OR Apache-2.0"),
            License::Expression("MIT OR Apache-2.0".into())
        );
        assert_eq!(read("Apache 2.0"), License::Expression("Apache-2.0".into()));
        assert_eq!(
            read("Python Software Foundation License"),
            License::Name("Python Software Foundation License".into())
        );
        assert_eq!(
            read("see LICENSE file"),
            License::Name("see LICENSE file".into())
        );
    }
}
