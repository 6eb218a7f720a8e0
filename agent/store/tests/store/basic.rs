//! Functional tests: append/read/ack, park/retry order, deletion, Full, lock, read-only,
//! recovery of interrupted operations.

use std::sync::Arc;

use labagent_store::{Error, Kind, NewRecord, RecordId, Settlement, Store};

use crate::common::*;

#[test]
fn append_get_peek_ack_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = Store::open(dir.path(), opts(&["mllp", "file"])).unwrap();
    assert!(report.is_clean());
    assert_eq!(
        report.new_sinks,
        vec!["mllp".to_string(), "file".to_string()]
    );
    let r = NewRecord {
        control_id: "MSG0001",
        source: "cobas",
        received_ms: 42,
        kind: Kind::RawAstm,
        payload: b"H|\\^&\r",
    };
    let a = store.append(&r).unwrap();
    let b = store.append(&rec("MSG0002", b"two")).unwrap();
    assert_eq!((a.get(), b.get()), (1, 2));
    let e = store.get(a).unwrap();
    assert_eq!(
        (
            e.control_id.as_str(),
            e.source.as_str(),
            e.received_ms,
            e.kind,
            &e.payload[..]
        ),
        ("MSG0001", "cobas", 42, Kind::RawAstm, &b"H|\\^&\r"[..])
    );
    assert_eq!(ids(&store.peek("mllp", 10).unwrap()), vec![1, 2]);
    store.ack("mllp", a).unwrap();
    assert!(matches!(
        store.ack("mllp", a),
        Err(Error::NotNext {
            expected: Some(RecordId { .. }),
            ..
        })
    ));
    assert!(matches!(
        store.ack("nope", b),
        Err(Error::UnknownSink { .. })
    ));
    assert_eq!(store.next("mllp").unwrap().unwrap().id, b);
    let st = store.status().unwrap();
    assert_eq!(st.sinks[0].name, "file");
    assert_eq!((st.sinks[0].pending, st.sinks[1].pending), (2, 1));
    assert_eq!(
        st.sinks[1].oldest_pending_received_ms,
        Some(1_700_000_000_000)
    );
    assert_eq!(st.total_bytes, seg_bytes(dir.path()));
    drop(store);

    let (store, report) = Store::open(dir.path(), opts(&["mllp", "file"])).unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.new_sinks.is_empty());
    assert_eq!(report.next_id.get(), 3);
    assert_eq!(ids(&store.peek("mllp", 10).unwrap()), vec![2]);
    assert_eq!(ids(&store.peek("file", 10).unwrap()), vec![1, 2]);
    assert_eq!(store.append(&rec("MSG0003", b"")).unwrap().get(), 3);
}

#[test]
fn settle_applies_a_batch_in_order_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(&["s"])).unwrap();
    for i in 0..6 {
        store.append(&rec(&format!("M{i}"), b"p")).unwrap();
    }
    let id = RecordId::new;
    let park = |n, reason| Settlement::Park {
        id: id(n),
        reason,
        now_ms: 7,
    };
    store
        .settle(
            "s",
            &[
                Settlement::Ack(id(1)),
                park(2, "AE"),
                Settlement::Ack(id(3)),
            ],
        )
        .unwrap();
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![4, 5, 6]);
    // A batch with an out-of-order ack is refused whole: 4 stays unacknowledged.
    assert!(matches!(
        store.settle("s", &[Settlement::Ack(id(4)), Settlement::Ack(id(6))]),
        Err(Error::NotNext { .. })
    ));
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![4, 5, 6]);
    drop(store);
    let (store, _) = Store::open(dir.path(), opts(&["s"])).unwrap();
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![4, 5, 6], "durable");
    let parked = store.parked("s").unwrap();
    assert_eq!(
        (parked.len(), parked[0].id, parked[0].reason.as_str()),
        (1, id(2), "AE")
    );
}

#[test]
fn new_sink_starts_at_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(&["a"])).unwrap();
    store.append(&rec("1", b"x")).unwrap();
    drop(store);
    let (store, report) = Store::open(dir.path(), opts(&["a", "b"])).unwrap();
    assert_eq!(report.new_sinks, vec!["b".to_string()]);
    assert!(store.next("b").unwrap().is_none());
    let id = store.append(&rec("2", b"y")).unwrap();
    assert_eq!(store.next("b").unwrap().unwrap().id, id);
    drop(store);
    let (_, report) = Store::open(dir.path(), opts(&["b"])).unwrap();
    assert_eq!(report.orphan_sinks, vec!["a".to_string()]);
}

#[test]
fn park_skips_and_retry_redelivers_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(&["s"])).unwrap();
    for i in 0..5 {
        store.append(&rec(&format!("M{i}"), b"p")).unwrap();
    }
    let id = RecordId::new;
    store.ack("s", id(1)).unwrap();
    store.park("s", id(2), "AE: bad OBX-5", 1000).unwrap();
    // Parking ahead of the head is allowed too.
    store.park("s", id(4), "CE", 1001).unwrap();
    assert!(matches!(
        store.park("s", id(4), "again", 1),
        Err(Error::NotPending { .. })
    ));
    assert!(matches!(
        store.park("s", id(9), "future", 1),
        Err(Error::NotPending { .. })
    ));
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![3, 5]);
    let parked = store.parked("s").unwrap();
    assert_eq!(
        parked.iter().map(|p| p.id.get()).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert_eq!(parked[0].reason, "AE: bad OBX-5");
    assert_eq!(parked[0].parked_at_ms, 1000);
    store.ack("s", id(3)).unwrap();
    // 2 is behind the cursor: delivered next, before 5. 4 is ahead: back in place.
    store.retry("s", id(2)).unwrap();
    assert!(matches!(
        store.retry("s", id(2)),
        Err(Error::NotParked { .. })
    ));
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![2, 5]);
    store.retry_all("s").unwrap();
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![2, 4, 5]);
    // Already acknowledged: refused.
    assert!(matches!(store.ack("s", id(3)), Err(Error::NotNext { .. })));
    // The main stream's head, delivered before the retries were queued in front of it: taken.
    store.ack("s", id(5)).unwrap();
    store.ack("s", id(2)).unwrap();
    drop(store);
    let (store, _) = Store::open(dir.path(), opts(&["s"])).unwrap();
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![4]);
    assert!(store.parked("s").unwrap().is_empty());
    let st = store.status().unwrap();
    assert_eq!((st.sinks[0].pending, st.sinks[0].parked), (1, 0));
}

#[test]
fn segments_deleted_only_when_all_sinks_passed_and_nothing_parked() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["a", "b"]);
    o.segment_bytes = 512;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let body = [7u8; 200];
    for i in 0..20 {
        store.append(&rec(&format!("M{i}"), &body)).unwrap();
    }
    let n0 = seg_files(dir.path()).len();
    assert!(n0 >= 10, "expected rotation, got {n0} segments");
    // Sink a passes everything; b has not moved: nothing deleted.
    for i in 1..=20 {
        store.ack("a", RecordId::new(i)).unwrap();
    }
    assert_eq!(seg_files(dir.path()).len(), n0);
    // b parks record 3 and acks the rest: only 3's segment (and the active one) stay.
    store.ack("b", RecordId::new(1)).unwrap();
    store.ack("b", RecordId::new(2)).unwrap();
    store.park("b", RecordId::new(3), "CE", 5).unwrap();
    for i in 4..=20 {
        store.ack("b", RecordId::new(i)).unwrap();
    }
    let left = seg_files(dir.path());
    assert!(left.len() <= 3, "{left:?}");
    assert!(store.get(RecordId::new(3)).is_ok());
    assert!(matches!(
        store.get(RecordId::new(10)),
        Err(Error::NotFound { .. })
    ));
    let st = store.status().unwrap();
    assert_eq!(st.total_bytes, seg_bytes(dir.path()));
    assert_eq!(st.segments, left.len());
    // Retry and ack the dead letter: its segment goes too.
    store.retry("b", RecordId::new(3)).unwrap();
    store.ack("b", RecordId::new(3)).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 1);
    drop(store);
    let (store, report) = Store::open(dir.path(), opts(&["a", "b"])).unwrap();
    assert!(report.is_clean());
    assert_eq!(store.append(&rec("x", b"")).unwrap().get(), 21);
}

#[test]
fn full_is_back_pressure_and_clears_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.segment_bytes = 1024;
    o.max_bytes = 4096;
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    let body = [1u8; 300];
    let mut n = 0;
    let err = loop {
        match store.append(&rec("M", &body)) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
        assert!(n < 100);
    };
    assert!(matches!(err, Error::Full { max: 4096, .. }), "{err}");
    assert!(seg_bytes(dir.path()) <= 4096);
    // Still full, nothing evicted.
    assert!(matches!(
        store.append(&rec("M", &body)),
        Err(Error::Full { .. })
    ));
    assert_eq!(store.peek("s", 100).unwrap().len(), n);
    // Deliver everything: space comes back (including the active segment's).
    for i in 1..=n as u64 {
        store.ack("s", RecordId::new(i)).unwrap();
    }
    // Acknowledged records that share the active segment with new ones cost space until that
    // segment is passed, so the capacity is back to within one segment (two records here).
    let mut m = 0;
    while store.append(&rec("M", &body)).is_ok() {
        m += 1;
        assert!(m < 100);
    }
    assert!(m + 2 >= n, "{m} appends after acking all, {n} before");
    assert!(seg_bytes(dir.path()) <= 4096);
    drop(store);
    let (_, report) = Store::open(dir.path(), o).unwrap();
    assert!(report.is_clean());
}

#[test]
fn too_large_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.max_record_bytes = 100;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    assert!(matches!(
        store.append(&rec("M", &[0u8; 200])),
        Err(Error::RecordTooLarge { .. })
    ));
    let long = "x".repeat(300);
    assert!(matches!(
        store.append(&rec(&long, b"")),
        Err(Error::FieldTooLong {
            field: "control_id",
            ..
        })
    ));
    drop(store);
    let d2 = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::open(d2.path(), opts(&["a/b"])),
        Err(Error::InvalidSinkName { .. })
    ));
}

#[test]
fn append_units_commits_each_unit_on_its_own_in_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, faults) = fault_opts(&["s"]);
    o.max_record_bytes = 100;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    store.append(&rec("M0", b"first")).unwrap();
    let syncs = faults.seg_syncs.load(std::sync::atomic::Ordering::Relaxed);
    let big = [0u8; 200];
    let a = [rec("A1", b"a1"), rec("A2", b"a2")];
    let bad = [rec("B1", b"b1"), rec("B2", &big)];
    let c = [rec("C1", b"c1")];
    let results = store.append_units(&[&a, &bad, &[], &c]);
    assert_eq!(results.len(), 4);
    let got = |i: usize| -> Vec<u64> {
        results[i]
            .as_ref()
            .unwrap()
            .iter()
            .map(|id| id.get())
            .collect()
    };
    assert_eq!(got(0), vec![2, 3]);
    assert!(
        matches!(results[1], Err(Error::RecordTooLarge { .. })),
        "the unit holding a record over the limit fails whole: {:?}",
        results[1]
    );
    assert_eq!(got(2), Vec::<u64>::new());
    assert_eq!(got(3), vec![4]);
    assert_eq!(
        faults.seg_syncs.load(std::sync::atomic::Ordering::Relaxed) - syncs,
        1,
        "the units share one fdatasync"
    );
    let entries = store.peek("s", 10).unwrap();
    let cids: Vec<&str> = entries.iter().map(|e| e.control_id.as_str()).collect();
    assert_eq!(
        cids,
        ["M0", "A1", "A2", "C1"],
        "B1 was not stored without B2"
    );
    drop(store);
    let (ro, _) = Store::open_read_only(dir.path(), opts(&[])).unwrap();
    let r = ro.append_units(&[&c]);
    assert!(matches!(r[0], Err(Error::ReadOnly { .. })));
}

#[test]
fn append_units_a_unit_that_does_not_fit_leaves_a_later_smaller_one_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.max_bytes = 4096;
    o.segment_bytes = 4096;
    o.preallocate_bytes = 0;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let filler = [7u8; 1000];
    let mut n = 0;
    while store.append(&rec(&format!("F{n}"), &filler)).is_ok() {
        n += 1;
    }
    assert!(n >= 2, "the store took {n} fillers");
    let big = [rec("BIG", &filler)];
    let small = [rec("SMALL", b"s")];
    let results = store.append_units(&[&big, &small]);
    assert!(
        matches!(results[0], Err(Error::Full { .. })),
        "{:?}",
        results[0]
    );
    let id = results[1].as_ref().expect("the small unit still fits")[0];
    let entries = store.peek("s", usize::MAX).unwrap();
    let last = entries.last().unwrap();
    assert_eq!((last.id, last.control_id.as_str()), (id, "SMALL"));
    assert!(entries.iter().all(|e| e.control_id != "BIG"));
}

#[test]
fn second_writer_is_locked_out_and_read_only_works_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), opts(&["s"])).unwrap();
    for i in 0..3 {
        store.append(&rec(&format!("M{i}"), b"abc")).unwrap();
    }
    store.park("s", RecordId::new(2), "AE", 7).unwrap();
    match Store::open(dir.path(), opts(&["s"])) {
        Err(Error::Locked { path, holder }) => {
            assert_eq!(path, dir.path().join("LOCK"));
            assert_eq!(holder, Some(format!("pid {}", std::process::id())));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Simulate a write in progress: a torn record after the last one, in the preallocated zeros.
    let tail = seg_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&tail).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(bytes.len() >= end + 7, "no preallocated space");
    bytes[end..end + 7].copy_from_slice(&[0x40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&tail, &bytes).unwrap();
    let snapshot = listing(dir.path());

    let (ro, report) = Store::open_read_only(dir.path(), opts(&[])).unwrap();
    assert!(ro.is_read_only());
    assert!(
        report.damage.is_some(),
        "read-only open reports the torn tail"
    );
    assert_eq!(ids(&ro.peek("s", 10).unwrap()), vec![1, 3]);
    assert_eq!(ro.parked("s").unwrap().len(), 1);
    assert_eq!(ro.status().unwrap().sinks[0].pending, 2);
    assert!(matches!(
        ro.append(&rec("x", b"")),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        ro.ack("s", RecordId::new(1)),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(ro.retry_all("s"), Err(Error::ReadOnly { .. })));
    drop(ro);
    assert_eq!(
        listing(dir.path()),
        snapshot,
        "read-only open changed files"
    );
    drop(store);
    // The writer is gone: the next writer cuts the torn tail.
    let (_, report) = Store::open(dir.path(), opts(&["s"])).unwrap();
    let d = report.damage.unwrap();
    assert_eq!(d.bytes, (bytes.len() - end) as u64);
    assert_eq!(d.valid_records_after, 0);
    assert!(d.quarantined.is_none());
}

fn listing(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_str().unwrap().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn interrupted_rotation_temp_files_and_corrupt_sink_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.segment_bytes = 300;
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    for i in 0..6 {
        store.append(&rec(&format!("M{i}"), &[3u8; 100])).unwrap();
    }
    drop(store);
    // Un-seal a sealed segment (as if the rename had not reached the disk) and leave a temp file.
    let sealed = seg_files(dir.path())[0].clone();
    let name = sealed.file_name().unwrap().to_str().unwrap().to_string();
    let unsealed = dir.path().join(format!("{}.log", &name[..24]));
    std::fs::rename(&sealed, &unsealed).unwrap();
    std::fs::write(dir.path().join("sink-s.state.tmp"), b"half").unwrap();
    let (store, report) = Store::open(dir.path(), o.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.sealed, vec![sealed.clone()]);
    assert_eq!(report.removed, vec![dir.path().join("sink-s.state.tmp")]);
    assert_eq!(ids(&store.peek("s", 10).unwrap()), vec![1, 2, 3, 4, 5, 6]);
    drop(store);
    std::fs::write(
        dir.path().join("sink-s.state"),
        b"LBSTSNK\x01garbage-garbage-garbage",
    )
    .unwrap();
    assert!(matches!(
        Store::open(dir.path(), o),
        Err(Error::CorruptSinkState { .. })
    ));
}

#[test]
fn lost_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    // No preallocated zeros: the test cuts records off the end of the file.
    let mut o = opts(&["a", "b"]);
    o.preallocate_bytes = 0;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    for i in 0..5 {
        store.append(&rec(&format!("M{i}"), b"payload")).unwrap();
    }
    for i in 1..=5 {
        store.ack("a", RecordId::new(i)).unwrap();
    }
    drop(store);
    // Lose the last two records (media damage after they were acknowledged and delivered).
    let tail = seg_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&tail).unwrap().len();
    let rec_len = 8 + 20 + 2 + 10 + 7;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tail)
        .unwrap()
        .set_len(len - 2 * rec_len)
        .unwrap();
    let (store, report) = Store::open(dir.path(), opts(&["a", "b"])).unwrap();
    assert_eq!(report.lost_ids, Some((RecordId::new(4), RecordId::new(6))));
    assert!(!report.is_clean());
    assert_eq!(ids(&store.peek("b", 10).unwrap()), vec![1, 2, 3]);
    let id = store.append(&rec("new", b"x")).unwrap();
    assert_eq!(id.get(), 6);
    assert_eq!(ids(&store.peek("b", 10).unwrap()), vec![1, 2, 3, 6]);
    assert_eq!(ids(&store.peek("a", 10).unwrap()), vec![6]);
    for i in [1, 2, 3, 6] {
        store.ack("b", RecordId::new(i)).unwrap();
    }
    assert_eq!(store.status().unwrap().sinks[1].pending, 0);
}

#[test]
fn group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (o, faults) = fault_opts(&["s"]);
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let store = Arc::new(store);
    let base = faults.seg_syncs.load(std::sync::atomic::Ordering::Relaxed);
    const THREADS: u64 = 8;
    const PER: u64 = 150;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for s in 0..PER {
                    let p = payload(t, s);
                    got.push(store.append(&rec(&format!("{t}-{s}"), &p)).unwrap().get());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        let got = h.join().unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "ids increase per thread"
        );
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=THREADS * PER).collect::<Vec<_>>());
    let syncs = faults.seg_syncs.load(std::sync::atomic::Ordering::Relaxed) - base;
    let appends = THREADS * PER;
    eprintln!("group commit: {appends} appends, {syncs} fdatasyncs");
    assert!(
        syncs * 2 <= appends,
        "{syncs} fdatasyncs for {appends} appends"
    );
    for e in store.peek("s", usize::MAX).unwrap() {
        let (t, s) = e.control_id.split_once('-').unwrap();
        assert_eq!(e.payload, payload(t.parse().unwrap(), s.parse().unwrap()));
    }
}

#[test]
fn the_active_segment_is_preallocated_and_sealed_segments_end_at_their_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.segment_bytes = 64 << 10;
    o.preallocate_bytes = 16 << 10;
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    let body = [b'x'; 100];
    store.append(&rec("M0", &body)).unwrap();
    let tail = seg_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&tail).unwrap();
    let logical = 24 + 8 + 20 + 2 + 10 + 100;
    assert_eq!(bytes.len(), logical + (16 << 10), "one step of zeros");
    assert!(bytes[logical..].iter().all(|&b| b == 0));
    assert_eq!(store.status().unwrap().total_bytes, seg_bytes(dir.path()));
    // Fill a few segments: each step is at most the segment size.
    for i in 1..2000 {
        store.append(&rec(&format!("M{i}"), &body)).unwrap();
        if i % 250 == 0 {
            assert_eq!(store.status().unwrap().total_bytes, seg_bytes(dir.path()));
        }
    }
    let segs = seg_files(dir.path());
    assert!(segs.len() > 3);
    for s in &segs[..segs.len() - 1] {
        let b = std::fs::read(s).unwrap();
        assert!(b.len() as u64 <= (64 << 10) + 200, "{}", s.display());
        assert_eq!(
            *b.last().unwrap(),
            b'x',
            "sealed segment ends at its last record"
        );
    }
    drop(store);
    let (store, report) = Store::open(dir.path(), o).unwrap();
    assert!(report.is_clean(), "{report}");
    let all = store.peek("s", usize::MAX).unwrap();
    assert_eq!(all.len(), 2000);
    assert_eq!(all[1999].control_id, "M1999");
    // Appends go on in the zeros after a reopen.
    store.append(&rec("M2000", &body)).unwrap();
    assert_eq!(store.peek("s", usize::MAX).unwrap().len(), 2001);
}

#[test]
fn preallocation_never_takes_the_store_past_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.max_bytes = 6000;
    o.segment_bytes = 4096;
    o.preallocate_bytes = 1 << 20;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    store.append(&rec("M0", b"abc")).unwrap();
    assert_eq!(seg_bytes(dir.path()), 4096, "capped by the segment size");
    let mut n = 1;
    while store.append(&rec(&format!("M{n}"), &[b'y'; 200])).is_ok() {
        n += 1;
        assert!(seg_bytes(dir.path()) <= 6000, "{}", seg_bytes(dir.path()));
    }
    assert!(n > 20, "only {n} records fit");
    assert_eq!(seg_files(dir.path()).len(), 2);
}
