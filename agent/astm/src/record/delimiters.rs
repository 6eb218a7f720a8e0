//! The four E1394 delimiters, read from each H record.
//!
//! E1394 §7.1.2, H.2 (PROTOCOLS §2.1): the byte right after the record type `H` is the field
//! delimiter, and the next three bytes (field H.2, the "delimiter definition") are the repeat,
//! component and escape delimiters. The usual set is `|\^&`, but devices choose their own
//! (GeneXpert `H|@^\`, Erba ``H|`^&``), so a receiver must read them from every H record rather
//! than assume the default.

use std::fmt;

/// Which of the four delimiters an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DelimiterRole {
    /// Separates fields (`|` by default).
    Field,
    /// Separates repeats of one field (`\` by default).
    Repeat,
    /// Separates components of one repeat (`^` by default).
    Component,
    /// Opens and closes escape sequences (`&` by default).
    Escape,
}

impl fmt::Display for DelimiterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DelimiterRole::Field => "field",
            DelimiterRole::Repeat => "repeat",
            DelimiterRole::Component => "component",
            DelimiterRole::Escape => "escape",
        })
    }
}

/// Why the delimiters could not be read from an H record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelimiterError {
    /// The record does not start with `H` (0x48), so it defines no delimiters.
    #[error("not a header record: starts with byte 0x{found:02X}, expected 'H'")]
    NotHeader {
        /// The first byte of the record (0x00 for an empty record).
        found: u8,
    },
    /// The record is just `H`: there is no byte after it to read the field delimiter from.
    #[error("header record has no field delimiter after 'H'")]
    MissingFieldDelimiter,
    /// H.2 (the delimiter definition) holds fewer than the three bytes E1394 §7.1.2 requires.
    #[error("header delimiter definition (H.2) is {len} bytes long, expected 3")]
    DefinitionTooShort {
        /// Length of H.2 in bytes.
        len: usize,
    },
    /// A delimiter is not a printable ASCII punctuation byte. Letters, digits, spaces and
    /// control bytes would make data and structure indistinguishable; this also keeps a text
    /// line that merely starts with `H` ("Hello") from being taken as a header.
    #[error("{role} delimiter 0x{byte:02X} is not printable ASCII punctuation")]
    NotPunctuation {
        /// Which delimiter.
        role: DelimiterRole,
        /// Its byte.
        byte: u8,
    },
    /// Two roles share one byte, which makes splitting ambiguous.
    #[error("{first} and {second} delimiters are both 0x{byte:02X}")]
    NotDistinct {
        /// The earlier role (in field, repeat, component, escape order).
        first: DelimiterRole,
        /// The later role.
        second: DelimiterRole,
        /// The shared byte.
        byte: u8,
    },
}

/// The field, repeat, component and escape delimiters of one message (E1394 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    /// Field delimiter, the byte after `H` (default `|`, 0x7C).
    pub field: u8,
    /// Repeat delimiter, first byte of H.2 (default `\`, 0x5C).
    pub repeat: u8,
    /// Component delimiter, second byte of H.2 (default `^`, 0x5E).
    pub component: u8,
    /// Escape delimiter, third byte of H.2 (default `&`, 0x26).
    pub escape: u8,
}

impl Default for Delimiters {
    /// `|\^&`, the set E1394 recommends and most analysers use.
    fn default() -> Self {
        Delimiters {
            field: 0x7C,
            repeat: 0x5C,
            component: 0x5E,
            escape: 0x26,
        }
    }
}

impl Delimiters {
    /// Reads the delimiters from a raw H record (no frame number, no terminator).
    ///
    /// Tolerates one corpus artefact: when H.2 is exactly four bytes and the first two are
    /// equal (`H|\\^&`, from a source that doubled every backslash, see
    /// horiba_yumizenh550_2.astm), the doubled byte counts once as the repeat delimiter. A real
    /// four-byte definition does not exist in E1394, so this cannot misread a valid header.
    /// Note that in such a source, data backslashes are doubled too (`CLEANER\\DILUENT`) and
    /// therefore read as an empty repeat between two values: the bytes are kept, not repaired.
    ///
    /// A definition longer than three bytes (other than the artefact) is read from its first
    /// three bytes; the whole H.2 is still kept as sent.
    pub fn from_header(raw: &[u8]) -> Result<Delimiters, DelimiterError> {
        match raw.first() {
            Some(0x48) => {}
            Some(&found) => return Err(DelimiterError::NotHeader { found }),
            None => return Err(DelimiterError::NotHeader { found: 0x00 }),
        }
        let field = *raw.get(1).ok_or(DelimiterError::MissingFieldDelimiter)?;
        let definition = header_definition(raw, field);
        let (repeat, component, escape) = match *definition {
            [r, r2, c, e] if r == r2 => (r, c, e),
            [r, c, e, ..] => (r, c, e),
            _ => {
                return Err(DelimiterError::DefinitionTooShort {
                    len: definition.len(),
                });
            }
        };
        let delimiters = Delimiters {
            field,
            repeat,
            component,
            escape,
        };
        delimiters.validate()?;
        Ok(delimiters)
    }

    /// Checks that every delimiter is ASCII punctuation and that the four are distinct.
    pub fn validate(&self) -> Result<(), DelimiterError> {
        let roles = self.roles();
        for (role, byte) in roles {
            if !byte.is_ascii_punctuation() {
                return Err(DelimiterError::NotPunctuation { role, byte });
            }
        }
        for (i, &(first, byte)) in roles.iter().enumerate() {
            if let Some(&(second, _)) = roles.iter().skip(i + 1).find(|(_, b)| *b == byte) {
                return Err(DelimiterError::NotDistinct {
                    first,
                    second,
                    byte,
                });
            }
        }
        Ok(())
    }

    /// The four bytes a sender writes after `H`: field delimiter then H.2 (`|\^&`).
    pub fn definition(&self) -> [u8; 4] {
        [self.field, self.repeat, self.component, self.escape]
    }

    /// Each delimiter with its role, in H record order.
    fn roles(&self) -> [(DelimiterRole, u8); 4] {
        [
            (DelimiterRole::Field, self.field),
            (DelimiterRole::Repeat, self.repeat),
            (DelimiterRole::Component, self.component),
            (DelimiterRole::Escape, self.escape),
        ]
    }

    /// Whether `byte` is one of the four delimiters.
    pub fn is_delimiter(&self, byte: u8) -> bool {
        self.roles().iter().any(|&(_, b)| b == byte)
    }
}

/// H.2 of a raw H record whose field delimiter is `field`: the bytes from index 2 up to the
/// next field delimiter or the end. Empty when the record is shorter than three bytes.
pub(crate) fn header_definition(raw: &[u8], field: u8) -> &[u8] {
    let rest = raw.get(2..).unwrap_or_default();
    let end = rest.iter().position(|&b| b == field).unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(def: &[u8; 4]) -> Delimiters {
        Delimiters {
            field: def[0],
            repeat: def[1],
            component: def[2],
            escape: def[3],
        }
    }

    #[test]
    fn default_is_pipe_backslash_caret_ampersand() {
        assert_eq!(Delimiters::default().definition(), *b"|\\^&");
        assert_eq!(Delimiters::default().validate(), Ok(()));
    }

    #[test]
    fn reads_standard_header() {
        let got = Delimiters::from_header(b"H|\\^&|||ARCHITECT^9.45|||||||P|1|20250613131519");
        assert_eq!(got, Ok(Delimiters::default()));
        // A header that is nothing but the definition.
        assert_eq!(
            Delimiters::from_header(b"H|\\^&"),
            Ok(Delimiters::default())
        );
    }

    #[test]
    fn reads_genexpert_header() {
        // cepheid_genexpert_1.astm: repeat '@', component '^', escape '\'.
        let got = Delimiters::from_header(b"H|@^\\|URM-1|||GeneXpert PC^GeneXpert^4.8");
        assert_eq!(got, Ok(d(b"|@^\\")));
    }

    #[test]
    fn reads_erba_backtick_header() {
        // erba_xl640_1.astm: backtick repeat.
        assert_eq!(
            Delimiters::from_header(b"H|`^&||||||||||P|"),
            Ok(d(b"|`^&"))
        );
    }

    #[test]
    fn tolerates_doubled_backslash_artefact() {
        // horiba_yumizenh550_2.astm.
        let got = Delimiters::from_header(b"H|\\\\^&|||H550^909YAXH02732^1.2.1.4");
        assert_eq!(got, Ok(Delimiters::default()));
        // A four-byte definition whose first two bytes differ is read from its first three.
        assert_eq!(
            Delimiters::from_header(b"H|\\^&~|"),
            Ok(Delimiters::default())
        );
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Delimiters::from_header(b"P|1"),
            Err(DelimiterError::NotHeader { found: b'P' })
        );
        assert_eq!(
            Delimiters::from_header(b""),
            Err(DelimiterError::NotHeader { found: 0 })
        );
        assert_eq!(
            Delimiters::from_header(b"H"),
            Err(DelimiterError::MissingFieldDelimiter)
        );
        assert_eq!(
            Delimiters::from_header(b"H|"),
            Err(DelimiterError::DefinitionTooShort { len: 0 })
        );
        assert_eq!(
            Delimiters::from_header(b"H|\\^|||"),
            Err(DelimiterError::DefinitionTooShort { len: 2 })
        );
        assert_eq!(
            Delimiters::from_header(b"Hello world"),
            Err(DelimiterError::NotPunctuation {
                role: DelimiterRole::Field,
                byte: b'e'
            })
        );
        assert_eq!(
            Delimiters::from_header(b"H|\\^^|"),
            Err(DelimiterError::NotDistinct {
                first: DelimiterRole::Component,
                second: DelimiterRole::Escape,
                byte: b'^'
            })
        );
    }

    #[test]
    fn errors_render_readably() {
        let e = DelimiterError::NotDistinct {
            first: DelimiterRole::Component,
            second: DelimiterRole::Escape,
            byte: b'^',
        };
        assert_eq!(
            e.to_string(),
            "component and escape delimiters are both 0x5E"
        );
    }

    #[test]
    fn is_delimiter_covers_all_four() {
        let d = Delimiters::default();
        for b in *b"|\\^&" {
            assert!(d.is_delimiter(b));
        }
        assert!(!d.is_delimiter(b'A'));
    }
}
