//! Offline decoding of a captured byte stream: what `labagent decode` and the corpus
//! conformance tests run.
//!
//! A capture is either *framed* (real E1381 bytes: ENQ, STX..ETX frames, EOT) or *bare* (records
//! only, the envelope already stripped by whoever saved it). Framed captures go through the same
//! [`FrameDecoder`] as the live link, and frame texts are cut into messages by the same assembler.
//! Frame numbers are not checked here: a capture may start mid-session, and what matters offline
//! is that each frame's checksum verifies.

use crate::chars::{CR, STX};
use crate::frame::{Control, FrameDecoder, FrameError, FrameKind, Item};
use crate::link::MessageEnd;
use crate::link::assembler::{Assembler, Found};

/// A damaged spot in a capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// Byte offset in the capture of the STX of the damaged frame.
    pub offset: u64,
    /// What was wrong.
    pub error: FrameError,
}

/// One message found in a capture, with the frame statistics that belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// The message text (records with their original terminators).
    pub text: Vec<u8>,
    /// Frames whose text went into this message (0 for a bare capture).
    pub frames: usize,
    /// Damaged frames met while this message was being assembled.
    pub errors: Vec<CaptureError>,
    /// How the message ended.
    pub end: MessageEnd,
}

/// The result of decoding a capture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capture {
    /// Whether E1381 framing was found.
    pub framed: bool,
    /// The messages, in order.
    pub messages: Vec<CapturedMessage>,
    /// Damaged frames after the last message.
    pub stray_errors: Vec<CaptureError>,
    /// Frames that verified.
    pub frames: u64,
    /// Junk bytes outside frames.
    pub junk_bytes: u64,
}

impl Capture {
    /// Every damaged frame in the capture, in order.
    pub fn errors(&self) -> impl Iterator<Item = &CaptureError> {
        self.messages
            .iter()
            .flat_map(|m| m.errors.iter())
            .chain(self.stray_errors.iter())
    }
}

/// True when the bytes carry E1381 framing (an STX followed by a frame-number digit).
pub fn is_framed(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .any(|w| w[0] == STX && (b'0'..=b'7').contains(&w[1]))
}

/// Decodes a capture. `max_text` bounds frame text as on a live link.
pub fn decode(bytes: &[u8], max_text: usize) -> Capture {
    let mut out = Collector::default();
    if is_framed(bytes) {
        out.capture.framed = true;
        let mut decoder = FrameDecoder::new(max_text);
        decoder.decode(bytes, |item| out.item(item));
        let stats = decoder.stats();
        out.capture.frames = stats.frames;
        out.capture.junk_bytes = stats.junk_bytes;
    } else {
        let found = out.asm.push(bytes, true);
        out.take(found);
    }
    let found: Vec<Found> = out.asm.finish().into_iter().collect();
    out.take(found);
    out.capture.stray_errors = std::mem::take(&mut out.errors);
    out.capture
}

#[derive(Default)]
struct Collector {
    asm: Assembler,
    capture: Capture,
    frames: usize,
    errors: Vec<CaptureError>,
}

impl Collector {
    fn item(&mut self, item: Item) {
        match item {
            Item::Frame(frame) => {
                self.frames += 1;
                let mut found = self.asm.push(&frame.text, false);
                // An ETX frame ends its record even without CR; keep records apart in the text.
                if frame.kind == FrameKind::Final && frame.text.last() != Some(&CR) {
                    found.extend(self.asm.push(&[CR], false));
                }
                self.take(found);
            }
            Item::Bad { error, offset, .. } => self.errors.push(CaptureError { offset, error }),
            Item::Control(Control::Eot) => {
                let found: Vec<Found> = self.asm.finish().into_iter().collect();
                self.take(found);
            }
            Item::Control(_) => {}
        }
    }

    fn take(&mut self, found: Vec<Found>) {
        for f in found {
            self.capture.messages.push(CapturedMessage {
                text: self.asm.text()[f.start..f.end].to_vec(),
                frames: std::mem::take(&mut self.frames),
                errors: std::mem::take(&mut self.errors),
                end: f.how,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chars::{ENQ, EOT};
    use crate::frame::{Frame, frames_for_message};

    #[test]
    fn framed_capture_with_damage_names_the_offset() {
        let text = b"H|\\^&\rP|1\rL|1|N\r";
        let mut bytes = vec![ENQ];
        let fs = frames_for_message(text, 1, 240);
        let first = fs[0].to_bytes();
        bytes.extend(&first);
        let bad_at = bytes.len() as u64;
        let mut bad = fs[1].to_bytes();
        bad[2] = b'X';
        bytes.extend(bad);
        bytes.extend(fs[1].to_bytes());
        bytes.extend(fs[2].to_bytes());
        bytes.push(EOT);
        let c = decode(&bytes, 1024);
        assert!(c.framed);
        assert_eq!(c.messages.len(), 1);
        assert_eq!(c.messages[0].text, text);
        assert_eq!(c.messages[0].frames, 3);
        assert_eq!(c.messages[0].errors.len(), 1);
        assert_eq!(c.messages[0].errors[0].offset, bad_at);
        assert!(matches!(
            c.messages[0].errors[0].error,
            FrameError::Checksum { .. }
        ));
    }

    #[test]
    fn bare_capture_with_lf_and_several_messages() {
        let c = decode(b"H|\\^&\nR|1\nL|1\nH|\\^&\nR|2\n", 1024);
        assert!(!c.framed);
        assert_eq!(c.messages.len(), 2);
        assert_eq!(c.messages[1].end, MessageEnd::Eot);
    }

    #[test]
    fn etx_without_cr_keeps_records_apart() {
        let mut bytes = Vec::new();
        for (i, t) in [&b"H|\\^&"[..], b"L|1"].iter().enumerate() {
            bytes.extend(Frame::new(i as u8 + 1, FrameKind::Final, t.to_vec()).to_bytes());
        }
        let c = decode(&bytes, 1024);
        assert_eq!(c.messages[0].text, b"H|\\^&\rL|1\r");
    }
}
