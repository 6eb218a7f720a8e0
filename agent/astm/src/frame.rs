//! E1381 frames: layout, checksum, encoding and a bounded stream decoder.
//!
//! ```text
//! intermediate: STX FN text ETB C1 C2 CR LF
//! last/only:    STX FN text ETX C1 C2 CR LF
//! ```
//! (LIS1-A §6.3; PROTOCOLS.md 1.2.) FN is one ASCII digit `0`-`7`; the checksum is the sum of the
//! bytes from FN through ETB/ETX inclusive, modulo 256, as two hex digits (uppercase when sending,
//! either case accepted). The standard caps text at 240 bytes, but real instruments exceed it (a
//! Sysmex XN-550 order record is a 321-byte frame; the OsmoTECH XT documents 64,000), so the
//! decoder's limit is configurable and defaults to [`DEFAULT_MAX_TEXT`].
//!
//! The decoder never fails as a stream: junk between frames is counted and skipped, a damaged
//! frame becomes a [`FrameError`] item (which the link answers with NAK), and memory stays bounded
//! by the text limit whatever the input.

use crate::chars::{ACK, CR, ENQ, EOT, ETB, ETX, LF, NAK, STX, is_restricted};
use std::fmt;

/// Text bytes per frame allowed by LIS1-A §6.3.1 (frames of at most 247 bytes).
pub const STANDARD_MAX_TEXT: usize = 240;
/// Default receive limit on frame text: generous, because real analysers ignore the 240 limit.
pub const DEFAULT_MAX_TEXT: usize = 64 * 1024;

/// Whether a frame ends its record (ETX) or continues in the next frame (ETB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Ends with ETB: more text of the same record follows.
    Intermediate,
    /// Ends with ETX: the last frame of a record (or of a whole message, "cobas type").
    Final,
}

impl FrameKind {
    /// The end byte (ETB or ETX) that marks this kind on the wire.
    pub const fn end_byte(self) -> u8 {
        match self {
            FrameKind::Intermediate => ETB,
            FrameKind::Final => ETX,
        }
    }
}

/// One decoded, checksum-verified frame.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame number 0-7.
    pub number: u8,
    /// ETB or ETX.
    pub kind: FrameKind,
    /// The text between FN and ETB/ETX, exactly as sent.
    pub text: Vec<u8>,
}

impl fmt::Debug for Frame {
    // Frame text can hold patient data: Debug shows its size, never its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("number", &self.number)
            .field("kind", &self.kind)
            .field("text_len", &self.text.len())
            .finish()
    }
}

impl Frame {
    /// Builds a frame. `number` is taken modulo 8.
    pub fn new(number: u8, kind: FrameKind, text: Vec<u8>) -> Self {
        Frame {
            number: number % 8,
            kind,
            text,
        }
    }

    /// The frame's checksum byte (sum of FN, text and ETB/ETX, mod 256).
    pub fn checksum(&self) -> u8 {
        checksum(b'0' + self.number, &self.text, self.kind.end_byte())
    }

    /// Appends the frame's wire bytes (`STX FN text ETB|ETX C1 C2 CR LF`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let cs = self.checksum();
        out.reserve(self.text.len() + 7);
        out.push(STX);
        out.push(b'0' + self.number);
        out.extend_from_slice(&self.text);
        out.push(self.kind.end_byte());
        out.push(hex_digit(cs >> 4));
        out.push(hex_digit(cs & 0x0F));
        out.push(CR);
        out.push(LF);
    }

    /// The frame's wire bytes as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.text.len() + 7);
        self.encode(&mut v);
        v
    }
}

/// Checksum of a frame: the sum of `fn_byte`, every text byte and `end` (ETB/ETX), modulo 256
/// (LIS1-A §6.3.3). STX and the trailer are not included.
pub fn checksum(fn_byte: u8, text: &[u8], end: u8) -> u8 {
    let mut sum = u32::from(fn_byte) + u32::from(end);
    for &b in text {
        sum += u32::from(b);
    }
    (sum & 0xFF) as u8
}

const fn hex_digit(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'A' + (n - 10),
    }
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Splits one message's text into frames the way LIS1-A §6.3 expects a sender to: each record
/// (ending in CR) gets its own frames, at most `max_text` bytes each, ETB on all but the last
/// frame of a record and ETX on the last. Frame numbers start at `first_number` and cycle mod 8.
/// Text after the last CR is sent as a final record of its own.
pub fn frames_for_message(text: &[u8], first_number: u8, max_text: usize) -> Vec<Frame> {
    let max_text = max_text.max(1);
    let mut frames = Vec::new();
    let mut number = first_number % 8;
    for record in text.split_inclusive(|&b| b == CR) {
        let mut chunks = record.chunks(max_text).peekable();
        while let Some(chunk) = chunks.next() {
            let kind = if chunks.peek().is_some() {
                FrameKind::Intermediate
            } else {
                FrameKind::Final
            };
            frames.push(Frame::new(number, kind, chunk.to_vec()));
            number = (number + 1) % 8;
        }
    }
    frames
}

/// Why a frame was rejected. Each is answered with NAK by a receiver (LIS1-A §6.3.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The checksum digits do not match the computed sum.
    #[error("checksum mismatch: frame says {received:02X}, computed {computed:02X}")]
    Checksum {
        /// The checksum the frame carried.
        received: u8,
        /// The checksum computed over FN..ETB/ETX.
        computed: u8,
    },
    /// The checksum position holds something other than two hex digits.
    #[error("malformed checksum byte 0x{byte:02X}")]
    MalformedChecksum {
        /// The offending byte.
        byte: u8,
    },
    /// The byte after STX is not a frame number digit 0-7.
    #[error("bad frame number byte 0x{byte:02X}")]
    BadNumber {
        /// The offending byte.
        byte: u8,
    },
    /// The text grew beyond the configured limit before ETB/ETX arrived.
    #[error("frame text longer than {limit} bytes")]
    TooLong {
        /// The configured text limit.
        limit: usize,
    },
    /// The text holds a byte LIS1-A forbids there (a control character other than CR).
    #[error("restricted character 0x{byte:02X} at text offset {offset}")]
    Restricted {
        /// The offending byte.
        byte: u8,
        /// Its offset within the frame text.
        offset: usize,
    },
    /// STX, ENQ or EOT arrived before the frame was complete; the partial frame is dropped.
    #[error("frame interrupted by 0x{by:02X} after {text_len} text bytes")]
    Interrupted {
        /// The control byte that cut the frame short.
        by: u8,
        /// How much text had arrived.
        text_len: usize,
    },
}

/// A line-level control byte outside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// ENQ: request for the line.
    Enq,
    /// ACK: positive reply.
    Ack,
    /// NAK: negative reply or busy.
    Nak,
    /// EOT: end of transmission, or receiver interrupt during transfer.
    Eot,
}

impl Control {
    /// The wire byte.
    pub const fn byte(self) -> u8 {
        match self {
            Control::Enq => ENQ,
            Control::Ack => ACK,
            Control::Nak => NAK,
            Control::Eot => EOT,
        }
    }
}

/// One item out of the stream decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A control byte between frames.
    Control(Control),
    /// A well-formed frame whose checksum verified.
    Frame(Frame),
    /// A damaged frame: answer NAK. `number` is the FN digit when it could be read.
    Bad {
        /// The frame number, if the FN byte was a valid digit.
        number: Option<u8>,
        /// What was wrong.
        error: FrameError,
        /// Stream offset of the frame's STX (for naming the spot in a capture).
        offset: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames: waiting for STX or a control byte.
    Idle,
    /// After STX: the next byte is the frame number.
    Number,
    /// Collecting text until ETB/ETX.
    Text,
    /// Text over the limit: discarding until ETB/ETX, then reporting TooLong.
    Overflow,
    /// After ETB/ETX: expecting the first checksum digit.
    Check1,
    /// Expecting the second checksum digit.
    Check2(u8),
    /// After the checksum: swallowing the CR LF trailer (either may be missing).
    Trailer,
}

/// Counters the decoder keeps for telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Bytes outside any frame that were not control bytes or trailers, skipped.
    pub junk_bytes: u64,
    /// Frames whose checksum verified.
    pub frames: u64,
    /// Damaged frames reported as [`Item::Bad`].
    pub bad_frames: u64,
    /// Of those, checksum mismatches.
    pub checksum_errors: u64,
}

/// Bounded, resynchronising E1381 stream decoder.
///
/// Feed bytes with [`FrameDecoder::decode`]; it calls back once per item, in order. Input can be
/// split anywhere: partial frames wait for more bytes. Memory is bounded by `max_text`.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_text: usize,
    state: State,
    number: Option<u8>,
    end: u8,
    text: Vec<u8>,
    /// Offset in the text of the first restricted byte seen, if any.
    restricted: Option<(u8, usize)>,
    stats: DecoderStats,
    /// Bytes consumed so far, for error offsets in captures.
    offset: u64,
    /// Stream offset of the STX of the frame being decoded.
    frame_start: u64,
    /// Checksum digits still to swallow after an over-long frame's ETB/ETX.
    skip_checksum: u8,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TEXT)
    }
}

impl FrameDecoder {
    /// A decoder that rejects frames with more than `max_text` text bytes.
    pub fn new(max_text: usize) -> Self {
        FrameDecoder {
            max_text,
            state: State::Idle,
            number: None,
            end: ETX,
            text: Vec::new(),
            restricted: None,
            stats: DecoderStats::default(),
            offset: 0,
            frame_start: 0,
            skip_checksum: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Total bytes fed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Stream offset of the STX that opened the frame most recently emitted or in progress.
    pub fn frame_start(&self) -> u64 {
        self.frame_start
    }

    /// True when a frame has started but not yet finished.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Idle | State::Trailer)
    }

    /// Drops any partial frame (e.g. after the link timed out), keeping the counters.
    pub fn reset(&mut self) {
        self.state = State::Idle;
        self.text.clear();
        self.restricted = None;
    }

    /// Decodes `input`, calling `emit` for every complete item in order.
    pub fn decode(&mut self, input: &[u8], mut emit: impl FnMut(Item)) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Text => {
                    // Fast path: copy text up to the next control byte in one go.
                    let rest = &input[i..];
                    let run = rest
                        .iter()
                        .position(|&b| b < 0x20 && b != CR)
                        .unwrap_or(rest.len());
                    if run > 0 {
                        let room = self.max_text.saturating_sub(self.text.len());
                        if run > room {
                            self.text.clear();
                            self.state = State::Overflow;
                            i += run;
                            self.offset += run as u64;
                            continue;
                        }
                        self.text.extend_from_slice(&rest[..run]);
                        i += run;
                        self.offset += run as u64;
                        continue;
                    }
                    let b = input[i];
                    i += 1;
                    self.offset += 1;
                    self.text_control(b, &mut emit);
                }
                State::Overflow => {
                    let rest = &input[i..];
                    let run = rest
                        .iter()
                        .position(|&b| matches!(b, ETX | ETB | STX | ENQ | EOT))
                        .unwrap_or(rest.len());
                    i += run;
                    self.offset += run as u64;
                    if i < input.len() {
                        let b = input[i];
                        i += 1;
                        self.offset += 1;
                        self.overflow_control(b, &mut emit);
                    }
                }
                _ => {
                    let b = input[i];
                    i += 1;
                    self.offset += 1;
                    self.byte(b, &mut emit);
                }
            }
        }
    }

    /// Convenience: decodes `input` and returns the items.
    pub fn decode_to_vec(&mut self, input: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        self.decode(input, |item| items.push(item));
        items
    }

    fn bad(&mut self, error: FrameError, emit: &mut impl FnMut(Item)) {
        self.stats.bad_frames += 1;
        if matches!(error, FrameError::Checksum { .. }) {
            self.stats.checksum_errors += 1;
        }
        emit(Item::Bad {
            number: self.number,
            error,
            offset: self.frame_start,
        });
    }

    fn start_frame(&mut self) {
        self.state = State::Number;
        self.number = None;
        self.text.clear();
        self.restricted = None;
        self.frame_start = self.offset - 1;
    }

    /// A control byte while collecting text.
    fn text_control(&mut self, b: u8, emit: &mut impl FnMut(Item)) {
        match b {
            ETX | ETB => {
                self.end = b;
                self.state = State::Check1;
            }
            STX | ENQ | EOT => {
                let text_len = self.text.len();
                self.text.clear();
                self.bad(FrameError::Interrupted { by: b, text_len }, emit);
                self.state = State::Idle;
                self.byte(b, emit);
            }
            _ => {
                // Restricted (e.g. LF, ACK): keep it, so the checksum still verifies, and reject
                // the frame once complete. Counted against the limit like any text byte.
                if self.restricted.is_none() && is_restricted(b) {
                    self.restricted = Some((b, self.text.len()));
                }
                if self.text.len() >= self.max_text {
                    self.text.clear();
                    self.state = State::Overflow;
                } else {
                    self.text.push(b);
                }
            }
        }
    }

    fn overflow_control(&mut self, b: u8, emit: &mut impl FnMut(Item)) {
        let limit = self.max_text;
        match b {
            ETX | ETB => {
                // Report at the frame's end so the NAK goes out once, when the sender waits.
                self.bad(FrameError::TooLong { limit }, emit);
                self.state = State::Trailer;
                self.skip_checksum = 2;
            }
            _ => {
                self.bad(FrameError::TooLong { limit }, emit);
                self.state = State::Idle;
                self.byte(b, emit);
            }
        }
    }

    fn byte(&mut self, b: u8, emit: &mut impl FnMut(Item)) {
        match self.state {
            State::Idle => match b {
                STX => self.start_frame(),
                ENQ => emit(Item::Control(Control::Enq)),
                ACK => emit(Item::Control(Control::Ack)),
                NAK => emit(Item::Control(Control::Nak)),
                EOT => emit(Item::Control(Control::Eot)),
                _ => self.stats.junk_bytes += 1,
            },
            State::Number => match b {
                b'0'..=b'7' => {
                    self.number = Some(b - b'0');
                    self.state = State::Text;
                }
                STX | ENQ | EOT => {
                    self.bad(FrameError::Interrupted { by: b, text_len: 0 }, emit);
                    self.state = State::Idle;
                    self.byte(b, emit);
                }
                _ => {
                    self.bad(FrameError::BadNumber { byte: b }, emit);
                    // Resynchronise: skip to the next STX or control byte.
                    self.state = State::Idle;
                }
            },
            State::Text => self.text_control(b, emit),
            State::Overflow => self.overflow_control(b, emit),
            State::Check1 => match hex_value(b) {
                Some(v) => self.state = State::Check2(v),
                None => self.malformed_checksum(b, emit),
            },
            State::Check2(high) => match hex_value(b) {
                Some(low) => self.finish_frame((high << 4) | low, emit),
                None => self.malformed_checksum(b, emit),
            },
            State::Trailer => {
                if self.skip_checksum > 0 && hex_value(b).is_some() {
                    // The checksum of an over-long frame: part of the frame, not junk.
                    self.skip_checksum -= 1;
                    return;
                }
                self.skip_checksum = 0;
                match b {
                    CR => {}
                    LF => self.state = State::Idle,
                    _ => {
                        self.state = State::Idle;
                        self.byte(b, emit);
                    }
                }
            }
        }
    }

    fn malformed_checksum(&mut self, b: u8, emit: &mut impl FnMut(Item)) {
        self.text.clear();
        self.bad(FrameError::MalformedChecksum { byte: b }, emit);
        self.state = State::Idle;
        if matches!(b, STX | ENQ | EOT | ACK | NAK) {
            self.byte(b, emit);
        }
    }

    fn finish_frame(&mut self, received: u8, emit: &mut impl FnMut(Item)) {
        self.state = State::Trailer;
        let Some(number) = self.number else {
            // Unreachable by construction (Text is entered only after a valid FN); be safe.
            self.text.clear();
            return;
        };
        let computed = checksum(b'0' + number, &self.text, self.end);
        if computed != received {
            self.text.clear();
            self.bad(FrameError::Checksum { received, computed }, emit);
            return;
        }
        if let Some((byte, offset)) = self.restricted.take() {
            self.text.clear();
            self.bad(FrameError::Restricted { byte, offset }, emit);
            return;
        }
        let kind = if self.end == ETB {
            FrameKind::Intermediate
        } else {
            FrameKind::Final
        };
        let text = std::mem::take(&mut self.text);
        self.stats.frames += 1;
        emit(Item::Frame(Frame { number, kind, text }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames_of(items: &[Item]) -> Vec<Frame> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn checksum_matches_go_bnet_worked_example() {
        // go-bnet lis1a1_test.go: "1H|\^&|||LIAISONXL|||||LABEDV||P|1|<CR><ETX>" -> 97.
        let text = b"H|\\^&|||LIAISONXL|||||LABEDV||P|1|\r";
        assert_eq!(checksum(b'1', text, ETX), 0x97);
        let f = Frame::new(1, FrameKind::Final, text.to_vec());
        let bytes = f.to_bytes();
        assert_eq!(&bytes[bytes.len() - 4..], b"97\r\n");
        assert_eq!(bytes[0], STX);
    }

    #[test]
    fn lowercase_checksum_and_missing_trailer_accepted() {
        let f = Frame::new(2, FrameKind::Intermediate, b"R|1|^^^NA|140".to_vec());
        let mut bytes = f.to_bytes();
        bytes.truncate(bytes.len() - 2); // no CR LF (quirk 13)
        let n = bytes.len();
        bytes[n - 2..].make_ascii_lowercase();
        let mut d = FrameDecoder::default();
        let mut items = d.decode_to_vec(&bytes);
        items.extend(d.decode_to_vec(&[ACK]));
        assert_eq!(items, vec![Item::Frame(f), Item::Control(Control::Ack)]);
    }

    #[test]
    fn lf_only_trailer_is_not_junk() {
        let f = Frame::new(1, FrameKind::Final, b"H|\\^&\r".to_vec());
        let mut bytes = f.to_bytes();
        bytes.remove(bytes.len() - 2); // "<cs>\n" as SENAITE stores frames
        let mut d = FrameDecoder::default();
        assert_eq!(d.decode_to_vec(&bytes), vec![Item::Frame(f)]);
        assert_eq!(d.stats().junk_bytes, 0);
    }

    #[test]
    fn junk_between_frames_is_counted_and_skipped() {
        let f = Frame::new(1, FrameKind::Final, b"L|1|N\r".to_vec());
        let mut bytes = b"garbage\xff\x00".to_vec();
        bytes.extend(f.to_bytes());
        bytes.extend_from_slice(b"zz");
        bytes.push(EOT);
        let mut d = FrameDecoder::default();
        let items = d.decode_to_vec(&bytes);
        assert_eq!(items, vec![Item::Frame(f), Item::Control(Control::Eot)]);
        assert_eq!(d.stats().junk_bytes, 11);
    }

    #[test]
    fn restricted_character_rejected_even_with_good_checksum() {
        let f = Frame::new(1, FrameKind::Final, b"R|1\n|2\r".to_vec());
        let mut d = FrameDecoder::default();
        assert_eq!(
            d.decode_to_vec(&f.to_bytes()),
            vec![Item::Bad {
                number: Some(1),
                error: FrameError::Restricted {
                    byte: LF,
                    offset: 3
                },
                offset: 0,
            }]
        );
    }

    #[test]
    fn bad_frame_number_resynchronises() {
        let good = Frame::new(1, FrameKind::Final, b"H|\\^&\r".to_vec());
        let mut bytes = vec![STX, b'9', b'x', ETX];
        bytes.extend(good.to_bytes());
        let mut d = FrameDecoder::default();
        let items = d.decode_to_vec(&bytes);
        assert_eq!(
            items[0],
            Item::Bad {
                number: None,
                error: FrameError::BadNumber { byte: b'9' },
                offset: 0,
            }
        );
        assert_eq!(frames_of(&items), vec![good]);
    }

    #[test]
    fn stx_mid_frame_reports_interruption_and_takes_new_frame() {
        let good = Frame::new(1, FrameKind::Final, b"H|\\^&\r".to_vec());
        let mut bytes = vec![STX, b'1', b'P', b'|'];
        bytes.extend(good.to_bytes());
        let mut d = FrameDecoder::default();
        let items = d.decode_to_vec(&bytes);
        assert!(matches!(
            items[0],
            Item::Bad {
                error: FrameError::Interrupted {
                    by: STX,
                    text_len: 2
                },
                ..
            }
        ));
        assert_eq!(frames_of(&items), vec![good]);
    }

    #[test]
    fn eot_mid_frame_is_delivered_after_the_interruption() {
        let mut d = FrameDecoder::default();
        let items = d.decode_to_vec(&[STX, b'1', b'P', EOT]);
        assert!(matches!(
            items[0],
            Item::Bad {
                error: FrameError::Interrupted { by: EOT, .. },
                ..
            }
        ));
        assert_eq!(items[1], Item::Control(Control::Eot));
    }

    #[test]
    fn over_long_frame_is_one_error_and_memory_stays_bounded() {
        let mut d = FrameDecoder::new(240);
        let big = Frame::new(1, FrameKind::Final, vec![b'x'; 70_000]).to_bytes();
        let mut items = Vec::new();
        for chunk in big.chunks(1000) {
            d.decode(chunk, |i| items.push(i));
            assert!(
                d.text.capacity() <= 4096,
                "buffer grew to {}",
                d.text.capacity()
            );
        }
        assert_eq!(
            items,
            vec![Item::Bad {
                number: Some(1),
                error: FrameError::TooLong { limit: 240 },
                offset: 0,
            }]
        );
        assert_eq!(
            d.stats().junk_bytes,
            0,
            "the checksum and trailer are not junk"
        );
        let next = Frame::new(2, FrameKind::Final, b"L|1\r".to_vec());
        assert_eq!(d.decode_to_vec(&next.to_bytes()), vec![Item::Frame(next)]);
    }

    #[test]
    fn sysmex_321_byte_frame_accepted_by_default() {
        let f = Frame::new(4, FrameKind::Final, vec![b'^'; 314]);
        let mut d = FrameDecoder::default();
        assert_eq!(d.decode_to_vec(&f.to_bytes()), vec![Item::Frame(f)]);
    }

    #[test]
    fn frames_for_message_splits_records_at_240() {
        let mut text = b"H|\\^&\r".to_vec();
        text.extend(vec![b'R'; 500]);
        text.push(CR);
        let fs = frames_for_message(&text, 1, 240);
        let kinds: Vec<_> = fs
            .iter()
            .map(|f| (f.number, f.kind, f.text.len()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (1, FrameKind::Final, 6),
                (2, FrameKind::Intermediate, 240),
                (3, FrameKind::Intermediate, 240),
                (4, FrameKind::Final, 21),
            ]
        );
        let joined: Vec<u8> = fs.iter().flat_map(|f| f.text.clone()).collect();
        assert_eq!(joined, text);
        assert!(fs.iter().all(|f| f.to_bytes().len() <= 247));
    }

    fn arb_text() -> impl Strategy<Value = Vec<u8>> {
        // Any text a sender may put in a frame: printable, high bytes and CR.
        proptest::collection::vec(prop_oneof![0x20u8..=0xFF, Just(CR)], 0..600)
    }

    proptest! {
        /// encode then decode is the identity.
        #[test]
        fn encode_decode_identity(n in 0u8..8, etb in any::<bool>(), text in arb_text()) {
            let kind = if etb { FrameKind::Intermediate } else { FrameKind::Final };
            let f = Frame::new(n, kind, text);
            let mut d = FrameDecoder::default();
            prop_assert_eq!(d.decode_to_vec(&f.to_bytes()), vec![Item::Frame(f)]);
        }

        /// Every split point of a stream gives the same items.
        #[test]
        fn split_reads_give_same_items(text in arb_text(), cut in 0usize..700) {
            let mut bytes = vec![ENQ];
            bytes.extend(Frame::new(1, FrameKind::Intermediate, text.clone()).to_bytes());
            bytes.extend_from_slice(b"junk");
            bytes.extend(Frame::new(2, FrameKind::Final, text).to_bytes());
            bytes.push(EOT);
            let whole = FrameDecoder::default().decode_to_vec(&bytes);
            let cut = cut % (bytes.len() + 1);
            let mut d = FrameDecoder::default();
            let mut items = d.decode_to_vec(&bytes[..cut]);
            items.extend(d.decode_to_vec(&bytes[cut..]));
            prop_assert_eq!(items, whole);
        }

        /// A frame with any single byte changed is never accepted as the original.
        #[test]
        fn corrupted_frame_never_accepted(text in arb_text(), pos in any::<usize>(), flip in 1u8..=255) {
            let f = Frame::new(3, FrameKind::Final, text);
            let mut bytes = f.to_bytes();
            let len = bytes.len() - 2; // the trailer is not protected and may be anything
            let pos = pos % len;
            bytes[pos] ^= flip;
            let mut d = FrameDecoder::default();
            let items = d.decode_to_vec(&bytes);
            prop_assert!(!items.contains(&Item::Frame(f)));
        }

        /// Arbitrary bytes never panic and never grow the buffer past the limit.
        #[test]
        fn arbitrary_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut d = FrameDecoder::new(100);
            for item in d.decode_to_vec(&bytes) {
                if let Item::Frame(f) = item { prop_assert!(f.text.len() <= 100); }
            }
        }
    }
}
