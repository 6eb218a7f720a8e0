//! Fault injection through the `Fs` seam: ENOSPC mid-record, EIO on fdatasync, short writes,
//! failed rollback. After each failure the append errs cleanly, the store stays usable and a
//! reopen finds exactly the acknowledged records.

use labagent_store::{Error, Store};

use crate::common::*;

fn check_reopen(dir: &std::path::Path, acked: &[(u64, Vec<u8>)]) {
    let (store, report) = Store::open(dir, opts(&["s"])).unwrap();
    assert!(
        report.damage.is_none() && report.lost_ids.is_none(),
        "{report}"
    );
    let got = store.peek("s", usize::MAX).unwrap();
    let want: Vec<u64> = acked.iter().map(|a| a.0).collect();
    assert_eq!(ids(&got), want);
    for (e, (_, p)) in got.iter().zip(acked) {
        assert_eq!(&e.payload, p);
    }
}

fn run(faults_plan: &[Fault], expect_errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let (o, faults) = fault_opts(&["s"]);
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let mut acked = Vec::new();
    for i in 0..3u64 {
        let p = payload(1, i);
        acked.push((store.append(&rec("ok", &p)).unwrap().get(), p));
    }
    for f in faults_plan {
        faults.push(*f);
    }
    let p = payload(2, 0);
    match store.append(&rec("fails", &p)) {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(expect_errno)),
        other => panic!("expected Io error, got {other:?}"),
    }
    assert_eq!(faults.pending(), 0, "every planned fault was hit");
    // Usable afterwards; ids continue without a gap.
    for i in 0..5u64 {
        let p = payload(3, i);
        let id = store.append(&rec("after", &p)).unwrap().get();
        assert_eq!(id, acked.last().unwrap().0 + 1);
        acked.push((id, p));
    }
    let got = store.peek("s", usize::MAX).unwrap();
    assert_eq!(ids(&got), acked.iter().map(|a| a.0).collect::<Vec<_>>());
    if !faults_plan
        .iter()
        .any(|f| matches!(f, Fault::TruncateErr(_)))
    {
        // (A failed rollback leaves the cut bytes behind the sealed segment's end.)
        assert_eq!(store.status().unwrap().total_bytes, seg_bytes(dir.path()));
    }
    drop(store);
    check_reopen(dir.path(), &acked);
}

#[test]
fn enospc_mid_record() {
    // The disk fills after 17 bytes of the record: short write, then ENOSPC.
    run(&[Fault::Short(17), Fault::WriteErr(ENOSPC)], ENOSPC);
}

#[test]
fn eio_on_fdatasync() {
    run(&[Fault::SyncErr(EIO)], EIO);
}

#[test]
fn eio_on_fdatasync_and_failed_rollback() {
    run(&[Fault::SyncErr(EIO), Fault::TruncateErr(EIO)], EIO);
}

#[test]
fn enospc_and_failed_rollback() {
    run(
        &[
            Fault::Short(5),
            Fault::WriteErr(ENOSPC),
            Fault::TruncateErr(EIO),
        ],
        ENOSPC,
    );
}

#[test]
fn short_writes_alone_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (o, faults) = fault_opts(&["s"]);
    let (store, _) = Store::open(dir.path(), o).unwrap();
    faults.push(Fault::Short(1));
    faults.push(Fault::Short(3));
    faults.push(Fault::Short(30));
    let p = payload(9, 9);
    let id = store.append(&rec("short", &p)).unwrap();
    assert_eq!(faults.pending(), 0);
    assert_eq!(store.get(id).unwrap().payload, p);
    drop(store);
    check_reopen(dir.path(), &[(id.get(), p)]);
}

#[test]
fn failure_during_segment_creation() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, faults) = fault_opts(&["s"]);
    o.segment_bytes = 256;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let mut acked = Vec::new();
    let p = vec![5u8; 150];
    acked.push((store.append(&rec("a", &p)).unwrap().get(), p.clone()));
    // The next append rotates; the new segment's header write fails.
    faults.push(Fault::WriteErr(ENOSPC));
    assert!(matches!(store.append(&rec("b", &p)), Err(Error::Io { .. })));
    // And then its fdatasync fails.
    faults.push(Fault::SyncErr(EIO));
    assert!(matches!(store.append(&rec("b", &p)), Err(Error::Io { .. })));
    for _ in 0..4 {
        acked.push((store.append(&rec("c", &p)).unwrap().get(), p.clone()));
    }
    assert_eq!(
        acked.iter().map(|a| a.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    drop(store);
    check_reopen(dir.path(), &acked);
}

#[test]
fn failed_group_fails_every_member_and_recovers() {
    use std::sync::{Arc, Barrier};
    let dir = tempfile::tempdir().unwrap();
    let (o, faults) = fault_opts(&["s"]);
    let (store, _) = Store::open(dir.path(), o).unwrap();
    let store = Arc::new(store);
    faults.push(Fault::SyncErr(EIO));
    let barrier = Arc::new(Barrier::new(4));
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut ok = Vec::new();
                for s in 0..20u64 {
                    let p = payload(t, s);
                    if let Ok(id) = store.append(&rec("x", &p)) {
                        ok.push((id.get(), p));
                    }
                }
                ok
            })
        })
        .collect();
    let mut acked: Vec<(u64, Vec<u8>)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acked.sort();
    assert!(
        acked.len() < 80 && acked.len() >= 60,
        "{} acked",
        acked.len()
    );
    assert_eq!(
        acked.iter().map(|a| a.0).collect::<Vec<_>>(),
        (1..=acked.len() as u64).collect::<Vec<_>>()
    );
    drop(store);
    check_reopen(dir.path(), &acked);
}

#[test]
fn no_room_for_the_zero_fill_still_commits_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut o, faults) = fault_opts(&["s"]);
    o.preallocate_bytes = 4096;
    let (store, _) = Store::open(dir.path(), o).unwrap();
    // The record's write succeeds; the zero-fill after it finds the disk full.
    faults.push(Fault::Pass);
    faults.push(Fault::WriteErr(ENOSPC));
    let mut acked = Vec::new();
    let p = payload(4, 0);
    acked.push((store.append(&rec("first", &p)).unwrap().get(), p));
    assert_eq!(faults.pending(), 0, "the zero-fill was attempted");
    let tail = seg_files(dir.path()).pop().unwrap();
    let size = std::fs::metadata(&tail).unwrap().len();
    assert_eq!(
        *std::fs::read(&tail).unwrap().last().unwrap(),
        *acked[0].1.last().unwrap()
    );
    // The segment goes on without preallocating (no write fails any more, none is retried).
    let writes = faults.seg_writes.load(std::sync::atomic::Ordering::Relaxed);
    for i in 1..4u64 {
        let p = payload(4, i);
        acked.push((store.append(&rec("more", &p)).unwrap().get(), p));
    }
    assert_eq!(
        faults.seg_writes.load(std::sync::atomic::Ordering::Relaxed),
        writes + 3,
        "one write per record, no zero-fill"
    );
    assert!(std::fs::metadata(&tail).unwrap().len() > size);
    assert_eq!(store.status().unwrap().total_bytes, seg_bytes(dir.path()));
    drop(store);
    check_reopen(dir.path(), &acked);
}

#[test]
fn a_zero_run_longer_than_the_preallocation_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&["s"]);
    o.preallocate_bytes = 4096;
    let (store, _) = Store::open(dir.path(), o.clone()).unwrap();
    store.append(&rec("a", b"abc")).unwrap();
    drop(store);
    let tail = seg_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&tail).unwrap().len();
    // Within the preallocation: clean. Beyond it: reported and cut.
    let (store, report) = Store::open(dir.path(), o.clone()).unwrap();
    assert!(report.is_clean(), "{report}");
    drop(store);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tail)
        .unwrap()
        .set_len(len + 8192)
        .unwrap();
    let (store, report) = Store::open(dir.path(), o).unwrap();
    let d = report.damage.expect("zero run reported");
    assert_eq!(d.kind, labagent_store::DamageKind::ZeroFill);
    assert_eq!(store.peek("s", 10).unwrap().len(), 1);
}
