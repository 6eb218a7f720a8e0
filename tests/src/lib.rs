//! Shared harness for the labagent end-to-end tests.
//!
//! Everything here drives the real `labagent` binary over real peers: TCP sockets on
//! `127.0.0.1`, `socat` pty pairs, rustls with `rcgen` certificates. Nothing is mocked inside the
//! agent. House rule: tests never sleep to wait; they wait on readiness (a log line, a received
//! message, a file, a closed socket), always with a deadline so a failure cannot hang the suite.
//!
//! * [`AgentProcess`]: `labagent run --config FILE`, ready once stderr shows the `ready` line;
//!   every stderr line is kept for later assertions; killed (SIGKILL) and reaped on drop.
//! * [`config`]: TOML snippets for the agent's configuration, with free ports.
//! * [`EhrStub`]: an MLLP server (plain or TLS) that records what it receives and answers per
//!   a script (AA, AE, AR, hang up, delay, silence).
//! * [`MllpClient`]: sends a framed message and returns the ACK.
//! * [`Er7`]: a tiny ER7 reader for assertions, independent of the agent's own HL7 code.
//! * [`PtyPair`], [`simulate`]: the simulated analyser over TCP or a pty pair.
//! * [`pki`]: a throw-away CA, server and client certificates.

pub mod config;
pub mod ehr;
pub mod er7;
pub mod mllp;
pub mod pki;
pub mod process;

pub use ehr::{EhrStub, Received, Reply, StubSpec};
pub use er7::Er7;
pub use mllp::MllpClient;
pub use process::{AgentProcess, ChildGuard, LogLine, PtyPair, SimOutcome, simulate};

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The `labagent` binary under test: `$LABAGENT_BIN` when set, else `target/debug/labagent`
/// next to this test executable (tests run from `target/debug/deps`).
pub fn labagent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LABAGENT_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "LABAGENT_BIN={} does not exist", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test binary directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("labagent");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p labagent` first (or set LABAGENT_BIN)",
        bin.display()
    );
    bin
}

/// A port that was free a moment ago: bind `127.0.0.1:0`, read the port, release it. The agent
/// does not report the ports it bound, so the config has to name them (tiny race accepted).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; true when it held.
/// This is waiting on readiness with a deadline, not sleeping for a guessed duration.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A tiny deterministic RNG (xorshift64*), for reproducible "random" crash timings.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeds the generator (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One ASTM E1394 message (H..L, CR after each record) like the built-in CBC session, with
/// the given patient id, specimen id and results `(code, value, unit)`. Used to make every
/// message of a test distinguishable at the EHR (OBR-3 / SPM-2 carry the specimen id).
pub fn astm_message(patient_id: &str, specimen: &str, results: &[(&str, &str, &str)]) -> String {
    let mut s = String::new();
    s.push_str("H|\\^&|||XN-550^00-19^14718^^^^BD634545||||||||E1394-97\r");
    s.push_str(&format!("P|1||{patient_id}||Doe^Jane||19700101|F\r"));
    s.push_str(&format!(
        "O|1|{specimen}|1^1^{specimen}^B|^^^WBC|R||20261125101000||||N||||||||||||||F\r"
    ));
    for (i, (code, value, unit)) in results.iter().enumerate() {
        s.push_str(&format!(
            "R|{}|^^^{code}|{value}|{unit}||N||||LABTECH||20261125101500\r",
            i + 1
        ));
    }
    s.push_str("L|1|N\r");
    s
}

/// The built-in CBC session's values (agent/labagent/src/sample.rs), for assertions.
pub mod sample {
    /// PID-3.
    pub const PATIENT_ID: &str = "PID-0001";
    /// Patient name as sent (P.6).
    pub const PATIENT_NAME: &str = "Patient^Test";
    /// Birth date (P.8).
    pub const BIRTH_DATE: &str = "19800101";
    /// Specimen id (O.3).
    pub const SPECIMEN_ID: &str = "SPEC-0001";
    /// Results in order: (code, value, unit).
    pub const RESULTS: [(&str, &str, &str); 5] = [
        ("WBC", "6.42", "10*3/uL"),
        ("RBC", "4.71", "10*6/uL"),
        ("HGB", "13.9", "g/dL"),
        ("HCT", "41.2", "%"),
        ("PLT", "251", "10*3/uL"),
    ];
}
