//! `e2e-bench`: the end-to-end benchmark of the release `labagent` binary, with its references
//! measured in the same run, on the same disk.
//!
//! ```text
//! cargo build --release -p labagent
//! cargo run --release -p labagent-tests --bin e2e-bench -- [--json PATH]
//! ```
//!
//! What one run measures (every temp dir sits under one parent, by default
//! `<target>/e2e-bench-tmp/`, so all disk figures come from the same file system; `/tmp` can be a
//! tmpfs on other machines, which would make the disk references meaningless):
//!
//! * (a) raw fdatasync loop: one 1 KiB `pwrite` + `fdatasync` per record, one thread, appending
//!   to a new file (the target's reference). (a2) the same loop overwriting a file zero-filled
//!   beforehand, shown as the floor for a store that preallocates, as labagent's does.
//! * (b) raw group-commit loop: 8 threads each hand a 1 KiB record to one writer and wait; the
//!   writer writes everything queued with one `pwrite` and one `fdatasync`.
//! * (c) echo-ACK MLLP server with no store (thread per connection, AA at once): the ceiling of
//!   the socket path, with 1 and with 8 senders.
//! * (d) the agent, `mllp` source -> store -> `mllp` sink -> the Rust EHR sink of this file
//!   (records the first receipt time per MSH-10, then answers AA), with 1 and with 8 senders.
//!   Each sender sends one ~1 KiB message and waits for its AA before the next. The run is split
//!   into rounds, each right after its own disk reference ((a) for 1 sender, (b) for 8), because
//!   a shared VM disk can change speed many times over within a minute; the ratio is the median
//!   of the per-round ratios. Figures: end-to-end rate (N / first send -> last receipt at the
//!   EHR), ingest rate (N / first send -> last AA), delivery alone (EHR receipts after the last
//!   ingest AA, per second), latency send -> EHR receipt (p50/p99).
//! * (e) ASTM over a socat pty pair into an `astm-serial` source: a hand-written E1381 sender
//!   (ENQ, frames, EOT) sends one message at a time; latency from writing the final frame to the
//!   EHR sink receiving the ORU (matched by OBR-3 = specimen id) and answering AA.
//! * (f) RSS (`/proc/PID/status`): VmRSS 0.5 s after READY with an empty store; VmHWM after (d).
//! * (g) backlog: an agent whose sink points at a closed port first serves the "ingest alone"
//!   diagnostic (1 and 8 senders, rounds after their references; nothing is delivered so no
//!   cursor is written), then is fed the rest of N messages over 32 connections; it is stopped
//!   (SIGTERM) and restarted: time from spawn to the stderr `ready` line and to `/readyz` 200,
//!   VmRSS 0.5 s after READY with N undelivered, queue depth from `/api/status`.
//!
//! Knobs (environment): `E2E_DIR` (parent of the temp dirs), `E2E_FSYNC_N` (records per (a)
//! measurement, 2000), `E2E_GROUP_N` (records per (b) measurement, 8000), `E2E_ECHO_N` (messages
//! per echo sender, 2000), `E2E_N1` (1-sender messages, 10000), `E2E_N8` (messages per sender with
//! 8 senders, 1000), `E2E_ROUNDS` (5), `E2E_ASTM_N` (200), `E2E_BACKLOG_N` (100000; 0 skips (g);
//! the targets name 1000000), `E2E_BACKLOG_SENDERS` (32), `E2E_DRAIN_TIMEOUT_S` (300),
//! `LABAGENT_BIN` (default: `labagent` next to this executable, which must be a release build).
//!
//! The bench exits 0 when it measured everything, whether or not the targets were met (they are
//! reported as PASS/FAIL in the table and in the JSON), and 2 when a measurement failed.

use labagent_astm::chars::{ACK, ENQ, EOT, NAK};
use labagent_astm::frame::{STANDARD_MAX_TEXT, frames_for_message};
use labagent_tests::mllp::{frame, hl7_message, msa, take_block};
use labagent_tests::{ChildGuard, LogLine, MllpClient, PtyPair, astm_message, config as cfg};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

const RECORD: usize = 1024;
const MIB: f64 = 1024.0 * 1024.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Locating things
// ---------------------------------------------------------------------------------------------

/// The release agent next to this executable (or `$LABAGENT_BIN`).
fn locate_agent() -> Res<PathBuf> {
    if let Some(p) = std::env::var_os("LABAGENT_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("LABAGENT_BIN={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("the bench executable has no directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("labagent");
    if !bin.is_file() {
        return Err(format!(
            "{} is missing: run `cargo build --release -p labagent` first (or set LABAGENT_BIN)",
            bin.display()
        ));
    }
    if !dir.ends_with("release") {
        return Err(format!(
            "{} is not a release build: run `cargo build --release -p labagent` and \
             `cargo run --release -p labagent-tests --bin e2e-bench`",
            bin.display()
        ));
    }
    Ok(bin)
}

/// `<target>/e2e-bench-tmp` (or `$E2E_DIR`): the parent of every temp dir of the run.
fn work_parent(agent: &Path) -> Res<PathBuf> {
    let p = match std::env::var_os("E2E_DIR") {
        Some(d) => PathBuf::from(d),
        None => agent
            .parent()
            .and_then(Path::parent)
            .ok_or("cannot derive the target dir")?
            .join("e2e-bench-tmp"),
    };
    std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
    Ok(p)
}

/// The file system under `p`, from /proc/self/mountinfo (longest mount-point prefix).
fn filesystem_of(p: &Path) -> String {
    let Ok(p) = p.canonicalize() else {
        return "?".into();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "?".into();
    };
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        let (Some(mp), Some(fstype), Some(dev)) = (f.get(4), f.get(dash + 1), f.get(dash + 2))
        else {
            continue;
        };
        if p.starts_with(mp) && best.as_ref().is_none_or(|(l, _)| mp.len() >= *l) {
            best = Some((mp.len(), format!("{dev} ({fstype}) mounted on {mp}")));
        }
    }
    best.map_or_else(|| "?".into(), |(_, s)| s)
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Nearest-rank percentile of sorted durations, in ms.
fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// (a), (b): raw disk references (the same loops as agent/store/benches/store.rs)
// ---------------------------------------------------------------------------------------------

fn raw_file(dir: &Path) -> Res<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.join("raw"))
        .map_err(|e| format!("open raw file: {e}"))
}

fn raw_fdatasync(parent: &Path, n: u64) -> Res<f64> {
    raw_fdatasync_in(parent, n, false)
}

/// The same loop over a file zero-filled (and synced) beforehand: what a store that preallocates
/// its segments pays per commit, shown next to (a) as the floor.
fn raw_fdatasync_in(parent: &Path, n: u64, prezeroed: bool) -> Res<f64> {
    let dir = tempfile::tempdir_in(parent).map_err(|e| e.to_string())?;
    let f = raw_file(dir.path())?;
    if prezeroed {
        f.write_all_at(&vec![0u8; RECORD * n as usize], 0)
            .and_then(|()| f.sync_data())
            .map_err(|e| e.to_string())?;
    }
    let p = vec![0x5Au8; RECORD];
    let t = Instant::now();
    let mut off = 0;
    for _ in 0..n {
        f.write_all_at(&p, off).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        off += p.len() as u64;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

#[derive(Default)]
struct RawQ {
    queued: Vec<Vec<u8>>,
    submitted: u64,
    done: u64,
    stop: bool,
}

type RawShared = (Mutex<RawQ>, Condvar, Condvar);

fn raw_group_commit(parent: &Path, n: u64, threads: u64) -> Res<(f64, f64)> {
    let dir = tempfile::tempdir_in(parent).map_err(|e| e.to_string())?;
    let f = raw_file(dir.path())?;
    let q: Arc<RawShared> = Arc::new((Mutex::new(RawQ::default()), Condvar::new(), Condvar::new()));
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
                    let mut g = m.lock().expect("lock");
                    g.queued.push(vec![0x5Au8; RECORD]);
                    g.submitted += 1;
                    let ticket = g.submitted;
                    work.notify_one();
                    while g.done < ticket {
                        g = done.wait(g).expect("lock");
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().map_err(|_| "writer thread panicked")?;
    }
    let e = t.elapsed();
    q.0.lock().expect("lock").stop = true;
    q.1.notify_one();
    let syncs = writer.join().map_err(|_| "raw writer panicked")??;
    let total = (n / threads) * threads;
    Ok((total as f64 / e.as_secs_f64(), total as f64 / syncs as f64))
}

/// Returns the number of fdatasyncs.
fn raw_writer(f: &File, q: &RawShared) -> Res<u64> {
    let (m, work, done) = q;
    let mut off = 0u64;
    let mut buf = Vec::new();
    let mut syncs = 0;
    loop {
        let (batch, upto) = {
            let mut g = m.lock().expect("lock");
            while g.queued.is_empty() && !g.stop {
                g = work.wait(g).expect("lock");
            }
            if g.queued.is_empty() {
                return Ok(syncs);
            }
            (std::mem::take(&mut g.queued), g.submitted)
        };
        buf.clear();
        for r in &batch {
            buf.extend_from_slice(r);
        }
        f.write_all_at(&buf, off).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        syncs += 1;
        off += buf.len() as u64;
        let mut g = m.lock().expect("lock");
        g.done = upto;
        done.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// The EHR sink (also the echo-ACK reference server)
// ---------------------------------------------------------------------------------------------

/// How the sink keys receipt times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyBy {
    /// Records nothing: the echo reference.
    Nothing,
    /// MSH-10 (HL7 forwarded unchanged).
    Msh10,
    /// OBR-3 (ORUs translated from ASTM: the agent assigns MSH-10, OBR-3 is the specimen id).
    Obr3,
}

struct SinkState {
    first_receipt: HashMap<String, Instant>,
    received: u64,
    /// The count of distinct keys a waiter needs, and the key it waits for: the connection
    /// threads wake the waiter only then, not per message (a wake-up per message would take
    /// CPU from the agent being measured on a small machine).
    wake_at: usize,
    wake_for: Option<String>,
}

impl Default for SinkState {
    fn default() -> SinkState {
        SinkState {
            first_receipt: HashMap::new(),
            received: 0,
            wake_at: usize::MAX,
            wake_for: None,
        }
    }
}

type SinkShared = (Mutex<SinkState>, Condvar);

/// An MLLP server answering AA (MSA-2 = MSH-10) to every message at once, thread per connection.
struct Sink {
    port: u16,
    shared: Arc<SinkShared>,
    stop: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Sink {
    fn start(key: KeyBy) -> Res<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind sink: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let shared: Arc<SinkShared> = Arc::new((Mutex::new(SinkState::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let streams = Arc::new(Mutex::new(Vec::new()));
        {
            let (shared, stop, streams) = (shared.clone(), stop.clone(), streams.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    if let Ok(c) = tcp.try_clone() {
                        streams.lock().expect("lock").push(c);
                    }
                    let shared = shared.clone();
                    std::thread::spawn(move || serve_sink(tcp, key, &shared));
                }
            });
        }
        Ok(Sink {
            port,
            shared,
            stop,
            streams,
        })
    }

    fn reset(&self) {
        let mut s = self.shared.0.lock().expect("lock");
        s.first_receipt.clear();
        s.received = 0;
    }

    /// Waits until `n` distinct keys arrived; returns the receipt times either way.
    fn wait_distinct(&self, n: usize, timeout: Duration) -> (bool, HashMap<String, Instant>) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().expect("lock");
        s.wake_at = n;
        loop {
            let now = Instant::now();
            if s.first_receipt.len() >= n || now >= deadline {
                s.wake_at = usize::MAX;
                return (s.first_receipt.len() >= n, s.first_receipt.clone());
            }
            s = cv.wait_timeout(s, deadline - now).expect("lock").0;
        }
    }

    /// Waits for one key.
    fn wait_key(&self, key: &str, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().expect("lock");
        s.wake_for = Some(key.to_string());
        loop {
            let found = s.first_receipt.get(key).copied();
            let now = Instant::now();
            if found.is_some() || now >= deadline {
                s.wake_for = None;
                return found;
            }
            s = cv.wait_timeout(s, deadline - now).expect("lock").0;
        }
    }

    fn received(&self) -> u64 {
        self.shared.0.lock().expect("lock").received
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in self.streams.lock().expect("lock").drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Field `n` of the first segment named `seg` (MSH counted the HL7 way: MSH-1 is the separator).
fn field(payload: &[u8], seg: &str, n: usize) -> String {
    for line in payload.split(|&b| b == b'\r') {
        if line.len() > seg.len() && line.starts_with(seg.as_bytes()) && line[seg.len()] == b'|' {
            let idx = if seg == "MSH" { n - 1 } else { n };
            return line
                .split(|&b| b == b'|')
                .nth(idx)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .unwrap_or_default();
        }
    }
    String::new()
}

fn serve_sink(mut tcp: TcpStream, key: KeyBy, shared: &SinkShared) {
    let _ = tcp.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(payload) = take_block(&mut buf) {
            let now = Instant::now();
            let id = field(&payload, "MSH", 10);
            if key != KeyBy::Nothing {
                let k = match key {
                    KeyBy::Obr3 => field(&payload, "OBR", 3),
                    _ => id.clone(),
                };
                let (lock, cv) = shared;
                let mut s = lock.lock().expect("lock");
                let wake = s.first_receipt.len() + 1 >= s.wake_at
                    || s.wake_for.as_deref() == Some(k.as_str());
                s.first_receipt.entry(k).or_insert(now);
                s.received += 1;
                if wake {
                    cv.notify_all();
                }
            }
            let ack = labagent_tests::ehr::ack("AA", &id, None);
            if tcp.write_all(&frame(ack.as_bytes())).is_err() {
                return;
            }
        }
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MLLP senders
// ---------------------------------------------------------------------------------------------

/// An HL7 ORU of about 1 KiB (an NTE pads the small test message), like a short CBC.
fn payload(id: &str) -> Vec<u8> {
    let mut m = hl7_message(id, "PAT-0001", "5.4");
    let pad = RECORD.saturating_sub(m.len() + 10);
    m.extend_from_slice(b"NTE|1||");
    m.extend(std::iter::repeat_n(b'x', pad));
    m.push(b'\r');
    m
}

struct Sent {
    id: String,
    t_send: Instant,
    t_ack: Instant,
}

/// `senders` connections, each sending `per_sender` messages one at a time (waiting for AA).
fn run_senders(port: u16, senders: usize, per_sender: usize, tag: &str) -> Res<Vec<Sent>> {
    let barrier = Arc::new(Barrier::new(senders));
    let handles: Vec<_> = (0..senders)
        .map(|s| {
            let (barrier, tag) = (barrier.clone(), tag.to_string());
            std::thread::spawn(move || -> Res<Vec<Sent>> {
                let mut c = MllpClient::connect(port).map_err(|e| format!("connect: {e}"))?;
                c.set_read_timeout(Duration::from_secs(60))
                    .map_err(|e| e.to_string())?;
                let msgs: Vec<(String, Vec<u8>)> = (0..per_sender)
                    .map(|j| {
                        let id = format!("{tag}{s}M{j}");
                        let p = payload(&id);
                        (id, p)
                    })
                    .collect();
                let mut out = Vec::with_capacity(per_sender);
                barrier.wait();
                for (id, p) in msgs {
                    let t_send = Instant::now();
                    let ack = c.send(&p).map_err(|e| format!("send {id}: {e}"))?;
                    let t_ack = Instant::now();
                    let (code, acked) = msa(&ack);
                    if code != "AA" || acked != id {
                        return Err(format!("{id}: got MSA {code}|{acked}"));
                    }
                    out.push(Sent { id, t_send, t_ack });
                }
                Ok(out)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "sender thread panicked")??);
    }
    Ok(all)
}

fn echo_reference(senders: usize, per_sender: usize) -> Res<f64> {
    let sink = Sink::start(KeyBy::Nothing)?;
    let sent = run_senders(sink.port, senders, per_sender, "E")?;
    let first = sent.iter().map(|s| s.t_send).min().ok_or("nothing sent")?;
    let last = sent.iter().map(|s| s.t_ack).max().ok_or("nothing sent")?;
    Ok(sent.len() as f64 / (last - first).as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// The agent process
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct AgentLog {
    /// Lines kept (the per-message INFO lines are only counted).
    kept: Vec<(Instant, LogLine)>,
    /// Last lines of any kind, for failure reports.
    tail: VecDeque<String>,
    per_message_lines: u64,
    eof: bool,
}

struct Agent {
    child: ChildGuard,
    log: Arc<(Mutex<AgentLog>, Condvar)>,
    spawned: Instant,
    http_port: u16,
}

impl Agent {
    fn spawn(bin: &Path, config: &Path, http_port: u16) -> Res<Agent> {
        let spawned = Instant::now();
        let mut child = labagent_tests::process::run_command(bin, config)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log: Arc<(Mutex<AgentLog>, Condvar)> = Arc::default();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).split(b'\n') {
                    let Ok(line) = line else { break };
                    let now = Instant::now();
                    let text = String::from_utf8_lossy(&line).into_owned();
                    let l = LogLine::parse(&text);
                    let mut s = log.0.lock().expect("lock");
                    if s.tail.len() >= 60 {
                        s.tail.pop_front();
                    }
                    s.tail.push_back(text);
                    if l.level == "INFO" && matches!(l.message(), "message committed" | "delivered")
                    {
                        s.per_message_lines += 1;
                    } else if s.kept.len() < 10_000 {
                        s.kept.push((now, l));
                    }
                    log.1.notify_all();
                }
                let mut s = log.0.lock().expect("lock");
                s.eof = true;
                log.1.notify_all();
            });
        }
        Ok(Agent {
            child: ChildGuard::new(child),
            log,
            spawned,
            http_port,
        })
    }

    /// Waits for an INFO line with `message`; its arrival time.
    fn wait_info(&self, message: &str, timeout: Duration) -> Res<Instant> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut s = lock.lock().expect("lock");
        loop {
            if let Some((t, _)) = s
                .kept
                .iter()
                .find(|(_, l)| l.level == "INFO" && l.message() == message)
            {
                return Ok(*t);
            }
            let now = Instant::now();
            if s.eof || now >= deadline {
                return Err(format!(
                    "no `{message}` line from the agent; last stderr lines:\n{}",
                    s.tail.iter().cloned().collect::<Vec<_>>().join("\n")
                ));
            }
            s = cv.wait_timeout(s, deadline - now).expect("lock").0;
        }
    }

    fn dump(&self) -> String {
        let s = self.log.0.lock().expect("lock");
        s.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn warnings(&self) -> Vec<String> {
        let s = self.log.0.lock().expect("lock");
        s.kept
            .iter()
            .filter(|(_, l)| l.level == "WARN" || l.level == "ERROR")
            .map(|(_, l)| l.raw.clone())
            .collect()
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss(&self) -> Res<(u64, u64)> {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        let get = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
        };
        Ok((get("VmRSS:")?, get("VmHWM:")?))
    }

    /// User + system CPU time of the agent so far, in seconds (`/proc/PID/stat`, USER_HZ 100).
    fn cpu_s(&self) -> Res<f64> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
        // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| {
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("bad stat")
        };
        Ok((tick(11)? + tick(12)?) as f64 / 100.0)
    }

    /// The agent's commit-duration histogram so far: (sum in seconds, count), from `/metrics`.
    fn commit_totals(&self) -> Res<(f64, u64)> {
        let resp = http_get(self.http_port, "/metrics")?;
        let get = |key: &str| {
            resp.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
                .ok_or_else(|| format!("no {key} in /metrics"))
        };
        let sum = get("labagent_commit_duration_seconds_sum ")?;
        let count = get("labagent_commit_duration_seconds_count ")?;
        Ok((
            sum.parse().map_err(|_| "bad commit sum".to_string())?,
            count.parse().map_err(|_| "bad commit count".to_string())?,
        ))
    }

    /// Polls `/readyz` until 200; the instant it answered 200.
    fn wait_readyz(&self, timeout: Duration) -> Res<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(resp) = http_get(self.http_port, "/readyz")
                && resp.starts_with("HTTP/1.1 200")
            {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                return Err("/readyz never answered 200".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Total queue depth over all sinks, from `/api/status`.
    fn queue_depth(&self) -> Res<u64> {
        let resp = http_get(self.http_port, "/api/status")?;
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or("no HTTP body")?;
        let v: Value = serde_json::from_str(body).map_err(|e| format!("/api/status: {e}"))?;
        Ok(v["sinks"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["queue_depth"].as_u64()).sum())
            .unwrap_or(0))
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 20 s).
    fn stop(mut self) -> Res<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        match self.child.wait_timeout(Duration::from_secs(20)) {
            Some(_) => Ok(()),
            None => {
                self.child.kill();
                Err("the agent did not stop within 20 s of SIGTERM".into())
            }
        }
    }
}

fn http_get(port: u16, path: &str) -> Res<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn agent_config(dir: &Path, http_port: u16, sources: &str, sink_port: u16) -> PathBuf {
    let text = format!(
        "[agent]\nid = \"bench\"\nstate_dir = {}\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n{}{sources}{}",
        cfg::path(&dir.join("state")),
        cfg::store("16GiB"),
        cfg::mllp_sink(
            "ehr",
            sink_port,
            "ack_timeout = \"30s\"\nmax_backoff = \"1s\"\n"
        ),
    );
    cfg::write(dir, &text)
}

// ---------------------------------------------------------------------------------------------
// (d) the agent over MLLP
// ---------------------------------------------------------------------------------------------

/// One measurement: `senders` x `per_sender` messages, all delivered.
struct E2eRun {
    n: usize,
    ingest_rate: f64,
    e2e_rate: f64,
    /// Receipts at the EHR after the last ingest AA, per second of the rest of the run: the
    /// delivery rate on its own, once nothing is being ingested.
    drain_rate: f64,
    acks: Vec<Duration>,
    lat: Vec<Duration>,
}

fn e2e_run(
    agent_port: u16,
    sink: &Sink,
    senders: usize,
    per_sender: usize,
    tag: &str,
    drain: Duration,
) -> Res<E2eRun> {
    sink.reset();
    let sent = run_senders(agent_port, senders, per_sender, tag)?;
    let n = sent.len();
    let (ok, receipts) = sink.wait_distinct(n, drain);
    if !ok {
        return Err(format!(
            "only {} of {n} messages reached the EHR sink within {drain:?}",
            receipts.len()
        ));
    }
    let first = sent.iter().map(|s| s.t_send).min().ok_or("nothing sent")?;
    let last_ack = sent.iter().map(|s| s.t_ack).max().ok_or("nothing sent")?;
    let mut lat = Vec::with_capacity(n);
    let mut acks = Vec::with_capacity(n);
    let mut last_rx = first;
    let mut after_ingest = 0usize;
    for s in &sent {
        let rx = *receipts
            .get(&s.id)
            .ok_or_else(|| format!("{} never reached the sink", s.id))?;
        last_rx = last_rx.max(rx);
        if rx > last_ack {
            after_ingest += 1;
        }
        lat.push(rx.saturating_duration_since(s.t_send));
        acks.push(s.t_ack - s.t_send);
    }
    let drain_s = last_rx.saturating_duration_since(last_ack).as_secs_f64();
    Ok(E2eRun {
        n,
        ingest_rate: n as f64 / (last_ack - first).as_secs_f64(),
        e2e_rate: n as f64 / (last_rx - first).as_secs_f64(),
        drain_rate: if after_ingest >= 50 && drain_s > 0.0 {
            after_ingest as f64 / drain_s
        } else {
            f64::NAN
        },
        acks,
        lat,
    })
}

/// Rounds of one sender count, each right after its disk reference (so a noisy disk moves both).
struct Scenario {
    senders: usize,
    n: usize,
    /// Per round: (reference, end-to-end rate, ingest rate, drain rate).
    rounds: Vec<(f64, f64, f64, f64)>,
    acks: Vec<Duration>,
    lat: Vec<Duration>,
    /// Agent CPU (user + system) per message, in microseconds, over all rounds.
    cpu_us_per_msg: f64,
    /// Mean time a message waited for its commit (hand-over to durable), microseconds.
    commit_us: f64,
}

impl Scenario {
    fn reference(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.0).collect())
    }

    fn e2e(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.1).collect())
    }

    fn ingest(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.2).collect())
    }

    fn drain(&self) -> f64 {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| r.3)
            .filter(|x| !x.is_nan())
            .collect();
        if v.is_empty() { f64::NAN } else { median(v) }
    }

    /// Median of the per-round ratios end-to-end / reference.
    fn ratio(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.1 / r.0).collect())
    }

    fn ingest_ratio(&self) -> f64 {
        median(self.rounds.iter().map(|r| r.2 / r.0).collect())
    }
}

struct AgentFigures {
    ready_ms: f64,
    rss_idle_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    scenarios: Vec<Scenario>,
    per_message_log_lines: u64,
    warnings: Vec<String>,
}

struct Knobs {
    fsync_n: u64,
    group_n: u64,
    n1: usize,
    n8: usize,
    rounds: usize,
}

fn agent_mllp(bin: &Path, parent: &Path, k: &Knobs) -> Res<AgentFigures> {
    let dir = tempfile::tempdir_in(parent).map_err(|e| e.to_string())?;
    let sink = Sink::start(KeyBy::Msh10)?;
    let (http, port) = (labagent_tests::free_port(), labagent_tests::free_port());
    let src = cfg::mllp_source("lis", port, "max_connections = 64\n");
    let config = agent_config(dir.path(), http, &src, sink.port);
    let agent = Agent::spawn(bin, &config, http)?;
    let ready = agent.wait_info("ready", Duration::from_secs(20))?;
    let ready_ms = (ready - agent.spawned).as_secs_f64() * 1e3;
    // Idle: READY, no traffic yet, half a second to settle (the sink connects lazily).
    std::thread::sleep(Duration::from_millis(500));
    let (rss_idle_kib, _) = agent.rss()?;
    let drain = Duration::from_secs(env_u64("E2E_DRAIN_TIMEOUT_S", 300));
    let mut scenarios = Vec::new();
    for (senders, total) in [(1usize, k.n1), (8, k.n8 * 8)] {
        let per = (total / senders / k.rounds).max(1);
        let mut sc = Scenario {
            senders,
            n: 0,
            rounds: Vec::new(),
            acks: Vec::new(),
            lat: Vec::new(),
            cpu_us_per_msg: 0.0,
            commit_us: 0.0,
        };
        let mut cpu = 0.0;
        let commits0 = agent.commit_totals()?;
        for round in 0..k.rounds {
            // The reference runs while the agent is idle (everything delivered).
            let reference = if senders == 1 {
                raw_fdatasync(parent, k.fsync_n)?
            } else {
                raw_group_commit(parent, k.group_n, 8)?.0
            };
            eprintln!(
                "  (d) round {}/{}: reference {reference:.0}/s; agent, {senders} sender(s) x {per} messages ...",
                round + 1,
                k.rounds
            );
            let cpu0 = agent.cpu_s()?;
            let r = e2e_run(
                port,
                &sink,
                senders,
                per,
                &format!("R{senders}{round}S"),
                drain,
            )
            .map_err(|e| format!("{e}\nagent stderr:\n{}", agent.dump()))?;
            cpu += agent.cpu_s()? - cpu0;
            eprintln!(
                "      end to end {:.0}/s, ingest {:.0}/s, delivery alone {:.0}/s",
                r.e2e_rate, r.ingest_rate, r.drain_rate
            );
            sc.n += r.n;
            sc.rounds
                .push((reference, r.e2e_rate, r.ingest_rate, r.drain_rate));
            sc.acks.extend(r.acks);
            sc.lat.extend(r.lat);
        }
        sc.acks.sort();
        sc.lat.sort();
        sc.cpu_us_per_msg = cpu * 1e6 / sc.n as f64;
        let commits1 = agent.commit_totals()?;
        sc.commit_us =
            (commits1.0 - commits0.0) * 1e6 / (commits1.1.saturating_sub(commits0.1)).max(1) as f64;
        scenarios.push(sc);
    }
    let (rss_after_kib, hwm_kib) = agent.rss()?;
    let per_message_log_lines = agent.log.0.lock().expect("lock").per_message_lines;
    let warnings = agent.warnings();
    agent.stop()?;
    Ok(AgentFigures {
        ready_ms,
        rss_idle_kib,
        rss_after_kib,
        hwm_kib,
        scenarios,
        per_message_log_lines,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------------
// (e) ASTM over a pty pair
// ---------------------------------------------------------------------------------------------

struct AstmFigures {
    n: usize,
    to_aa_p50: f64,
    to_aa_p99: f64,
    to_aa_max: f64,
    to_ack_p50: f64,
    to_ack_p99: f64,
}

fn expect_ack(rx: &Receiver<u8>, what: &str) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ACK) => return Ok(()),
            Ok(NAK) => return Err(format!("NAK after {what}")),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => return Err(format!("no ACK after {what}")),
            Err(RecvTimeoutError::Disconnected) => return Err("the pty closed".into()),
        }
    }
}

/// One E1381 session; returns (final frame written, its ACK read).
fn astm_send(port: &mut File, rx: &Receiver<u8>, text: &[u8]) -> Res<(Instant, Instant)> {
    let w = |port: &mut File, b: &[u8]| port.write_all(b).map_err(|e| format!("pty write: {e}"));
    w(port, &[ENQ])?;
    expect_ack(rx, "ENQ")?;
    let frames = frames_for_message(text, 1, STANDARD_MAX_TEXT);
    let mut times = None;
    for (i, f) in frames.iter().enumerate() {
        let t = Instant::now();
        w(port, &f.to_bytes())?;
        expect_ack(rx, &format!("frame {}", i + 1))?;
        if i + 1 == frames.len() {
            times = Some((t, Instant::now()));
        }
    }
    w(port, &[EOT])?;
    times.ok_or_else(|| "empty message".into())
}

fn astm_pty(bin: &Path, parent: &Path, n: usize) -> Res<AstmFigures> {
    let dir = tempfile::tempdir_in(parent).map_err(|e| e.to_string())?;
    let pty = PtyPair::new(dir.path());
    let sink = Sink::start(KeyBy::Obr3)?;
    let http = labagent_tests::free_port();
    let src = cfg::astm_serial_source("xn550", &pty.a, "");
    let config = agent_config(dir.path(), http, &src, sink.port);
    let agent = Agent::spawn(bin, &config, http)?;
    agent.wait_info("ready", Duration::from_secs(20))?;
    // The agent flushes stale input when it opens the port: send only once it is open.
    agent.wait_info("serial port open", Duration::from_secs(10))?;
    let mut port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pty.b)
        .map_err(|e| format!("open {}: {e}", pty.b.display()))?;
    let (tx, rx) = channel();
    {
        let mut reader = port.try_clone().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let mut b = [0u8; 256];
            while let Ok(k) = reader.read(&mut b) {
                if k == 0 {
                    break;
                }
                for &x in &b[..k] {
                    if tx.send(x).is_err() {
                        return;
                    }
                }
            }
        });
    }
    let results = [
        ("WBC", "6.42", "10*3/uL"),
        ("RBC", "4.71", "10*6/uL"),
        ("HGB", "13.9", "g/dL"),
        ("HCT", "41.2", "%"),
        ("PLT", "251", "10*3/uL"),
    ];
    let (mut to_aa, mut to_ack) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let specimen = format!("SPC{i:07}");
        let text = astm_message("PID-0001", &specimen, &results);
        let (t_final, t_ack) = astm_send(&mut port, &rx, text.as_bytes())
            .map_err(|e| format!("ASTM message {i}: {e}\nagent stderr:\n{}", agent.dump()))?;
        let rx_at = sink
            .wait_key(&specimen, Duration::from_secs(30))
            .ok_or_else(|| {
                format!(
                    "ORU for {specimen} never reached the EHR sink\nagent stderr:\n{}",
                    agent.dump()
                )
            })?;
        to_aa.push(rx_at.saturating_duration_since(t_final));
        to_ack.push(t_ack - t_final);
    }
    if sink.received() as usize != n {
        eprintln!(
            "  note: the EHR sink received {} ORUs for {n} ASTM messages",
            sink.received()
        );
    }
    to_aa.sort();
    to_ack.sort();
    agent.stop()?;
    Ok(AstmFigures {
        n,
        to_aa_p50: pct_ms(&to_aa, 0.5),
        to_aa_p99: pct_ms(&to_aa, 0.99),
        to_aa_max: pct_ms(&to_aa, 1.0),
        to_ack_p50: pct_ms(&to_ack, 0.5),
        to_ack_p99: pct_ms(&to_ack, 0.99),
    })
}

// ---------------------------------------------------------------------------------------------
// (g) backlog: READY time and RSS with N undelivered
// ---------------------------------------------------------------------------------------------

struct BacklogFigures {
    n: usize,
    senders: usize,
    build_s: f64,
    build_rate: f64,
    store_mib: f64,
    hwm_build_kib: u64,
    ready_empty_ms: f64,
    ready_log_ms: f64,
    readyz_ms: f64,
    rss_idle_kib: u64,
    depth_after_restart: u64,
    /// Ingest with delivery impossible (sink port closed): per sender count, per round
    /// (reference, ingest rate).
    ingest_alone: Vec<(usize, Vec<(f64, f64)>)>,
    /// Agent CPU per message during the 32-connection feed, in microseconds.
    feed_cpu_us: f64,
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn ingest_rate(sent: &[Sent]) -> Res<f64> {
    let first = sent.iter().map(|s| s.t_send).min().ok_or("nothing sent")?;
    let last = sent.iter().map(|s| s.t_ack).max().ok_or("nothing sent")?;
    Ok(sent.len() as f64 / (last - first).as_secs_f64())
}

fn backlog(bin: &Path, parent: &Path, n: usize, senders: usize, k: &Knobs) -> Res<BacklogFigures> {
    let dir = tempfile::tempdir_in(parent).map_err(|e| e.to_string())?;
    // A port that is closed: nothing listens on it, so every delivery attempt fails.
    let closed = labagent_tests::free_port();
    let (http, port) = (labagent_tests::free_port(), labagent_tests::free_port());
    let src = cfg::mllp_source("lis", port, "max_connections = 64\n");
    let config = agent_config(dir.path(), http, &src, closed);
    let agent = Agent::spawn(bin, &config, http)?;
    let ready_empty = agent.wait_info("ready", Duration::from_secs(20))?;
    let ready_empty_ms = (ready_empty - agent.spawned).as_secs_f64() * 1e3;
    let t = Instant::now();
    // Diagnostic first: the ingest path alone (nothing is delivered, so no cursor fsyncs),
    // each round right after its disk reference. These messages count towards the backlog.
    let mut sent = 0;
    let mut ingest_alone = Vec::new();
    for (s, total) in [(1usize, k.n1), (8, k.n8 * 8)] {
        let per = (total / s / k.rounds).max(1);
        let mut rounds = Vec::new();
        for round in 0..k.rounds {
            let reference = if s == 1 {
                raw_fdatasync(parent, k.fsync_n)?
            } else {
                raw_group_commit(parent, k.group_n, 8)?.0
            };
            let r = run_senders(port, s, per, &format!("I{s}{round}S"))
                .map_err(|e| format!("{e}\nagent stderr:\n{}", agent.dump()))?;
            sent += r.len();
            let rate = ingest_rate(&r)?;
            eprintln!(
                "  (g) ingest alone, {s} sender(s), round {}: {rate:.0}/s (reference {reference:.0}/s)",
                round + 1
            );
            rounds.push((reference, rate));
        }
        ingest_alone.push((s, rounds));
    }
    let reference_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  (g) feeding {} more messages over {senders} connections (sink port closed) ...",
        n.saturating_sub(sent)
    );
    let t = Instant::now();
    let cpu0 = agent.cpu_s()?;
    let per = n.saturating_sub(sent) / senders;
    let feed_n = run_senders(port, senders, per, "G")
        .map_err(|e| format!("{e}\nagent stderr:\n{}", agent.dump()))?
        .len();
    sent += feed_n;
    let feed_cpu_us = (agent.cpu_s()? - cpu0) * 1e6 / feed_n.max(1) as f64;
    if sent < n {
        sent += run_senders(port, 1, n - sent, "H")?.len();
    }
    let build_s = t.elapsed().as_secs_f64();
    let build_rate = feed_n as f64 / build_s;
    let build_s = build_s + reference_s;
    let (_, hwm_build_kib) = agent.rss()?;
    agent.stop()?;
    let store_mib = dir_bytes(&dir.path().join("state").join("store")) as f64 / MIB;
    let store_mib = if store_mib > 0.0 {
        store_mib
    } else {
        dir_bytes(&dir.path().join("state")) as f64 / MIB
    };
    eprintln!("  (g) restarting with {sent} undelivered ...");
    let agent = Agent::spawn(bin, &config, http)?;
    let readyz = agent.wait_readyz(Duration::from_secs(60))?;
    let ready_log = agent.wait_info("ready", Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_millis(500));
    let (rss_idle_kib, _) = agent.rss()?;
    let depth_after_restart = agent.queue_depth()?;
    let (ready_log_ms, readyz_ms) = (
        (ready_log - agent.spawned).as_secs_f64() * 1e3,
        (readyz - agent.spawned).as_secs_f64() * 1e3,
    );
    agent.stop()?;
    Ok(BacklogFigures {
        n: sent,
        senders,
        build_s,
        build_rate,
        store_mib,
        hwm_build_kib,
        ready_empty_ms,
        ready_log_ms,
        readyz_ms,
        rss_idle_kib,
        depth_after_restart,
        ingest_alone,
        feed_cpu_us,
    })
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

struct Row {
    figure: String,
    value: f64,
    unit: &'static str,
    reference: String,
    ref_value: Option<f64>,
    target: String,
    /// `Some(pass)` when the figure has a target.
    pass: Option<bool>,
    note: String,
    /// A ratio computed otherwise than value / reference (median of per-round ratios).
    ratio_override: Option<f64>,
}

impl Row {
    fn info(figure: impl Into<String>, value: f64, unit: &'static str) -> Row {
        Row {
            figure: figure.into(),
            value,
            unit,
            reference: String::new(),
            ref_value: None,
            target: String::new(),
            pass: None,
            note: String::new(),
            ratio_override: None,
        }
    }

    fn vs(mut self, reference: impl Into<String>, v: f64) -> Row {
        self.reference = reference.into();
        self.ref_value = Some(v);
        self
    }

    fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }

    fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    fn ratio(&self) -> Option<f64> {
        self.ratio_override
            .or_else(|| self.ref_value.map(|r| self.value / r))
    }

    fn json(&self) -> Value {
        json!({
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "reference": if self.reference.is_empty() { Value::Null } else { json!(self.reference) },
            "reference_value": self.ref_value,
            "ratio": self.ratio(),
            "target": if self.target.is_empty() { Value::Null } else { json!(self.target) },
            "pass": self.pass,
            "note": if self.note.is_empty() { Value::Null } else { json!(self.note) },
        })
    }
}

fn fmt_num(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "-".into();
    }
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if unit.is_empty() {
        s
    } else {
        format!("{s} {unit}")
    }
}

fn print_table(rows: &[Row]) {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                fmt_num(r.value, r.unit),
                if r.reference.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{} ({})",
                        r.reference,
                        fmt_num(r.ref_value.unwrap_or(f64::NAN), r.unit)
                    )
                },
                r.ratio().map(|x| format!("{x:.2}x")).unwrap_or_default(),
                r.target.clone(),
                match r.pass {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => String::new(),
                },
                r.note.clone(),
            ]
        })
        .collect();
    let head = [
        "figure",
        "value",
        "reference (value)",
        "ratio",
        "target",
        "verdict",
        "note",
    ];
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<width$}", width = w[i]))
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    println!("{}", line(&head.map(String::from)));
    println!(
        "|{}|",
        w.iter()
            .map(|n| "-".repeat(n + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for c in &cells {
        println!("{}", line(c));
    }
}

fn json_arg() -> Res<Option<PathBuf>> {
    let mut args = std::env::args().skip(1);
    let mut json = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = Some(PathBuf::from(args.next().ok_or("--json needs a path")?)),
            "--bench" => {} // passed by `cargo bench`-style runners; harmless
            "-h" | "--help" => {
                println!(
                    "usage: e2e-bench [--json PATH]   (default PATH: <target>/e2e-bench.json)\n\
                     see the module documentation for the E2E_* environment knobs"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(json)
}

fn run() -> Res<()> {
    let json_path = json_arg()?;
    if cfg!(debug_assertions) {
        return Err(
            "build the benchmark in release mode: cargo run --release -p labagent-tests --bin e2e-bench"
                .into(),
        );
    }
    let bin = locate_agent()?;
    let parent = work_parent(&bin)?;
    let json_path = json_path.unwrap_or_else(|| {
        parent
            .parent()
            .unwrap_or(Path::new("."))
            .join("e2e-bench.json")
    });
    let fs = filesystem_of(&parent);
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    eprintln!("e2e-bench: agent {}", bin.display());
    eprintln!(
        "e2e-bench: temp dirs under {} on {fs}; {cores} CPU(s)",
        parent.display()
    );
    let started = Instant::now();

    let fsync_n = env_u64("E2E_FSYNC_N", 2000);
    let group_n = env_u64("E2E_GROUP_N", 8000);
    let echo_n = env_u64("E2E_ECHO_N", 2000) as usize;
    let n1 = env_u64("E2E_N1", 10000) as usize;
    let n8 = env_u64("E2E_N8", 1000) as usize;
    let rounds = env_u64("E2E_ROUNDS", 5).max(1) as usize;
    let astm_n = env_u64("E2E_ASTM_N", 200) as usize;
    let backlog_n = env_u64("E2E_BACKLOG_N", 100_000) as usize;
    let backlog_senders = env_u64("E2E_BACKLOG_SENDERS", 32).max(1) as usize;

    eprintln!("  (a) raw fdatasync loop, {fsync_n} x 1 KiB, 3 rounds ...");
    let fsync_rounds: Vec<f64> = (0..3)
        .map(|_| raw_fdatasync(&parent, fsync_n))
        .collect::<Res<_>>()?;
    let fsync_ref = median(fsync_rounds.clone());
    let fsync_zeroed = raw_fdatasync_in(&parent, fsync_n, true)?;
    eprintln!("  (b) raw group commit, 8 threads, {group_n} x 1 KiB, 3 rounds ...");
    let group: Vec<(f64, f64)> = (0..3)
        .map(|_| raw_group_commit(&parent, group_n, 8))
        .collect::<Res<_>>()?;
    let group_rounds: Vec<f64> = group.iter().map(|g| g.0).collect();
    let group_ref = median(group_rounds.clone());
    let group_batch = median(group.iter().map(|g| g.1).collect());
    eprintln!("  (c) echo-ACK MLLP server, 1 and 8 senders x {echo_n} ...");
    let echo1 = echo_reference(1, echo_n)?;
    let echo8 = echo_reference(8, echo_n)?;

    let knobs = Knobs {
        fsync_n,
        group_n,
        n1,
        n8,
        rounds,
    };
    let agent = agent_mllp(&bin, &parent, &knobs)?;
    eprintln!("  (e) ASTM over a pty pair, {astm_n} messages one at a time ...");
    let astm = astm_pty(&bin, &parent, astm_n)?;
    let backlog = if backlog_n > 0 {
        Some(backlog(&bin, &parent, backlog_n, backlog_senders, &knobs)?)
    } else {
        None
    };
    eprintln!("  (a') raw fdatasync loop again (disk drift check) ...");
    let fsync_after = raw_fdatasync(&parent, fsync_n)?;

    // ----- rows -----
    let mut rows = vec![
        Row::info("(a) raw fdatasync loop, 1 KiB", fsync_ref, "rec/s")
            .note(format!("after the run: {fsync_after:.0}/s")),
        Row::info(
            "(a2) the same, overwriting a zero-filled file",
            fsync_zeroed,
            "rec/s",
        )
        .note("the floor for a store that preallocates (labagent does)"),
        Row::info("(b) raw group commit, 8 threads, 1 KiB", group_ref, "rec/s")
            .note(format!("{group_batch:.1} records per fdatasync")),
        Row::info("(c) echo-ACK MLLP, no store, 1 sender", echo1, "msg/s"),
        Row::info("(c) echo-ACK MLLP, no store, 8 senders", echo8, "msg/s"),
    ];
    for sc in &agent.scenarios {
        let (reference, target, min) = if sc.senders == 1 {
            ("(a) fdatasync", ">= 0.9x", 0.9)
        } else {
            ("(b) group commit", ">= 0.8x", 0.8)
        };
        let s = sc.senders;
        let ratio = sc.ratio();
        let mut e2e = Row::info(
            format!("(d) agent {s} sender(s): end to end"),
            sc.e2e(),
            "msg/s",
        )
        .vs(reference, sc.reference())
        .target(target, ratio >= min)
        .note(format!(
            "N = {} in {} rounds, each right after its reference; agent CPU {:.0} us/msg",
            sc.n,
            sc.rounds.len(),
            sc.cpu_us_per_msg
        ));
        e2e.ratio_override = Some(ratio);
        rows.push(e2e);
        let mut ingest = Row::info(
            format!("(d) agent {s} sender(s): ingest (AA after fsync)"),
            sc.ingest(),
            "msg/s",
        )
        .vs(reference, sc.reference())
        .note(format!(
            "agent's commit wait (hand-over to durable) mean {:.0} us; sender's AA p50 {:.2} ms, p99 {:.2} ms",
            sc.commit_us,
            pct_ms(&sc.acks, 0.5),
            pct_ms(&sc.acks, 0.99)
        ));
        ingest.ratio_override = Some(sc.ingest_ratio());
        rows.push(ingest);
        rows.push(
            Row::info(
                format!("(d) agent {s} sender(s): delivery alone"),
                sc.drain(),
                "msg/s",
            )
            .note("EHR receipts after the last ingest AA, per second"),
        );
        rows.push(Row::info(
            format!("(d) agent {s} sender(s): send -> EHR p50"),
            pct_ms(&sc.lat, 0.5),
            "ms",
        ));
        rows.push(
            Row::info(
                format!("(d) agent {s} sender(s): send -> EHR p99"),
                pct_ms(&sc.lat, 0.99),
                "ms",
            )
            .note(format!("max {:.1} ms", pct_ms(&sc.lat, 1.0))),
        );
    }
    rows.push(
        Row::info(
            "(e) ASTM pty: final frame -> EHR AA p50",
            astm.to_aa_p50,
            "ms",
        )
        .note(format!("N = {}", astm.n)),
    );
    rows.push(
        Row::info(
            "(e) ASTM pty: final frame -> EHR AA p99",
            astm.to_aa_p99,
            "ms",
        )
        .target("<= 20 ms", astm.to_aa_p99 <= 20.0)
        .note(format!("max {:.1} ms", astm.to_aa_max)),
    );
    rows.push(
        Row::info(
            "(e) ASTM pty: final frame -> its ACK p99",
            astm.to_ack_p99,
            "ms",
        )
        .note(format!("p50 {:.2} ms (commit + fsync)", astm.to_ack_p50)),
    );
    let kib = |k: u64| k as f64 / 1024.0;
    rows.push(
        Row::info(
            "(f) RSS idle after READY (empty store)",
            kib(agent.rss_idle_kib),
            "MiB",
        )
        .target("<= 8 MiB", kib(agent.rss_idle_kib) <= 8.0),
    );
    rows.push(
        Row::info("(f) RSS peak (VmHWM) during (d)", kib(agent.hwm_kib), "MiB").note(format!(
            "VmRSS after (d): {:.1} MiB",
            kib(agent.rss_after_kib)
        )),
    );
    rows.push(
        Row::info("(f) READY, empty store", agent.ready_ms, "ms").note("spawn -> `ready` line"),
    );
    if let Some(b) = &backlog {
        let full = b.n >= 1_000_000;
        let scale = if full {
            format!("N = {}", b.n)
        } else {
            format!("N = {} (target is for 1,000,000)", b.n)
        };
        for (senders, rounds) in &b.ingest_alone {
            let reference = if *senders == 1 {
                "(a) fdatasync"
            } else {
                "(b) group commit"
            };
            let mut row = Row::info(
                format!("(g) ingest alone (sink port closed), {senders} sender(s)"),
                median(rounds.iter().map(|r| r.1).collect()),
                "msg/s",
            )
            .vs(reference, median(rounds.iter().map(|r| r.0).collect()))
            .note("diagnostic: no delivery, so no cursor fsyncs; ratio per round");
            row.ratio_override = Some(median(rounds.iter().map(|r| r.1 / r.0).collect()));
            rows.push(row);
        }
        rows.push(
            Row::info(
                format!("(g) backlog build, {} senders: ingest rate", b.senders),
                b.build_rate,
                "msg/s",
            )
            .note(format!(
                "agent CPU {:.0} us/msg; {} msgs in all in {:.1} s; store {:.0} MiB",
                b.feed_cpu_us, b.n, b.build_s, b.store_mib
            )),
        );
        rows.push(
            Row::info(
                "(g) READY with N undelivered (`ready` line)",
                b.ready_log_ms,
                "ms",
            )
            .target("<= 500 ms", b.ready_log_ms <= 500.0)
            .note(format!(
                "{scale}; /readyz 200 at {:.0} ms; empty store {:.0} ms",
                b.readyz_ms, b.ready_empty_ms
            )),
        );
        rows.push(
            Row::info(
                "(g) RSS idle with N undelivered",
                kib(b.rss_idle_kib),
                "MiB",
            )
            .target("<= 32 MiB", kib(b.rss_idle_kib) <= 32.0)
            .note(format!("{scale}; queue depth {}", b.depth_after_restart)),
        );
        rows.push(Row::info(
            "(g) RSS peak (VmHWM) while building the backlog",
            kib(b.hwm_build_kib),
            "MiB",
        ));
    }

    println!();
    println!(
        "labagent end-to-end benchmark ({cores} CPU(s); disk: {fs}; total {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!();
    print_table(&rows);
    if agent.per_message_log_lines > 0 {
        println!(
            "\nnote: the agent wrote {} per-message INFO lines (`message committed`, `delivered`) during (d)",
            agent.per_message_log_lines
        );
    }
    if !agent.warnings.is_empty() {
        println!("\nagent warnings during (d):");
        for w in agent.warnings.iter().take(10) {
            println!("  {w}");
        }
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| r.pass == Some(false)).collect();

    let report = json!({
        "cpus": cores,
        "filesystem": fs,
        "work_dir": parent.display().to_string(),
        "agent": bin.display().to_string(),
        "total_s": started.elapsed().as_secs_f64(),
        "parameters": {
            "fsync_n": fsync_n, "group_n": group_n, "echo_n_per_sender": echo_n,
            "n1": n1, "n8_per_sender": n8, "rounds": rounds, "astm_n": astm_n,
            "backlog_n": backlog_n, "backlog_senders": backlog_senders,
            "message_bytes": payload("R8S7M999").len(),
        },
        "rounds": {
            "fsync": fsync_rounds, "fsync_after": fsync_after, "group_commit": group_rounds,
            "ingest_alone": backlog.as_ref().map(|b| b.ingest_alone.iter().map(|(senders, r)| json!({
                "senders": senders,
                "rounds": r.iter().map(|x| json!({"reference": x.0, "ingest": x.1})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()),
            "agent": agent.scenarios.iter().map(|sc| json!({
                "senders": sc.senders,
                "rounds": sc.rounds.iter().map(|r| json!({
                    "reference": r.0, "end_to_end": r.1, "ingest": r.2,
                    "delivery_alone": if r.3.is_nan() { Value::Null } else { json!(r.3) },
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "failed_targets": failed.iter().map(|r| r.figure.clone()).collect::<Vec<_>>(),
    });
    if let Some(d) = json_path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("write {}: {e}", json_path.display()))?;
    println!("\nJSON: {}", json_path.display());
    if !failed.is_empty() {
        println!("targets missed: {}", failed.len());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-bench: {e}");
            ExitCode::from(2)
        }
    }
}
