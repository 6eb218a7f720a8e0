//! Store benchmarks against raw baselines on the same disk, in the same run.
//!
//! (a) 1 writer, 1 KiB records: `Store::append` vs a loop of `pwrite` + `fdatasync`.
//! (b) 8 writers: `Store::append` vs a raw group-commit loop (8 threads hand records to one
//!     writer that writes everything queued, then fdatasyncs once).
//! (c) `Store::open` with N undelivered small records (N = `STORE_BENCH_RECOVERY_N`, default
//!     1,000,000).
//!
//! Knobs: `STORE_BENCH_N` (appends per measurement, default 3000), `STORE_BENCH_DIR` (parent
//! directory for the temp dirs; default the system temp dir).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use labagent_store::{Kind, NewRecord, Options, Store};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tempdir() -> tempfile::TempDir {
    match std::env::var("STORE_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn rec(payload: &[u8]) -> NewRecord<'_> {
    NewRecord {
        control_id: "LA000000000001",
        source: "cobas",
        received_ms: 0,
        kind: Kind::Oru,
        payload,
    }
}

fn store_single(n: u64) -> Duration {
    let dir = tempdir();
    let (store, _) = Store::open(dir.path(), Options::new(["s"])).unwrap();
    let p = vec![0x5Au8; 1024];
    let t = Instant::now();
    for _ in 0..n {
        store.append(&rec(&p)).unwrap();
    }
    t.elapsed()
}

fn raw_single(n: u64) -> Duration {
    let dir = tempdir();
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let p = vec![0x5Au8; 1024];
    let t = Instant::now();
    let mut off = 0;
    for _ in 0..n {
        f.write_all_at(&p, off).unwrap();
        f.sync_data().unwrap();
        off += p.len() as u64;
    }
    t.elapsed()
}

fn store_multi(n: u64, threads: u64) -> Duration {
    let dir = tempdir();
    let (store, _) = Store::open(dir.path(), Options::new(["s"])).unwrap();
    let store = Arc::new(store);
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let p = vec![0x5Au8; 1024];
                for _ in 0..n / threads {
                    store.append(&rec(&p)).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed()
}

#[derive(Default)]
struct RawQ {
    queued: Vec<Vec<u8>>,
    submitted: u64,
    done: u64,
    stop: bool,
}

fn raw_multi(n: u64, threads: u64) -> Duration {
    let dir = tempdir();
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let q = Arc::new((Mutex::new(RawQ::default()), Condvar::new(), Condvar::new()));
    let writer = {
        let q = q.clone();
        std::thread::spawn(move || raw_writer(&f, &q))
    };
    let t = Instant::now();
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                for _ in 0..n / threads {
                    let (m, work, done) = &*q;
                    let mut g = m.lock().unwrap();
                    g.queued.push(vec![0x5Au8; 1024]);
                    g.submitted += 1;
                    let ticket = g.submitted;
                    work.notify_one();
                    while g.done < ticket {
                        g = done.wait(g).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let e = t.elapsed();
    q.0.lock().unwrap().stop = true;
    q.1.notify_one();
    writer.join().unwrap();
    e
}

fn raw_writer(f: &File, q: &(Mutex<RawQ>, Condvar, Condvar)) {
    let (m, work, done) = q;
    let mut off = 0u64;
    let mut buf = Vec::new();
    loop {
        let (batch, upto) = {
            let mut g = m.lock().unwrap();
            while g.queued.is_empty() && !g.stop {
                g = work.wait(g).unwrap();
            }
            if g.queued.is_empty() {
                return;
            }
            (std::mem::take(&mut g.queued), g.submitted)
        };
        buf.clear();
        for r in &batch {
            buf.extend_from_slice(r);
        }
        f.write_all_at(&buf, off).unwrap();
        f.sync_data().unwrap();
        off += buf.len() as u64;
        let mut g = m.lock().unwrap();
        g.done = upto;
        done.notify_all();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn recovery(n: u64) {
    let dir = tempdir();
    let t = Instant::now();
    {
        let (store, _) = Store::open(dir.path(), Options::new(["mllp", "mqtt"])).unwrap();
        let p = vec![0x33u8; 64];
        let batch: Vec<NewRecord<'_>> = (0..10_000).map(|_| rec(&p)).collect();
        let mut left = n;
        while left > 0 {
            let k = left.min(10_000) as usize;
            store.append_batch(&batch[..k]).unwrap();
            left -= k as u64;
        }
    }
    let build = t.elapsed();
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "(c) built {n} undelivered records ({:.1} MiB) in {:.2} s",
        bytes as f64 / (1 << 20) as f64,
        build.as_secs_f64()
    );
    let mut opens = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (store, report) = Store::open(dir.path(), Options::new(["mllp", "mqtt"])).unwrap();
        let open = t.elapsed();
        let first = store.next("mllp").unwrap().unwrap();
        let with_peek = t.elapsed();
        let st = store.status().unwrap();
        assert_eq!(st.sinks[0].pending, n);
        assert!(report.is_clean());
        assert_eq!(first.id.get(), 1);
        println!(
            "    open: {:.1} ms (open + first next(): {:.1} ms; {} segments, tail scan {} records / {:.1} MiB)",
            open.as_secs_f64() * 1e3,
            with_peek.as_secs_f64() * 1e3,
            report.segments,
            report.tail_records,
            report.scanned_bytes as f64 / (1 << 20) as f64
        );
        opens.push(open.as_secs_f64() * 1e3);
    }
    println!(
        "(c) recovery open with {n} undelivered records: median {:.1} ms (target <= 500 ms)",
        median(opens)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_u64("STORE_BENCH_N", 3000);
    let rounds = 3;
    let (mut a_store, mut a_raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a_raw.push(n as f64 / raw_single(n).as_secs_f64());
        a_store.push(n as f64 / store_single(n).as_secs_f64());
    }
    let (s, r) = (median(a_store.clone()), median(a_raw.clone()));
    println!(
        "(a) 1 writer, 1 KiB: store {s:.0}/s vs raw write+fdatasync {r:.0}/s: ratio {:.2}x (target >= 0.9x)",
        s / r
    );
    println!("    rounds store {a_store:.0?} raw {a_raw:.0?}");
    let n8 = n * 4;
    let (mut b_store, mut b_raw) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        b_raw.push(n8 as f64 / raw_multi(n8, 8).as_secs_f64());
        b_store.push(n8 as f64 / store_multi(n8, 8).as_secs_f64());
    }
    let (s, r) = (median(b_store.clone()), median(b_raw.clone()));
    println!(
        "(b) 8 writers, 1 KiB: store {s:.0}/s vs raw group commit {r:.0}/s: ratio {:.2}x (target >= 0.8x)",
        s / r
    );
    println!("    rounds store {b_store:.0?} raw {b_raw:.0?}");
    recovery(env_u64("STORE_BENCH_RECOVERY_N", 1_000_000));
}
