//! The analyser's 8-bit character set.
//!
//! E1381 frames carry 8-bit bytes and neither E1381 nor E1394 (CLSI LIS2-A2) names a character
//! set: the H record has no field for it (PROTOCOLS §1.1). python-astm and go-astm assume
//! ISO-8859-1, while real traces also contain Windows-1252 (go-astm's IH-Com umlaut) and UTF-8.
//! So the character set is configured per analyser and applied here, after the record layer
//! has split fields and resolved escape sequences on raw bytes (delimiters are always single
//! ASCII-range bytes, so splitting before decoding is safe for all three sets).
//!
//! Decoding never fails: every byte sequence maps to some text, so no analyser output is ever
//! refused because of its characters. Encoding (the sender side) replaces characters the set
//! cannot represent with `?`, never with an escape sequence that could collide with E1394
//! delimiters.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use encoding_rs::{EncoderResult, WINDOWS_1252};

/// A character set an analyser uses for the text inside E1394 records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Charset {
    /// ISO-8859-1: every byte is the Unicode code point of the same value. The default because
    /// it is what python-astm and go-astm assume and because it never loses a byte: decoding
    /// and re-encoding gives back the original bytes.
    #[default]
    Latin1,
    /// UTF-8, decoded lossily (invalid sequences become U+FFFD) so that a stray byte does not
    /// make a whole result unreadable.
    Utf8,
    /// Windows-1252: latin-1 except that 0x80..=0x9F hold printable characters such as `€`
    /// (0x80). Seen in the wild from Windows-based instrument software.
    Windows1252,
}

/// A character-set name that [`Charset::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown character set {name:?}: expected latin1, utf-8 or windows-1252")]
pub struct UnknownCharset {
    /// The name as given (untrimmed), for the error message.
    pub name: String,
}

impl Charset {
    /// The canonical name, as accepted by [`FromStr`] and written by [`fmt::Display`].
    pub fn name(&self) -> &'static str {
        match self {
            Charset::Latin1 => "latin1",
            Charset::Utf8 => "utf-8",
            Charset::Windows1252 => "windows-1252",
        }
    }

    /// Decodes record bytes to text. Borrows when the bytes are already valid text in this set
    /// (pure ASCII for the 8-bit sets), so the common case allocates nothing.
    ///
    /// Latin-1 is mapped by hand rather than through encoding_rs because the WHATWG Encoding
    /// Standard that encoding_rs follows treats the label "iso-8859-1" as Windows-1252, which
    /// would turn 0x80 into `€` instead of U+0080.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self {
            Charset::Latin1 => match std::str::from_utf8(bytes) {
                Ok(text) if bytes.is_ascii() => Cow::Borrowed(text),
                _ => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            },
            Charset::Utf8 => String::from_utf8_lossy(bytes),
            // Windows-1252 in encoding_rs maps every byte (the five undefined ones to the C1
            // control of the same value), so `had_errors` is always false and ignoring it
            // loses nothing.
            Charset::Windows1252 => WINDOWS_1252.decode_without_bom_handling(bytes).0,
        }
    }

    /// Encodes text for sending to an analyser. Characters this set cannot represent become
    /// `?` (0x3F): encoding_rs's own replacement is an HTML numeric reference (`&#8364;`),
    /// whose `&` is the default E1394 escape character and would corrupt the record.
    pub fn encode(&self, s: &str) -> Vec<u8> {
        match self {
            Charset::Latin1 => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            Charset::Utf8 => s.as_bytes().to_vec(),
            Charset::Windows1252 => encode_windows_1252(s),
        }
    }
}

/// Windows-1252 encoding with `?` for unmappable characters, driven through encoding_rs's
/// streaming encoder so that no replacement reference is ever produced.
fn encode_windows_1252(s: &str) -> Vec<u8> {
    let mut encoder = WINDOWS_1252.new_encoder();
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 256];
    let mut rest = s;
    loop {
        let (result, read, written) =
            encoder.encode_from_utf8_without_replacement(rest, &mut buf, true);
        out.extend_from_slice(buf.get(..written).unwrap_or_default());
        // encoding_rs guarantees `read` is a char boundary within `rest`; `get` keeps this
        // panic-free even if that contract were broken.
        rest = rest.get(read..).unwrap_or_default();
        match result {
            EncoderResult::InputEmpty => return out,
            EncoderResult::OutputFull => {}
            EncoderResult::Unmappable(_) => out.push(b'?'),
        }
    }
}

impl FromStr for Charset {
    type Err = UnknownCharset;

    /// Accepts `latin1`, `iso-8859-1`, `utf-8`, `utf8`, `windows-1252` and `cp1252`, in any
    /// letter case, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => Ok(Charset::Latin1),
            "utf-8" | "utf8" => Ok(Charset::Utf8),
            "windows-1252" | "cp1252" | "windows1252" => Ok(Charset::Windows1252),
            _ => Err(UnknownCharset { name: s.to_owned() }),
        }
    }
}

impl fmt::Display for Charset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_latin1() {
        assert_eq!(Charset::default(), Charset::Latin1);
    }

    #[test]
    fn names_parse_case_insensitively() {
        for (name, cs) in [
            ("latin1", Charset::Latin1),
            ("LATIN1", Charset::Latin1),
            ("ISO-8859-1", Charset::Latin1),
            ("utf-8", Charset::Utf8),
            ("UTF8", Charset::Utf8),
            ("Windows-1252", Charset::Windows1252),
            ("cp1252", Charset::Windows1252),
            (" utf-8 ", Charset::Utf8),
        ] {
            assert_eq!(name.parse::<Charset>(), Ok(cs), "{name}");
        }
        let err = "ebcdic".parse::<Charset>().unwrap_err();
        assert_eq!(err.name, "ebcdic");
        assert!(err.to_string().contains("ebcdic"));
    }

    #[test]
    fn display_round_trips() {
        for cs in [Charset::Latin1, Charset::Utf8, Charset::Windows1252] {
            assert_eq!(cs.to_string().parse::<Charset>(), Ok(cs));
        }
        assert_eq!(Charset::Windows1252.to_string(), "windows-1252");
    }

    #[test]
    fn byte_0x80_differs_between_latin1_and_windows_1252() {
        assert_eq!(Charset::Latin1.decode(&[0x80]), "\u{80}");
        assert_eq!(Charset::Windows1252.decode(&[0x80]), "€");
        assert_eq!(Charset::Utf8.decode(&[0x80]), "\u{FFFD}");
    }

    #[test]
    fn umlaut_in_each_set() {
        // "Bestätigung": ä is 0xE4 in both 8-bit sets, 0xC3 0xA4 in UTF-8.
        let eight_bit = b"Best\xE4tigung";
        assert_eq!(Charset::Latin1.decode(eight_bit), "Bestätigung");
        assert_eq!(Charset::Windows1252.decode(eight_bit), "Bestätigung");
        assert_eq!(Charset::Utf8.decode(eight_bit), "Best\u{FFFD}tigung");
        assert_eq!(
            Charset::Utf8.decode("Bestätigung".as_bytes()),
            "Bestätigung"
        );
    }

    #[test]
    fn ascii_is_borrowed() {
        for cs in [Charset::Latin1, Charset::Utf8, Charset::Windows1252] {
            assert!(matches!(cs.decode(b"R|1|^^^WBC"), Cow::Borrowed(_)), "{cs}");
        }
    }

    #[test]
    fn latin1_round_trips_every_byte() {
        let all: Vec<u8> = (0..=0xFF).collect();
        let text = Charset::Latin1.decode(&all);
        assert_eq!(text.chars().count(), 256);
        assert_eq!(Charset::Latin1.encode(&text), all);
    }

    #[test]
    fn encode_replaces_unmappable_with_question_mark() {
        assert_eq!(Charset::Latin1.encode("5 €"), b"5 ?");
        assert_eq!(Charset::Windows1252.encode("5 €"), b"5 \x80");
        assert_eq!(Charset::Windows1252.encode("α€ß"), b"?\x80\xDF");
        assert_eq!(Charset::Latin1.encode("µg"), b"\xB5g");
        assert_eq!(Charset::Utf8.encode("µg"), "µg".as_bytes());
    }

    #[test]
    fn windows_1252_encode_handles_long_input() {
        // Longer than the 256-byte scratch buffer, with unmappables spread through it.
        let text: String = "ab€\u{3B1}".repeat(200);
        let bytes = Charset::Windows1252.encode(&text);
        assert_eq!(bytes.len(), 800);
        assert_eq!(&bytes[..4], b"ab\x80?");
        assert_eq!(Charset::Windows1252.decode(&bytes), "ab€?".repeat(200));
    }
}
