//! Load (issue "Measured performance and a hardening campaign", section Load): 200 concurrent
//! MLLP senders, 1,000 idle or byte-per-second connections beside them, and a 10 MB message.
//! Memory stays bounded, every acknowledged message is delivered, and a sender among the idle
//! crowd still gets its ACK promptly. Figures are printed, not asserted as timings.

use labagent_tests::config as cfg;
use labagent_tests::mllp::{VT, hl7_message, msa};
use labagent_tests::{AgentProcess, MllpClient, free_port, wait_until};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SENDERS: usize = 200;
const PER_SENDER: usize = 5;
const IDLE: usize = 1_000;

#[test]
fn two_hundred_senders_a_thousand_idle_and_a_ten_megabyte_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("out");
    let port = free_port();
    let config = cfg::write(
        dir.path(),
        &[
            cfg::agent(dir.path(), "load"),
            cfg::mllp_source(
                "hl7",
                port,
                "max_connections = 1300\nidle_timeout = \"60s\"\nmax_message_bytes = \"1MiB\"",
            ),
            cfg::file_sink("files", &outbox),
        ]
        .concat(),
    );
    let agent = AgentProcess::start(&config);
    let baseline = agent.rss_kib().expect("VmRSS");

    // 1,000 connections that stay idle, half of them trickling one byte a second into an
    // open block (a slow sender), held for the whole test.
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("idle connect"))
        .collect();
    for s in idle.iter_mut().step_by(2) {
        s.write_all(&[VT]).expect("open a block");
    }

    // 200 senders, each sending its messages one after another (the next only after the AA).
    let started = Instant::now();
    let handles: Vec<_> = (0..SENDERS)
        .map(|s| {
            std::thread::spawn(move || {
                let mut client = MllpClient::connect(port).expect("sender connect");
                client
                    .set_read_timeout(Duration::from_secs(60))
                    .expect("timeout");
                let mut acked = Vec::new();
                for m in 0..PER_SENDER {
                    let id = format!("L{s:03}{m:02}");
                    let ack = client.send(&hl7_message(&id, "P", "1.0")).expect("ACK");
                    assert_eq!(msa(&ack), ("AA".to_string(), id.clone()));
                    acked.push(id);
                }
                acked
            })
        })
        .collect();
    let mut slow_ticks = 0;
    while !handles.iter().all(|h| h.is_finished()) {
        // The slow senders' byte a second, while the load runs.
        for s in idle.iter_mut().step_by(2) {
            let _ = s.write_all(b"M");
        }
        slow_ticks += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let acked: BTreeSet<String> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("sender thread"))
        .collect();
    let elapsed = started.elapsed();
    assert_eq!(acked.len(), SENDERS * PER_SENDER);
    let peak_load = agent.rss_kib().expect("VmRSS");

    // One more sender, among the 1,000 still-open connections.
    let t = Instant::now();
    let mut late = MllpClient::connect(port).expect("connect");
    let ack = late.send(&hl7_message("LATE1", "P", "2.0")).expect("ACK");
    assert_eq!(msa(&ack).0, "AA");
    let late_latency = t.elapsed();

    // A 10 MB message (limit 1 MiB): refused with AE and closed; memory stays bounded.
    let mut big = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let _ = big.write_all(&[VT]);
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..10 {
        if big.write_all(&chunk).is_err() {
            break; // refused early: the agent answered AE and closed
        }
    }
    let peak_big = agent.rss_kib().expect("VmRSS");

    // Every acknowledged message was delivered.
    let delivered = || {
        std::fs::read_dir(&outbox).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "hl7"))
                .count()
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || delivered() > acked.len()),
        "{} of {} delivered",
        delivered(),
        acked.len() + 1
    );
    for id in &acked {
        assert!(outbox.join(format!("{id}.hl7")).is_file(), "{id} missing");
    }
    eprintln!(
        "load: {} messages from {SENDERS} senders in {elapsed:?} ({:.0}/s) beside {IDLE} idle \
         connections ({slow_ticks} slow-byte rounds); late sender ACK in {late_latency:?}; RSS \
         {baseline} KiB idle -> {peak_load} KiB under load -> {peak_big} KiB after the 10 MB message",
        acked.len(),
        acked.len() as f64 / elapsed.as_secs_f64()
    );
    // Bounded memory: 1,200 connections and the 10 MB message stay well within 64 MiB.
    assert!(peak_load < 64 * 1024, "RSS {peak_load} KiB under load");
    assert!(
        peak_big < 64 * 1024,
        "RSS {peak_big} KiB after the 10 MB message"
    );
    drop(idle);
}
