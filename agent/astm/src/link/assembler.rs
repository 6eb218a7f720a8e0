//! Message assembly on the receiving side: frame texts in, complete H..L messages out.
//!
//! Records are cut at CR (and tolerated LF), never at frame boundaries: real senders split a
//! record mid-field across ETB frames (cobas e411 splits even the L record) and pack several
//! records, or a whole message, into one frame (cobas "type", Erba). A message is complete at its
//! L record; an H arriving while a message is open ends that message (missing L); EOT ends
//! whatever is open. The field delimiter used to recognise `L` comes from each H record.

use crate::chars::{CR, LF};

/// Why a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageEnd {
    /// Its L record arrived.
    Terminator,
    /// A new H record arrived before any L (the previous message lacked its L).
    NextHeader,
    /// The sender sent EOT before any L.
    Eot,
}

/// Positions into the accumulator; `Copy` so a frame's effect can be undone cheaply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Start of the record being collected.
    record_start: usize,
    /// Start of the open message, if one is open.
    message_start: Option<usize>,
    /// Field delimiter from the open message's H record.
    field_delimiter: Option<u8>,
    /// Bytes already scanned for terminators.
    scanned: usize,
}

/// A message found in the accumulated text: byte range and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub start: usize,
    pub end: usize,
    pub how: MessageEnd,
}

/// Accumulates transmission text and finds message boundaries in it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Assembler {
    text: Vec<u8>,
    cursor: Cursor,
}

impl Assembler {
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// State to restore if the frame about to be added is refused.
    pub fn checkpoint(&self) -> (usize, Cursor) {
        (self.text.len(), self.cursor)
    }

    /// Undoes everything since `checkpoint`.
    pub fn rollback(&mut self, (len, cursor): (usize, Cursor)) {
        self.text.truncate(len);
        self.cursor = cursor;
    }

    /// Forgets every byte before `upto` (messages already handed over and committed).
    pub fn consume(&mut self, upto: usize) {
        let upto = upto.min(self.text.len());
        self.text.drain(..upto);
        let c = &mut self.cursor;
        c.record_start = c.record_start.saturating_sub(upto);
        c.scanned = c.scanned.saturating_sub(upto);
        c.message_start = c.message_start.map(|s| s.saturating_sub(upto));
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = Cursor::default();
    }

    /// Adds one frame's text; `record_end` is true for an ETX frame, whose text ends a record
    /// even without a trailing CR. Returns the messages completed by this text.
    pub fn push(&mut self, text: &[u8], record_end: bool) -> Vec<Found> {
        self.text.extend_from_slice(text);
        let mut found = Vec::new();
        while let Some(rel) = self.text[self.cursor.scanned..]
            .iter()
            .position(|&b| b == CR || b == LF)
        {
            let term = self.cursor.scanned + rel;
            self.cursor.scanned = term + 1;
            self.record(term, term + 1, &mut found);
        }
        if record_end && self.cursor.record_start < self.text.len() {
            let end = self.text.len();
            self.cursor.scanned = end;
            self.record(end, end, &mut found);
        }
        found
    }

    /// Text that belongs to no completed message yet, as a message ended by EOT.
    pub fn finish(&mut self) -> Option<Found> {
        let start = self
            .cursor
            .message_start
            .unwrap_or(self.cursor.record_start);
        let has_text = self.text[start..].iter().any(|&b| b != CR && b != LF);
        if !has_text {
            return None;
        }
        let end = self.text.len();
        self.cursor = Cursor {
            record_start: end,
            message_start: None,
            field_delimiter: None,
            scanned: end,
        };
        Some(Found {
            start,
            end,
            how: MessageEnd::Eot,
        })
    }

    /// Handles the record `text[record_start..body_end]`, which ends before `next_start`.
    fn record(&mut self, body_end: usize, next_start: usize, found: &mut Vec<Found>) {
        let start = self.cursor.record_start;
        self.cursor.record_start = next_start;
        let body = &self.text[start..body_end];
        let Some(&first) = body.first() else {
            return; // empty line: CRLF or CRCR
        };
        match first {
            b'H' => {
                if let Some(message_start) = self.cursor.message_start {
                    found.push(Found {
                        start: message_start,
                        end: start,
                        how: MessageEnd::NextHeader,
                    });
                }
                self.cursor.message_start = Some(start);
                self.cursor.field_delimiter = body.get(1).copied();
            }
            b'L' => {
                let delimiter = self.cursor.field_delimiter.unwrap_or(b'|');
                let is_terminator = body.len() == 1 || body[1] == delimiter;
                if is_terminator {
                    let message_start = self.cursor.message_start.unwrap_or(start);
                    found.push(Found {
                        start: message_start,
                        end: next_start,
                        how: MessageEnd::Terminator,
                    });
                    self.cursor.message_start = None;
                    self.cursor.field_delimiter = None;
                }
            }
            _ => {
                if self.cursor.message_start.is_none() {
                    // Records before any H: keep them in a message so nothing is lost; the
                    // record layer reports the missing header.
                    self.cursor.message_start = Some(start);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(a: &Assembler, found: &[Found]) -> Vec<(String, MessageEnd)> {
        found
            .iter()
            .map(|f| {
                (
                    String::from_utf8_lossy(&a.text()[f.start..f.end]).into_owned(),
                    f.how,
                )
            })
            .collect()
    }

    #[test]
    fn one_record_per_frame() {
        let mut a = Assembler::default();
        assert!(a.push(b"H|\\^&\r", true).is_empty());
        assert!(a.push(b"P|1\r", true).is_empty());
        let f = a.push(b"L|1|N\r", true);
        assert_eq!(
            texts(&a, &f),
            vec![("H|\\^&\rP|1\rL|1|N\r".into(), MessageEnd::Terminator)]
        );
    }

    #[test]
    fn l_record_split_across_frames() {
        let mut a = Assembler::default();
        assert!(a.push(b"H|\\^&\rR|1|x\rL|1", false).is_empty());
        let f = a.push(b"|N\r", true);
        assert_eq!(f.len(), 1);
        assert_eq!(&a.text()[f[0].start..f[0].end], b"H|\\^&\rR|1|x\rL|1|N\r");
    }

    #[test]
    fn etx_without_cr_ends_record() {
        let mut a = Assembler::default();
        a.push(b"H|\\^&\r", true);
        let f = a.push(b"L|1", true);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].how, MessageEnd::Terminator);
    }

    #[test]
    fn custom_delimiter_and_non_terminator_l() {
        let mut a = Assembler::default();
        // A record starting with L but not followed by the field delimiter is not L.
        a.push(b"H@\\^&\r", true);
        assert!(a.push(b"Lx@1\r", true).is_empty());
        assert_eq!(a.push(b"L@1\r", true).len(), 1);
    }

    #[test]
    fn header_ends_open_message() {
        let mut a = Assembler::default();
        let f = a.push(b"H|\\^&\rR|1\rH|\\^&\rL|1\n", true);
        let t = texts(&a, &f);
        assert_eq!(t[0], ("H|\\^&\rR|1\r".into(), MessageEnd::NextHeader));
        assert_eq!(t[1], ("H|\\^&\rL|1\n".into(), MessageEnd::Terminator));
    }

    #[test]
    fn eot_flushes_open_message_and_rollback_undoes() {
        let mut a = Assembler::default();
        a.push(b"H|\\^&\rR|1\r", true);
        let cp = a.checkpoint();
        assert_eq!(a.push(b"L|1\r", true).len(), 1);
        a.rollback(cp);
        let f = a.finish().unwrap();
        assert_eq!(&a.text()[f.start..f.end], b"H|\\^&\rR|1\r");
        assert_eq!(f.how, MessageEnd::Eot);
        assert!(a.finish().is_none());
    }

    #[test]
    fn consume_keeps_following_message() {
        let mut a = Assembler::default();
        let f = a.push(b"H|\\^&\rL|1\rH|\\^&\rP|1\r", true);
        assert_eq!(f.len(), 1);
        a.consume(f[0].end);
        let f = a.push(b"L|1\r", true);
        assert_eq!(&a.text()[f[0].start..f[0].end], b"H|\\^&\rP|1\rL|1\r");
    }
}
