//! The CLI contract (`check-config`, `demo`) and the no-patient-data-in-logs rule.

use labagent_tests::config as cfg;
use labagent_tests::mllp::{hl7_message, msa};
use labagent_tests::{
    AgentProcess, LogLine, MllpClient, Reply, StubSpec, free_port, labagent_bin, sample, simulate,
};
use std::process::Command;
use std::time::Duration;

#[test]
fn check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[agent]\nid = \"t1\"\nstate_dir = \"state\"\ntimezone = \"UTC\"\n\
         [store]\nmax_bytes = \"10KiB\"\n\
         [[source]]\nname = \"xn\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:99999\"\n\
         [[sink]]\nname = \"ehr\"\nkind = \"mllp\"\nconnect = \"127.0.0.1:9\"\nack_timeout = 30\n",
    )
    .expect("write");
    let out = Command::new(labagent_bin())
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = bad.display().to_string();
    for (line, key) in [
        (6, "store.max_bytes"),
        (10, "source[0].listen"),
        (15, "sink[0].ack_timeout"),
    ] {
        let prefix = format!("{file}:{line}: {key}: ");
        assert!(
            stderr.lines().any(|l| l.starts_with(&prefix)),
            "missing {prefix:?} in:\n{stderr}"
        );
    }

    let good = [
        cfg::agent(dir.path(), "good"),
        cfg::astm_tcp_source("analyser", free_port(), ""),
        cfg::mllp_source("lis", free_port(), ""),
        cfg::mllp_sink("ehr", free_port(), "ack_timeout = \"5s\"\n"),
        cfg::file_sink("outbox", &dir.path().join("outbox")),
    ]
    .concat();
    let good = cfg::write(dir.path(), &good);
    let out = Command::new(labagent_bin())
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .expect("check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in [
        "analyser", "lis", "ehr", "outbox", "astm-tcp", "mllp", "file",
    ] {
        assert!(stdout.contains(word), "summary lacks {word:?}:\n{stdout}");
    }
}

#[test]
fn demo_round_trip() {
    let out = Command::new(labagent_bin())
        .arg("demo")
        .output()
        .expect("demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("MSH|"), "{stdout}");
    assert!(stdout.contains("Delivery receipt"), "{stdout}");
}

fn patient_data_lines<'a>(lines: &'a [LogLine], needles: &[&str]) -> Vec<&'a LogLine> {
    lines
        .iter()
        .filter(|l| l.info_or_above())
        .filter(|l| needles.iter().any(|n| l.text.contains(n)))
        .collect()
}

#[test]
fn no_patient_data_in_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ehr = StubSpec {
        script: vec![Reply::Ar, Reply::Aa, Reply::Ae("rejected".into())],
        default: Reply::Aa,
        ..StubSpec::default()
    }
    .start();
    let astm_port = free_port();
    let mllp_port = free_port();
    let text = [
        cfg::agent(dir.path(), "privacy"),
        cfg::astm_tcp_source("analyser", astm_port, ""),
        cfg::mllp_source("lis", mllp_port, ""),
        cfg::mllp_sink("ehr", ehr.port, "ack_timeout = \"2s\"\n"),
        cfg::file_sink("outbox", &dir.path().join("outbox")),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    // The CBC twice (retried once after AR, then one parked after AE), plus HL7 input.
    let sim = simulate(
        &[
            "--to",
            &format!("tcp://127.0.0.1:{astm_port}"),
            "--count",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert!(sim.success(), "{sim:?}");
    let mut c = MllpClient::connect(mllp_port).expect("connect");
    let ack = c
        .send(&hl7_message("PRIV1", "MRN-777", "6.42"))
        .expect("ACK");
    assert_eq!(msa(&ack).0, "AA");
    let ack = c
        .send(b"MSH|^~\\&|broken\rPID|||||Patient^Test\r\x01")
        .expect("ACK");
    let _ = msa(&ack);
    ehr.wait_for(4, Duration::from_secs(20));
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.message() == "delivered"
                && l.text.contains("PRIV1"))
            .is_some(),
        "{}",
        agent.log().dump()
    );
    let lines = agent.log().lines();
    let leaks = patient_data_lines(
        &lines,
        &[
            "Patient",
            sample::BIRTH_DATE,
            sample::RESULTS[0].1,
            sample::RESULTS[2].1,
            "Doe",
            "19700101",
            "MRN-777",
        ],
    );
    assert!(leaks.is_empty(), "patient data in logs: {leaks:#?}");
    assert!(
        lines.iter().filter(|l| l.info_or_above()).count() > 5,
        "the scan looked at almost nothing"
    );
}

/// An HL7 message that cannot be parsed is logged with the reason; the reason must not quote
/// the message's bytes, which are patient data.
#[test]
fn no_patient_data_in_logs_for_unparseable_hl7() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mllp_port = free_port();
    let text = [
        cfg::agent(dir.path(), "privacy2"),
        cfg::mllp_source("lis", mllp_port, ""),
        cfg::file_sink("outbox", &dir.path().join("outbox")),
    ]
    .concat();
    let agent = AgentProcess::start(&cfg::write(dir.path(), &text));
    let mut c = MllpClient::connect(mllp_port).expect("connect");
    // Not starting with MSH: a PID segment fragment leads.
    let ack = c
        .send(b"19800101|Patient^Test|6.42\rOBX|1|NM|HGB||13.9\r")
        .expect("ACK");
    assert_eq!(msa(&ack).0, "AE");
    assert!(
        agent
            .wait_for_log(Duration::from_secs(10), |l| l.level == "WARN"
                && l.message() == "message cannot be parsed")
            .is_some(),
        "{}",
        agent.log().dump()
    );
    let lines = agent.log().lines();
    let leaks = patient_data_lines(&lines, &["Patient", sample::BIRTH_DATE, "6.42", "13.9"]);
    assert!(leaks.is_empty(), "patient data in logs: {leaks:#?}");
}
