//! Encoding characters (HL7 v2.5.1 §2.5.4, MSH-1/MSH-2) and escape sequences (§2.7).
//!
//! Every message declares its own delimiters in MSH-1 (field separator) and MSH-2 (component,
//! repetition, escape, subcomponent, in that order). Nothing here assumes `|^~\&`.
//!
//! Escaping (§2.7.1–§2.7.4), with `\` standing for whatever escape character the message uses:
//!
//! | value byte | escaped as | decoded from |
//! |---|---|---|
//! | field separator | `\F\` | `\F\` |
//! | component separator | `\S\` | `\S\` |
//! | subcomponent separator | `\T\` | `\T\` |
//! | repetition separator | `\R\` | `\R\` |
//! | escape character | `\E\` | `\E\` |
//! | CR (0x0D) | `\X0D\` | any `\Xhh…\` whose bytes are UTF-8 |
//! | LF (0x0A) | `\X0A\` | `\X0A\`, and `\.br\` (line break, §2.7.6) |
//!
//! CR and LF are escaped because they end a segment (and this crate tolerates LF as a segment
//! separator on input). Unknown or malformed sequences (`\H\`, `\Zxx\`, an unterminated `\…`) are
//! kept verbatim on decoding so that no vendor data is lost.

use std::borrow::Cow;

/// Why a set of encoding characters was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelimiterError {
    /// MSH-2 must hold at least the four characters component, repetition, escape and
    /// subcomponent (§2.5.4); a fifth (the v2.7 truncation character) is tolerated and ignored.
    #[error("MSH-2 holds {len} encoding characters; 4 (or 5) are required")]
    WrongCount {
        /// Number of characters found in MSH-2.
        len: usize,
    },
    /// A delimiter must be a printable ASCII punctuation character.
    #[error("delimiter byte 0x{byte:02X} is not printable ASCII punctuation")]
    NotPunctuation {
        /// The offending byte.
        byte: u8,
    },
    /// Two delimiters are the same character.
    #[error("delimiter {0:?} is used twice")]
    Duplicate(char),
}

/// The five delimiters of one message: field (MSH-1) and the four encoding characters (MSH-2).
///
/// Invariant: all five are distinct printable ASCII punctuation bytes, so they can never occur
/// inside a multi-byte UTF-8 sequence and byte-level splitting is always on char boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delimiters {
    field: u8,
    component: u8,
    repetition: u8,
    escape: u8,
    subcomponent: u8,
    /// `special[b]` is true for every byte that must be escaped: the five delimiters, CR and
    /// LF. A full table keeps the hot check (escaping every value written) to one load.
    special: [bool; 256],
}

const fn special_mask(bytes: [u8; 5]) -> [bool; 256] {
    let mut m = [false; 256];
    // Every C0 control byte: CR and LF end segments, VT and FS frame MLLP blocks, and the rest
    // have no business raw in a message (an analyser value may carry any of them).
    let mut c = 0;
    while c < 0x20 {
        m[c] = true;
        c += 1;
    }
    m[0x7F] = true;
    let mut i = 0;
    while i < 5 {
        m[bytes[i] as usize] = true;
        i += 1;
    }
    m
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

impl Default for Delimiters {
    fn default() -> Self {
        Self::STANDARD
    }
}

impl Delimiters {
    /// The recommended delimiters `|^~\&` (HL7 v2.5.1 §2.5.4).
    pub const STANDARD: Delimiters = Delimiters {
        field: b'|',
        component: b'^',
        repetition: b'~',
        escape: b'\\',
        subcomponent: b'&',
        special: special_mask([b'|', b'^', b'~', b'\\', b'&']),
    };

    /// Builds a delimiter set, refusing non-punctuation or repeated characters.
    pub fn new(
        field: char,
        component: char,
        repetition: char,
        escape: char,
        subcomponent: char,
    ) -> Result<Self, DelimiterError> {
        let mut bytes = [0u8; 5];
        for (slot, c) in bytes
            .iter_mut()
            .zip([field, component, repetition, escape, subcomponent])
        {
            *slot = punct_byte(c)?;
        }
        Self::from_bytes(bytes[0], &bytes[1..])
    }

    /// Reads MSH-1 (`field`) and MSH-2 (`encoding`, at least 4 bytes) as found on the wire.
    pub(crate) fn from_bytes(field: u8, encoding: &[u8]) -> Result<Self, DelimiterError> {
        if !(4..=5).contains(&encoding.len()) {
            return Err(DelimiterError::WrongCount {
                len: encoding.len(),
            });
        }
        let all = [field, encoding[0], encoding[1], encoding[2], encoding[3]];
        for (i, &b) in all.iter().enumerate() {
            if !b.is_ascii_punctuation() {
                return Err(DelimiterError::NotPunctuation { byte: b });
            }
            if all[..i].contains(&b) {
                return Err(DelimiterError::Duplicate(char::from(b)));
            }
        }
        if let Some(&t) = encoding.get(4)
            && (!t.is_ascii_punctuation() || all.contains(&t))
        {
            return Err(DelimiterError::NotPunctuation { byte: t });
        }
        Ok(Delimiters {
            field: all[0],
            component: all[1],
            repetition: all[2],
            escape: all[3],
            subcomponent: all[4],
            special: special_mask(all),
        })
    }

    /// Field separator (MSH-1).
    pub fn field(&self) -> char {
        char::from(self.field)
    }
    /// Component separator (MSH-2, first character).
    pub fn component(&self) -> char {
        char::from(self.component)
    }
    /// Repetition separator (MSH-2, second character).
    pub fn repetition(&self) -> char {
        char::from(self.repetition)
    }
    /// Escape character (MSH-2, third character).
    pub fn escape(&self) -> char {
        char::from(self.escape)
    }
    /// Subcomponent separator (MSH-2, fourth character).
    pub fn subcomponent(&self) -> char {
        char::from(self.subcomponent)
    }

    pub(crate) fn field_byte(&self) -> u8 {
        self.field
    }
    pub(crate) fn component_byte(&self) -> u8 {
        self.component
    }
    pub(crate) fn repetition_byte(&self) -> u8 {
        self.repetition
    }
    pub(crate) fn subcomponent_byte(&self) -> u8 {
        self.subcomponent
    }

    /// The four MSH-2 encoding characters in wire order (component, repetition, escape,
    /// subcomponent).
    pub fn encoding_characters(&self) -> [char; 4] {
        [
            self.component(),
            self.repetition(),
            self.escape(),
            self.subcomponent(),
        ]
    }

    /// Appends `value` to `out`, escaping every delimiter, CR and LF (§2.7).
    pub fn escape_into(&self, out: &mut String, value: &str) {
        let bytes = value.as_bytes();
        let Some(first) = bytes.iter().position(|&b| self.needs_escape(b)) else {
            out.push_str(value);
            return;
        };
        let mut last = 0;
        for (i, &b) in bytes.iter().enumerate().skip(first) {
            if !self.needs_escape(b) {
                continue;
            }
            let code = if b == self.field {
                "F"
            } else if b == self.component {
                "S"
            } else if b == self.subcomponent {
                "T"
            } else if b == self.repetition {
                "R"
            } else if b == self.escape {
                "E"
            } else if b < 0x20 || b == 0x7F {
                // `\Xhh\` (§2.7.3) for every control byte, CR and LF included.
                out.push_str(&value[last..i]);
                out.push(char::from(self.escape));
                out.push('X');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0F)]));
                out.push(char::from(self.escape));
                last = i + 1;
                continue;
            } else {
                continue;
            };
            // `i` is a char boundary: every byte tested above is ASCII.
            out.push_str(&value[last..i]);
            out.push(char::from(self.escape));
            out.push_str(code);
            out.push(char::from(self.escape));
            last = i + 1;
        }
        out.push_str(&value[last..]);
    }

    /// Returns `value` escaped (§2.7); borrows when nothing needs escaping.
    pub fn escape_str<'a>(&self, value: &'a str) -> Cow<'a, str> {
        if value.bytes().any(|b| self.needs_escape(b)) {
            let mut s = String::with_capacity(value.len() + 8);
            self.escape_into(&mut s, value);
            Cow::Owned(s)
        } else {
            Cow::Borrowed(value)
        }
    }

    #[inline]
    fn needs_escape(&self, b: u8) -> bool {
        self.special[usize::from(b)]
    }

    /// Resolves the escape sequences of `raw` (§2.7); borrows when there are none.
    ///
    /// Unknown, malformed or unterminated sequences are kept verbatim, escape characters
    /// included, so that vendor-specific data survives.
    pub fn unescape<'a>(&self, raw: &'a str) -> Cow<'a, str> {
        let e = self.escape;
        let bytes = raw.as_bytes();
        let Some(first) = bytes.iter().position(|&b| b == e) else {
            return Cow::Borrowed(raw);
        };
        let mut out = String::with_capacity(raw.len());
        let mut i = first;
        out.push_str(&raw[..i]);
        loop {
            // Here bytes[i] == e.
            let Some(len) = bytes[i + 1..].iter().position(|&b| b == e) else {
                out.push_str(&raw[i..]);
                break;
            };
            let close = i + 1 + len;
            let seq = &raw[i + 1..close];
            if !self.resolve(seq, &mut out) {
                out.push_str(&raw[i..=close]);
            }
            let rest_start = close + 1;
            match bytes[rest_start..].iter().position(|&b| b == e) {
                Some(n) => {
                    out.push_str(&raw[rest_start..rest_start + n]);
                    i = rest_start + n;
                }
                None => {
                    out.push_str(&raw[rest_start..]);
                    break;
                }
            }
        }
        Cow::Owned(out)
    }

    /// Appends the meaning of one escape sequence body; false when it is not understood.
    fn resolve(&self, seq: &str, out: &mut String) -> bool {
        let c = match seq {
            "F" => self.field,
            "S" => self.component,
            "T" => self.subcomponent,
            "R" => self.repetition,
            "E" => self.escape,
            ".br" => b'\n',
            _ => {
                return match seq.strip_prefix('X') {
                    Some(hex) => decode_hex(hex, out),
                    None => false,
                };
            }
        };
        out.push(char::from(c));
        true
    }
}

/// Decodes `\Xhh…\` (§2.7.3): an even number of hex digits whose bytes form UTF-8.
fn decode_hex(hex: &str, out: &mut String) -> bool {
    let h = hex.as_bytes();
    if h.is_empty() || !h.len().is_multiple_of(2) {
        return false;
    }
    let mut bytes = Vec::with_capacity(h.len() / 2);
    for pair in h.chunks_exact(2) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(a), Some(b)) => bytes.push(a << 4 | b),
            _ => return false,
        }
    }
    match String::from_utf8(bytes) {
        Ok(s) => {
            out.push_str(&s);
            true
        }
        Err(_) => false,
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn punct_byte(c: char) -> Result<u8, DelimiterError> {
    if c.is_ascii_punctuation() {
        // Invariant: an ASCII char fits in one byte.
        Ok(c as u8)
    } else {
        let mut buf = [0u8; 4];
        let b = c.encode_utf8(&mut buf).as_bytes()[0];
        Err(DelimiterError::NotPunctuation { byte: b })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_bytes_are_hex_escaped_and_come_back() {
        let d = Delimiters::STANDARD;
        let s = d.escape_str("a\u{1c}b\u{0b}c\u{7f}");
        assert_eq!(s, "a\\X1C\\b\\X0B\\c\\X7F\\");
        assert_eq!(d.unescape(&s), "a\u{1c}b\u{0b}c\u{7f}");
    }

    use super::*;

    const D: Delimiters = Delimiters::STANDARD;

    #[test]
    fn escapes_every_delimiter_cr_and_lf() {
        let s = D.escape_str("a|b^c~d\\e&f\rg\nh");
        assert_eq!(s, "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f\\X0D\\g\\X0A\\h");
        assert!(matches!(D.escape_str("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn unescapes_every_sequence() {
        assert_eq!(D.unescape("\\F\\\\S\\\\T\\\\R\\\\E\\"), "|^&~\\");
        assert_eq!(D.unescape("a\\.br\\b"), "a\nb");
        assert_eq!(D.unescape("\\X0D0A\\"), "\r\n");
        assert_eq!(D.unescape("\\XC3A9\\"), "é");
        assert!(matches!(D.unescape("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn unknown_and_broken_escapes_are_kept_verbatim() {
        assert_eq!(D.unescape("\\H\\bold\\N\\"), "\\H\\bold\\N\\");
        assert_eq!(D.unescape("C:\\temp"), "C:\\temp");
        assert_eq!(D.unescape("\\XZZ\\"), "\\XZZ\\");
        assert_eq!(D.unescape("\\XFF\\"), "\\XFF\\");
        assert_eq!(D.unescape("\\\\"), "\\\\");
        assert_eq!(D.unescape("x\\"), "x\\");
        assert_eq!(D.unescape("\\S\\x\\"), "^x\\");
    }

    #[test]
    fn custom_delimiters_escape_and_unescape() {
        let d = Delimiters::new('#', '@', '*', '!', '$').unwrap();
        let v = "a#b@c*d!e$f|^~\\&";
        let esc = d.escape_str(v);
        assert_eq!(esc, "a!F!b!S!c!R!d!E!e!T!f|^~\\&");
        assert_eq!(d.unescape(&esc), v);
    }

    #[test]
    fn refuses_bad_delimiters() {
        assert_eq!(
            Delimiters::from_bytes(b'|', b"^~\\"),
            Err(DelimiterError::WrongCount { len: 3 })
        );
        assert_eq!(
            Delimiters::from_bytes(b'|', b"^~\\^"),
            Err(DelimiterError::Duplicate('^'))
        );
        assert_eq!(
            Delimiters::from_bytes(b'|', b"^~A&"),
            Err(DelimiterError::NotPunctuation { byte: b'A' })
        );
        assert!(Delimiters::from_bytes(b'|', b"^~\\&#").is_ok());
        assert!(Delimiters::new('a', '^', '~', '\\', '&').is_err());
    }

    proptest::proptest! {
        #[test]
        fn escape_then_unescape_is_identity(v in "[a-z|^~\\\\&\r\n é#]{0,40}") {
            let esc = D.escape_str(&v);
            proptest::prop_assert!(!esc.contains(['|', '^', '~', '&', '\r', '\n']));
            proptest::prop_assert_eq!(D.unescape(&esc).into_owned(), v.clone());
        }
    }
}
