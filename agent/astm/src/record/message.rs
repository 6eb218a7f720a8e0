//! One E1394 message (H … L) and the splitting of a transmission into messages.
//!
//! A message starts with its H record, which defines the delimiters for every record after it
//! (E1394 §7.1.2), and ends with its L record (§11). One transmission (ENQ … EOT) may carry
//! several back-to-back messages (abbott_architect_1.astm has five), and a sender may omit the
//! L record (abbott_m2000_1.astm), so [`split_messages`] cuts a text at every H and after every
//! L, and [`parse_message`] parses exactly one message, strictly.

use std::fmt;

use super::delimiters::{DelimiterError, Delimiters};
use super::kind::RecordType;
use super::record::Record;
use super::separator::RecordSpans;
use super::tree::Tree;
use crate::charset::Charset;

/// Why a text is not one well-formed E1394 message. Each variant says where: `index` counts
/// records from 0 and `offset` is the byte offset of the record's first byte, both relative to
/// the text given to [`parse_message`] (or to the whole text for [`parse_messages`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The text holds no record at all (empty, or only terminators).
    #[error("no records in message text")]
    Empty,
    /// The first record is not an H record, so no delimiters are defined for it. Records
    /// before the first H (a `#` comment line, a record with its frame number left in) end up
    /// here when the text was cut with [`split_messages`].
    #[error(
        "record {index} at byte {offset} is {found} ({}), expected the header (H) first",
        found.name()
    )]
    MissingHeader {
        /// Index of the offending (first) record.
        index: usize,
        /// Its byte offset.
        offset: usize,
        /// Its type.
        found: RecordType,
    },
    /// The H record does not define usable delimiters (too short, not punctuation, or not
    /// distinct).
    #[error("header record {index} at byte {offset}: {source}")]
    BadHeader {
        /// Index of the H record.
        index: usize,
        /// Its byte offset.
        offset: usize,
        /// What is wrong with its delimiter definition.
        source: DelimiterError,
    },
    /// A second H record inside one message: the text holds several messages and should be
    /// cut with [`split_messages`] first.
    #[error("record {index} at byte {offset} is a second header: split messages first")]
    UnexpectedHeader {
        /// Index of the second H record.
        index: usize,
        /// Its byte offset.
        offset: usize,
    },
    /// A record follows the L record inside one message.
    #[error("record {index} at byte {offset} ({found}) follows the terminator (L) record")]
    AfterTerminator {
        /// Index of the first record after L.
        index: usize,
        /// Its byte offset.
        offset: usize,
        /// Its type.
        found: RecordType,
    },
}

/// L.3, the termination code (E1394 §11, PROTOCOLS §2.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TerminationCode {
    /// `N`: normal termination.
    Normal,
    /// `T`: the sender aborted.
    SenderAborted,
    /// `R`: the receiver requested the abort.
    ReceiverAborted,
    /// `E`: unknown or system error.
    Error,
    /// `Q`: error in the last request for information.
    QueryError,
    /// `I`: no information available for the last query.
    NoInformation,
    /// `F`: last request for information processed.
    QueryProcessed,
    /// Any other non-empty value, kept as sent (escapes resolved, not trimmed).
    Other(String),
}

impl TerminationCode {
    /// Reads L.3; `None` when it is empty or absent (`L|1`, `L||`).
    pub fn from_field(value: &str) -> Option<TerminationCode> {
        Some(match value {
            "" => return None,
            "N" => TerminationCode::Normal,
            "T" => TerminationCode::SenderAborted,
            "R" => TerminationCode::ReceiverAborted,
            "E" => TerminationCode::Error,
            "Q" => TerminationCode::QueryError,
            "I" => TerminationCode::NoInformation,
            "F" => TerminationCode::QueryProcessed,
            other => TerminationCode::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for TerminationCode {
    /// The code as sent (`N`, `T`, …).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TerminationCode::Normal => "N",
            TerminationCode::SenderAborted => "T",
            TerminationCode::ReceiverAborted => "R",
            TerminationCode::Error => "E",
            TerminationCode::QueryError => "Q",
            TerminationCode::NoInformation => "I",
            TerminationCode::QueryProcessed => "F",
            TerminationCode::Other(s) => s,
        })
    }
}

/// One parsed E1394 message: its records in order, starting with H.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Never empty; the first record is the H record (see [`parse_message`]).
    records: Vec<Record>,
    delimiters: Delimiters,
    charset: Charset,
    terminated: bool,
    termination_code: Option<TerminationCode>,
}

impl Message {
    /// Every record, in the order received, starting with the H record and ending with the L
    /// record when there is one. Nothing is dropped: unknown record types are here too.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The H record.
    pub fn header(&self) -> &Record {
        // INVARIANT: `parse_message` is the only constructor and returns a Message only after
        // checking that its first record exists and is an H record; `records` is private.
        self.records
            .first()
            .expect("a Message always starts with its H record")
    }

    /// The delimiters the H record defined.
    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// The character set the values were decoded with.
    pub fn charset(&self) -> Charset {
        self.charset
    }

    /// Whether an L record ended the message. False when the sender omitted it
    /// (abbott_m2000_1.astm) or the text was cut short.
    pub fn terminated(&self) -> bool {
        self.terminated
    }

    /// L.3, when the L record carries one (`L|1|N`); `None` for `L|1`, `L||` or no L.
    pub fn termination_code(&self) -> Option<&TerminationCode> {
        self.termination_code.as_ref()
    }

    /// The H > P > O > R hierarchy, built from record order (sequence numbers are not
    /// trusted). Every record is reachable from it exactly once.
    pub fn tree(&self) -> Tree<'_> {
        Tree::build(self.header(), self.records.get(1..).unwrap_or_default())
    }
}

/// Parses the text of exactly one message (the concatenated frame texts from H to L), with the
/// analyser's character set.
///
/// The first record must be an H record defining valid delimiters; a second H or any record
/// after L is an error (use [`split_messages`] for texts holding several messages). A missing
/// L is not an error: [`Message::terminated`] is false.
pub fn parse_message(text: &[u8], charset: Charset) -> Result<Message, RecordError> {
    parse_message_at(text, charset, 0, 0)
}

/// [`parse_message`] with error positions shifted by `base_offset` bytes and `base_index`
/// records, for texts cut out of a larger one.
fn parse_message_at(
    text: &[u8],
    charset: Charset,
    base_offset: usize,
    base_index: usize,
) -> Result<Message, RecordError> {
    let mut spans = RecordSpans::new(text);
    let (offset, raw) = spans.next().ok_or(RecordError::Empty)?;
    let offset = base_offset + offset;
    let kind = raw
        .first()
        .map_or(RecordType::Other(0x00), |&b| RecordType::from_byte(b));
    if kind != RecordType::Header {
        return Err(RecordError::MissingHeader {
            index: base_index,
            offset,
            found: kind,
        });
    }
    let delimiters = Delimiters::from_header(raw).map_err(|source| RecordError::BadHeader {
        index: base_index,
        offset,
        source,
    })?;
    let mut records = vec![Record::parse(raw, &delimiters, charset)];
    let mut terminator: Option<usize> = None;
    for (i, (offset, raw)) in spans.enumerate() {
        let index = base_index + 1 + i;
        let offset = base_offset + offset;
        let record = Record::parse(raw, &delimiters, charset);
        if terminator.is_some() {
            return Err(RecordError::AfterTerminator {
                index,
                offset,
                found: record.kind(),
            });
        }
        match record.kind() {
            RecordType::Header => return Err(RecordError::UnexpectedHeader { index, offset }),
            RecordType::Terminator => terminator = Some(records.len()),
            _ => {}
        }
        records.push(record);
    }
    let termination_code = terminator
        .and_then(|i| records.get(i))
        .and_then(|l| TerminationCode::from_field(l.field(3)));
    Ok(Message {
        records,
        delimiters,
        charset,
        terminated: terminator.is_some(),
        termination_code,
    })
}

/// Cuts a text holding any number of messages (a whole capture, or one transmission) into the
/// texts of single messages, as slices of `text` from a record's first byte to the last
/// record's last byte.
///
/// A message starts at each H record and ends after its L record, or just before the next H,
/// or at the end of the text (no L, as in abbott_m2000_1.astm). Records that belong to no
/// message (before the first H, or between an L and the next H) are returned as slices of
/// their own rather than dropped; [`parse_message`] reports them as
/// [`RecordError::MissingHeader`].
pub fn split_messages(text: &[u8]) -> Vec<&[u8]> {
    split_message_spans(text)
        .into_iter()
        .map(|span| span.text)
        .collect()
}

/// Splits and parses every message of a text (see [`split_messages`]). Error positions are
/// relative to the whole text. This is what `labagent decode` runs on a capture.
pub fn parse_messages(text: &[u8], charset: Charset) -> Vec<Result<Message, RecordError>> {
    split_message_spans(text)
        .into_iter()
        .map(|span| parse_message_at(span.text, charset, span.offset, span.first_index))
        .collect()
}

/// One message's text and where it sits in the whole text.
struct MessageSpan<'a> {
    text: &'a [u8],
    offset: usize,
    first_index: usize,
}

fn split_message_spans(text: &[u8]) -> Vec<MessageSpan<'_>> {
    let mut spans = Vec::new();
    // (offset of first record, end of last record, index of first record)
    let mut current: Option<(usize, usize, usize)> = None;
    let mut close = |current: &mut Option<(usize, usize, usize)>| {
        if let Some((start, end, first_index)) = current.take() {
            spans.push(MessageSpan {
                text: text.get(start..end).unwrap_or_default(),
                offset: start,
                first_index,
            });
        }
    };
    for (index, (offset, raw)) in RecordSpans::new(text).enumerate() {
        let end = offset + raw.len();
        match raw.first() {
            Some(b'H') => {
                close(&mut current);
                current = Some((offset, end, index));
            }
            _ => match current.as_mut() {
                Some((_, last_end, _)) => *last_end = end,
                None => current = Some((offset, end, index)),
            },
        }
        if raw.first() == Some(&b'L') {
            close(&mut current);
        }
    }
    close(&mut current);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Message, RecordError> {
        parse_message(text, Charset::Latin1)
    }

    #[test]
    fn parses_a_full_message() {
        let m = parse(
            b"H|\\^&|||XN-550^00-19^14718|||||||P|E1394-97\rP|1||PID1\rO|1||SID1^1^2\r\
              R|1|^^^^WBC^1|6.2|10*3/uL||N||F\rL|1|N\r",
        )
        .unwrap();
        assert_eq!(m.records().len(), 5);
        assert_eq!(m.header().component(5, 1), "XN-550");
        assert_eq!(m.delimiters(), Delimiters::default());
        assert_eq!(m.charset(), Charset::Latin1);
        assert!(m.terminated());
        assert_eq!(m.termination_code(), Some(&TerminationCode::Normal));
        let kinds: Vec<_> = m.records().iter().map(Record::kind).collect();
        assert_eq!(
            kinds,
            [
                RecordType::Header,
                RecordType::Patient,
                RecordType::Order,
                RecordType::Result,
                RecordType::Terminator
            ]
        );
    }

    #[test]
    fn terminator_variants() {
        let m = parse(b"H|\\^&\rL||").unwrap();
        assert!(m.terminated());
        assert_eq!(m.termination_code(), None);
        let m = parse(b"H|\\^&\rL|1").unwrap();
        assert!(m.terminated());
        assert_eq!(m.termination_code(), None);
        let m = parse(b"H|\\^&\rL|1|N").unwrap();
        assert_eq!(m.termination_code(), Some(&TerminationCode::Normal));
        let m = parse(b"H|\\^&\rL|1|T\r").unwrap();
        assert_eq!(m.termination_code(), Some(&TerminationCode::SenderAborted));
        let m = parse(b"H|\\^&\rL|1|W\r").unwrap();
        assert_eq!(
            m.termination_code(),
            Some(&TerminationCode::Other("W".to_owned()))
        );
        assert_eq!(TerminationCode::Other("W".to_owned()).to_string(), "W");
        for code in ["N", "T", "R", "E", "Q", "I", "F"] {
            let parsed = TerminationCode::from_field(code);
            assert_eq!(parsed.map(|c| c.to_string()).as_deref(), Some(code));
        }
    }

    #[test]
    fn missing_terminator_is_not_an_error() {
        // abbott_m2000_1.astm ends after its last R.
        let m = parse(b"H|\\^&\nP|1\nO|1|X\nR|1|^^^A|1").unwrap();
        assert!(!m.terminated());
        assert_eq!(m.termination_code(), None);
        assert_eq!(m.records().len(), 4);
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(parse(b""), Err(RecordError::Empty));
        assert_eq!(parse(b"\r\n\r"), Err(RecordError::Empty));
        assert_eq!(
            parse(b"\r\nP|1\rH|\\^&"),
            Err(RecordError::MissingHeader {
                index: 0,
                offset: 2,
                found: RecordType::Patient
            })
        );
        assert_eq!(
            parse(b"H|\\^\rL|1"),
            Err(RecordError::BadHeader {
                index: 0,
                offset: 0,
                source: DelimiterError::DefinitionTooShort { len: 2 }
            })
        );
        assert_eq!(
            parse(b"H|\\^&\rL|1\rH|\\^&\rL|1"),
            Err(RecordError::AfterTerminator {
                index: 2,
                offset: 10,
                found: RecordType::Header
            })
        );
        assert_eq!(
            parse(b"H|\\^&\rP|1\rH|\\^&\rL|1"),
            Err(RecordError::UnexpectedHeader {
                index: 2,
                offset: 10
            })
        );
        let msg = parse(b"# VISION\rH|\\^&").unwrap_err().to_string();
        assert_eq!(
            msg,
            "record 0 at byte 0 is # (Other), expected the header (H) first"
        );
    }

    #[test]
    fn uses_each_headers_delimiters() {
        // erba_xl640_1.astm: backtick repeat, whole message in one frame.
        let m = parse(
            b"H|`^&||||||||||P|E 1394-97|20200928132312\rP|1|||||||U||||||||0|0\r\
              O|1|1044041||^^^DBILL|||||||||||SERUM\r\
              R|1|^^^DBILL|0.3|mg/dl|^DEFAULT|A|N|F||||20200928132312\r\
              C|1|I|Instrument Flag A\rL|1|N\r",
        )
        .unwrap();
        assert_eq!(m.delimiters().repeat, b'`');
        assert_eq!(m.records()[3].component(6, 2), "DEFAULT");
        // GeneXpert: '\' is the escape delimiter.
        let m = parse(b"H|@^\\|URM-1\rR|1|^MTB-RIF^^Xpert|NOT DETECTED\\S\\x^|\rL|1|N").unwrap();
        assert_eq!(m.delimiters().escape, b'\\');
        assert_eq!(m.records()[1].component(4, 1), "NOT DETECTED^x");
        // Doubled-backslash artefact (horiba_yumizenh550_2.astm).
        let m = parse(b"H|\\\\^&|||H550\nM|3|REAGENT|CLEANER\\\\DILUENT\nL|1|N").unwrap();
        assert_eq!(m.delimiters(), Delimiters::default());
        assert_eq!(m.header().field(2), "\\\\^&");
        let reagents: Vec<_> = m.records()[1].repeats(4).map(|r| r.component(1)).collect();
        assert_eq!(reagents, ["CLEANER", "", "DILUENT"]);
    }

    #[test]
    fn splits_back_to_back_messages() {
        let text = b"H|\\^&\rP|1\rL|1\rH|\\^&\rP|1\rL|1|N\r";
        let parts = split_messages(text);
        assert_eq!(parts, vec![&b"H|\\^&\rP|1\rL|1"[..], b"H|\\^&\rP|1\rL|1|N"]);
    }

    #[test]
    fn message_without_terminator_ends_at_next_header_or_end() {
        let text = b"H|\\^&\nP|1\nH|\\^&\nR|1\nL|1\nH|\\^&\nO|1";
        let parts = split_messages(text);
        assert_eq!(
            parts,
            vec![&b"H|\\^&\nP|1"[..], b"H|\\^&\nR|1\nL|1", b"H|\\^&\nO|1"]
        );
        let parsed = parse_messages(text, Charset::Latin1);
        let terminated: Vec<_> = parsed
            .iter()
            .map(|m| m.as_ref().map(Message::terminated))
            .collect();
        assert_eq!(terminated, [Ok(false), Ok(true), Ok(false)]);
    }

    #[test]
    fn records_outside_messages_are_kept_as_their_own_parts() {
        let text = b"# VISION \r\nH|\\^&\rL||\rjunk\rmore\rH|\\^&\rL|1";
        let parts = split_messages(text);
        assert_eq!(
            parts,
            vec![
                &b"# VISION "[..],
                b"H|\\^&\rL||",
                b"junk\rmore",
                b"H|\\^&\rL|1"
            ]
        );
        let parsed = parse_messages(text, Charset::Latin1);
        assert_eq!(parsed.len(), 4);
        assert_eq!(
            parsed[0],
            Err(RecordError::MissingHeader {
                index: 0,
                offset: 0,
                found: RecordType::Other(b'#')
            })
        );
        assert!(parsed[1].is_ok());
        // Positions are relative to the whole text.
        assert_eq!(
            parsed[2],
            Err(RecordError::MissingHeader {
                index: 3,
                offset: 21,
                found: RecordType::Other(b'j')
            })
        );
        assert!(parsed[3].is_ok());
        assert!(split_messages(b"").is_empty());
        assert!(split_messages(b"\r\n").is_empty());
    }

    #[test]
    fn bad_header_position_in_whole_text() {
        let parsed = parse_messages(b"H|\\^&\rL|1\rH|\rL|1", Charset::Latin1);
        assert_eq!(
            parsed[1],
            Err(RecordError::BadHeader {
                index: 2,
                offset: 10,
                source: DelimiterError::DefinitionTooShort { len: 0 }
            })
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn astm_ish() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    prop::sample::select(b"HPORCQMSL|\\^&`@\r\nFX0A1".to_vec()),
                    any::<u8>(),
                ],
                0..300,
            )
        }

        proptest! {
            #[test]
            fn parse_never_panics(text in astm_ish(), cs in prop::sample::select(vec![
                Charset::Latin1, Charset::Utf8, Charset::Windows1252])) {
                if let Ok(m) = parse_message(&text, cs) {
                    prop_assert_eq!(m.header().kind(), RecordType::Header);
                    prop_assert_eq!(m.tree().record_count(), m.records().len());
                }
                let mut records_seen = 0;
                for part in split_messages(&text) {
                    prop_assert!(!part.is_empty());
                    records_seen += crate::record::split_records(part).count();
                }
                prop_assert_eq!(records_seen, crate::record::split_records(&text).count());
                for m in parse_messages(&text, cs).into_iter().flatten() {
                    prop_assert_eq!(m.tree().record_count(), m.records().len());
                    for r in m.records() {
                        let _ = r.fields_display();
                    }
                }
            }

            #[test]
            fn parse_never_panics_on_arbitrary_bytes(
                text in prop::collection::vec(any::<u8>(), 0..300)
            ) {
                let _ = parse_message(&text, Charset::Utf8);
                let _ = parse_messages(&text, Charset::Latin1);
            }

            #[test]
            fn escaped_values_survive_a_record(v in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(b"|\\^&FSREX\r\n".to_vec()),
                    any::<u8>(),
                ],
                0..40,
            )) {
                let d = Delimiters::default();
                let mut raw = b"R|1|^^^A|".to_vec();
                raw.extend(crate::record::escape(&v, &d));
                raw.extend_from_slice(b"^x|F");
                let text = [b"H|\\^&\r".as_slice(), &raw, b"\rL|1|N"].concat();
                let m = parse_message(&text, Charset::Latin1)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let r = &m.records()[1];
                prop_assert_eq!(Charset::Latin1.encode(r.component(4, 1)), v);
                prop_assert_eq!(r.component(4, 2), "x");
                prop_assert_eq!(r.field(5), "F");
            }
        }
    }
}
