//! MLLP stream decoder: any split of the input gives the same items as one read, every
//! message stays within the limit, and the buffer never holds more than the limit plus one
//! read.
#![no_main]

use bytes::BytesMut;
use labagent::mllp::{MllpDecoder, MllpItem};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 256;

fn run(chunks: &[&[u8]]) -> Vec<MllpItem> {
    let mut decoder = MllpDecoder::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(item) = decoder.decode(&mut buf).expect("decoding never fails on input") {
            if let MllpItem::Message(m) = &item {
                assert!(m.len() <= LIMIT);
            }
            items.push(item);
        }
        assert!(buf.len() <= LIMIT + 1 + chunk.len(), "buffer grew to {}", buf.len());
    }
    if let Some(item) = decoder.decode_eof(&mut buf).expect("eof") {
        items.push(item);
    }
    items
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let cut = usize::from(cut) % (body.len() + 1);
    let whole = run(&[body]);
    let split = run(&[&body[..cut], &body[cut..]]);
    // Junk is reported when the next block starts or at the end, so counts can merge across a
    // split; messages and discards must match exactly.
    let messages = |items: &[MllpItem]| {
        items
            .iter()
            .filter(|i| !matches!(i, MllpItem::Junk { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(messages(&whole), messages(&split));
});
