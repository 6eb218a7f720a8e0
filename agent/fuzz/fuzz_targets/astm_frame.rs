//! `FrameDecoder` (E1381 frames) under arbitrary bytes and arbitrary read splits.
//!
//! Input layout:
//! - byte 0: the decoder's text limit (index into `LIMITS`);
//! - byte 1: `k`, the number of chunk lengths that follow (`k % 16`);
//! - `k` bytes: chunk lengths, used cyclically to cut the rest (0 feeds an empty slice);
//! - the rest: the byte stream.
//!
//! Invariants (house rule 2: every split point gives the same items):
//! - the items of a chunked decode equal those of a single-shot decode, and so do the counters;
//! - every `Item::Frame` has a number 0-7, text within the limit and no restricted byte, and
//!   its re-encoding (`Frame::to_bytes`) decodes back to exactly that frame;
//! - every `Item::Bad` names the offset of an STX in the input, offsets never go backwards;
//! - the counters agree with the items.

#![no_main]

use labagent_astm::chars::{STX, is_restricted};
use labagent_astm::frame::{FrameDecoder, FrameError, Item};
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 8] = [
    0,
    1,
    2,
    7,
    16,
    240,
    1000,
    labagent_astm::frame::DEFAULT_MAX_TEXT,
];

fuzz_target!(|data: &[u8]| {
    let [limit_sel, k, rest @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*limit_sel) % LIMITS.len()];
    let k = usize::from(*k % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(k);

    // Single shot.
    let mut whole = FrameDecoder::new(limit);
    let items = whole.decode_to_vec(stream);

    // Chunked, with the lengths used cyclically. All-zero lengths would never advance: one shot.
    let mut chunked = FrameDecoder::new(limit);
    let mut chunked_items = Vec::new();
    if lengths.iter().all(|&l| l == 0) {
        chunked.decode(stream, |i| chunked_items.push(i));
    } else {
        let mut pos = 0;
        let mut i = 0;
        while pos < stream.len() {
            let len = usize::from(lengths[i % lengths.len()]).min(stream.len() - pos);
            chunked.decode(&stream[pos..pos + len], |it| chunked_items.push(it));
            pos += len;
            i += 1;
        }
        // A trailing empty read changes nothing.
        chunked.decode(&[], |it| chunked_items.push(it));
    }
    assert_eq!(
        chunked_items, items,
        "chunked decode differs from single shot"
    );
    assert_eq!(chunked.stats(), whole.stats());
    assert_eq!(chunked.offset(), whole.offset());
    assert_eq!(whole.offset(), stream.len() as u64);
    assert_eq!(chunked.in_frame(), whole.in_frame());

    let (mut frames, mut bad, mut checksum_errors) = (0u64, 0u64, 0u64);
    let mut last_bad_offset = 0u64;
    for item in &items {
        match item {
            Item::Frame(f) => {
                frames += 1;
                assert!(f.number < 8, "frame number {}", f.number);
                assert!(
                    f.text.len() <= limit,
                    "frame text {} bytes over the limit {limit}",
                    f.text.len()
                );
                assert!(
                    !f.text.iter().any(|&b| is_restricted(b)),
                    "restricted byte in accepted frame text"
                );
                let bytes = f.to_bytes();
                assert_eq!(bytes.len(), f.text.len() + 7);
                let again = FrameDecoder::new(limit).decode_to_vec(&bytes);
                assert_eq!(
                    again,
                    vec![item.clone()],
                    "re-encoded frame does not round-trip"
                );
            }
            Item::Bad {
                error,
                offset,
                number,
            } => {
                bad += 1;
                if matches!(error, FrameError::Checksum { .. }) {
                    checksum_errors += 1;
                }
                if let FrameError::TooLong { limit: l } = error {
                    assert_eq!(*l, limit);
                }
                if let Some(n) = number {
                    assert!(*n < 8);
                }
                let at = usize::try_from(*offset).unwrap_or(usize::MAX);
                assert_eq!(
                    stream.get(at),
                    Some(&STX),
                    "Bad offset {offset} is not an STX"
                );
                assert!(*offset >= last_bad_offset, "Bad offsets went backwards");
                last_bad_offset = *offset;
            }
            Item::Control(_) => {}
        }
    }
    let stats = whole.stats();
    assert_eq!(stats.frames, frames);
    assert_eq!(stats.bad_frames, bad);
    assert_eq!(stats.checksum_errors, checksum_errors);
});
