//! HL7 v2 over MLLP into the agent: durable before AA, forwarded byte for byte, and robust
//! against junk, oversized, idle and slow peers.

use labagent_tests::config as cfg;
use labagent_tests::mllp::{VT, frame, hl7_message, msa};
use labagent_tests::{AgentProcess, MllpClient, free_port, wait_until};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The `.hl7` files in `dir` (temporary dot-files excluded), sorted by name.
fn outbox_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".hl7") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn mllp_in_to_file_sink() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "mllpin"),
        cfg::mllp_source("lis", port, ""),
        cfg::file_sink("outbox", &outbox),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let mut client = MllpClient::connect(port).expect("connect");

    let mut sent = Vec::new();
    for i in 1..=3 {
        let id = format!("MSG{i:04}");
        let msg = hl7_message(&id, &format!("PAT{i}"), &format!("{i}.5"));
        let ack = client.send(&msg).expect("ACK");
        assert_eq!(msa(&ack), ("AA".to_string(), id.clone()));
        // The commit that preceded this AA is in the log (stderr may lag the socket).
        assert!(
            agent
                .wait_for_log(Duration::from_secs(5), |l| l.message()
                    == "message committed"
                    && l.text.contains(&id))
                .is_some(),
            "no commit logged for {id}"
        );
        sent.push((id, msg));
    }

    // Garbage: AE (it can never be parsed), and the connection stays usable.
    let ack = client.send(b"garbage\r").expect("ACK for garbage");
    assert_eq!(msa(&ack).0, "AE", "{}", String::from_utf8_lossy(&ack));
    let id = "MSG0004".to_string();
    let msg = hl7_message(&id, "PAT4", "4.5");
    let ack = client.send(&msg).expect("ACK after garbage");
    assert_eq!(msa(&ack), ("AA".to_string(), id.clone()));
    sent.push((id, msg));

    let want: Vec<String> = sent.iter().map(|(id, _)| format!("{id}.hl7")).collect();
    assert!(
        wait_until(Duration::from_secs(10), || outbox_files(&outbox) == want),
        "outbox holds {:?}, want {want:?}\n{}",
        outbox_files(&outbox),
        agent.log().dump()
    );
    for (id, msg) in &sent {
        let written = std::fs::read(outbox.join(format!("{id}.hl7"))).expect("read");
        assert_eq!(&written, msg, "{id} not byte-for-byte");
    }
    // The garbage never becomes a file (it is parked), even after the last delivery.
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message() == "delivered"
                && l.text.contains("MSG0004"))
            .is_some()
    );
    assert_eq!(outbox_files(&outbox), want);
}

#[test]
fn mllp_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = dir.path().join("outbox");
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "badin"),
        cfg::mllp_source(
            "lis",
            port,
            "max_connections = 250\nidle_timeout = \"3s\"\n",
        ),
        cfg::file_sink("outbox", &outbox),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let connected = || {
        agent
            .log()
            .lines()
            .iter()
            .filter(|l| l.message() == "sender connected")
            .count()
    };

    // 1. Junk before the start block is skipped.
    let mut c = MllpClient::connect(port).expect("connect");
    c.write_raw(b"\r\nnoise \x00\xff before the block")
        .expect("junk");
    let ack = c.send(&hl7_message("JUNK1", "P1", "1.0")).expect("ACK");
    assert_eq!(msa(&ack), ("AA".to_string(), "JUNK1".to_string()));
    drop(c);

    // 2. 200 idle connections held open; another client still gets its AA promptly.
    let before = connected();
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("idle connect"))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || connected() >= before + 200),
        "the agent did not accept 200 connections: {}",
        connected() - before
    );
    let started = Instant::now();
    let mut c = MllpClient::connect(port).expect("connect beside idle ones");
    let ack = c.send(&hl7_message("BUSY1", "P2", "2.0")).expect("ACK");
    assert_eq!(msa(&ack), ("AA".to_string(), "BUSY1".to_string()));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "AA took {:?} beside 200 idle connections",
        started.elapsed()
    );
    drop(c);
    drop(idle);

    // 3. A slow sender trickling one byte at a time over ~1 s.
    let msg = frame(&hl7_message("SLOW1", "P3", "3.0"));
    let gap = Duration::from_secs(1) / msg.len() as u32;
    let mut c = MllpClient::connect(port).expect("connect");
    for b in &msg {
        c.write_raw(std::slice::from_ref(b)).expect("byte");
        // Pacing the sender is the scenario itself, not a wait for the agent.
        std::thread::sleep(gap);
    }
    let ack = c.read_block().expect("ACK for the slow sender");
    assert_eq!(msa(&ack), ("AA".to_string(), "SLOW1".to_string()));
    drop(c);

    // 4. 10 MB in a block that never ends: memory stays bounded and the agent closes it.
    let mut big = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let baseline = agent.rss_kib().expect("VmRSS");
    let mut peak = baseline;
    big.write_all(&[VT]).expect("VT");
    let chunk = vec![b'A'; 1 << 20];
    let mut refused_early = false;
    for _ in 0..10 {
        // The agent may answer AE and close as soon as the limit is crossed: a failed write
        // is that refusal arriving, not a test failure.
        if big.write_all(&chunk).is_err() {
            refused_early = true;
            break;
        }
        peak = peak.max(agent.rss_kib().expect("VmRSS"));
    }
    let _ = big.flush();
    let mut reader = MllpClient::from_tcp(big).expect("client");
    let closed_after = Instant::now();
    let closed = refused_early || reader.wait_closed(Duration::from_secs(15)).unwrap_or(true);
    assert!(closed, "the agent kept the oversized connection open");
    eprintln!(
        "oversized block: closed {:?} after the last byte; RSS {} KiB -> peak {} KiB",
        closed_after.elapsed(),
        baseline,
        peak
    );
    assert!(
        peak < 64 * 1024,
        "RSS reached {peak} KiB during the 10 MB message"
    );

    // The agent still works, and every good message reached the outbox.
    let mut c = MllpClient::connect(port).expect("connect");
    let ack = c.send(&hl7_message("AFTER1", "P4", "4.0")).expect("ACK");
    assert_eq!(msa(&ack), ("AA".to_string(), "AFTER1".to_string()));
    let want = ["AFTER1.hl7", "BUSY1.hl7", "JUNK1.hl7", "SLOW1.hl7"];
    assert!(
        wait_until(Duration::from_secs(10), || outbox_files(&outbox) == want),
        "{:?}",
        outbox_files(&outbox)
    );
}

/// INTERFACE/config: "Larger input is refused (NAK / AE), never truncated". A complete block
/// over `max_message_bytes` should get a negative ACK rather than a silent hang-up.
#[test]
fn mllp_oversized_message_gets_negative_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "big"),
        cfg::mllp_source("lis", port, "max_message_bytes = \"64KiB\"\n"),
        cfg::file_sink("outbox", &dir.path().join("outbox")),
    ]
    .concat();
    let _agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let mut c = MllpClient::connect(port).expect("connect");
    let big = hl7_message("BIG1", "P1", &"9".repeat(100 * 1024));
    let ack = c.send(&big);
    let ack = ack.expect("an ACK, not a hang-up");
    let (code, _) = msa(&ack);
    assert!(code == "AE" || code == "AR", "MSA-1 {code}");
}
