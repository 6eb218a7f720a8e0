//! Field selectors such as `O.3` or `R.3.5`, used by configuration to say where a value lives.
//!
//! The notation is E1394's own (PROTOCOLS §2.2): record letter, field number counting the type
//! as field 1, and optionally a component number within the first repeat.

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;

use super::kind::RecordType;

/// A path to a field or component: `<letter>.<field>[.<component>]`, e.g. `O.4.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPath {
    record: RecordType,
    field: NonZeroUsize,
    component: Option<NonZeroUsize>,
}

/// Why a string is not a [`FieldPath`]. Each variant carries the input for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    /// The string is empty or only whitespace.
    #[error("empty field path: expected e.g. \"O.3\" or \"R.3.4\"")]
    Empty,
    /// The first part is not one of the E1394 record letters H P O R C Q M S L.
    #[error("field path {input:?}: {part:?} is not an E1394 record letter (H P O R C Q M S L)")]
    UnknownRecord {
        /// The whole input.
        input: String,
        /// The offending part.
        part: String,
    },
    /// Only a record letter was given.
    #[error("field path {input:?} has no field number: expected e.g. \"{input}.3\"")]
    MissingField {
        /// The whole input.
        input: String,
    },
    /// A field or component number is not a positive decimal integer.
    #[error("field path {input:?}: {part:?} is not a positive number (fields count from 1)")]
    BadNumber {
        /// The whole input.
        input: String,
        /// The offending part.
        part: String,
    },
    /// More than three dot-separated parts (repeat selection is not supported).
    #[error("field path {input:?} has too many parts: expected <record>.<field>[.<component>]")]
    TooManyParts {
        /// The whole input.
        input: String,
    },
}

impl FieldPath {
    /// A path to a whole field.
    pub fn field_of(record: RecordType, field: NonZeroUsize) -> FieldPath {
        FieldPath {
            record,
            field,
            component: None,
        }
    }

    /// A path to one component of a field's first repeat.
    pub fn component_of(
        record: RecordType,
        field: NonZeroUsize,
        component: NonZeroUsize,
    ) -> FieldPath {
        FieldPath {
            record,
            field,
            component: Some(component),
        }
    }

    /// The record type the path applies to.
    pub fn record(&self) -> RecordType {
        self.record
    }

    /// The field number (field 1 is the record type).
    pub fn field(&self) -> NonZeroUsize {
        self.field
    }

    /// The component number, if the path selects one.
    pub fn component(&self) -> Option<NonZeroUsize> {
        self.component
    }
}

impl FromStr for FieldPath {
    type Err = FieldPathError;

    /// Parses `O.3`, `o.3` (letters are case-insensitive), `R.3.5`; surrounding whitespace is
    /// ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(FieldPathError::Empty);
        }
        let mut parts = input.split('.');
        let letter = parts.next().unwrap_or_default();
        let record = match letter.as_bytes() {
            [b] => match RecordType::from_byte(b.to_ascii_uppercase()) {
                RecordType::Other(_) => None,
                known => Some(known),
            },
            _ => None,
        }
        .ok_or_else(|| FieldPathError::UnknownRecord {
            input: input.to_owned(),
            part: letter.to_owned(),
        })?;
        let number = |part: &str| {
            // Digits only: `usize::from_str` would also accept a leading '+'.
            part.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| part.parse::<NonZeroUsize>().ok())
                .flatten()
                .ok_or_else(|| FieldPathError::BadNumber {
                    input: input.to_owned(),
                    part: part.to_owned(),
                })
        };
        let field = match parts.next() {
            Some(part) => number(part)?,
            None => {
                return Err(FieldPathError::MissingField {
                    input: input.to_owned(),
                });
            }
        };
        let component = parts.next().map(number).transpose()?;
        if parts.next().is_some() {
            return Err(FieldPathError::TooManyParts {
                input: input.to_owned(),
            });
        }
        Ok(FieldPath {
            record,
            field,
            component,
        })
    }
}

impl fmt::Display for FieldPath {
    /// `O.4` or `O.4.3`, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.record, self.field)?;
        if let Some(component) = self.component {
            write!(f, ".{component}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    #[test]
    fn parses_and_displays() {
        assert_eq!(
            "O.3".parse(),
            Ok(FieldPath::field_of(RecordType::Order, nz(3)))
        );
        assert_eq!(
            "O.4.3".parse(),
            Ok(FieldPath::component_of(RecordType::Order, nz(4), nz(3)))
        );
        assert_eq!(
            " r.3.5 ".parse(),
            Ok(FieldPath::component_of(RecordType::Result, nz(3), nz(5)))
        );
        for s in ["O.3", "O.4.3", "P.3", "R.3.5", "H.5.3", "L.3"] {
            let path: FieldPath = s.parse().unwrap();
            assert_eq!(path.to_string(), s);
        }
        let p: FieldPath = "P.3".parse().unwrap();
        assert_eq!(p.record(), RecordType::Patient);
        assert_eq!(p.field().get(), 3);
        assert_eq!(p.component(), None);
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!("".parse::<FieldPath>(), Err(FieldPathError::Empty));
        assert_eq!("  ".parse::<FieldPath>(), Err(FieldPathError::Empty));
        assert!(matches!(
            "X.3".parse::<FieldPath>(),
            Err(FieldPathError::UnknownRecord { part, .. }) if part == "X"
        ));
        assert!(matches!(
            "OR.3".parse::<FieldPath>(),
            Err(FieldPathError::UnknownRecord { .. })
        ));
        assert!(matches!(
            ".3".parse::<FieldPath>(),
            Err(FieldPathError::UnknownRecord { .. })
        ));
        assert!(matches!(
            "O".parse::<FieldPath>(),
            Err(FieldPathError::MissingField { input }) if input == "O"
        ));
        for bad in ["O.0", "O.", "O.x", "O.+3", "O.-1", "O.3.0", "O.3.", "O.3.a"] {
            assert!(
                matches!(
                    bad.parse::<FieldPath>(),
                    Err(FieldPathError::BadNumber { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "O.3.1.1".parse::<FieldPath>(),
            Err(FieldPathError::TooManyParts { .. })
        ));
        let msg = "O.x".parse::<FieldPath>().unwrap_err().to_string();
        assert!(msg.contains("\"x\""), "{msg}");
    }
}
