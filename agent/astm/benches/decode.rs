//! Decode throughput of framed ASTM on one core (issue target: >= 200 MB/s), with a reference
//! measured in the same run: a plain byte-sum over the same buffer (the least work any frame
//! decoder must do, since every byte enters a checksum).

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use labagent_astm::chars::{ENQ, EOT};
use labagent_astm::frame::{FrameDecoder, frames_for_message};
use labagent_astm::link::{Event, Link, LinkConfig};
use std::time::Instant;

/// About 4 MiB of sessions: ENQ, a CBC-sized message with one long record, EOT.
fn stream() -> Vec<u8> {
    let mut text = b"H|\\^&|||XN-550^00-19^14718||||||||E1394-97\rP|1|||PID-1|Doe^Jane\r".to_vec();
    text.extend_from_slice(b"O|1||1^1^SPEC-1^B|");
    for _ in 0..40 {
        text.extend_from_slice(b"^^^^WBC\\");
    }
    text.extend_from_slice(b"|||||||N\r");
    for i in 0..30 {
        text.extend_from_slice(
            format!("R|{i}|^^^^T{i}^1|{i}.42|10*3/uL||N||||LAB||20261125101500\r").as_bytes(),
        );
    }
    text.extend_from_slice(b"L|1|N\r");
    let mut session = vec![ENQ];
    for f in frames_for_message(&text, 1, 240) {
        f.encode(&mut session);
    }
    session.push(EOT);
    let mut out = Vec::new();
    while out.len() < 4 << 20 {
        out.extend_from_slice(&session);
    }
    out
}

fn bench(c: &mut Criterion) {
    let bytes = stream();
    let mut group = c.benchmark_group("astm");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("reference_byte_sum", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for &x in black_box(&bytes) {
                sum = sum.wrapping_add(u32::from(x));
            }
            sum
        })
    });
    group.bench_function("frame_decoder", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::default();
            let mut frames = 0usize;
            d.decode(black_box(&bytes), |_| frames += 1);
            frames
        })
    });
    group.bench_function("link_receiver", |b| {
        b.iter(|| {
            let t = Instant::now();
            let mut link = Link::new(LinkConfig::default());
            let mut messages = 0usize;
            for chunk in black_box(&bytes).chunks(4096) {
                link.handle_input(chunk, t);
                while let Some(e) = link.poll_event() {
                    if let Event::Message(m) = e {
                        link.commit(m.id, t);
                        messages += 1;
                    }
                }
                let _ = link.poll_transmit();
            }
            messages
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
