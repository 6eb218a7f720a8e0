//! Throughput of the ORU^R01 builder (messages/s, 20 OBX) and of the ER7 parser (bytes/s).
//! Targets on one core: >= 200,000 ORU/s built, >= 100 MB/s parsed.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use labagent_hl7::{Message, OruR01};

fn twenty_obx() -> OruR01 {
    let mut oru = common::representative();
    let template = oru.observations.clone();
    oru.observations = (0..20)
        .map(|i| {
            let mut o = template[i % template.len()].clone();
            o.code.primary.code = format!("{}-{i}", o.code.primary.code);
            o
        })
        .collect();
    oru
}

fn build(c: &mut Criterion) {
    let oru = twenty_obx();
    let mut g = c.benchmark_group("oru_build");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_20_obx", |b| {
        b.iter(|| black_box(&oru).encode().expect("valid message"))
    });
    let mut buf = String::with_capacity(8192);
    g.bench_function("encode_into_reused_20_obx", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&oru)
                .encode_into(&mut buf)
                .expect("valid message");
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let text = twenty_obx().encode().expect("valid message");
    let lf = text.replace('\r', "\n");
    let mut g = c.benchmark_group("er7_parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("parse_20_obx_cr", |b| {
        b.iter(|| Message::parse(black_box(text.as_bytes())).expect("parses"))
    });
    g.bench_function("parse_20_obx_lf", |b| {
        b.iter(|| Message::parse(black_box(lf.as_bytes())).expect("parses"))
    });
    g.finish();
}

criterion_group!(benches, build, parse);
criterion_main!(benches);
