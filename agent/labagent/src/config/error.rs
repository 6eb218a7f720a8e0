//! Config errors: every problem in a file, each with `file:line: key: problem`.

use std::fmt::{self, Write as _};

/// What class of problem a [`ConfigError`] is. The message says the specifics; the kind lets
/// callers and tests tell classes apart without matching on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The file could not be read (missing, permissions, not UTF-8).
    Io,
    /// The text is not TOML. Only the first syntax error is reported.
    Syntax,
    /// A key or section the config does not know (often a typo; the message suggests the
    /// nearest known key).
    UnknownKey,
    /// A value of the wrong TOML type, e.g. a string where a number belongs.
    WrongType,
    /// A key that this kind of component requires is absent.
    Missing,
    /// A key that does not apply to this kind of component (e.g. `baud` on an mllp source).
    NotApplicable,
    /// A value of the right type that is not acceptable (bad duration, address, selector...).
    InvalidValue,
    /// Two components claim the same name or resource (device, listen address, directory).
    Conflict,
    /// A reference to something that does not exist (a mapping or source name).
    UnknownReference,
    /// A file the config names (TLS material, token, password) is missing or unreadable.
    File,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the config came from: the path as given, or `<embedded default>`.
    pub origin: String,
    /// 1-based line of the offending key or value; `None` when the whole file is at fault
    /// (e.g. it cannot be read).
    pub line: Option<usize>,
    /// Dotted key such as `source[1].baud` or `mapping.sysmex-xn.test_code` (array indexes
    /// count from 0, in file order); empty for syntax and I/O errors.
    pub key: String,
    /// The class of problem.
    pub kind: ConfigErrorKind,
    /// What is wrong, for a person: `expected a positive integer, found "fast"`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `origin:line: key: message`, leaving out the parts that are absent. Control characters
    /// (a quoted TOML key may hold a newline) are escaped, so one error is always one line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        one_line(f, &self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            f.write_str(": ")?;
            one_line(f, &self.key)?;
        }
        f.write_str(": ")?;
        one_line(f, &self.message)
    }
}

/// Writes `s` with its control characters escaped (`\n`, `\u{1b}`, ...).
fn one_line(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        if c.is_control() {
            write!(f, "{}", c.escape_default())?;
        } else {
            f.write_char(c)?;
        }
    }
    Ok(())
}

impl std::error::Error for ConfigError {}

/// Every problem found in one config, sorted by line (file-wide problems first). Displays one
/// error per line. Never empty when returned as an `Err`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Sorts by line (stable, so problems on one line keep the order they were found in).
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> ConfigErrors {
        errors.sort_by_key(|e| e.line);
        ConfigErrors { errors }
    }

    /// The errors, sorted by line.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never true for an `Err` from this module).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: Option<usize>, key: &str, message: &str) -> ConfigError {
        ConfigError {
            origin: "labagent.toml".into(),
            line,
            key: key.into(),
            kind: ConfigErrorKind::InvalidValue,
            message: message.into(),
        }
    }

    #[test]
    fn display_formats() {
        assert_eq!(
            err(
                Some(14),
                "source[1].baud",
                "expected a positive integer, found \"fast\""
            )
            .to_string(),
            "labagent.toml:14: source[1].baud: expected a positive integer, found \"fast\""
        );
        assert_eq!(
            err(Some(3), "", "bad syntax").to_string(),
            "labagent.toml:3: bad syntax"
        );
        assert_eq!(
            err(None, "", "cannot read").to_string(),
            "labagent.toml: cannot read"
        );
    }

    #[test]
    fn sorted_by_line_one_per_line() {
        let all = ConfigErrors::new(vec![
            err(Some(9), "b", "second"),
            err(Some(2), "a", "first"),
            err(Some(9), "c", "third"),
        ]);
        assert_eq!(
            all.to_string(),
            "labagent.toml:2: a: first\nlabagent.toml:9: b: second\nlabagent.toml:9: c: third"
        );
        assert_eq!(all.len(), 3);
    }
}
