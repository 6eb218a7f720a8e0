//! Splitting message text into records at the record terminator.
//!
//! E1394 (LIS2-A2): every record ends with CR (0x0D) (PROTOCOLS §2.1). The frame layer hands
//! this layer the concatenated text of a message's frames (E1381, PROTOCOLS §1.2), so record
//! boundaries are CRs wherever frames were cut. Captures and middleware also turn CR into LF or
//! CR LF, and some senders emit an empty record (CR CR); LF is forbidden inside E1381 frame
//! text (PROTOCOLS §1.1), so it can never be data. Hence: CR and LF both end a record, runs of
//! them count once, and an empty record is never produced. The last record needs no terminator
//! (ETX may follow the record text directly).

/// Carriage return, the E1394 record terminator.
const CR: u8 = 0x0D;
/// Line feed, which storage and some senders put after or instead of CR.
const LF: u8 = 0x0A;

/// Iterator over the records of a text, each with its byte offset in that text.
///
/// Yields `(offset, record)`; a record never is empty and never contains CR or LF.
#[derive(Debug, Clone)]
pub struct RecordSpans<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> RecordSpans<'a> {
    /// Starts at the beginning of `text`.
    pub fn new(text: &'a [u8]) -> Self {
        RecordSpans { text, pos: 0 }
    }
}

impl<'a> Iterator for RecordSpans<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.text.get(self.pos..)?;
        let skip = rest.iter().position(|&b| b != CR && b != LF)?;
        let start = self.pos + skip;
        let body = self.text.get(start..)?;
        let len = body
            .iter()
            .position(|&b| b == CR || b == LF)
            .unwrap_or(body.len());
        self.pos = start + len;
        Some((start, body.get(..len)?))
    }
}

/// Splits text into records at CR, CR LF, LF or CR CR, never yielding an empty record or a
/// terminator byte. A trailing record without a terminator is yielded too.
pub fn split_records(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    RecordSpans::new(text).map(|(_, record)| record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(text: &[u8]) -> Vec<&[u8]> {
        split_records(text).collect()
    }

    #[test]
    fn splits_on_every_terminator_style() {
        let want: Vec<&[u8]> = vec![b"H|\\^&", b"P|1", b"L|1|N"];
        assert_eq!(split(b"H|\\^&\rP|1\rL|1|N\r"), want, "CR");
        assert_eq!(split(b"H|\\^&\r\nP|1\r\nL|1|N\r\n"), want, "CRLF");
        assert_eq!(split(b"H|\\^&\nP|1\nL|1|N\n"), want, "LF");
        assert_eq!(split(b"H|\\^&\r\rP|1\r\rL|1|N\r\r"), want, "CRCR");
        assert_eq!(split(b"\r\nH|\\^&\n\r\rP|1\rL|1|N"), want, "mixed");
    }

    #[test]
    fn last_record_needs_no_terminator() {
        // An ETX that directly follows the record text leaves no CR behind.
        assert_eq!(split(b"H|\\^&\rL|1"), vec![&b"H|\\^&"[..], b"L|1"]);
    }

    #[test]
    fn empty_and_terminator_only_texts_yield_nothing() {
        assert!(split(b"").is_empty());
        assert!(split(b"\r\n\r\r\n").is_empty());
    }

    #[test]
    fn spans_carry_offsets() {
        let spans: Vec<_> = RecordSpans::new(b"\r\nH|\\^&\r\nL|1").collect();
        assert_eq!(spans, vec![(2, &b"H|\\^&"[..]), (9, &b"L|1"[..])]);
    }

    proptest! {
        #[test]
        fn never_empty_never_terminator(text in prop::collection::vec(
            prop_oneof![Just(CR), Just(LF), any::<u8>()], 0..200)) {
            let mut total = 0;
            for (offset, record) in RecordSpans::new(&text) {
                prop_assert!(!record.is_empty());
                prop_assert!(!record.contains(&CR) && !record.contains(&LF));
                prop_assert_eq!(text.get(offset..offset + record.len()), Some(record));
                total += record.len();
            }
            // Nothing but terminators is lost.
            prop_assert_eq!(total, text.iter().filter(|&&b| b != CR && b != LF).count());
        }
    }
}
