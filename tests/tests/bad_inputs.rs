//! The bad-input catalogue: malformed E1381 frames, E1394 records, HL7 messages, MLLP blocks,
//! TLS peers and configuration files, each answered with its specific reaction.
//!
//! House rules under test (ARCHITECTURE.md): bad input gets a clear, specific error and nothing
//! is lost; malformed frames are NAKed; malformed messages are parked with their reason; bad
//! config is refused with every error at once. Every case states its input and the exact
//! reaction it expects (reply byte, MSA-1/ERR, log line, `check-config` output), then checks
//! that a good message on another connection still gets through. At the end of each group every
//! message that was acknowledged must be in the sink (nothing committed is lost).
//!
//! Groups run in parallel, one agent each (startup is ~50 ms): ASTM frames and records over
//! `astm-tcp`, HL7 over MLLP, TLS both ways, and `check-config`. Cases inside a group run in
//! order against the same agent. A case that reveals an agent bug is listed in [`KNOWN_BUGS`]:
//! it must still fail (an unexpected pass fails the test so the list stays honest), and every
//! other deviation fails the test.

use labagent_tests::config::{self as cfg, path};
use labagent_tests::mllp::{CR as MLLP_CR, FS, VT, frame as mllp_frame, hl7_message, msa};
use labagent_tests::pki::{self, Ca};
use labagent_tests::{
    AgentProcess, Er7, MllpClient, StubSpec, astm_message, free_port, labagent_bin, wait_until,
};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Cases expected to fail because of an agent bug (name, what is wrong). Each is described in
/// the report that accompanies this file; fix the agent, then remove the entry.
const KNOWN_BUGS: &[(&str, &str)] = &[];

type CaseResult = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// The outcomes of one group's cases.
#[derive(Debug, Default)]
struct Group {
    results: Vec<(String, CaseResult)>,
}

impl Group {
    /// Runs one case; a panic inside it is that case's failure, not the group's end.
    fn case(&mut self, name: &str, f: impl FnOnce() -> CaseResult) {
        let started = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
            Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()))
        });
        eprintln!(
            "case {name}: {} ({:?})",
            if r.is_ok() { "ok" } else { "FAILED" },
            started.elapsed()
        );
        self.results.push((name.to_string(), r));
    }
}

// ---------------------------------------------------------------------------------------------
// E1381 by hand

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const EOT: u8 = 0x04;
const ENQ: u8 = 0x05;
const ACK: u8 = 0x06;
const NAK: u8 = 0x15;
const ETB: u8 = 0x17;

/// LIS1-A §6.3.3: sum of the bytes from FN through ETX/ETB, modulo 256.
fn checksum(number: u8, text: &[u8], end: u8) -> u8 {
    let sum: u32 =
        u32::from(b'0' + number) + text.iter().map(|&b| u32::from(b)).sum::<u32>() + u32::from(end);
    (sum % 256) as u8
}

/// `STX FN text end C1 C2 CR LF` with the checksum written as given.
fn raw_frame(number_byte: u8, text: &[u8], end: u8, check: &[u8], trailer: &[u8]) -> Vec<u8> {
    let mut v = vec![STX, number_byte];
    v.extend_from_slice(text);
    v.push(end);
    v.extend_from_slice(check);
    v.extend_from_slice(trailer);
    v
}

/// A correct frame (two uppercase hex digits, CR LF trailer).
fn frame_end(number: u8, text: &[u8], end: u8) -> Vec<u8> {
    let cs = format!("{:02X}", checksum(number, text, end));
    raw_frame(b'0' + number, text, end, cs.as_bytes(), b"\r\n")
}

fn frame(number: u8, text: &[u8]) -> Vec<u8> {
    frame_end(number, text, ETX)
}

fn byte_name(b: u8) -> String {
    match b {
        ACK => "ACK".into(),
        NAK => "NAK".into(),
        EOT => "EOT".into(),
        other => format!("0x{other:02X}"),
    }
}

/// One analyser connection, replies read one byte at a time.
struct Analyser {
    tcp: TcpStream,
}

impl Analyser {
    fn connect(port: u16) -> Result<Analyser, String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Analyser { tcp })
    }

    fn send(&mut self, bytes: &[u8]) -> CaseResult {
        self.tcp.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    /// The next reply byte within `timeout`; `Ok(None)` when none came.
    fn reply_within(&mut self, timeout: Duration) -> Result<Option<u8>, String> {
        self.tcp
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        match self.tcp.read(&mut b) {
            Ok(0) => Err("the agent closed the connection".into()),
            Ok(_) => Ok(Some(b[0])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(format!("read: {e}")),
        }
    }

    /// Sends `bytes` and returns the single reply byte (10 s deadline: the last frame's ACK
    /// waits for the fsync).
    fn exchange(&mut self, bytes: &[u8]) -> Result<u8, String> {
        self.send(bytes)?;
        self.reply_within(Duration::from_secs(10))?
            .ok_or_else(|| "no reply within 10 s".to_string())
    }

    fn expect(&mut self, bytes: &[u8], want: u8, what: &str) -> CaseResult {
        let got = self.exchange(bytes)?;
        ensure!(
            got == want,
            "{what}: expected {}, got {}",
            byte_name(want),
            byte_name(got)
        );
        Ok(())
    }

    /// Asserts that nothing arrives for a short window (the only way to see "no reply").
    fn expect_silence(&mut self, what: &str) -> CaseResult {
        match self.reply_within(Duration::from_millis(300))? {
            None => Ok(()),
            Some(b) => Err(format!("{what}: expected no reply, got {}", byte_name(b))),
        }
    }

    /// ENQ, one frame per record from FN `first`, every reply ACK; returns the next FN.
    fn frames(&mut self, first: u8, records: &[Vec<u8>]) -> Result<u8, String> {
        let mut n = first % 8;
        for (i, r) in records.iter().enumerate() {
            self.expect(&frame(n, r), ACK, &format!("record {i}"))?;
            n = (n + 1) % 8;
        }
        Ok(n)
    }

    /// A whole session: ENQ, the records, EOT.
    fn session(&mut self, records: &[Vec<u8>]) -> CaseResult {
        self.expect(&[ENQ], ACK, "ENQ")?;
        self.frames(1, records)?;
        self.send(&[EOT])
    }
}

/// The records (each ending in CR) of one good message for `specimen`.
fn records(specimen: &str) -> Vec<Vec<u8>> {
    records_with(specimen, "6.1")
}

fn records_with(specimen: &str, value: &str) -> Vec<Vec<u8>> {
    astm_message(
        &format!("P-{specimen}"),
        specimen,
        &[("WBC", value, "10*3/uL")],
    )
    .split_inclusive('\r')
    .map(|r| r.as_bytes().to_vec())
    .collect()
}

fn rec(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

const HEADER: &str = "H|\\^&|||XN-550^00-19^14718^^^^BD634545||||||||E1394-97\r";

/// The `.hl7` files in `dir`, sorted (temporary dot-files excluded).
fn outbox_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    n.is_some_and(|n| n.ends_with(".hl7") && !n.starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The parsed ORUs in the outbox.
fn outbox_orus(dir: &Path) -> Vec<Er7> {
    outbox_files(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| Er7::parse(&b))
        .collect()
}

/// Waits until an ORU for `specimen` (OBR-3) is in the outbox and returns it.
fn wait_for_specimen(dir: &Path, specimen: &str) -> Result<Er7, String> {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = outbox_orus(dir)
            .into_iter()
            .find(|m| m.field("OBR", 3) == specimen);
        found.is_some()
    });
    found.ok_or_else(|| format!("no ORU for specimen {specimen} in {}", dir.display()))
}

/// `labagent queue --config FILE list --parked --sink SINK`, one line per parked entry.
fn parked(config: &Path, sink: &str) -> Result<Vec<String>, String> {
    let out = Command::new(labagent_bin())
        .arg("queue")
        .arg("--config")
        .arg(config)
        .args(["list", "--parked", "--sink", sink, "--limit", "1000"])
        .output()
        .map_err(|e| format!("queue list: {e}"))?;
    ensure!(
        out.status.success(),
        "queue list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Asserts that exactly one entry was parked since `before` (for `sink`), of `kind`, with a
/// reason containing `reason`.
fn expect_parked(config: &Path, sink: &str, before: usize, kind: &str, reason: &str) -> CaseResult {
    let now = parked(config, sink)?;
    ensure!(
        now.len() == before + 1,
        "expected exactly one new parked entry, parked list went {before} -> {}:\n{}",
        now.len(),
        now.join("\n")
    );
    let line = now.iter().find(|l| l.contains(reason)).ok_or_else(|| {
        format!(
            "no parked entry with reason {reason:?}:\n{}",
            now.join("\n")
        )
    })?;
    ensure!(
        line.split_whitespace().nth(3) == Some(kind),
        "parked entry is not {kind}: {line}"
    );
    Ok(())
}

/// A good message on a fresh connection: every frame ACKed, the ORU reaches the outbox.
fn good_astm(port: u16, specimen: &str, outbox: &Path, acked: &mut Vec<String>) -> CaseResult {
    let mut a = Analyser::connect(port)?;
    a.session(&records(specimen))
        .map_err(|e| format!("good message {specimen}: {e}"))?;
    acked.push(specimen.to_string());
    wait_for_specimen(outbox, specimen).map(drop)
}

fn log_has(agent: &AgentProcess, from: usize, pred: impl Fn(&str) -> bool) -> bool {
    wait_until(Duration::from_secs(10), || {
        agent.log().lines().iter().skip(from).any(|l| pred(&l.raw))
    })
}

// ---------------------------------------------------------------------------------------------
// Group 1: ASTM frames and records over astm-tcp

fn astm_group() -> Group {
    let mut g = Group::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let outbox = d.join("outbox");
    let ehr = StubSpec::default().start();
    let port = free_port();
    let port2 = free_port();
    let slow = free_port();
    let text = [
        cfg::agent(d, "badastm"),
        cfg::astm_tcp_source("an", port, ""),
        cfg::astm_tcp_source("an2", port2, ""),
        cfg::astm_tcp_source("slow", slow, "receive_timeout = \"1s\"\n"),
        cfg::file_sink("out", &outbox),
        cfg::mllp_sink(
            "ehr",
            ehr.port,
            "sources = [\"an2\"]\nack_timeout = \"2s\"\nmax_backoff = \"1s\"\n",
        ),
    ]
    .concat();
    let config = cfg::write(d, &text);
    let agent = AgentProcess::start(&config);
    let mut acked: Vec<String> = Vec::new();
    let mut n = 0usize;
    let mut next = |prefix: &str| {
        n += 1;
        format!("{prefix}{n:03}")
    };

    g.case("astm/wrong-checksum-nak-then-retransmission-ack", || {
        let s = next("CS");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        let good = frame(1, &r[0]);
        let mut bad = good.clone();
        let len = bad.len();
        bad[len - 3] = if bad[len - 3] == b'0' { b'1' } else { b'0' };
        a.expect(&bad, NAK, "frame 1 with a wrong checksum")?;
        // The analyser's good message on another link goes through meanwhile.
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        a.expect(&good, ACK, "frame 1 retransmitted")?;
        a.frames(2, &r[1..])?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/malformed-checksum-digits-nak", || {
        let s = next("MC");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.expect(
            &raw_frame(b'1', &r[0], ETX, b"ZZ", b"\r\n"),
            NAK,
            "checksum ZZ",
        )?;
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        a.frames(1, &r)?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/lowercase-checksum-and-missing-trailer-ack", || {
        // PROTOCOLS.md 7.13 and 7.19: accept lowercase hex and a missing CR LF.
        let s = next("LC");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        let cs = format!("{:02x}", checksum(1, &r[0], ETX));
        ensure!(
            cs.chars().any(|c| c.is_ascii_lowercase()),
            "test input: checksum {cs} has no letter"
        );
        a.expect(
            &raw_frame(b'1', &r[0], ETX, cs.as_bytes(), b"\r\n"),
            ACK,
            "lowercase checksum",
        )?;
        let cs2 = format!("{:02X}", checksum(2, &r[1], ETX));
        a.expect(
            &raw_frame(b'2', &r[1], ETX, cs2.as_bytes(), b""),
            ACK,
            "no trailer",
        )?;
        a.frames(3, &r[2..])?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/fn-skip-nak-then-expected-fn-ack", || {
        let s = next("FN");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.expect(&frame(1, &r[0]), ACK, "frame 1")?;
        a.expect(&frame(3, &r[1]), NAK, "frame 3 after 1 (2 skipped)")?;
        a.expect(&frame(0, &r[1]), NAK, "frame 0 after 1")?;
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        a.frames(2, &r[1..])?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/repeated-fn-ack-and-discarded", || {
        let s = next("DU");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &r[..4])?;
        // The R record (frame 4) again, as after a lost ACK.
        a.expect(&frame(4, &r[3]), ACK, "repeat of frame 4")?;
        a.expect(&frame(5, &r[4]), ACK, "L record")?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        let m = wait_for_specimen(&outbox, &s)?;
        let obx = m.all("OBX").count();
        ensure!(obx == 1, "the repeated R record was kept: {obx} OBX");
        Ok(())
    });

    g.case("astm/fn-not-a-digit-nak", || {
        let s = next("ND");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        let cs = format!("{:02X}", checksum(9, &r[0], ETX));
        a.expect(
            &raw_frame(b'9', &r[0], ETX, cs.as_bytes(), b"\r\n"),
            NAK,
            "FN '9'",
        )?;
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        a.frames(1, &r)?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    for (case, byte) in [
        ("astm/restricted-dle-in-text-nak", 0x10u8),
        ("astm/restricted-lf-in-text-nak", 0x0A),
        ("astm/restricted-dc1-in-text-nak", 0x11),
        ("astm/restricted-soh-in-text-nak", 0x01),
    ] {
        g.case(case, || {
            let s = next("RC");
            let r = records(&s);
            let mut a = Analyser::connect(port)?;
            a.expect(&[ENQ], ACK, "ENQ")?;
            a.frames(1, &r[..3])?;
            let mut bad = r[3].clone();
            bad.insert(5, byte);
            a.expect(
                &frame(4, &bad),
                NAK,
                &format!("0x{byte:02X} in the R record"),
            )?;
            good_astm(port, &next("OK"), &outbox, &mut acked)?;
            a.frames(4, &r[3..])?;
            a.send(&[EOT])?;
            acked.push(s.clone());
            let m = wait_for_specimen(&outbox, &s)?;
            ensure!(
                m.all("OBX").count() == 1,
                "the NAKed frame left a trace: {:?}",
                m.ids()
            );
            Ok(())
        });
    }

    g.case(
        "astm/nul-in-text-is-not-restricted-ack-and-delivered",
        || {
            // NUL is not in the LIS1-A restricted set: taken as text, the message is not lost.
            let s = next("NU");
            let mut r = records(&s);
            r.insert(4, rec("C|1|I|note\u{0}here|G\r"));
            let mut a = Analyser::connect(port)?;
            a.session(&r)?;
            acked.push(s.clone());
            wait_for_specimen(&outbox, &s).map(drop)
        },
    );

    g.case("astm/70kb-frame-nak-then-normal-frames-ack", || {
        let s = next("BIG");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &r[..3])?;
        let mut big = b"C|1|I|".to_vec();
        big.extend(std::iter::repeat_n(b'x', 70_000));
        big.extend_from_slice(b"|G\r");
        a.expect(&frame(4, &big), NAK, "70 KB frame (limit 64 KiB)")?;
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        // The R record again, split mid-field over an ETB frame and an ETX frame.
        a.expect(&frame_end(4, &r[3][..10], ETB), ACK, "ETB part of R")?;
        a.expect(&frame(5, &r[3][10..]), ACK, "ETX part of R")?;
        a.frames(6, &r[4..])?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/enq-storm-every-enq-ack", || {
        let s = next("ENQ");
        let mut a = Analyser::connect(port)?;
        let storm = vec![ENQ; 50];
        a.send(&storm)?;
        for i in 0..50 {
            let got = a
                .reply_within(Duration::from_secs(5))?
                .ok_or_else(|| format!("no reply to ENQ {i}"))?;
            ensure!(got == ACK, "ENQ {i} answered {}", byte_name(got));
        }
        good_astm(port, &next("OK"), &outbox, &mut acked)?;
        a.frames(1, &records(&s))?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case(
        "astm/enq-mid-message-restarts-partial-not-committed",
        || {
            let lost = next("PART");
            let s = next("RST");
            let from = agent.log().lines().len();
            let mut a = Analyser::connect(port)?;
            a.expect(&[ENQ], ACK, "ENQ")?;
            a.frames(1, &records(&lost)[..3])?;
            a.expect(&[ENQ], ACK, "ENQ mid-message")?;
            a.frames(1, &records(&s))?;
            a.send(&[EOT])?;
            acked.push(s.clone());
            wait_for_specimen(&outbox, &s)?;
            ensure!(
                log_has(&agent, from, |l| l.contains("incomplete message discarded")
                    && l.contains("Restarted")),
                "no 'incomplete message discarded' (Restarted) warning"
            );
            ensure!(
                outbox_orus(&outbox)
                    .iter()
                    .all(|m| m.field("OBR", 3) != lost),
                "the restarted partial message was delivered"
            );
            Ok(())
        },
    );

    g.case("astm/eot-mid-frame-commits-open-message", || {
        // H P O R accepted, the L frame cut short by EOT: the message is committed at EOT
        // without its L (PROTOCOLS.md 7.6).
        let s = next("EOT");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &r[..4])?;
        let mut cut = vec![STX, b'5'];
        cut.extend_from_slice(b"L|1");
        cut.push(EOT);
        a.send(&cut)?;
        acked.push(s.clone());
        let m = wait_for_specimen(&outbox, &s)?;
        ensure!(m.all("OBX").count() == 1, "{:?}", m.ids());
        good_astm(port, &next("OK"), &outbox, &mut acked)
    });

    g.case("astm/eot-mid-frame-no-reply", || {
        let s = next("EOTR");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &r[..4])?;
        let mut cut = vec![STX, b'5'];
        cut.extend_from_slice(b"L|1");
        cut.push(EOT);
        a.send(&cut)?;
        acked.push(s.clone());
        // EOT ended the transmission: the line is neutral and the analyser expects nothing.
        a.expect_silence("after EOT mid-frame")
    });

    g.case("astm/eot-without-l-record-committed", || {
        let s = next("NOL");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &r[..4])?;
        a.send(&[EOT])?;
        a.expect_silence("after EOT")?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/stx-mid-frame-nak-then-new-frame-ack", || {
        let s = next("STX");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        let mut cut = vec![STX, b'1'];
        cut.extend_from_slice(b"H|\\^&|||XN");
        a.send(&cut)?;
        a.expect(&frame(1, &r[0]), NAK, "reply for the interrupted frame")?;
        let got = a
            .reply_within(Duration::from_secs(5))?
            .ok_or("no reply for the complete frame")?;
        ensure!(got == ACK, "complete frame answered {}", byte_name(got));
        a.frames(2, &r[1..])?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/frame-without-enq-ignored", || {
        let s = next("NOENQ");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.send(&frame(1, &r[0]))?;
        a.expect_silence("frame before ENQ")?;
        a.send(&[ACK, NAK, EOT])?;
        a.expect_silence("stray ACK NAK EOT")?;
        a.session(&r)?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/junk-between-frames-skipped", || {
        let s = next("JUNK");
        let r = records(&s);
        let mut a = Analyser::connect(port)?;
        a.send(b"\r\n garbage \xff\xfe ")?;
        a.expect(&[ENQ], ACK, "ENQ after junk")?;
        a.send(b"noise")?;
        a.frames(1, &r)?;
        a.send(&[EOT])?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s).map(drop)
    });

    g.case("astm/receive-timeout-discards-incomplete-message", || {
        // Source `slow` waits 1 s for the next frame (LIS1-A §6.5.2: 30 s by default).
        let lost = next("TMO");
        let from = agent.log().lines().len();
        let mut a = Analyser::connect(slow)?;
        a.expect(&[ENQ], ACK, "ENQ")?;
        a.frames(1, &records(&lost)[..3])?;
        ensure!(
            log_has(&agent, from, |l| l.contains("incomplete message discarded")
                && l.contains("source=slow")
                && l.contains("Timeout")),
            "no 'incomplete message discarded' (Timeout) warning"
        );
        // The link is neutral again: a new establishment works on the same connection.
        let s = next("TMO");
        a.session(&records(&s))?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s)?;
        ensure!(
            outbox_orus(&outbox)
                .iter()
                .all(|m| m.field("OBR", 3) != lost),
            "the timed-out partial message was delivered"
        );
        Ok(())
    });

    // Records: each untranslatable message is ACKed (it is durable) and parked with its reason.
    let parked_case = |g: &mut Group,
                       name: &str,
                       recs: Vec<Vec<u8>>,
                       reason: &str,
                       good: String,
                       acked: &mut Vec<String>| {
        g.case(name, || {
            let before = parked(&config, "out")?.len();
            let mut a = Analyser::connect(port)?;
            a.session(&recs)?;
            ensure!(
                wait_until(Duration::from_secs(10), || parked(&config, "out")
                    .is_ok_and(|p| p.len() > before)),
                "nothing was parked"
            );
            expect_parked(&config, "out", before, "ASTM", reason)?;
            good_astm(port, &good, &outbox, acked)
        });
    };

    let good = next("OK");
    let after_orphans = next("AFTERORPH");
    acked.push(after_orphans.clone());
    parked_case(
        &mut g,
        "astm/records-before-h-parked",
        [
            vec![rec("P|1||PID-X||Doe^Jane\r"), rec("O|1|ORPHAN||^^^WBC\r")],
            records(&after_orphans),
        ]
        .concat(),
        "record 0 at byte 0 is",
        good,
        &mut acked,
    );
    let good = next("OK");
    parked_case(
        &mut g,
        "astm/host-query-parked",
        vec![rec(HEADER), rec("Q|1|^SPEC-Q||ALL\r"), rec("L|1|N\r")],
        "no results to translate (a host query)",
        good,
        &mut acked,
    );
    let good = next("OK");
    parked_case(
        &mut g,
        "astm/unknown-record-types-only-parked",
        vec![
            rec(HEADER),
            rec("X|1|vendor|data\r"),
            rec("Z|1|more\r"),
            rec("L|1|N\r"),
        ],
        "no results to translate (no order records)",
        good,
        &mut acked,
    );
    let good = next("OK");
    parked_case(
        &mut g,
        "astm/results-outside-any-order-parked",
        vec![rec(HEADER), rec("R|1|^^^WBC|6.1|10*3/uL\r"), rec("L|1|N\r")],
        "record(s) outside any order (record R first)",
        good,
        &mut acked,
    );
    let good = next("OK");
    parked_case(
        &mut g,
        "astm/header-without-delimiters-parked",
        vec![rec("H|\r"), rec("P|1\r"), rec("L|1|N\r")],
        "header record 0 at byte 0",
        good,
        &mut acked,
    );
    let good = next("OK");
    parked_case(
        &mut g,
        "astm/order-without-specimen-id-parked",
        vec![
            rec(HEADER),
            rec("P|1||PID-N\r"),
            rec("O|1|||^^^WBC\r"),
            rec("R|1|^^^WBC|6.1|10*3/uL\r"),
            rec("L|1|N\r"),
        ],
        "order 1: no specimen id in",
        good,
        &mut acked,
    );

    g.case("astm/broken-escapes-kept-and-delivered", || {
        // `&X4G&` (bad hex) and an unterminated `&`: kept byte for byte, never dropped.
        let s = next("ESC");
        let r = records_with(&s, "5&X4G&1 &E");
        let mut a = Analyser::connect(port)?;
        a.session(&r)?;
        acked.push(s.clone());
        let m = wait_for_specimen(&outbox, &s)?;
        let v = m
            .seg("OBX")
            .map(|o| o.field(5).to_string())
            .unwrap_or_default();
        ensure!(v.contains("X4G"), "OBX-5 lost the escape: {v:?}");
        Ok(())
    });

    // 0x1C (MLLP end block) is not restricted in E1381 text. Source `an2` feeds the EHR stub.
    let fs_spec = next("FSB");
    g.case("astm/fs-byte-in-result-acked-and-filed", || {
        let r = records_with(&fs_spec, "6\u{1c}1");
        let mut a = Analyser::connect(port2)?;
        a.session(&r)?;
        acked.push(fs_spec.clone());
        wait_for_specimen(&outbox, &fs_spec).map(drop)
    });
    g.case("astm/fs-byte-in-result-does-not-block-mllp-sink", || {
        let s = next("AFTERFS");
        let mut a = Analyser::connect(port2)?;
        a.session(&records(&s))?;
        acked.push(s.clone());
        wait_for_specimen(&outbox, &s)?;
        let (ok, got) = ehr.wait_until(Duration::from_secs(5), |r| {
            r.iter().any(|m| m.er7().field("OBR", 3) == s)
        });
        ensure!(
            ok,
            "the EHR never got {s} (it got {} message(s)): the message before it blocks the \
             sink; parked: {:?}",
            got.len(),
            parked(&config, "ehr")
        );
        Ok(())
    });

    g.case("astm/nothing-committed-lost", || {
        let have: Vec<String> = outbox_orus(&outbox)
            .iter()
            .map(|m| m.field("OBR", 3))
            .collect();
        let missing: Vec<&String> = acked.iter().filter(|s| !have.contains(s)).collect();
        ensure!(
            missing.is_empty(),
            "acknowledged but not in the outbox: {missing:?}"
        );
        ensure!(
            acked.len() >= 30,
            "only {} messages acknowledged",
            acked.len()
        );
        Ok(())
    });
    drop(agent);
    g
}

// ---------------------------------------------------------------------------------------------
// Group 2: HL7 over MLLP

fn hl7(id: &str) -> Vec<u8> {
    hl7_message(id, &format!("PAT-{id}"), "5.5")
}

/// An HL7 case answered AE: name, payload, MSA-2, ERR-2, ERR-3 code, ERR-7 substring.
type AeCase = (
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// MSA-1, MSA-2, ERR-2, ERR-3 (code only), ERR-7 of an ACK.
fn ack_parts(ack: &[u8]) -> (String, String, String, String, String) {
    let m = Er7::parse(ack);
    let (code, id) = msa(ack);
    let err3 = m.field("ERR", 3);
    (
        code,
        id,
        m.field("ERR", 2),
        err3.split('^').next().unwrap_or("").to_string(),
        m.field("ERR", 7),
    )
}

fn hl7_group() -> Group {
    let mut g = Group::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let outbox = d.join("outbox");
    let port = free_port();
    let text = [
        cfg::agent(d, "badhl7"),
        cfg::mllp_source(
            "lis",
            port,
            "max_message_bytes = \"64KiB\"\nidle_timeout = \"2s\"\n",
        ),
        cfg::file_sink("out", &outbox),
    ]
    .concat();
    let config = cfg::write(d, &text);
    let agent = AgentProcess::start(&config);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut n = 0usize;
    let mut next = |prefix: &str| {
        n += 1;
        format!("{prefix}{n:03}")
    };

    // A good message on another connection, AA and byte for byte in the outbox.
    let good = |id: String, acked: &mut Vec<(String, Vec<u8>)>| -> CaseResult {
        let mut c = MllpClient::connect(port).map_err(|e| format!("connect: {e}"))?;
        let msg = hl7(&id);
        let ack = c.send(&msg).map_err(|e| format!("good {id}: {e}"))?;
        ensure!(
            msa(&ack) == ("AA".into(), id.clone()),
            "good {id}: {:?}",
            msa(&ack)
        );
        acked.push((id.clone(), msg.clone()));
        let f = outbox.join(format!("{id}.hl7"));
        ensure!(
            wait_until(Duration::from_secs(10), || std::fs::read(&f)
                .is_ok_and(|b| b == msg)),
            "good {id} not delivered byte for byte"
        );
        Ok(())
    };

    // (name, payload, MSA-2, ERR-2, ERR-3, ERR-7 substring): AE with an ERR segment, parked.
    let ae_cases: Vec<AeCase> = vec![
        (
            "hl7/without-msh-ae-100",
            b"PID|1||PAT-X||Doe^John\rOBX|1|NM|GLU||5.5\r".to_vec(),
            "",
            "MSH^1",
            "100",
            "message does not start with MSH (byte 0)",
        ),
        (
            "hl7/empty-block-ae-100",
            Vec::new(),
            "",
            "MSH^1",
            "100",
            "message is empty",
        ),
        (
            "hl7/three-encoding-characters-ae-102",
            b"MSH|^~\\|LIS|LAB|EHR|CLINIC|20260101120000||ORU^R01|ENC3|P|2.5.1\rPID|1\r".to_vec(),
            "",
            "MSH^1^2",
            "102",
            "MSH-2 holds 3 encoding characters; 4 (or 5) are required",
        ),
        (
            "hl7/duplicate-encoding-characters-ae-102",
            b"MSH|^^\\&|LIS|LAB|EHR|CLINIC|20260101120000||ORU^R01|ENCD|P|2.5.1\rPID|1\r".to_vec(),
            "",
            "MSH^1^2",
            "102",
            "is used twice",
        ),
        (
            "hl7/letter-as-field-separator-ae-102",
            b"MSHa^~\\&aLISaLABaEHRaCLINICa20260101120000aaORU^R01aENCFaPa2.5.1\r".to_vec(),
            "",
            "MSH^1^1",
            "102",
            "MSH-1 at byte 3",
        ),
        (
            "hl7/lowercase-segment-id-ae-100",
            [hl7("SEGID1"), b"obx|2|NM|GLU||1\r".to_vec()].concat(),
            "SEGID1",
            "",
            "100",
            "segment 4 at byte",
        ),
        (
            "hl7/invalid-utf8-ae-102",
            [hl7("UTF1"), b"NTE|1||caf\xe9\r".to_vec()].concat(),
            "UTF1",
            "",
            "102",
            "invalid UTF-8 at byte",
        ),
    ];
    for (name, payload, msa2, err2, err3, err7) in ae_cases {
        let good_id = next("GOOD");
        g.case(name, || {
            let before = parked(&config, "out")?.len();
            let mut c = MllpClient::connect(port).map_err(|e| format!("connect: {e}"))?;
            let ack = c.send(&payload).map_err(|e| format!("no ACK: {e}"))?;
            let (code, id, e2, e3, e7) = ack_parts(&ack);
            let shown = String::from_utf8_lossy(&ack).replace('\r', "\n");
            ensure!(code == "AE", "MSA-1 {code}, want AE:\n{shown}");
            ensure!(id == msa2, "MSA-2 {id:?}, want {msa2:?}:\n{shown}");
            ensure!(e2 == err2, "ERR-2 {e2:?}, want {err2:?}:\n{shown}");
            ensure!(e3 == err3, "ERR-3 {e3:?}, want {err3}:\n{shown}");
            ensure!(e7.contains(err7), "ERR-7 {e7:?} lacks {err7:?}:\n{shown}");
            // The connection stays usable after an AE.
            let id2 = format!("{good_id}-SAME");
            let ack = c.send(&hl7(&id2)).map_err(|e| format!("after AE: {e}"))?;
            ensure!(
                msa(&ack).0 == "AA",
                "same connection after AE: {:?}",
                msa(&ack)
            );
            acked.push((id2.clone(), hl7(&id2)));
            expect_parked(&config, "out", before, "HL7", "not translatable")?;
            good(good_id, &mut acked)
        });
    }

    g.case("hl7/broken-escapes-aa-byte-for-byte", || {
        let id = next("ESC");
        let msg = [
            hl7(&id),
            b"NTE|1||bad \\X4G\\ hex, unknown \\Q\\ and unterminated \\\r".to_vec(),
        ]
        .concat();
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let ack = c.send(&msg).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id, msg));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/lf-segment-separators-aa-byte-for-byte", || {
        let id = next("LF");
        let msg: Vec<u8> = hl7(&id)
            .into_iter()
            .map(|b| if b == b'\r' { b'\n' } else { b })
            .collect();
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let ack = c.send(&msg).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id, msg));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/control-characters-in-text-aa-byte-for-byte", || {
        let id = next("CTL");
        let msg = [hl7(&id), b"NTE|1||bell\x07 nul\x00 soh\x01\r".to_vec()].concat();
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let ack = c.send(&msg).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id, msg));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/junk-before-start-block-skipped", || {
        let id = next("JUNK");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        c.write_raw(b"\r\nGET / HTTP/1.0\r\n\x00\xff")
            .map_err(|e| e.to_string())?;
        let ack = c.send(&hl7(&id)).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id.clone(), hl7(&id)));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/end-block-without-start-block-ignored", || {
        let orphan = next("ORPH");
        let id = next("AFTER");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let mut raw = hl7(&orphan);
        raw.extend_from_slice(&[FS, MLLP_CR]);
        c.write_raw(&raw).map_err(|e| e.to_string())?;
        let ack = c.send(&hl7(&id)).map_err(|e| e.to_string())?;
        ensure!(
            msa(&ack) == ("AA".into(), id.clone()),
            "first reply should be the AA for {id}: {:?}",
            msa(&ack)
        );
        acked.push((id.clone(), hl7(&id)));
        good(next("GOOD"), &mut acked)?;
        ensure!(
            !outbox.join(format!("{orphan}.hl7")).exists(),
            "a block without a start was delivered"
        );
        Ok(())
    });

    g.case("hl7/nested-start-block-discards-first", || {
        let first = next("NEST");
        let id = next("NESTED");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let mut raw = vec![VT];
        raw.extend_from_slice(&hl7(&first));
        c.write_raw(&raw).map_err(|e| e.to_string())?;
        let ack = c.send(&hl7(&id)).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id.clone(), hl7(&id)));
        c.set_read_timeout(Duration::from_millis(300))
            .map_err(|e| e.to_string())?;
        ensure!(
            c.read_block().is_err(),
            "a second reply came for one complete block"
        );
        good(next("GOOD"), &mut acked)?;
        ensure!(
            !outbox.join(format!("{first}.hl7")).exists(),
            "the discarded partial block was delivered"
        );
        Ok(())
    });

    g.case("hl7/fs-without-cr-delivered-on-fs", || {
        let id = next("NOCR");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let mut raw = vec![VT];
        raw.extend_from_slice(&hl7(&id));
        raw.push(FS);
        c.write_raw(&raw).map_err(|e| e.to_string())?;
        let ack = c.read_block().map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id.clone(), hl7(&id)));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/commit-ack-block-from-sender-ignored", || {
        let id = next("CACK");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        c.write_raw(&[VT, 0x06, FS, MLLP_CR, VT, 0x15, FS, MLLP_CR])
            .map_err(|e| e.to_string())?;
        let ack = c.send(&hl7(&id)).map_err(|e| e.to_string())?;
        ensure!(msa(&ack) == ("AA".into(), id.clone()), "{:?}", msa(&ack));
        acked.push((id.clone(), hl7(&id)));
        good(next("GOOD"), &mut acked)
    });

    g.case("hl7/no-end-block-then-half-close-no-ack", || {
        let lost = next("HALF");
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        let mut raw = vec![VT];
        raw.extend_from_slice(&hl7(&lost));
        tcp.write_all(&raw).map_err(|e| e.to_string())?;
        tcp.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest)
            .map_err(|e| format!("the agent did not close: {e}"))?;
        ensure!(rest.is_empty(), "a reply to an unfinished block: {rest:?}");
        good(next("GOOD"), &mut acked)?;
        ensure!(
            !outbox.join(format!("{lost}.hl7")).exists(),
            "an unfinished block was delivered"
        );
        Ok(())
    });

    g.case(
        "hl7/no-end-block-then-silence-closed-at-idle-timeout",
        || {
            let lost = next("IDLE");
            let from = agent.log().lines().len();
            let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
            let mut raw = vec![VT];
            raw.extend_from_slice(&hl7(&lost));
            c.write_raw(&raw).map_err(|e| e.to_string())?;
            // A good message on another connection while this one hangs.
            good(next("GOOD"), &mut acked)?;
            let started = Instant::now();
            let closed = c
                .wait_closed(Duration::from_secs(6))
                .map_err(|e| e.to_string())?;
            ensure!(
                closed,
                "the connection was not closed after idle_timeout (2s)"
            );
            ensure!(
                started.elapsed() < Duration::from_secs(5),
                "closed only after {:?}",
                started.elapsed()
            );
            ensure!(
                log_has(&agent, from, |l| l.contains("connection closed")
                    && l.contains("idle for")),
                "no 'connection closed ... idle for' warning"
            );
            ensure!(!outbox.join(format!("{lost}.hl7")).exists(), "delivered");
            Ok(())
        },
    );

    g.case("hl7/over-size-limit-ae-and-closed", || {
        let id = next("HUGE");
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let big = hl7_message(&id, "P", &"9".repeat(100 * 1024));
        let ack = c.send(&big).map_err(|e| format!("no AE: {e}"))?;
        let (code, _) = msa(&ack);
        let m = Er7::parse(&ack);
        ensure!(code == "AE", "MSA-1 {code}");
        ensure!(
            m.field("MSA", 3) == "message longer than 65536 bytes refused",
            "MSA-3 {:?}",
            m.field("MSA", 3)
        );
        ensure!(
            c.wait_closed(Duration::from_secs(5)).unwrap_or(true),
            "connection left open after an over-long block"
        );
        good(next("GOOD"), &mut acked)?;
        ensure!(!outbox.join(format!("{id}.hl7")).exists(), "delivered");
        Ok(())
    });

    g.case(
        "hl7/over-size-limit-without-end-block-ae-and-closed",
        || {
            let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
            let mut raw = vec![VT];
            raw.extend(std::iter::repeat_n(b'A', 200 * 1024));
            // The agent may answer and close while we are still writing.
            let _ = c.write_raw(&raw);
            let ack = c.read_block().map_err(|e| format!("no AE: {e}"))?;
            ensure!(msa(&ack).0 == "AE", "{:?}", msa(&ack));
            ensure!(
                c.wait_closed(Duration::from_secs(5)).unwrap_or(true),
                "connection left open"
            );
            good(next("GOOD"), &mut acked)
        },
    );

    let dup = next("DUPID");
    g.case("hl7/same-control-id-both-acked", || {
        let first = hl7_message(&dup, "PAT-FIRST", "1.1");
        let second = hl7_message(&dup, "PAT-SECOND", "2.2");
        for (i, m) in [&first, &second].into_iter().enumerate() {
            let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
            let ack = c.send(m).map_err(|e| e.to_string())?;
            ensure!(
                msa(&ack) == ("AA".into(), dup.clone()),
                "message {i}: {:?}",
                msa(&ack)
            );
        }
        Ok(())
    });
    g.case("hl7/same-control-id-both-kept-in-file-sink", || {
        // Two analysers that both number MSH-10 from 1 are the everyday form of this.
        let ok = wait_until(Duration::from_secs(5), || {
            let texts: Vec<String> = outbox_files(&outbox)
                .iter()
                .filter_map(|p| std::fs::read(p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .collect();
            texts.iter().any(|t| t.contains("PAT-FIRST"))
                && texts.iter().any(|t| t.contains("PAT-SECOND"))
        });
        ensure!(
            ok,
            "both messages with MSH-10 {dup} were acknowledged AA, but the outbox holds only \
             {:?}",
            outbox_files(&outbox)
                .iter()
                .filter(|p| p.to_string_lossy().contains(&dup))
                .collect::<Vec<_>>()
        );
        Ok(())
    });

    g.case("hl7/nothing-committed-lost", || {
        let mut missing = Vec::new();
        for (id, msg) in &acked {
            let f = outbox.join(format!("{id}.hl7"));
            let ok = wait_until(Duration::from_secs(5), || {
                std::fs::read(&f).is_ok_and(|b| &b == msg)
            });
            if !ok {
                missing.push(id.clone());
            }
        }
        ensure!(
            missing.is_empty(),
            "acknowledged AA but not in the outbox: {missing:?}"
        );
        ensure!(acked.len() >= 20, "only {} acknowledged", acked.len());
        Ok(())
    });
    drop(agent);
    g
}

// ---------------------------------------------------------------------------------------------
// Group 3: TLS, both ways

fn tls_group() -> Group {
    let mut g = Group::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let outbox = d.join("outbox");
    let ca = Ca::new("labagent bad-input CA");
    let other = Ca::new("an untrusted CA");
    let ca_pem = pki::write_ca(&ca, d, "ca");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let (srv_cert, srv_key) = server.write(d, "server");

    let stub = |leaf: &pki::Leaf| {
        StubSpec {
            tls: Some(pki::server_config(leaf, None)),
            ..StubSpec::default()
        }
        .start()
    };
    let good_ehr = stub(&server);
    let expired_ehr = stub(&ca.expired_server(&["localhost", "127.0.0.1"]));
    let untrusted_ehr = stub(&other.server(&["localhost", "127.0.0.1"]));
    let wrong_name_ehr = stub(&ca.server(&["ehr.elsewhere.example"]));

    let port = free_port();
    let sink = |name: &str, p: u16| {
        cfg::mllp_sink(
            name,
            p,
            &format!(
                "ack_timeout = \"2s\"\nmax_backoff = \"1s\"\ntls = {{ ca = {}, server_name = \"localhost\" }}\n",
                path(&ca_pem)
            ),
        )
    };
    let text = [
        cfg::agent(d, "badtls"),
        cfg::mllp_source(
            "secure",
            port,
            &format!(
                "idle_timeout = \"3s\"\ntls = {{ cert = {}, key = {}, client_ca = {} }}\n",
                path(&srv_cert),
                path(&srv_key),
                path(&ca_pem)
            ),
        ),
        cfg::file_sink("out", &outbox),
        sink("goodehr", good_ehr.port),
        sink("expired", expired_ehr.port),
        sink("untrusted", untrusted_ehr.port),
        sink("wrongname", wrong_name_ehr.port),
    ]
    .concat();
    let config = cfg::write(d, &text);
    let agent = AgentProcess::start(&config);
    let mut acked: Vec<String> = Vec::new();
    let client_leaf = ca.client("analyser-1");

    let good = |id: &str, acked: &mut Vec<String>| -> CaseResult {
        let mut c = MllpClient::connect_tls(
            port,
            pki::client_config(&ca, Some(&client_leaf)),
            "localhost",
        )
        .map_err(|e| format!("good mTLS handshake: {e}"))?;
        let ack = c.send(&hl7(id)).map_err(|e| format!("good {id}: {e}"))?;
        ensure!(
            msa(&ack) == ("AA".into(), id.to_string()),
            "{:?}",
            msa(&ack)
        );
        acked.push(id.to_string());
        ensure!(
            wait_until(Duration::from_secs(10), || outbox
                .join(format!("{id}.hl7"))
                .is_file()),
            "{id} not in the outbox"
        );
        Ok(())
    };

    // A refused client: the handshake or the first exchange fails with `client_err`, and
    // the agent logs "TLS handshake failed" with `agent_reason`.
    let refused = |name: &str,
                   g: &mut Group,
                   identity: Option<&pki::Leaf>,
                   client_err: &[&str],
                   agent_reason: &[&str],
                   good_id: &str,
                   acked: &mut Vec<String>| {
        g.case(name, || {
            let from = agent.log().lines().len();
            let r = MllpClient::connect_tls(port, pki::client_config(&ca, identity), "localhost")
                .and_then(|mut c| c.send(&hl7(&format!("{good_id}-REFUSED"))));
            let err = match r {
                Ok(ack) => {
                    return Err(format!(
                        "refused client got an answer: {}",
                        String::from_utf8_lossy(&ack)
                    ));
                }
                Err(e) => e.to_string(),
            };
            ensure!(
                client_err.iter().any(|w| err.contains(w)),
                "client error {err:?} names none of {client_err:?}"
            );
            ensure!(
                log_has(&agent, from, |l| l.contains("TLS handshake failed")
                    && agent_reason.iter().any(|w| l.contains(w))),
                "no 'TLS handshake failed' naming {agent_reason:?} in the agent log:\n{}",
                agent.log().dump()
            );
            good(good_id, acked)
        });
    };

    refused(
        "tls/client-without-certificate-refused",
        &mut g,
        None,
        &["CertificateRequired", "alert"],
        &["peer sent no certificates", "NoCertificatesPresented"],
        "TLSGOOD1",
        &mut acked,
    );
    let stranger = other.client("stranger");
    refused(
        "tls/client-certificate-untrusted-unknown-issuer",
        &mut g,
        Some(&stranger),
        &["UnknownCA", "alert"],
        &["UnknownIssuer"],
        "TLSGOOD2",
        &mut acked,
    );
    let expired = ca.expired_client("old-analyser");
    refused(
        "tls/client-certificate-expired",
        &mut g,
        Some(&expired),
        &["CertificateExpired"],
        &["expired", "Expired"],
        "TLSGOOD3",
        &mut acked,
    );

    g.case("tls/plain-mllp-to-tls-listener-refused", || {
        let from = agent.log().lines().len();
        let mut c = MllpClient::connect(port).map_err(|e| e.to_string())?;
        let _ = c.write_raw(&mllp_frame(&hl7("PLAIN1")));
        c.set_read_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        match c.read_block() {
            Ok(b) => {
                return Err(format!(
                    "plain text got an MLLP answer: {}",
                    String::from_utf8_lossy(&b)
                ));
            }
            Err(e) => ensure!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the agent neither answered nor closed: {e}"
            ),
        }
        ensure!(
            log_has(&agent, from, |l| l.contains("TLS handshake failed")),
            "no 'TLS handshake failed' warning"
        );
        good("TLSGOOD4", &mut acked)?;
        ensure!(!outbox.join("PLAIN1.hl7").exists(), "plain text delivered");
        Ok(())
    });

    // Outbound: every sink got at least TLSGOOD1 to deliver by now.
    for (name, sink, words) in [
        (
            "tls/sink-ehr-certificate-expired",
            "expired",
            &["expired", "Expired"][..],
        ),
        (
            "tls/sink-ehr-untrusted-unknown-issuer",
            "untrusted",
            &["UnknownIssuer"][..],
        ),
        (
            "tls/sink-ehr-wrong-host-not-valid-for-name",
            "wrongname",
            &["NotValidForName", "not valid for name"][..],
        ),
    ] {
        g.case(name, || {
            let key = format!("sink={sink} ");
            ensure!(
                log_has(&agent, 0, |l| l.contains("WARN")
                    && l.contains(&key)
                    && l.contains("will retry")
                    && words.iter().any(|w| l.contains(w))),
                "no retry warning for sink {sink} naming {words:?}:\n{}",
                agent.log().dump()
            );
            Ok(())
        });
    }

    g.case("tls/nothing-committed-lost", || {
        let n = acked.len();
        ensure!(n == 4, "expected 4 good messages, {n} acknowledged");
        let (ok, got) = good_ehr.wait_until(Duration::from_secs(10), |r| r.len() >= n);
        ensure!(ok, "the trusted EHR got {} of {n}", got.len());
        let ids: Vec<String> = got.iter().map(|r| r.control_id()).collect();
        ensure!(ids == acked, "the trusted EHR got {ids:?}, want {acked:?}");
        for id in &acked {
            ensure!(
                outbox.join(format!("{id}.hl7")).is_file(),
                "{id} not in the outbox"
            );
        }
        for (stub, name) in [
            (&expired_ehr, "expired"),
            (&untrusted_ehr, "untrusted"),
            (&wrong_name_ehr, "wrongname"),
        ] {
            ensure!(
                stub.received().is_empty(),
                "{name}: delivered past a failed check"
            );
            // Held for retry, never parked or dropped: still pending in that sink's queue.
            let out = Command::new(labagent_bin())
                .arg("queue")
                .arg("--config")
                .arg(&config)
                .args(["list", "--sink", name])
                .output()
                .map_err(|e| e.to_string())?;
            let list = String::from_utf8_lossy(&out.stdout).into_owned();
            for id in &acked {
                ensure!(
                    list.contains(id.as_str()),
                    "{name}: {id} not pending:\n{list}"
                );
            }
            ensure!(
                parked(&config, name)?.is_empty(),
                "{name}: something was parked"
            );
        }
        Ok(())
    });
    drop(agent);
    g
}

// ---------------------------------------------------------------------------------------------
// Group 4: configuration files

/// `labagent SUBCOMMAND --config FILE` (killed after 10 s): exit code, stdout, stderr.
fn labagent(sub: &str, config: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(labagent_bin())
        .arg(sub)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn labagent");
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let mut guard = labagent_tests::ChildGuard::new(child);
    let status = guard.wait_timeout(Duration::from_secs(10));
    guard.kill();
    (
        status.and_then(|s| s.code()),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// 1-based line of the `nth` (0-based) line containing `needle`.
fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in the config text"))
}

fn config_group() -> Group {
    let mut g = Group::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let head = |id: &str| {
        format!(
            "[agent]\nid = \"{id}\"\nstate_dir = {}\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n",
            path(&d.join(format!("state-{id}"))),
            free_port()
        )
    };
    let out = |name: &str| cfg::file_sink(name, &d.join(format!("out-{name}")));
    let ca = Ca::new("config CA");
    let leaf = ca.server(&["localhost"]);
    let (cert, key) = leaf.write(d, "srv");
    let ca_pem = pki::write_ca(&ca, d, "ca");
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("write");
    let key_dir = d.join("key-dir");
    std::fs::create_dir(&key_dir).expect("mkdir");
    // A socket cannot be opened as a file, even by root (chmod 000 would not stop root).
    let sock = d.join("socket.key");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind socket");
    let missing = d.join("missing.pem");
    let tls_source = |name: &str, port: u16, cert: &Path, key: &Path| {
        cfg::mllp_source(
            name,
            port,
            &format!(
                "tls = {{ cert = {}, key = {}, client_ca = {} }}\n",
                path(cert),
                path(key),
                path(&ca_pem)
            ),
        )
    };

    // (case, file text, expected messages as (line needle, nth occurrence, "key: message")).
    type Expect = Vec<(&'static str, usize, String)>;
    let mut cases: Vec<(&str, String, Expect)> = Vec::new();
    let p1 = free_port();
    cases.push((
        "config/typo-key-buad-did-you-mean-baud",
        [
            head("k1"),
            cfg::astm_serial_source("xn", Path::new("/dev/ttyUSB0"), "buad = 9600\n"),
            out("o"),
        ]
        .concat(),
        vec![(
            "buad",
            0,
            "source[0].buad: unknown key `buad`; did you mean `baud`?".into(),
        )],
    ));
    cases.push((
        "config/typo-section-htp",
        [
            head("k2"),
            "[htp]\nlisten = \"127.0.0.1:1\"\n\n".into(),
            cfg::astm_tcp_source("a", p1, ""),
            out("o"),
        ]
        .concat(),
        vec![(
            "[htp]",
            0,
            "htp: unknown section `htp`; did you mean `http`?".into(),
        )],
    ));
    cases.push((
        "config/typo-nested-tls-cret",
        [
            head("k3"),
            cfg::mllp_source(
                "s",
                free_port(),
                &format!(
                    "tls = {{ cret = {}, cert = {}, key = {} }}\n",
                    path(&cert),
                    path(&cert),
                    path(&key)
                ),
            ),
            out("o"),
        ]
        .concat(),
        vec![(
            "tls = ",
            0,
            "source[0].tls.cret: unknown key `cret`; did you mean `cert`?".into(),
        )],
    ));
    cases.push((
        "config/wrong-type-baud-string",
        [
            head("k4"),
            cfg::astm_serial_source("xn", Path::new("/dev/ttyUSB0"), "baud = \"fast\"\n"),
            out("o"),
        ]
        .concat(),
        vec![(
            "baud",
            0,
            "source[0].baud: expected a positive integer, found \"fast\"".into(),
        )],
    ));
    cases.push((
        "config/duplicate-source-names",
        [
            head("k5"),
            cfg::astm_tcp_source("xn", free_port(), ""),
            cfg::mllp_source("xn", free_port(), ""),
            out("o"),
        ]
        .concat(),
        vec![("name = \"xn\"", 1, String::new())],
    ));
    cases.push((
        "config/duplicate-sink-names",
        [
            head("k6"),
            cfg::astm_tcp_source("a", free_port(), ""),
            out("o"),
            cfg::file_sink("o", &d.join("other-out")),
        ]
        .concat(),
        vec![("name = \"o\"", 1, String::new())],
    ));
    let shared = free_port();
    cases.push((
        "config/two-sources-one-listen-address",
        [
            head("k7"),
            cfg::astm_tcp_source("a", shared, ""),
            cfg::mllp_source("b", shared, ""),
            out("o"),
        ]
        .concat(),
        vec![("listen = \"127.0.0.1", 2, String::new())],
    ));
    cases.push((
        "config/port-out-of-range",
        [
            head("k8"),
            cfg::astm_tcp_source("a", 1, "").replace("127.0.0.1:1\"", "127.0.0.1:99999\""),
            out("o"),
        ]
        .concat(),
        vec![(
            "99999",
            0,
            "source[0].listen: \"127.0.0.1:99999\" is not a socket address: expected IP:PORT such as \"0.0.0.0:5200\" (listen addresses are IP literals, not host names; IPv6 as \"[::1]:2575\")".into(),
        )],
    ));
    cases.push((
        "config/duration-without-unit-words",
        [
            head("k9"),
            cfg::astm_tcp_source("a", free_port(), ""),
            cfg::mllp_sink("e", free_port(), "ack_timeout = \"30 seconds\"\n"),
        ]
        .concat(),
        vec![(
            "ack_timeout",
            0,
            "sink[0].ack_timeout: \"30 seconds\" is not a duration: expected e.g. \"30s\", \"500ms\", \"5m\" or \"1h30m\"".into(),
        )],
    ));
    cases.push((
        "config/sink-names-unknown-source",
        [
            head("k10"),
            cfg::astm_tcp_source("xn550", free_port(), ""),
            cfg::mllp_sink("e", free_port(), "sources = [\"xn55\"]\n"),
        ]
        .concat(),
        vec![(
            "sources =",
            0,
            "sink[0].sources[0]: no source named \"xn55\"; did you mean \"xn550\"?".into(),
        )],
    ));
    cases.push((
        "config/tls-key-unreadable",
        [
            head("k11"),
            tls_source("s", free_port(), &cert, &sock),
            out("o"),
        ]
        .concat(),
        vec![(
            "tls = ",
            0,
            format!(
                "source[0].tls.key: cannot read {}: No such device or address (os error 6)",
                sock.display()
            ),
        )],
    ));
    cases.push((
        "config/tls-key-is-a-directory",
        [
            head("k12"),
            tls_source("s", free_port(), &cert, &key_dir),
            out("o"),
        ]
        .concat(),
        vec![(
            "tls = ",
            0,
            format!(
                "source[0].tls.key: {} is a directory, not a file",
                key_dir.display()
            ),
        )],
    ));
    cases.push((
        "config/tls-cert-missing",
        [
            head("k13"),
            tls_source("s", free_port(), &missing, &key),
            out("o"),
        ]
        .concat(),
        vec![(
            "tls = ",
            0,
            format!("source[0].tls.cert: file not found: {}", missing.display()),
        )],
    ));
    cases.push((
        "config/toml-syntax-error",
        [head("k14"), "[[source]\nname = \"a\"\n".into()].concat(),
        vec![("[[source]", 0, "TOML syntax error".into())],
    ));
    let every = [
        head("k15"),
        cfg::astm_serial_source("xn550", Path::new("/dev/ttyUSB0"), "buad = 9600\n"),
        cfg::astm_tcp_source("xn550", 1, "").replace("127.0.0.1:1\"", "127.0.0.1:99999\""),
        cfg::mllp_sink(
            "e",
            free_port(),
            "sources = [\"xn55\"]\nack_timeout = \"30 seconds\"\n",
        ),
    ]
    .concat();
    cases.push((
        "config/every-error-at-once",
        every.clone(),
        vec![
            (
                "buad",
                0,
                "source[0].buad: unknown key `buad`; did you mean `baud`?".into(),
            ),
            ("name = \"xn550\"", 1, String::new()),
            (
                "99999",
                0,
                "source[1].listen: \"127.0.0.1:99999\" is not a socket address".into(),
            ),
            (
                "sources =",
                0,
                "sink[0].sources[0]: no source named \"xn55\"; did you mean \"xn550\"?".into(),
            ),
            (
                "ack_timeout",
                0,
                "sink[0].ack_timeout: \"30 seconds\" is not a duration".into(),
            ),
        ],
    ));

    for (i, (name, text, expect)) in cases.into_iter().enumerate() {
        let file = d.join(format!("case{i}.toml"));
        std::fs::write(&file, &text).expect("write case");
        let shown = file.display().to_string();
        g.case(name, || {
            let (code, _stdout, stderr) = labagent("check-config", &file);
            ensure!(code == Some(2), "exit {code:?}, want 2:\n{stderr}");
            let lines: Vec<&str> = stderr.lines().collect();
            for (needle, nth, msg) in &expect {
                let line = line_of(&text, needle, *nth);
                let prefix = format!("{shown}:{line}: ");
                let msg = if msg.is_empty() {
                    // Duplicates and conflicts: the exact wording is checked below by kind.
                    match name {
                        "config/duplicate-source-names" => {
                            format!("source[1].name: duplicate source name \"xn\" (first defined on line {})", line_of(&text, needle, 0))
                        }
                        "config/duplicate-sink-names" => {
                            format!("sink[1].name: duplicate sink name \"o\" (first defined on line {})", line_of(&text, needle, 0))
                        }
                        "config/two-sources-one-listen-address" => format!(
                            "source[1].listen: listen address 127.0.0.1:{shared} is already used by source \"a\" ({shown}:{} source[0].listen)",
                            line_of(&text, needle, 1)
                        ),
                        _ => format!(
                            "source[1].name: duplicate source name \"xn550\" (first defined on line {})",
                            line_of(&text, needle, 0)
                        ),
                    }
                } else {
                    msg.clone()
                };
                let want = format!("{prefix}{msg}");
                ensure!(
                    lines.iter().any(|l| l.starts_with(&want)),
                    "missing {want:?} in:\n{stderr}"
                );
            }
            let errors = lines.iter().filter(|l| l.starts_with(&shown)).count();
            ensure!(
                errors == expect.len(),
                "{errors} error line(s), want {}:\n{stderr}",
                expect.len()
            );
            let summary = format!("labagent: {} error(s) in {shown}", expect.len());
            ensure!(lines.contains(&summary.as_str()), "missing {summary:?}:\n{stderr}");
            Ok(())
        });
    }

    g.case("config/run-refuses-like-check-config", || {
        // Startup compiles the same way: same messages, exit 2, nothing started.
        let file = d.join("run-every.toml");
        std::fs::write(&file, &every).map_err(|e| e.to_string())?;
        let (c1, _, e1) = labagent("check-config", &file);
        let (c2, _, e2) = labagent("run", &file);
        ensure!(c1 == Some(2) && c2 == Some(2), "exit codes {c1:?} / {c2:?}");
        let errs = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| l.starts_with(&file.display().to_string()))
                .map(str::to_string)
                .collect()
        };
        ensure!(
            errs(&e1) == errs(&e2) && errs(&e1).len() == 5,
            "check-config:\n{e1}\nrun:\n{e2}"
        );
        Ok(())
    });

    g.case("config/missing-config-file", || {
        let file = d.join("nope.toml");
        let (code, _, stderr) = labagent("check-config", &file);
        ensure!(code == Some(2), "exit {code:?}");
        let want = format!(
            "{}: cannot read config file: No such file or directory (os error 2)",
            file.display()
        );
        ensure!(
            stderr.lines().any(|l| l == want),
            "missing {want:?} in:\n{stderr}"
        );
        Ok(())
    });

    let garbage_text = [
        head("k16"),
        tls_source("s", free_port(), &garbage, &garbage),
        out("o"),
    ]
    .concat();
    let garbage_file = d.join("garbage.toml");
    std::fs::write(&garbage_file, &garbage_text).expect("write");
    g.case("config/garbage-tls-material-refused-by-run", || {
        // `run` compiles the configuration with the same code as `check-config`: exit 2 and
        // the file:line of the bad file, before anything is opened.
        let (code, _, stderr) = labagent("run", &garbage_file);
        ensure!(
            code == Some(2),
            "run exit {code:?} for garbage TLS material:\n{stderr}"
        );
        let want = format!(
            "source[0].tls.cert: {} holds no PEM certificate",
            garbage.display()
        );
        ensure!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
        Ok(())
    });
    g.case("config/garbage-tls-material-refused-by-check-config", || {
        let (code, stdout, stderr) = labagent("check-config", &garbage_file);
        ensure!(
            code == Some(2),
            "check-config exit {code:?} for a certificate file that is not PEM (run refuses it):\n{stdout}{stderr}"
        );
        ensure!(
            stderr.contains("source[0].tls.cert"),
            "no source[0].tls.cert error:\n{stderr}"
        );
        Ok(())
    });

    g.case("config/good-config-accepted", || {
        // The control: the same building blocks, valid, pass.
        let file = d.join("good.toml");
        let text = [
            head("k17"),
            tls_source("s", free_port(), &cert, &key),
            out("o"),
        ]
        .concat();
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
        let (code, stdout, stderr) = labagent("check-config", &file);
        ensure!(code == Some(0), "exit {code:?}:\n{stdout}{stderr}");
        ensure!(stdout.contains("configuration OK"), "{stdout}");
        Ok(())
    });
    g
}

// ---------------------------------------------------------------------------------------------

#[test]
fn bad_inputs() {
    let started = Instant::now();
    let groups: Vec<(&str, std::thread::JoinHandle<Group>)> = vec![
        ("astm", std::thread::spawn(astm_group)),
        ("hl7", std::thread::spawn(hl7_group)),
        ("tls", std::thread::spawn(tls_group)),
        ("config", std::thread::spawn(config_group)),
    ];
    let mut results = Vec::new();
    for (name, handle) in groups {
        match handle.join() {
            Ok(g) => results.extend(g.results),
            Err(_) => results.push((format!("{name}/group"), Err("the group panicked".into()))),
        }
    }
    let mut passed = 0;
    let mut xfail = Vec::new();
    let mut failures = Vec::new();
    for (name, r) in &results {
        let known = KNOWN_BUGS.iter().find(|(n, _)| n == name);
        match (r, known) {
            (Ok(()), None) => passed += 1,
            (Err(e), Some((_, bug))) => xfail.push(format!("{name}: {bug}\n    observed: {e}")),
            (Ok(()), Some(_)) => failures.push(format!(
                "{name}: passes now although listed in KNOWN_BUGS: remove it from the list"
            )),
            (Err(e), None) => failures.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "\nbad_inputs: {} cases run in {:?}: {passed} passed, {} known bug(s), {} failed",
        results.len(),
        started.elapsed(),
        xfail.len(),
        failures.len()
    );
    for x in &xfail {
        eprintln!("KNOWN BUG {x}");
    }
    for (name, _) in KNOWN_BUGS {
        assert!(
            results.iter().any(|(n, _)| n == name),
            "KNOWN_BUGS names {name}, which is not a case"
        );
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        results.len() >= 40,
        "only {} cases ran; the catalogue needs at least 40",
        results.len()
    );
}
