//! MLLP framing: a bounded, resynchronising stream decoder and a frame encoder.
//!
//! HL7 v2 travels over TCP inside MLLP blocks (HL7 v2.5.1 Appendix C, MLLP release 1):
//!
//! ```text
//! <VT 0x0B> payload <FS 0x1C> <CR 0x0D>
//! ```
//!
//! There is no length and no checksum, so a receiver must buffer across reads until the end
//! block. MLLP release 2 adds one-byte *commit* blocks `<VT><ACK 0x06><FS><CR>` and
//! `<VT><NAK 0x15><FS><CR>`.
//!
//! # Why our own decoder
//!
//! `hl7-mllp` 0.2 encodes frames soundly and we reuse its constants, but its streaming reader
//! stalls for good after one stray byte before a start block and buffers without limit. This
//! module is a sans-I/O decoder (no sockets, files or clocks) that:
//!
//! * **never stalls**: bytes outside a block are skipped and counted, and reported once as
//!   [`MllpItem::Junk`] when the next start block (or the end of the stream) arrives;
//! * **is bounded**: a payload longer than `max_message` is *not* buffered; its bytes are
//!   dropped as they arrive and it is reported as [`MllpItem::TooLarge`] when its end block
//!   arrives. The buffer handed to [`MllpDecoder::decode`] never holds more than
//!   `max_message + 1` unconsumed bytes after a call, and when the decoder has to grow that
//!   buffer it grows it to at most `max_message + 1 + READ_SLACK` bytes of capacity;
//! * **resynchronises**: a start block inside an open block means the sender gave up on the
//!   first one (or we joined mid-stream); the partial payload is reported as
//!   [`MllpItem::Discarded`] with [`DiscardReason::NestedStart`] and a new block starts;
//! * **tolerates a missing CR**: the block ends at FS. A CR immediately after the FS is
//!   consumed as part of the end block; any other byte after the FS is treated as fresh input
//!   (junk, or the VT of the next block). Many senders omit the CR, and waiting for the byte
//!   after FS before delivering the message would deadlock a sender that waits for our ACK,
//!   so the message is delivered as soon as its FS arrives.
//!
//! The decoder's output depends only on the byte sequence, never on how it was split into
//! reads (tested at every split point and by property tests).
//!
//! Peer input never produces a [`MllpError`]: every anomaly is an item the caller can count,
//! log (without patient data) and, where appropriate, answer with a negative ACK. The error
//! type exists for transport failures ([`MllpError::Io`]) and for refusing to encode a payload
//! that would corrupt the framing ([`MllpError::PayloadContainsDelimiter`]).
//!
//! The codec plugs into [`tokio_util::codec::Framed`] through [`MllpCodec`].

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start of block: vertical tab (HL7 v2.5.1 Appendix C.4.3).
pub const VT: u8 = hl7_mllp::VT;
/// End of block: file separator (HL7 v2.5.1 Appendix C.4.3).
pub const FS: u8 = hl7_mllp::FS;
/// Carriage return that follows FS to close a block (HL7 v2.5.1 Appendix C.4.3).
pub const CR: u8 = hl7_mllp::CR;
/// Payload of an MLLP release 2 commit acknowledgement block.
pub const COMMIT_ACK: u8 = 0x06;
/// Payload of an MLLP release 2 commit negative-acknowledgement block.
pub const COMMIT_NAK: u8 = 0x15;

/// Default largest payload accepted, in bytes (4 MiB).
///
/// Analyser results with base64 histograms are tens of kilobytes; an ORU with an embedded
/// PDF report can reach a few megabytes. Each connection may hold up to this much memory.
pub const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Spare capacity, in bytes, the decoder keeps in a buffer holding a partial block, so the
/// next read has room without the caller's buffer doubling past the bound.
pub const READ_SLACK: usize = 8 * 1024;

/// Errors of the MLLP codec.
///
/// Malformed peer input is never an error; see [`MllpItem`].
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// Reading from or writing to the underlying transport failed.
    #[error("MLLP transport I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A payload handed to the encoder contains a start (VT) or end (FS) block byte, so the
    /// receiver would split or discard it. HL7 ER7 never contains these bytes unescaped.
    #[error("payload byte 0x{byte:02X} at offset {offset} is an MLLP block delimiter")]
    PayloadContainsDelimiter {
        /// The offending byte (VT 0x0B or FS 0x1C).
        byte: u8,
        /// Its offset in the payload.
        offset: usize,
    },
}

/// Why a partial block was discarded without being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// A start block (VT) arrived while a block was open: the sender restarted.
    NestedStart,
    /// The stream ended while a block was open.
    Truncated,
}

/// One unit of decoded input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MllpItem {
    /// A complete HL7 payload, without the VT, FS and CR framing bytes.
    Message(Bytes),
    /// An MLLP release 2 commit acknowledgement block `<VT><ACK><FS><CR>`.
    CommitAck,
    /// An MLLP release 2 commit negative acknowledgement block `<VT><NAK><FS><CR>`.
    CommitNak,
    /// Bytes received outside any block, skipped. Reported once per run of such bytes, when
    /// the next start block or the end of the stream arrives.
    Junk {
        /// Number of bytes skipped.
        bytes: usize,
    },
    /// A partial block that was dropped.
    Discarded {
        /// Why it was dropped.
        reason: DiscardReason,
        /// Payload bytes dropped (framing bytes not counted).
        bytes: usize,
    },
    /// A block whose payload exceeded the decoder's `max_message`; its bytes were dropped as
    /// they arrived. Reported at its end block, at a nested start block, or at the end of the
    /// stream.
    TooLarge {
        /// Payload bytes dropped (framing bytes not counted).
        bytes: usize,
    },
}

/// Where the decoder is between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside a block; `junk` bytes skipped so far and not yet reported.
    Idle { junk: usize },
    /// Inside a block. The buffer starts with the payload received so far (the VT has been
    /// consumed); its first `scanned` bytes are known to hold no VT or FS.
    Open { scanned: usize },
    /// Inside a block that exceeded `max_message`; `bytes` payload bytes dropped so far.
    Skipping { bytes: usize },
    /// Just after an FS: a CR here belongs to the end block.
    AfterEnd,
}

/// Bounded, resynchronising MLLP stream decoder. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    max_message: usize,
    state: State,
}

impl MllpDecoder {
    /// Creates a decoder that accepts payloads of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            state: State::Idle { junk: 0 },
        }
    }

    /// The largest payload, in bytes, this decoder delivers.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Whether the decoder is inside a block (a partial message is pending or being skipped).
    pub fn in_block(&self) -> bool {
        matches!(self.state, State::Open { .. } | State::Skipping { .. })
    }

    /// True while the current block is over the limit and being skipped: a receiver can refuse
    /// it at once instead of waiting for an end block that may never come.
    pub fn is_skipping(&self) -> bool {
        matches!(self.state, State::Skipping { .. })
    }

    /// Decodes the next item from `src`, consuming the bytes it used.
    ///
    /// Returns `Ok(None)` when `src` holds no complete item yet; call again after appending
    /// more input. Bytes that can never be part of an item (junk, oversized payloads) are
    /// consumed even when `Ok(None)` is returned, so `src` stays bounded. Never fails on peer
    /// input.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        loop {
            match self.state {
                State::AfterEnd => {
                    let Some(&first) = src.first() else {
                        return Ok(None);
                    };
                    if first == CR {
                        src.advance(1);
                    }
                    // Any other byte is fresh input (the sender omitted the CR).
                    self.state = State::Idle { junk: 0 };
                }
                State::Idle { junk } => match memchr(VT, src) {
                    Some(i) => {
                        src.advance(i + 1);
                        self.state = State::Open { scanned: 0 };
                        let junk = junk.saturating_add(i);
                        if junk > 0 {
                            return Ok(Some(MllpItem::Junk { bytes: junk }));
                        }
                    }
                    None => {
                        self.state = State::Idle {
                            junk: junk.saturating_add(src.len()),
                        };
                        src.clear();
                        return Ok(None);
                    }
                },
                State::Open { scanned } => {
                    // A payload of `max_message` bytes is followed by its FS at index
                    // `max_message`, so look at most that far.
                    let window_end = src.len().min(self.max_message.saturating_add(1));
                    let window = src.get(scanned..window_end).unwrap_or_default();
                    match find_delimiter(window) {
                        Some((offset, byte)) => {
                            let end = scanned + offset;
                            if byte == FS {
                                let payload = src.split_to(end).freeze();
                                src.advance(1);
                                self.state = State::AfterEnd;
                                return Ok(Some(match payload.as_ref() {
                                    [COMMIT_ACK] => MllpItem::CommitAck,
                                    [COMMIT_NAK] => MllpItem::CommitNak,
                                    _ => MllpItem::Message(payload),
                                }));
                            }
                            // A nested VT: drop the partial payload and start anew.
                            src.advance(end + 1);
                            self.state = State::Open { scanned: 0 };
                            return Ok(Some(MllpItem::Discarded {
                                reason: DiscardReason::NestedStart,
                                bytes: end,
                            }));
                        }
                        None if src.len() > self.max_message => {
                            // `max_message + 1` payload bytes and no end: too large.
                            let dropped = self.max_message.saturating_add(1);
                            src.advance(dropped);
                            self.state = State::Skipping { bytes: dropped };
                        }
                        None => {
                            self.state = State::Open { scanned: src.len() };
                            ensure_room(src, self.max_message);
                            return Ok(None);
                        }
                    }
                }
                State::Skipping { bytes } => match find_delimiter(src) {
                    Some((i, byte)) => {
                        src.advance(i + 1);
                        self.state = if byte == FS {
                            State::AfterEnd
                        } else {
                            State::Open { scanned: 0 }
                        };
                        return Ok(Some(MllpItem::TooLarge {
                            bytes: bytes.saturating_add(i),
                        }));
                    }
                    None => {
                        self.state = State::Skipping {
                            bytes: bytes.saturating_add(src.len()),
                        };
                        src.clear();
                        return Ok(None);
                    }
                },
            }
        }
    }

    /// Decodes what is left when the stream has ended.
    ///
    /// Call repeatedly until it returns `Ok(None)`. Reports pending junk, and a block left
    /// open as [`MllpItem::Discarded`] with [`DiscardReason::Truncated`] (or
    /// [`MllpItem::TooLarge`] if it had already exceeded the limit). Afterwards `src` is empty
    /// and the decoder is ready for a new stream.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        let item = match self.state {
            State::Idle { junk: 0 } | State::AfterEnd => None,
            State::Idle { junk } => Some(MllpItem::Junk { bytes: junk }),
            State::Open { .. } => Some(MllpItem::Discarded {
                reason: DiscardReason::Truncated,
                bytes: src.len(),
            }),
            State::Skipping { bytes } => Some(MllpItem::TooLarge { bytes }),
        };
        src.clear();
        self.state = State::Idle { junk: 0 };
        Ok(item)
    }
}

impl Default for MllpDecoder {
    /// A decoder with [`DEFAULT_MAX_MESSAGE`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Decoder for MllpDecoder {
    type Item = MllpItem;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        MllpDecoder::decode(self, src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        MllpDecoder::decode_eof(self, src)
    }
}

/// MLLP frame encoder: writes `VT payload FS CR`.
///
/// Refuses payloads containing VT or FS. (`hl7_mllp::MllpFrame::encode_into` is not used
/// because it clears the destination, which would drop frames queued before this one.)
#[derive(Debug, Clone, Copy, Default)]
pub struct MllpEncoder;

impl Encoder<&[u8]> for MllpEncoder {
    type Error = MllpError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        check_payload(payload)?;
        dst.reserve(payload.len().saturating_add(3));
        dst.extend_from_slice(&[VT]);
        dst.extend_from_slice(payload);
        dst.extend_from_slice(&[FS, CR]);
        Ok(())
    }
}

impl Encoder<Bytes> for MllpEncoder {
    type Error = MllpError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), MllpError> {
        Encoder::<&[u8]>::encode(self, payload.as_ref(), dst)
    }
}

/// Frames one payload as `VT payload FS CR`.
///
/// Fails with [`MllpError::PayloadContainsDelimiter`] if the payload holds VT or FS.
pub fn frame(payload: &[u8]) -> Result<Bytes, MllpError> {
    check_payload(payload)?;
    Ok(hl7_mllp::MllpFrame::encode(payload))
}

/// Decoder and encoder together, for [`tokio_util::codec::Framed`].
#[derive(Debug, Clone, Default)]
pub struct MllpCodec {
    decoder: MllpDecoder,
    encoder: MllpEncoder,
}

impl MllpCodec {
    /// Creates a codec whose decoder accepts payloads of at most `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            decoder: MllpDecoder::new(max_message),
            encoder: MllpEncoder,
        }
    }

    /// The decoder half.
    pub fn decoder(&self) -> &MllpDecoder {
        &self.decoder
    }
}

impl Decoder for MllpCodec {
    type Item = MllpItem;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        self.decoder.decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MllpItem>, MllpError> {
        self.decoder.decode_eof(src)
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        self.encoder.encode(payload, dst)
    }
}

impl Encoder<Bytes> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), MllpError> {
        self.encoder.encode(payload, dst)
    }
}

/// Refuses payloads that contain a block delimiter.
fn check_payload(payload: &[u8]) -> Result<(), MllpError> {
    match find_delimiter(payload) {
        Some((offset, byte)) => Err(MllpError::PayloadContainsDelimiter { byte, offset }),
        None => Ok(()),
    }
}

/// Position of the first `needle` in `haystack`.
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Position and value of the first VT or FS in `haystack`.
fn find_delimiter(haystack: &[u8]) -> Option<(usize, u8)> {
    haystack
        .iter()
        .position(|&b| b == VT || b == FS)
        .and_then(|i| haystack.get(i).map(|&b| (i, b)))
}

/// Makes sure a buffer holding a partial block (`src.len() <= max_message`) has at least
/// [`READ_SLACK`] spare bytes, growing it geometrically but never past
/// `max_message + 1 + READ_SLACK`. With that spare room the reader's own `reserve` calls
/// do not reallocate (and double) the buffer.
fn ensure_room(src: &mut BytesMut, max_message: usize) {
    let spare = src.capacity() - src.len();
    if spare >= READ_SLACK {
        return;
    }
    let limit = max_message.saturating_add(1).saturating_add(READ_SLACK);
    let want = src
        .capacity()
        .saturating_mul(2)
        .max(src.len().saturating_add(READ_SLACK))
        .min(limit);
    if want <= src.capacity() {
        return;
    }
    let mut grown = BytesMut::with_capacity(want);
    grown.extend_from_slice(src);
    *src = grown;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_core::Stream;
    use futures_sink::Sink;
    use proptest::prelude::*;
    use std::pin::Pin;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{Framed, FramedRead};

    /// Decodes `input` fed in the given chunks, finishing with `decode_eof`.
    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> Vec<MllpItem> {
        let mut dec = MllpDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(item) = dec.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        while let Some(item) = dec.decode_eof(&mut buf).unwrap() {
            items.push(item);
        }
        assert!(buf.is_empty());
        items
    }

    fn decode_all(max: usize, input: &[u8]) -> Vec<MllpItem> {
        decode_chunks(max, &[input])
    }

    fn msg(payload: &[u8]) -> MllpItem {
        MllpItem::Message(Bytes::copy_from_slice(payload))
    }

    /// A stream exercising every decoder path, with max_message = 16.
    fn tricky_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(b"\r\njunk");
        s.extend_from_slice(b"\x0bMSH|1\rPID|\r\x1c\r");
        s.extend_from_slice(b"\x0bpartial\x0bMSH|2\x1c\r");
        s.extend_from_slice(b"\x0bno-cr\x1c\x0bnext\x1c");
        s.extend_from_slice(b"x\x0b\x06\x1c\r\x0b\x15\x1c\r");
        s.extend_from_slice(b"\x0bthis payload is far too long\x1c\r");
        s.extend_from_slice(b"\x0b0123456789abcdef\x1c\r"); // exactly 16: accepted
        s.extend_from_slice(b"\x0b0123456789abcdefg\x1c\r"); // 17: too large
        s.extend_from_slice(b"\x0boversized and then restarted\x0bok\x1c\r");
        s.extend_from_slice(b"\x1c\r\x0b\x1c\r"); // stray end block, then an empty block
        s.extend_from_slice(b"\x0btruncated");
        s
    }

    fn tricky_expected() -> Vec<MllpItem> {
        vec![
            MllpItem::Junk { bytes: 6 },
            msg(b"MSH|1\rPID|\r"),
            MllpItem::Discarded {
                reason: DiscardReason::NestedStart,
                bytes: 7,
            },
            msg(b"MSH|2"),
            msg(b"no-cr"),
            msg(b"next"),
            MllpItem::Junk { bytes: 1 },
            MllpItem::CommitAck,
            MllpItem::CommitNak,
            MllpItem::TooLarge { bytes: 28 },
            msg(b"0123456789abcdef"),
            MllpItem::TooLarge { bytes: 17 },
            MllpItem::TooLarge { bytes: 28 },
            msg(b"ok"),
            MllpItem::Junk { bytes: 2 },
            msg(b""),
            MllpItem::Discarded {
                reason: DiscardReason::Truncated,
                bytes: 9,
            },
        ]
    }

    #[test]
    fn tricky_stream_whole() {
        assert_eq!(decode_all(16, &tricky_stream()), tricky_expected());
    }

    #[test]
    fn split_at_every_point_gives_same_items() {
        let input = tricky_stream();
        let expected = tricky_expected();
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(decode_chunks(16, &[a, b]), expected, "split at {i}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_chunks(16, &bytes), expected, "byte by byte");
    }

    #[test]
    fn junk_before_start_is_skipped_and_counted() {
        let items = decode_all(1024, b"garbage\x00\xff\x0bMSH|x\x1c\r");
        assert_eq!(items, vec![MllpItem::Junk { bytes: 9 }, msg(b"MSH|x")]);
        // Junk alone: reported at end of stream, never stalls the decoder.
        let mut dec = MllpDecoder::new(1024);
        let mut buf = BytesMut::from(&b"noise"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "junk is consumed, not buffered");
        buf.extend_from_slice(b"\x0bA\x1c\r");
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(MllpItem::Junk { bytes: 5 })
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(msg(b"A")));
    }

    #[test]
    fn nested_start_discards_partial() {
        let items = decode_all(1024, b"\x0bMSH|first\x0b\x0bMSH|second\x1c\r");
        assert_eq!(
            items,
            vec![
                MllpItem::Discarded {
                    reason: DiscardReason::NestedStart,
                    bytes: 9
                },
                MllpItem::Discarded {
                    reason: DiscardReason::NestedStart,
                    bytes: 0
                },
                msg(b"MSH|second"),
            ]
        );
    }

    #[test]
    fn fs_without_cr_ends_message_immediately() {
        // The message is delivered before the byte after FS arrives (no deadlock with a
        // sender that omits CR and waits for our ACK).
        let mut dec = MllpDecoder::new(1024);
        let mut buf = BytesMut::from(&b"\x0bMSH|a\x1c"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(msg(b"MSH|a")));
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        // Next block starts straight after the FS.
        buf.extend_from_slice(b"\x0bMSH|b\x1c\r");
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(msg(b"MSH|b")));
        // A CR after FS belongs to the end block, not junk.
        assert_eq!(dec.decode_eof(&mut buf).unwrap(), None);
        // FS followed by LF: the LF is junk.
        let items = decode_all(1024, b"\x0bA\x1c\n\x0bB\x1c\r");
        assert_eq!(
            items,
            vec![msg(b"A"), MllpItem::Junk { bytes: 1 }, msg(b"B")]
        );
    }

    #[test]
    fn many_messages_in_one_read() {
        let mut input = Vec::new();
        for i in 0..500 {
            input.extend_from_slice(&frame(format!("MSH|{i}\r").as_bytes()).unwrap());
        }
        let items = decode_all(1024, &input);
        assert_eq!(items.len(), 500);
        for (i, item) in items.iter().enumerate() {
            assert_eq!(item, &msg(format!("MSH|{i}\r").as_bytes()));
        }
    }

    #[test]
    fn release2_commit_blocks() {
        let items = decode_all(1024, b"\x0b\x06\x1c\r\x0b\x15\x1c\r\x0b\x06\x06\x1c\r");
        assert_eq!(
            items,
            vec![MllpItem::CommitAck, MllpItem::CommitNak, msg(b"\x06\x06")]
        );
    }

    #[test]
    fn exact_limit_accepted_one_more_refused() {
        assert_eq!(decode_all(4, b"\x0babcd\x1c\r"), vec![msg(b"abcd")]);
        assert_eq!(
            decode_all(4, b"\x0babcde\x1c\r"),
            vec![MllpItem::TooLarge { bytes: 5 }]
        );
        assert_eq!(
            decode_all(0, b"\x0b\x1c\r\x0ba\x1c\r"),
            vec![msg(b""), MllpItem::TooLarge { bytes: 1 }]
        );
    }

    #[test]
    fn ten_megabytes_without_end_block_stays_bounded() {
        const MAX: usize = 64 * 1024;
        let bound = MAX + 1 + READ_SLACK;
        let mut dec = MllpDecoder::new(MAX);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[VT]);
        let chunk = vec![b'A'; 1000];
        let mut total = 0;
        while total < 10 * 1024 * 1024 {
            // Mimic a reader: make room for one byte, then fill part of the spare space.
            buf.reserve(1);
            let room = (buf.capacity() - buf.len()).min(chunk.len());
            buf.extend_from_slice(&chunk[..room]);
            total += room;
            assert_eq!(dec.decode(&mut buf).unwrap(), None);
            assert!(buf.len() <= MAX + 1, "len {}", buf.len());
            assert!(buf.capacity() <= bound, "capacity {}", buf.capacity());
            assert!(dec.in_block());
        }
        buf.extend_from_slice(b"\x1c\r\x0bMSH|ok\x1c\r");
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            Some(MllpItem::TooLarge { bytes: total })
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(msg(b"MSH|ok")));
    }

    #[tokio::test]
    async fn ten_megabytes_through_framed_read_stays_bounded() {
        const MAX: usize = 64 * 1024;
        const TOTAL: usize = 10 * 1024 * 1024;
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let writer = tokio::spawn(async move {
            tx.write_all(&[VT]).await.unwrap();
            let chunk = vec![b'Z'; 64 * 1024];
            for _ in 0..TOTAL / chunk.len() {
                tx.write_all(&chunk).await.unwrap();
            }
            tx.write_all(b"\x1c\r\x0bMSH|after\x1c\r").await.unwrap();
        });
        let mut framed = FramedRead::new(rx, MllpDecoder::new(MAX));
        assert_eq!(
            next(&mut framed).await,
            Some(MllpItem::TooLarge { bytes: TOTAL })
        );
        assert!(
            framed.read_buffer().capacity() <= MAX + 1 + READ_SLACK,
            "capacity {}",
            framed.read_buffer().capacity()
        );
        assert_eq!(next(&mut framed).await, Some(msg(b"MSH|after")));
        writer.await.unwrap();
        assert_eq!(next(&mut framed).await, None);
    }

    #[test]
    fn encoder_frames_and_refuses_delimiters() {
        let mut enc = MllpEncoder;
        let mut dst = BytesMut::from(&b"queued"[..]);
        enc.encode(&b"MSH|x\r"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"queued\x0bMSH|x\r\x1c\r", "queued bytes kept");
        let err = enc.encode(&b"ab\x1ccd"[..], &mut dst).unwrap_err();
        assert!(matches!(
            err,
            MllpError::PayloadContainsDelimiter {
                byte: 0x1C,
                offset: 2
            }
        ));
        assert!(matches!(
            frame(b"\x0b"),
            Err(MllpError::PayloadContainsDelimiter {
                byte: 0x0B,
                offset: 0
            })
        ));
        assert_eq!(&frame(b"MSH|").unwrap()[..], b"\x0bMSH|\x1c\r");
    }

    async fn next<S>(s: &mut S) -> Option<MllpItem>
    where
        S: Stream<Item = Result<MllpItem, MllpError>> + Unpin,
    {
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx))
            .await
            .map(|r| r.unwrap())
    }

    async fn send<S>(s: &mut S, payload: &'static [u8])
    where
        S: Sink<&'static [u8], Error = MllpError> + Unpin,
    {
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_ready(cx))
            .await
            .unwrap();
        Pin::new(&mut *s).start_send(payload).unwrap();
        std::future::poll_fn(|cx| Pin::new(&mut *s).poll_flush(cx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn socket_round_trip_with_framed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(sock, MllpCodec::new(1024));
            let mut seen = Vec::new();
            while let Some(item) = next(&mut framed).await {
                match item {
                    MllpItem::Message(m) => {
                        seen.push(MllpItem::Message(m));
                        send(&mut framed, b"MSH|ACK\rMSA|AA|1\r").await;
                    }
                    other => seen.push(other),
                }
            }
            seen
        });
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut framed = Framed::new(sock, MllpCodec::new(1024));
        // Junk then a message, written raw to prove resynchronisation over a socket.
        framed.get_mut().write_all(b"\r\n").await.unwrap();
        send(&mut framed, b"MSH|1\rOBX|1\r").await;
        assert_eq!(next(&mut framed).await, Some(msg(b"MSH|ACK\rMSA|AA|1\r")));
        send(&mut framed, b"MSH|2\r").await;
        assert_eq!(next(&mut framed).await, Some(msg(b"MSH|ACK\rMSA|AA|1\r")));
        framed.get_mut().shutdown().await.unwrap();
        drop(framed);
        assert_eq!(
            server.await.unwrap(),
            vec![
                MllpItem::Junk { bytes: 2 },
                msg(b"MSH|1\rOBX|1\r"),
                msg(b"MSH|2\r"),
            ]
        );
    }

    /// Bytes biased towards the delimiters so every path is visited.
    fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(VT),
                3 => Just(FS),
                3 => Just(CR),
                1 => Just(COMMIT_ACK),
                1 => Just(COMMIT_NAK),
                8 => Just(b'A'),
                1 => any::<u8>(),
            ],
            0..200,
        )
    }

    proptest! {
        #[test]
        fn any_split_gives_same_items(
            input in stream_strategy(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            max in 0usize..24,
        ) {
            let whole = decode_all(max, &input);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&input[start..p]);
                start = p;
            }
            chunks.push(&input[start..]);
            prop_assert_eq!(decode_chunks(max, &chunks), whole);
        }

        #[test]
        fn bytes_are_accounted_and_bounded(input in stream_strategy(), max in 0usize..24) {
            let items = decode_all(max, &input);
            let mut counted = 0usize;
            let mut too_large = 0usize;
            for item in &items {
                counted += match item {
                    MllpItem::Message(m) => {
                        prop_assert!(m.len() <= max);
                        prop_assert!(!m.contains(&VT) && !m.contains(&FS));
                        m.len() + 2
                    }
                    MllpItem::CommitAck | MllpItem::CommitNak => 3,
                    MllpItem::Junk { bytes } => *bytes,
                    MllpItem::Discarded { reason: DiscardReason::NestedStart, bytes } => bytes + 1,
                    MllpItem::Discarded { reason: DiscardReason::Truncated, bytes } => bytes + 1,
                    MllpItem::TooLarge { bytes } => {
                        prop_assert!(*bytes > max);
                        too_large += 1;
                        bytes + 1
                    }
                };
            }
            // Every byte is reported once, except the CR closing a block and the FS ending
            // an oversized block.
            prop_assert!(counted <= input.len());
            let closing_crs = input.windows(2).filter(|w| *w == [FS, CR]).count();
            prop_assert!(input.len() - counted <= closing_crs + too_large);
        }

        #[test]
        fn framed_payloads_round_trip(
            payloads in prop::collection::vec(
                prop::collection::vec(any::<u8>().prop_filter("no delimiters", |b| *b != VT && *b != FS), 2..40),
                0..10,
            )
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend_from_slice(&frame(p).unwrap());
            }
            let items = decode_all(64, &wire);
            let expected: Vec<MllpItem> = payloads.iter().map(|p| msg(p)).collect();
            prop_assert_eq!(items, expected);
        }
    }
}
