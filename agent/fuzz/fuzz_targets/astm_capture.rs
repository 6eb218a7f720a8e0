//! Offline capture decoding (`capture::decode`, what `labagent decode` runs).
//!
//! Byte 0 picks a small frame text limit; the rest is the capture.
//!
//! Invariants:
//! - `framed` is `is_framed(input)`;
//! - framed: the frame count and the damaged frames (offsets, in order) are those of a plain
//!   `FrameDecoder` pass; the message texts appear, in order and without overlap, in the
//!   concatenated frame texts (with the CR added after an ETX frame lacking one); so their total
//!   length is at most the input length plus one byte per frame;
//! - bare: the message texts appear in the input in order without overlap; no frames counted;
//! - no message is empty, and per-message frame counts add up to at most the total.

#![no_main]

use labagent_astm::capture::{self, Capture};
use labagent_astm::chars::CR;
use labagent_astm::frame::{FrameDecoder, FrameKind, Item};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 4] = [1, 8, 64, 240];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let max_text = LIMITS[usize::from(sel) % LIMITS.len()];
    let c = capture::decode(input, max_text);
    assert_eq!(c.framed, capture::is_framed(input));

    let total: usize = c.messages.iter().map(|m| m.text.len()).sum();
    let frames_in_messages: usize = c.messages.iter().map(|m| m.frames).sum();
    assert!(frames_in_messages as u64 <= c.frames);
    assert!(
        total as u64 <= input.len() as u64 + c.frames,
        "message text {total} > input {} + frames {}",
        input.len(),
        c.frames
    );
    for m in &c.messages {
        assert!(!m.text.is_empty(), "empty message");
    }

    if c.framed {
        check_framed(input, max_text, &c);
    } else {
        assert_eq!(c.frames, 0);
        assert_eq!(frames_in_messages, 0);
        assert_eq!(c.errors().count(), 0);
        assert_in_order(input, &c);
    }
});

fn check_framed(input: &[u8], max_text: usize, c: &Capture) {
    let mut decoder = FrameDecoder::new(max_text);
    let items = decoder.decode_to_vec(input);
    let mut stream = Vec::new();
    let mut frames = 0u64;
    let mut bad_offsets = Vec::new();
    for item in &items {
        match item {
            Item::Frame(f) => {
                frames += 1;
                stream.extend_from_slice(&f.text);
                if f.kind == FrameKind::Final && f.text.last() != Some(&CR) {
                    stream.push(CR);
                }
            }
            Item::Bad { offset, .. } => bad_offsets.push(*offset),
            Item::Control(_) => {}
        }
    }
    assert_eq!(c.frames, frames);
    assert_eq!(c.junk_bytes, decoder.stats().junk_bytes);
    let offsets: Vec<u64> = c.errors().map(|e| e.offset).collect();
    assert_eq!(
        offsets, bad_offsets,
        "capture errors differ from the decoder's"
    );
    assert!(stream.len() as u64 <= input.len() as u64 + frames);
    assert_in_order(&stream, c);
}

/// Every message text is found in `hay`, each after the previous one.
fn assert_in_order(hay: &[u8], c: &Capture) {
    let mut from = 0;
    for m in &c.messages {
        let at = hay
            .get(from..)
            .and_then(|rest| {
                rest.windows(m.text.len())
                    .position(|w| w == m.text.as_slice())
            })
            .map(|p| p + from)
            .expect("message text is not a slice of the stream, in order");
        from = at + m.text.len();
    }
}
