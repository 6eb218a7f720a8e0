//! The E1394 record layer: `parse_messages`, `split_records`, `escape` / `unescape`.
//!
//! Byte 0 picks a non-default delimiter set (read from bytes 1-4 when they form a valid set,
//! else a fixed GeneXpert-style `|@^\`); the rest is the text.
//!
//! Invariants:
//! - `split_records` yields non-empty records with no CR or LF, each a slice of the input, in
//!   order and without overlap;
//! - for every charset, `parse_messages` gives messages starting with an H record whose raw
//!   bytes appear in the input (in order), with every record reachable from the tree exactly
//!   once; Latin-1 decoding then encoding gives back every byte;
//! - `unescape(escape(v)) == v` for the input (and slices of it) under the default and the
//!   non-default delimiters; the escaped form holds no raw delimiter other than the escape
//!   framing and no byte E1381 forbids in frame text; and an escaped value placed in a record
//!   reads back as the same single component.

#![no_main]

use labagent_astm::charset::Charset;
use labagent_astm::record::{Delimiters, Record, escape, parse_messages, split_records, unescape};
use libfuzzer_sys::fuzz_target;

const CR: u8 = 0x0D;
const LF: u8 = 0x0A;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, text)) = data.split_first() else {
        return;
    };
    let custom = custom_delimiters(sel, text);

    check_split(text);
    // Latin-1 maps every byte and back.
    assert_eq!(Charset::Latin1.encode(&Charset::Latin1.decode(text)), text);
    for charset in [Charset::Latin1, Charset::Utf8, Charset::Windows1252] {
        check_parse(text, charset);
    }
    for d in [Delimiters::default(), custom] {
        check_escape(text, &d);
        // Also shorter values, so small inputs exercise many cut points.
        let cut = usize::from(sel) % (text.len() + 1);
        check_escape(&text[..cut], &d);
        check_escape(&text[cut..], &d);
    }
});

fn custom_delimiters(sel: u8, text: &[u8]) -> Delimiters {
    if sel & 1 == 1
        && let [f, r, c, e, ..] = *text
    {
        let d = Delimiters {
            field: f,
            repeat: r,
            component: c,
            escape: e,
        };
        if d.validate().is_ok() {
            return d;
        }
    }
    Delimiters {
        field: b'|',
        repeat: b'@',
        component: b'^',
        escape: b'\\',
    }
}

/// Position of `needle` in `hay` at or after `from`.
fn find_from(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from);
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn check_split(text: &[u8]) {
    let mut from = 0;
    for record in split_records(text) {
        assert!(!record.is_empty(), "empty record");
        assert!(
            !record.contains(&CR) && !record.contains(&LF),
            "terminator in record"
        );
        let at = find_from(text, record, from).expect("record is not a slice of the text");
        from = at + record.len();
    }
}

fn check_parse(text: &[u8], charset: Charset) {
    let mut from = 0;
    for message in parse_messages(text, charset).into_iter().flatten() {
        let records = message.records();
        assert!(!records.is_empty());
        assert_eq!(
            records[0].raw().first(),
            Some(&b'H'),
            "message not starting with H"
        );
        assert_eq!(message.charset(), charset);
        assert!(message.delimiters().validate().is_ok());
        for record in records {
            let raw = record.raw();
            assert!(!raw.is_empty());
            let at = find_from(text, raw, from).expect("record raw bytes not in the input");
            from = at + raw.len();
        }
        assert_eq!(
            message.tree().record_count(),
            records.len(),
            "tree lost records"
        );
        if message.terminated() {
            assert!(records.iter().any(|r| r.raw().first() == Some(&b'L')));
        }
    }
}

fn check_escape(value: &[u8], d: &Delimiters) {
    let escaped = escape(value, d);
    assert_eq!(
        unescape(&escaped, d).as_ref(),
        value,
        "unescape(escape(v)) != v with delimiters {:?}",
        d.definition()
    );
    for &b in &escaped {
        assert!(
            b != d.field && b != d.repeat && b != d.component,
            "raw delimiter 0x{b:02X} in escaped value"
        );
        assert!(
            !labagent_astm::chars::is_restricted(b) && b != CR,
            "byte 0x{b:02X} not allowed in frame text"
        );
    }
    // Put it in a record as field 3 and read it back as one component.
    let mut raw = vec![b'R', d.field, b'1', d.field];
    raw.extend_from_slice(&escaped);
    let record = Record::parse(&raw, d, Charset::Latin1);
    assert_eq!(record.field_count(), 3);
    assert_eq!(record.repeats(3).count(), 1);
    let expected = Charset::Latin1.decode(value);
    assert_eq!(record.component(3, 1), expected.as_ref());
    assert_eq!(record.component(3, 2), "");
}
