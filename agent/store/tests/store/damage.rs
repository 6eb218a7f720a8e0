//! Damage test: 1,000 random truncations and bit flips of the tail segment, each on a fresh
//! copy. Recovery never panics, reports the damage and keeps every record before it. The tail
//! ends with preallocated zeros: a cut inside them is no damage, a flipped bit in them is.

use std::path::Path;

use labagent_store::{DamageKind, Options, Store};

/// Small preallocation steps, so that a good share of the damage lands in the zero-filled part.
fn dopts() -> Options {
    let mut o = opts(&["s"]);
    o.preallocate_bytes = 8192;
    o
}

use crate::common::*;

/// Builds a store with one tail segment; returns (segment name, bytes, record end offsets,
/// payloads, sink file bytes).
struct Base {
    name: String,
    bytes: Vec<u8>,
    ends: Vec<u64>,
    payloads: Vec<Vec<u8>>,
    sink: Vec<u8>,
}

fn base() -> Base {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), dopts()).unwrap();
    let mut ends = Vec::new();
    let mut payloads = Vec::new();
    let mut off = 24u64;
    let recs: Vec<_> = (0..120u64)
        .map(|i| (format!("C{i}"), payload(77, i)))
        .collect();
    for (cid, p) in &recs {
        store.append(&rec(cid, p)).unwrap();
        off += 8 + 20 + cid.len() as u64 + "analyser-1".len() as u64 + p.len() as u64;
        ends.push(off);
        payloads.push(p.clone());
    }
    drop(store);
    let seg = seg_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    assert!(
        bytes.len() as u64 > off,
        "no preallocated space after the records"
    );
    assert!(bytes[off as usize..].iter().all(|&b| b == 0));
    let sink = std::fs::read(dir.path().join("sink-s.state")).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap().to_string();
    Base {
        name,
        bytes,
        ends,
        payloads,
        sink,
    }
}

fn check(dir: &Path, keep: usize, payloads: &[Vec<u8>], expect_damage: bool, header_hit: bool) {
    let (store, report) = Store::open(dir, dopts()).unwrap();
    if expect_damage {
        assert!(
            !report.is_clean() || !report.removed.is_empty(),
            "damage not reported: {report}"
        );
    }
    if header_hit {
        assert!(report.header_repaired.is_some(), "{report}");
    }
    if let Some(d) = &report.damage {
        assert!(d.bytes > 0);
        if d.kind == DamageKind::TornRecord || d.kind == DamageKind::ZeroFill {
            assert!(d.quarantined.is_none() || d.valid_records_after > 0);
        }
    }
    let got = store.peek("s", usize::MAX).unwrap();
    assert_eq!(
        got.len(),
        keep,
        "records before the damage kept, none after"
    );
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.id.get(), i as u64 + 1);
        assert_eq!(e.payload, payloads[i]);
    }
    // After recovery the store is clean and usable.
    let id = store.append(&rec("after", b"ok")).unwrap();
    drop(store);
    let (store, report) = Store::open(dir, dopts()).unwrap();
    assert!(report.is_clean(), "second open not clean: {report}");
    assert_eq!(store.get(id).unwrap().payload, b"ok");
}

#[test]
fn random_truncations_and_bit_flips() {
    let Base {
        name,
        bytes,
        ends,
        payloads,
        sink,
    } = base();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let root = tempfile::tempdir().unwrap();
    let (mut flips, mut cuts) = (0, 0);
    let (mut pad_flips, mut pad_cuts) = (0, 0);
    let last = *ends.last().unwrap();
    for iter in 0..1000 {
        let dir = root.path().join(format!("d{iter}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("sink-s.state"), &sink).unwrap();
        let mut b = bytes.clone();
        // Index of the first record touched by damage at byte `pos`.
        let rec_at = |pos: u64| ends.iter().position(|&e| pos < e).unwrap_or(ends.len());
        let (keep, expect_damage, header_hit) = if rng.below(2) == 0 {
            cuts += 1;
            let at = rng.below(b.len() as u64);
            b.truncate(at as usize);
            // On a record boundary, or inside the zeros after the last record: no damage.
            pad_cuts += u32::from(at >= last);
            let boundary = at == 24 || ends.contains(&at) || at >= last;
            (rec_at(at), !boundary, false)
        } else {
            flips += 1;
            for _ in 0..1 + rng.below(3) {
                let pos = rng.below(b.len() as u64);
                b[pos as usize] ^= 1 << rng.below(8);
            }
            // Two flips can cancel out; compare with the original.
            let header = b[..24] != bytes[..24];
            let first_rec = (24..b.len()).find(|&i| b[i] != bytes[i]);
            let keep = first_rec.map_or(ends.len(), |p| rec_at(p as u64));
            pad_flips += u32::from(first_rec.is_some_and(|p| p as u64 >= last));
            (keep, header || first_rec.is_some(), header)
        };
        std::fs::write(dir.join(&name), &b).unwrap();
        check(&dir, keep, &payloads, expect_damage, header_hit);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(flips > 300 && cuts > 300);
    assert!(pad_flips > 10 && pad_cuts > 10, "{pad_flips} {pad_cuts}");
}
