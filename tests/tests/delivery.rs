//! ASTM in, ORU^R01 out over MLLP: translation, EHR answers, outages, crashes and a full store.
//! Every test runs the real binary against real sockets (and a socat pty pair for serial).

use labagent_tests::config as cfg;
use labagent_tests::{
    AgentProcess, EhrStub, Er7, LogLine, MllpClient, PtyPair, Received, Reply, StubSpec, XorShift,
    astm_message, free_port, sample, simulate,
};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

const SIM_TIMEOUT: Duration = Duration::from_secs(60);

fn tcp_target(port: u16) -> String {
    format!("tcp://127.0.0.1:{port}")
}

/// OBR-3 (the specimen id) of each received message, in arrival order.
fn specimens(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.er7().field("OBR", 3)).collect()
}

/// Writes a trace with one message per specimen id.
fn write_trace(path: &Path, specimen_ids: &[String]) {
    let mut text = String::new();
    for (i, s) in specimen_ids.iter().enumerate() {
        text.push_str(&astm_message(
            &format!("P{i}"),
            s,
            &[("WBC", "5.0", "10*3/uL")],
        ));
    }
    std::fs::write(path, text).expect("write trace");
}

fn assert_no_patient_data(lines: &[LogLine]) {
    for l in lines.iter().filter(|l| l.info_or_above()) {
        for needle in [
            "Patient",
            sample::BIRTH_DATE,
            sample::RESULTS[0].1,
            sample::RESULTS[2].1,
        ] {
            assert!(
                !l.text.contains(needle),
                "patient data {needle:?} in a log line: {}",
                l.raw
            );
        }
    }
}

#[test]
fn serial_astm_to_mllp_ehr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = PtyPair::new(dir.path());
    let ehr = EhrStub::aa();
    let text = [
        cfg::agent(dir.path(), "ser"),
        cfg::astm_serial_source("xn550", &pty.a, "mapping = \"xn\"\n"),
        "[mapping.xn]\nsending_application = \"XN-550\"\nreceiving_application = \"EHR\"\n\
         [mapping.xn.tests]\n\"WBC\" = { code = \"6690-2\", text = \"Leukocytes [#/volume] in Blood\", system = \"LN\" }\n\n"
            .to_string(),
        cfg::mllp_sink("ehr", ehr.port, "ack_timeout = \"5s\"\n"),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    // The agent flushes stale input when it opens the port: send only once it is open.
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message()
                == "serial port open")
            .is_some(),
        "serial port never opened:\n{}",
        agent.log().dump()
    );
    let sim = simulate(
        &[
            "--serial".as_ref(),
            pty.b.as_os_str(),
            "--count".as_ref(),
            "2".as_ref(),
        ],
        SIM_TIMEOUT,
    );
    assert!(sim.success(), "simulate failed: {sim:?}");
    assert_eq!(sim.sent(), 2);

    let got = ehr.wait_for(2, Duration::from_secs(15));
    assert_eq!(got.len(), 2, "exactly one ORU per analyser message");
    let mut ids = BTreeSet::new();
    for r in &got {
        let m = r.er7();
        let msh = m.seg("MSH").expect("MSH");
        assert_eq!(msh.field(9), "ORU^R01^ORU_R01");
        assert_eq!(msh.field(3), "XN-550");
        assert_eq!(msh.field(5), "EHR");
        assert_eq!(msh.field(12), "2.5.1");
        let id = msh.field(10).to_string();
        assert!(!id.is_empty() && id.len() <= 20, "MSH-10 {id:?}");
        assert!(ids.insert(id.clone()), "MSH-10 {id} reused");
        assert_eq!(
            m.seg("PID").expect("PID").component(3, 1),
            sample::PATIENT_ID
        );
        assert_eq!(m.field("OBR", 3), sample::SPECIMEN_ID);
        assert!(
            m.field("SPM", 2)
                .split('^')
                .any(|c| c == sample::SPECIMEN_ID),
            "SPM-2 {:?}",
            m.field("SPM", 2)
        );
        let obx: Vec<_> = m.all("OBX").collect();
        assert_eq!(obx.len(), sample::RESULTS.len(), "{:?}", m.ids());
        for (seg, (code, value, unit)) in obx.iter().zip(sample::RESULTS) {
            if code == "WBC" {
                assert_eq!(seg.component(3, 1), "6690-2");
                assert_eq!(seg.component(3, 2), "Leukocytes [#/volume] in Blood");
                assert_eq!(seg.component(3, 3), "LN");
                assert_eq!(seg.component(3, 4), "WBC", "local code kept as alternate");
            } else {
                assert_eq!(seg.component(3, 1), code, "unmapped codes pass through");
            }
            assert_eq!(seg.field(5), value);
            assert_eq!(seg.field(6), unit);
        }
    }
    assert_no_patient_data(&agent.log().lines());
}

#[test]
fn ehr_answers_ae_ar_drop_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = StubSpec {
        script: vec![
            Reply::Ar,
            Reply::Drop,
            Reply::Aa,
            Reply::Ae("specimen rejected by the EHR".into()),
            Reply::DelayThenAa(Duration::from_millis(500)),
        ],
        default: Reply::Aa,
        ..StubSpec::default()
    }
    .start();
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "acks"),
        cfg::astm_tcp_source("analyser", port, ""),
        cfg::mllp_sink(
            "ehr",
            ehr.port,
            "ack_timeout = \"2s\"\nmax_backoff = \"1s\"\n",
        ),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let sim = simulate(&["--to", &tcp_target(port), "--count", "3"], SIM_TIMEOUT);
    assert!(sim.success(), "{sim:?}");

    let got = ehr.wait_for(5, Duration::from_secs(20));
    let first = &got[0];
    let x = first.control_id();
    // AR, then a dropped connection: the same bytes again, twice, each on a new connection.
    for (i, r) in got[..3].iter().enumerate() {
        assert_eq!(r.bytes, first.bytes, "attempt {i} is not byte-identical");
        assert_eq!(r.control_id(), x);
    }
    assert!(
        got[0].conn < got[1].conn && got[1].conn < got[2].conn,
        "each retry reconnects: {:?}",
        got.iter().map(|r| r.conn).collect::<Vec<_>>()
    );
    let y = got[3].control_id();
    let z = got[4].control_id();
    assert!(x != y && y != z && x != z, "{x} {y} {z}");
    assert_eq!(
        got[3].reply,
        Reply::Ae("specimen rejected by the EHR".into())
    );

    // The delayed AA (500 ms < ack_timeout 2 s) is accepted: the agent logs it delivered.
    let delivered = agent.wait_for_log(Duration::from_secs(10), |l| {
        l.message() == "delivered" && l.text.contains(&z)
    });
    assert!(delivered.is_some(), "{}", agent.log().dump());
    // Order per sink: nothing can follow Z but a message after it, so Y will never return.
    let after = ehr.received();
    assert_eq!(after.len(), 5, "AE'd or delayed message sent again");
    assert_eq!(after.iter().filter(|r| r.control_id() == y).count(), 1);
    assert_eq!(after.iter().filter(|r| r.control_id() == z).count(), 1);

    let lines = agent.log().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.level == "WARN" && l.message() == "parked" && l.text.contains(&y)),
        "no WARN 'parked' line for {y}:\n{}",
        agent.log().dump()
    );
    let retries = lines
        .iter()
        .filter(|l| l.level == "WARN" && l.text.contains("will retry") && l.text.contains(&x))
        .count();
    assert_eq!(retries, 2, "one retry after AR, one after the drop");
    assert!(
        lines
            .iter()
            .any(|l| l.message() == "delivered" && l.text.contains(&x)),
        "X was finally delivered"
    );
}

#[test]
fn ehr_outage_drains_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr_port = free_port(); // nothing listens here yet: the EHR is down
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "outage"),
        cfg::astm_tcp_source("analyser", port, ""),
        cfg::mllp_sink(
            "ehr",
            ehr_port,
            "ack_timeout = \"2s\"\nconnect_timeout = \"1s\"\nmax_backoff = \"1s\"\n",
        ),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let ids: Vec<String> = (1..=10).map(|i| format!("OUT-{i:02}")).collect();
    let trace = dir.path().join("ten.astm");
    write_trace(&trace, &ids);
    let sim = simulate(
        &[
            "--to".as_ref(),
            tcp_target(port).as_ref(),
            "--file".as_ref(),
            trace.as_os_str(),
        ],
        SIM_TIMEOUT,
    );
    assert!(sim.success(), "{sim:?}");
    assert_eq!(sim.sent(), 10);
    // Readiness for the outage: the sink has tried and failed at least once.
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.level == "WARN"
                && l.text.contains("will retry"))
            .is_some(),
        "{}",
        agent.log().dump()
    );
    let ehr = StubSpec {
        port: ehr_port,
        ..StubSpec::default()
    }
    .start();
    let got = ehr.wait_for(10, Duration::from_secs(45));
    assert_eq!(specimens(&got), ids, "original order, no gaps, no repeats");
    let msh10: BTreeSet<String> = got.iter().map(Received::control_id).collect();
    assert_eq!(msh10.len(), 10);
}

/// `max_backoff = "1s"`: once the EHR misbehaves, no two attempts are more than ~1 s apart.
#[test]
fn sink_max_backoff_is_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = StubSpec {
        hang_up_on_accept: true,
        ..StubSpec::default()
    }
    .start();
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "backoff"),
        cfg::astm_tcp_source("analyser", port, ""),
        cfg::mllp_sink(
            "ehr",
            ehr.port,
            "ack_timeout = \"1s\"\nmax_backoff = \"1s\"\n",
        ),
    ]
    .concat();
    let _agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let sim = simulate(&["--to", &tcp_target(port)], SIM_TIMEOUT);
    assert!(sim.success(), "{sim:?}");
    let accepts = ehr.wait_for_accepts(7, Duration::from_secs(12));
    let gaps: Vec<Duration> = accepts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        accepts.len() >= 7,
        "only {} attempts in 12 s, gaps {gaps:?}",
        accepts.len()
    );
    let worst = gaps.iter().copied().max().unwrap_or_default();
    assert!(
        worst <= Duration::from_millis(1500),
        "attempts {worst:?} apart with max_backoff = 1s"
    );
}

/// E1381 frame: STX FN text ETX C1 C2 CR LF; the checksum is the sum of FN, text and ETX
/// modulo 256, as two upper-case hex digits (E1381 §6.3.1.4).
fn e1381_frame(number: u8, text: &str) -> Vec<u8> {
    let mut body = vec![b'0' + number % 8];
    body.extend_from_slice(text.as_bytes());
    body.push(0x03);
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut frame = vec![0x02];
    frame.extend_from_slice(&body);
    frame.extend_from_slice(format!("{sum:02X}\r\n").as_bytes());
    frame
}

#[test]
fn analyser_disconnect_mid_message_commits_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = EhrStub::aa();
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "partial"),
        cfg::astm_tcp_source("analyser", port, ""),
        cfg::mllp_sink("ehr", ehr.port, ""),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));

    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reply = [0u8; 1];
    s.write_all(&[0x05]).expect("ENQ");
    s.read_exact(&mut reply).expect("reply to ENQ");
    assert_eq!(reply[0], 0x06, "ENQ answered with ACK");
    let frames = [
        e1381_frame(1, "H|\\^&|||PARTIAL^1||||||||E1394-97\r"),
        e1381_frame(2, "P|1||PARTIAL-PID||Partial^Pat||19700101|F\r"),
    ];
    // A frame with a wrong checksum is NAKed (proves the checksums above are really checked).
    let mut bad = frames[0].clone();
    let n = bad.len();
    bad[n - 3] = if bad[n - 3] == b'0' { b'1' } else { b'0' };
    s.write_all(&bad).expect("bad frame");
    s.read_exact(&mut reply).expect("reply to bad frame");
    assert_eq!(reply[0], 0x15, "bad checksum answered with NAK");
    for f in &frames {
        s.write_all(f).expect("frame");
        s.read_exact(&mut reply).expect("reply to frame");
        assert_eq!(reply[0], 0x06, "frame ACKed");
    }
    drop(s); // the analyser dies before its L record

    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message()
                == "analyser disconnected")
            .is_some(),
        "{}",
        agent.log().dump()
    );
    let (arrived, _) = ehr.wait_until(Duration::from_millis(500), |r| !r.is_empty());
    assert!(!arrived, "a half message reached the EHR");

    // The agent still serves a complete session, and the EHR receives only that one.
    let sim = simulate(&["--to", &tcp_target(port)], SIM_TIMEOUT);
    assert!(sim.success(), "{sim:?}");
    let got = ehr.wait_for(1, Duration::from_secs(10));
    let id = got[0].control_id();
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message() == "delivered"
                && l.text.contains(&id))
            .is_some()
    );
    let all = ehr.received();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].er7().seg("PID").expect("PID").component(3, 1),
        sample::PATIENT_ID
    );
    assert!(!String::from_utf8_lossy(&all[0].bytes).contains("PARTIAL"));
}

#[test]
fn crash_and_restart_loses_nothing() {
    const ROUNDS: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = EhrStub::aa();
    let port = free_port();
    let text = [
        cfg::agent(dir.path(), "crash"),
        cfg::astm_tcp_source("analyser", port, ""),
        cfg::mllp_sink("ehr", ehr.port, "ack_timeout = \"2s\"\n"),
    ]
    .concat();
    let config = cfg::write(dir.path(), &text);
    let mut rng = XorShift::new(0x1ab_a6e7);
    let mut acked: Vec<String> = Vec::new();
    let mut sent_total = 0;
    for round in 0..ROUNDS {
        let mut agent = AgentProcess::start(&config);
        let ids: Vec<String> = (0..3).map(|k| format!("K{round:02}-{k}")).collect();
        let trace = dir.path().join(format!("round{round}.astm"));
        write_trace(&trace, &ids);
        let args = vec![
            "--to".to_string(),
            tcp_target(port),
            "--file".to_string(),
            trace.display().to_string(),
        ];
        let sim = std::thread::spawn(move || simulate(&args, SIM_TIMEOUT));
        // The crash instant is the experiment, not a wait: seeded, 0-150 ms.
        std::thread::sleep(Duration::from_millis(rng.below(151)));
        agent.kill();
        let outcome = sim.join().expect("simulate thread");
        let n = outcome.sent();
        assert!(n <= 3, "{outcome:?}");
        sent_total += n;
        // Messages go one after another on one connection: the first n were fully ACKed.
        acked.extend(ids[..n].iter().cloned());
    }
    assert!(
        sent_total > 0,
        "no round got a message through; timings are off"
    );

    let agent = AgentProcess::start(&config);
    let want: BTreeSet<String> = acked.iter().cloned().collect();
    let (ok, got) = ehr.wait_until(Duration::from_secs(30), |r| {
        let seen: BTreeSet<String> = specimens(r).into_iter().collect();
        want.is_subset(&seen)
    });
    let seen: BTreeSet<String> = specimens(&got).into_iter().collect();
    let missing: Vec<_> = want.difference(&seen).collect();
    assert!(
        ok,
        "acknowledged messages lost: {missing:?}\n{}",
        agent.log().dump()
    );
    // Duplicates are recognisable: one MSH-10 per distinct message, one message per MSH-10.
    let mut by_specimen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_id: BTreeMap<String, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for r in &got {
        let m = Er7::parse(&r.bytes);
        by_specimen
            .entry(m.field("OBR", 3))
            .or_default()
            .insert(m.control_id());
        by_id
            .entry(m.control_id())
            .or_default()
            .insert(r.bytes.clone());
    }
    for (specimen, ids) in &by_specimen {
        assert_eq!(
            ids.len(),
            1,
            "{specimen} arrived under several MSH-10s: {ids:?}"
        );
    }
    for (id, bodies) in &by_id {
        assert_eq!(bodies.len(), 1, "MSH-10 {id} carried different bytes");
    }
    eprintln!(
        "crash test: {} acknowledged, {} received ({} distinct)",
        acked.len(),
        got.len(),
        by_specimen.len()
    );
}

/// The smallest `[store] max_bytes` with which the agent actually runs (see the ignored test
/// below for the 1 MiB that check-config accepts).
const SMALLEST_RUNNABLE_STORE: &str = "32MiB";

#[test]
fn store_full_backpressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr_port = free_port(); // the EHR is down: nothing leaves the store
    let astm_port = free_port();
    let mllp_port = free_port();
    let text = [
        cfg::agent(dir.path(), "full"),
        cfg::store(SMALLEST_RUNNABLE_STORE),
        cfg::astm_tcp_source("analyser", astm_port, ""),
        cfg::mllp_source("lis", mllp_port, ""),
        cfg::mllp_sink(
            "ehr",
            ehr_port,
            "ack_timeout = \"2s\"\nconnect_timeout = \"1s\"\nmax_backoff = \"1s\"\n",
        ),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));

    // Fill the store over MLLP until the agent pushes back: ~900 KB messages first, then
    // smaller ones, so that what is left is too small even for one CBC ORU (~1 KB).
    let mut client = MllpClient::connect(mllp_port).expect("connect");
    let mut accepted = Vec::new();
    let mut refusal = (String::new(), String::new());
    for size in [900_000, 20_000, 400, 1] {
        let filler = "X".repeat(size);
        loop {
            assert!(accepted.len() < 500, "the store never filled up");
            let id = format!("FILL{:04}", accepted.len());
            let msg = labagent_tests::mllp::hl7_message(&id, "P1", &filler);
            let ack = client.send(&msg).expect("ACK");
            let (code, acked) = labagent_tests::mllp::msa(&ack);
            assert_eq!(acked, id, "MSA-2");
            if code == "AA" {
                accepted.push(id);
            } else {
                refusal = (code, String::from_utf8_lossy(&ack).into_owned());
                break;
            }
        }
    }
    assert_eq!(
        refusal.0, "AR",
        "a full store answers AR (retry later): {}",
        refusal.1
    );
    assert!(refusal.1.contains("full"), "{}", refusal.1);
    assert!(accepted.len() >= 20, "only {} accepted", accepted.len());

    // An analyser's final frame is NAKed: simulate gives up and exits 1, nothing sent.
    let sim = simulate(&["--to", &tcp_target(astm_port)], SIM_TIMEOUT);
    assert_eq!(sim.code, Some(1), "{sim:?}");
    assert_eq!(sim.sent(), 0, "{sim:?}");
    assert!(sim.stderr.contains("refused"), "{sim:?}");
    assert!(
        agent
            .log()
            .lines()
            .iter()
            .any(|l| l.level == "WARN" && l.text.contains("answering NAK")),
        "{}",
        agent.log().dump()
    );

    // The EHR comes up: everything acknowledged arrives, in order.
    let ehr = StubSpec {
        port: ehr_port,
        ..StubSpec::default()
    }
    .start();
    let got = ehr.wait_for(accepted.len(), Duration::from_secs(60));
    let ids: Vec<String> = got.iter().map(Received::control_id).collect();
    assert_eq!(ids, accepted);

    // Once delivered, the space is reclaimed and the analyser gets through again.
    let last = accepted.last().expect("one").clone();
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message() == "delivered"
                && l.text.contains(&last))
            .is_some()
    );
    let sim = simulate(&["--to", &tcp_target(astm_port)], SIM_TIMEOUT);
    assert!(sim.success(), "store still full after draining: {sim:?}");
    let got = ehr.wait_for(accepted.len() + 1, Duration::from_secs(20));
    assert_eq!(
        got.last().expect("one").er7().field("OBR", 3),
        sample::SPECIMEN_ID
    );
}

/// `check-config` accepts `[store] max_bytes` down to 1 MiB, so `run` must start with it.
#[test]
fn store_max_bytes_accepted_by_check_config_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = [
        cfg::agent(dir.path(), "small"),
        cfg::store("1MiB"),
        cfg::astm_tcp_source("analyser", free_port(), ""),
        cfg::file_sink("outbox", &dir.path().join("outbox")),
    ]
    .concat();
    let config = cfg::write(dir.path(), &text);
    let check = std::process::Command::new(labagent_tests::labagent_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("check-config");
    assert!(check.status.success(), "check-config refused 1MiB");
    let mut agent = AgentProcess::spawn(&config);
    let started = Instant::now();
    let ready = agent.wait_for_log(Duration::from_secs(20), |l| l.message() == "ready");
    let exit = agent.wait_exit(Duration::from_millis(1));
    assert!(
        ready.is_some() && exit.is_none(),
        "check-config accepted the config but run failed after {:?}:\n{}",
        started.elapsed(),
        agent.log().dump()
    );
}
