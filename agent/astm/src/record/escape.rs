//! E1394 escape sequences as CLSI LIS2-A2 defines them (PROTOCOLS §2.1).
//!
//! A value that contains one of the message's delimiters carries it as an escape sequence,
//! framed by the message's own escape delimiter (written `&` below, as in the default set):
//!
//! | sequence   | means                                          |
//! |------------|------------------------------------------------|
//! | `&F&`      | the field delimiter                            |
//! | `&S&`      | the component delimiter                        |
//! | `&R&`      | the repeat delimiter                           |
//! | `&E&`      | the escape delimiter                           |
//! | `&Xhhhh&`  | the bytes given as pairs of hex digits         |
//! | `&H&` `&N&`| start/end highlighting: kept verbatim          |
//! | `&Zcccc&`  | locally defined: kept verbatim                 |
//!
//! Real traces use them: Sysmex `PNG&R&20181106&R&…` (a Windows path whose backslashes are the
//! repeat delimiter) and Abbott m2000 `DB&E&23-33E22` (a literal `&` in a barcode).
//!
//! Unescaping works on raw bytes, before character-set decoding, because `&Xhhhh&` yields
//! bytes in the analyser's character set. Anything that is not a recognised sequence (unknown
//! codes, odd or non-hex `X` data, an escape byte with no closing partner) is kept byte for
//! byte: this layer never drops data it does not understand.

use std::borrow::Cow;

use super::delimiters::Delimiters;

/// Resolves the escape sequences in one value (a component, or a whole field for display),
/// using the message's delimiters. Borrows when the value holds no escape byte.
pub fn unescape<'a>(value: &'a [u8], delimiters: &Delimiters) -> Cow<'a, [u8]> {
    let esc = delimiters.escape;
    if !value.contains(&esc) {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.iter().position(|&b| b == esc) {
        let (before, from_escape) = rest.split_at(start);
        out.extend_from_slice(before);
        let after_open = from_escape.get(1..).unwrap_or_default();
        let Some(len) = after_open.iter().position(|&b| b == esc) else {
            // Unterminated: keep the escape byte and everything after it.
            out.extend_from_slice(from_escape);
            return Cow::Owned(out);
        };
        let (code, closing) = after_open.split_at(len);
        match code {
            b"F" => out.push(delimiters.field),
            b"S" => out.push(delimiters.component),
            b"R" => out.push(delimiters.repeat),
            b"E" => out.push(esc),
            [b'X', hex @ ..] if decode_hex_into(hex, &mut out) => {}
            _ => {
                // Unknown (`&H&`, `&N&`, `&Z..&`) or malformed: both escape bytes and the code
                // stay as sent.
                out.push(esc);
                out.extend_from_slice(code);
                out.push(esc);
            }
        }
        rest = closing.get(1..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
    Cow::Owned(out)
}

/// Escapes a value for the sender side, so that the receiver's [`unescape`] gives it back.
///
/// The four delimiters become `&F&`, `&R&`, `&S&` and `&E&`. CR, LF and the other bytes
/// E1381 forbids inside frame text (SOH, STX, ETX, EOT, ENQ, ACK, DLE, DC1–DC4, NAK, SYN, ETB;
/// PROTOCOLS §1.1) become `&Xhh&`, because a raw CR would end the record and the others would
/// break the link layer.
pub fn escape(value: &[u8], delimiters: &Delimiters) -> Vec<u8> {
    let esc = delimiters.escape;
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        let code = if b == delimiters.field {
            Some(b'F')
        } else if b == delimiters.repeat {
            Some(b'R')
        } else if b == delimiters.component {
            Some(b'S')
        } else if b == esc {
            Some(b'E')
        } else {
            None
        };
        if let Some(code) = code {
            out.extend_from_slice(&[esc, code, esc]);
        } else if is_restricted(b) {
            out.extend_from_slice(&[esc, b'X', hex_digit(b >> 4), hex_digit(b & 0x0F), esc]);
        } else {
            out.push(b);
        }
    }
    out
}

/// Bytes that may not appear raw in E1381 frame text, plus the record terminator CR (0x0D).
fn is_restricted(b: u8) -> bool {
    matches!(
        b,
        0x01..=0x06 | 0x0A | 0x0D | 0x10..=0x14 | 0x15 | 0x16 | 0x17
    )
}

/// Uppercase hex digit for a nibble (only the low four bits are used).
fn hex_digit(nibble: u8) -> u8 {
    match nibble & 0x0F {
        n @ 0..=9 => b'0' + n,
        n => b'A' + (n - 10),
    }
}

/// Value of one hex digit, either case.
fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Appends the bytes of `&Xhh..&` data to `out` and returns true, or appends nothing and
/// returns false when the data is empty, odd-length or not hex.
fn decode_hex_into(hex: &[u8], out: &mut Vec<u8>) -> bool {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return false;
    }
    let mut bytes = Vec::with_capacity(hex.len() / 2);
    for pair in hex.chunks_exact(2) {
        match (
            pair.first().copied().and_then(hex_value),
            pair.get(1).copied().and_then(hex_value),
        ) {
            (Some(hi), Some(lo)) => bytes.push(hi << 4 | lo),
            _ => return false,
        }
    }
    out.extend_from_slice(&bytes);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn un(v: &[u8]) -> Vec<u8> {
        unescape(v, &Delimiters::default()).into_owned()
    }

    #[test]
    fn delimiter_escapes_resolve() {
        assert_eq!(un(b"a&F&b"), b"a|b");
        assert_eq!(un(b"a&S&b"), b"a^b");
        assert_eq!(un(b"a&R&b"), b"a\\b");
        assert_eq!(un(b"a&E&b"), b"a&b");
        assert_eq!(un(b"DB&E&23-33E22"), b"DB&23-33E22");
        assert_eq!(
            un(b"PNG&R&20181106&R&2018_11_06.PNG"),
            b"PNG\\20181106\\2018_11_06.PNG"
        );
    }

    #[test]
    fn hex_escapes_resolve() {
        assert_eq!(un(b"&X0D0A&"), b"\r\n");
        assert_eq!(un(b"x&X4a4B&y"), b"xJKy");
        assert_eq!(un(b"&XE4&"), [0xE4]);
    }

    #[test]
    fn unknown_and_malformed_kept_verbatim() {
        for v in [
            &b"&H&bold&N&"[..],
            b"&Zlocal&",
            b"&X&",
            b"&X1&",
            b"&XZZ&",
            b"&&",
            b"&FF&",
            b"tail&F",
            b"&",
            b"AT&T",
        ] {
            assert_eq!(un(v), v, "{}", String::from_utf8_lossy(v));
        }
        // A recognised sequence after an unknown one still resolves.
        assert_eq!(un(b"&H&x&F&"), b"&H&x|");
    }

    #[test]
    fn unescape_borrows_without_escape_byte() {
        assert!(matches!(
            unescape(b"^^^WBC", &Delimiters::default()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn custom_escape_delimiter() {
        // GeneXpert: escape is '\', repeat '@'.
        let d = Delimiters {
            field: b'|',
            repeat: b'@',
            component: b'^',
            escape: b'\\',
        };
        assert_eq!(unescape(b"a\\R\\b\\E\\c\\S\\d", &d).as_ref(), b"a@b\\c^d");
        assert_eq!(escape(b"a@b\\c^d|e&", &d), b"a\\R\\b\\E\\c\\S\\d\\F\\e&");
    }

    #[test]
    fn escape_every_delimiter_and_controls() {
        let d = Delimiters::default();
        assert_eq!(escape(b"a|b", &d), b"a&F&b");
        assert_eq!(escape(b"a^b", &d), b"a&S&b");
        assert_eq!(escape(b"a\\b", &d), b"a&R&b");
        assert_eq!(escape(b"a&b", &d), b"a&E&b");
        assert_eq!(escape(b"a\rb\n", &d), b"a&X0D&b&X0A&");
        assert_eq!(escape(&[0x02, 0x17, 0x09], &d), b"&X02&&X17&\t");
        assert_eq!(escape(b"plain 5.5", &d), b"plain 5.5");
    }

    fn delimiter_sets() -> impl Strategy<Value = Delimiters> {
        prop_oneof![
            Just(Delimiters::default()),
            Just(Delimiters {
                field: b'|',
                repeat: b'@',
                component: b'^',
                escape: b'\\'
            }),
            Just(Delimiters {
                field: b'|',
                repeat: b'`',
                component: b'^',
                escape: b'&'
            }),
        ]
    }

    /// Values rich in delimiters, escape bytes and escape-code letters.
    fn values() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"|\\^&@`FSREXHNZ0aD\r\n".to_vec()),
                any::<u8>(),
            ],
            0..40,
        )
    }

    proptest! {
        #[test]
        fn unescape_inverts_escape(d in delimiter_sets(), v in values()) {
            let escaped = escape(&v, &d);
            let back = unescape(&escaped, &d);
            prop_assert_eq!(back.as_ref(), v.as_slice());
            // The escaped form is free of structure bytes, so it survives record splitting.
            prop_assert!(!escaped.iter().any(|&b| b == d.field || b == d.repeat
                || b == d.component || b == b'\r' || b == b'\n'));
            // And escaping the unescaped form gives back the escaped form.
            prop_assert_eq!(escape(&unescape(&escaped, &d), &d), escaped);
        }

        #[test]
        fn unescape_never_panics(d in delimiter_sets(), v in values()) {
            let _ = unescape(&v, &d);
        }
    }
}
