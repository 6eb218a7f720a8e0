//! `labagent simulate` against an independent E1381 receiver (tests/support/e1381_receiver.py,
//! written from the standard and sharing no code with labagent), over TCP and over a socat pty
//! pair.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

fn receiver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/e1381_receiver.py")
}

/// Starts the receiver and returns it with the first line it printed (port or "ready").
fn start_receiver(args: &[&str]) -> (Child, String) {
    let mut child = Command::new("python3")
        .arg(receiver_script())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be installed to run the independent receiver");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("receiver's first line");
    (child, line.trim().to_string())
}

fn sample_records() -> Vec<String> {
    labagent::sample::CBC_SESSION
        .split('\r')
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect()
}

fn received(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .expect("receiver output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn simulate_over_tcp_with_a_retransmission() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let out_s = out.to_str().expect("utf-8 path");
    let (mut receiver, port) =
        start_receiver(&["--tcp", out_s, "--nak-frame", "2", "--sessions", "2"]);
    let result = Command::new(BIN)
        .args([
            "simulate",
            "--to",
            &format!("tcp://127.0.0.1:{port}"),
            "--count",
            "2",
        ])
        .output()
        .expect("run labagent");
    let status = receiver.wait().expect("receiver exit");
    assert!(
        result.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(String::from_utf8_lossy(&result.stdout).contains("sent 2 message(s)"));
    assert!(status.success(), "receiver saw a protocol error");
    let sessions = received(&out);
    assert_eq!(sessions.len(), 2);
    let expected = sample_records();
    for s in &sessions {
        let records: Vec<String> = serde_json::from_value(s["records"].clone()).expect("records");
        assert_eq!(records, expected);
    }
    assert_eq!(sessions[0]["naks"], 1, "frame 2 was NAKed once and resent");
}

#[test]
fn simulate_sends_capture_files_reframed() {
    let corpus = std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    let trace = corpus.join("abbott_architect_1.astm");
    assert!(trace.is_file(), "corpus missing at {}", corpus.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("received.jsonl");
    let (mut receiver, port) =
        start_receiver(&["--tcp", out.to_str().expect("path"), "--sessions", "5"]);
    let result = Command::new(BIN)
        .args([
            "simulate",
            "--to",
            &format!("tcp://127.0.0.1:{port}"),
            "--file",
        ])
        .arg(&trace)
        .output()
        .expect("run labagent");
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(receiver.wait().expect("receiver").success());
    let sessions = received(&out);
    assert_eq!(
        sessions.len(),
        5,
        "five H..L messages, one transmission each"
    );
    let first: Vec<String> = serde_json::from_value(sessions[0]["records"].clone()).expect("r");
    assert!(first[0].starts_with("H|\\^&|||ARCHITECT^9.45"));
    assert_eq!(first.last().map(String::as_str), Some("L|1"));
}

#[test]
fn simulate_fails_when_the_receiver_goes_away() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let closer = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        drop(conn); // hang up without a word
    });
    let result = Command::new(BIN)
        .args(["simulate", "--to", &format!("tcp://127.0.0.1:{port}")])
        .output()
        .expect("run labagent");
    closer.join().expect("closer");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("closed the connection"), "{stderr}");
}

#[test]
fn simulate_over_a_pty_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("analyser");
    let b = dir.path().join("host");
    let mut socat = Command::new("socat")
        .args(["-d", "-d"])
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat must be installed (apt-get install socat)");
    let stderr = socat.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Wait for readiness, not for a timer.
    for line in lines.by_ref() {
        if line
            .expect("socat stderr")
            .contains("starting data transfer loop")
        {
            break;
        }
    }
    let out = dir.path().join("received.jsonl");
    let (mut receiver, ready) = start_receiver(&[
        "--serial",
        b.to_str().expect("path"),
        out.to_str().expect("path"),
        "--nak-frame",
        "3",
    ]);
    assert_eq!(ready, "ready");
    let result = Command::new(BIN)
        .args(["simulate", "--serial"])
        .arg(&a)
        .output()
        .expect("run labagent");
    let receiver_status = receiver.wait().expect("receiver");
    let _ = socat.kill();
    let _ = socat.wait();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(receiver_status.success());
    let sessions = received(&out);
    let records: Vec<String> = serde_json::from_value(sessions[0]["records"].clone()).expect("r");
    assert_eq!(records, sample_records());
    assert_eq!(sessions[0]["naks"], 1);
}
