//! Crash test with a real process: the test binary re-executes itself as a child that appends
//! from 4 threads and prints each id after `append` returned; the parent SIGKILLs it at a random
//! moment, 100 times, and after each kill checks that every printed id is present, in order,
//! without gaps, with its payload.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use labagent_store::{Options, Store};

#[path = "store/common.rs"]
#[allow(dead_code)]
mod common;

use common::*;

const ENV: &str = "LABAGENT_STORE_CRASH_CHILD_DIR";

fn child_opts() -> Options {
    let mut o = opts(&["s"]);
    o.segment_bytes = 16 << 10;
    o
}

/// The child: does nothing unless the parent set `ENV`.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(ENV) else { return };
    let (store, _) = Store::open(&dir, child_opts()).unwrap();
    let store = std::sync::Arc::new(store);
    println!("READY");
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let run = std::process::id() as u64;
                for seq in 0.. {
                    let stream = run * 16 + t;
                    let p = payload(stream, seq);
                    let id = store.append(&rec(&format!("{stream}:{seq}"), &p)).unwrap();
                    println!("ID {} {stream} {seq}", id.get());
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn sigkill_100_times() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0xC0FF_EE00_1234_5678 ^ std::process::id() as u64);
    // id -> (stream, seq) of everything a child reported as appended.
    let mut acked: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let mut damaged = 0;
    let mut interrupted = 0;
    for round in 0..100 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The random moment of the crash (not a wait for anything).
        std::thread::sleep(Duration::from_millis(10 + rng.below(40)));
        child.kill().unwrap();
        child.wait().unwrap();
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        // Only complete lines count: a line cut by the kill was never fully reported.
        let complete = out.rfind('\n').map_or("", |i| &out[..=i]);
        for line in complete.lines() {
            let Some(rest) = line.strip_prefix("ID ") else {
                continue;
            };
            let v: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            if let Some(prev) = acked.insert(v[0], (v[1], v[2])) {
                panic!(
                    "round {round}: id {} reported twice: {prev:?} and {:?}",
                    v[0],
                    (v[1], v[2])
                );
            }
        }
        let (store, report) = Store::open(dir.path(), child_opts()).unwrap();
        if !report.is_clean() {
            damaged += 1;
        }
        if !report.sealed.is_empty() || !report.removed.is_empty() {
            interrupted += 1;
        }
        assert!(report.lost_ids.is_none(), "round {round}: {report}");
        let all = store.peek("s", usize::MAX).unwrap();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(
                e.id.get(),
                i as u64 + 1,
                "round {round}: gap before {}",
                e.id
            );
        }
        let max = all.len() as u64;
        for (&id, &(stream, seq)) in &acked {
            assert!(
                id <= max,
                "round {round}: acknowledged id {id} lost ({max} stored; {report})"
            );
            let e = &all[(id - 1) as usize];
            assert_eq!(
                e.control_id,
                format!("{stream}:{seq}"),
                "round {round}: id {id}"
            );
            assert_eq!(e.payload, payload(stream, seq), "round {round}: id {id}");
        }
    }
    eprintln!(
        "crash test: {} acknowledged appends survived 100 kills ({damaged} recoveries cut a torn tail, {interrupted} finished an interrupted rotation or cursor update)",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "children appended too little to test anything"
    );
}
