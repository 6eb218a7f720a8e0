//! Child processes: the agent, the simulated analyser and socat. Each is killed and reaped on
//! drop so a failing test leaves nothing behind.

use crate::labagent_bin;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `BIN run --config CONFIG` as the tests and the bench run it: INFO logs on a piped stderr, no
/// systemd sockets inherited from the caller.
pub fn run_command(bin: &Path, config: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A child that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child, while it has not been reaped.
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child already reaped")
    }

    /// Waits up to `timeout` for the child to exit (polling `try_wait`); `None` on timeout.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One stderr line of the agent, split into level and the rest (text log format:
/// `TIMESTAMP  LEVEL message key=value ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, or empty when the line is not a log event
    /// (e.g. `labagent: ...` written by the CLI).
    pub level: String,
    /// The message and its fields.
    pub text: String,
    /// The whole line.
    pub raw: String,
}

impl LogLine {
    /// Parses one line.
    pub fn parse(raw: &str) -> LogLine {
        let mut parts = raw.splitn(2, char::is_whitespace);
        let first = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("").trim_start();
        let looks_like_time = first.len() > 10 && first.as_bytes()[4] == b'-';
        if looks_like_time {
            let mut p = rest.splitn(2, char::is_whitespace);
            let level = p.next().unwrap_or("").to_string();
            let text = p.next().unwrap_or("").trim_start().to_string();
            if matches!(
                level.as_str(),
                "TRACE" | "DEBUG" | "INFO" | "WARN" | "ERROR"
            ) {
                return LogLine {
                    level,
                    text,
                    raw: raw.to_string(),
                };
            }
        }
        LogLine {
            level: String::new(),
            text: raw.to_string(),
            raw: raw.to_string(),
        }
    }

    /// True for INFO, WARN and ERROR (the levels that must never carry patient data).
    pub fn info_or_above(&self) -> bool {
        matches!(self.level.as_str(), "INFO" | "WARN" | "ERROR")
    }

    /// The event's message: the text up to the first ` key=value` field.
    pub fn message(&self) -> &str {
        let t = self.text.as_str();
        let mut end = t.len();
        for (i, _) in t.match_indices(' ') {
            let word = &t[i + 1..];
            let key_end = word.find(['=', ' ']).unwrap_or(word.len());
            if word[key_end..].starts_with('=')
                && word[..key_end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                end = i;
                break;
            }
        }
        &t[..end]
    }
}

#[derive(Debug, Default)]
struct LogState {
    lines: Vec<LogLine>,
    eof: bool,
}

/// Collected stderr lines with a condition variable for waiting on them.
#[derive(Debug, Default)]
pub struct LogBuffer {
    state: Mutex<LogState>,
    cv: Condvar,
}

impl LogBuffer {
    fn spawn_reader(self: &Arc<Self>, stream: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = self.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stream);
            for line in reader.split(b'\n') {
                let Ok(line) = line else { break };
                let text = String::from_utf8_lossy(&line).into_owned();
                let mut s = buf.state.lock().expect("log lock");
                s.lines.push(LogLine::parse(&text));
                buf.cv.notify_all();
            }
            let mut s = buf.state.lock().expect("log lock");
            s.eof = true;
            buf.cv.notify_all();
        })
    }

    /// Waits until a line satisfying `pred` exists (earlier lines count too); `None` when the
    /// stream ended or `timeout` passed without one.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&LogLine) -> bool) -> Option<LogLine> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock().expect("log lock");
        let mut from = 0;
        loop {
            if let Some(l) = s.lines[from..].iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            from = s.lines.len();
            let now = Instant::now();
            if s.eof || now >= deadline {
                return None;
            }
            s = self.cv.wait_timeout(s, deadline - now).expect("log lock").0;
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<LogLine> {
        self.state.lock().expect("log lock").lines.clone()
    }

    /// The lines so far as one string, for failure messages.
    pub fn dump(&self) -> String {
        self.lines()
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `labagent run --config FILE`, started and ready.
#[derive(Debug)]
pub struct AgentProcess {
    child: ChildGuard,
    log: Arc<LogBuffer>,
    /// The configuration it runs on.
    pub config: PathBuf,
}

impl AgentProcess {
    /// Starts the agent and waits (at most 20 s) for its `ready` line. Panics with the
    /// agent's stderr if it exits first or never gets ready.
    pub fn start(config: &Path) -> AgentProcess {
        let agent = AgentProcess::spawn(config);
        let ready = agent.log.wait_for(Duration::from_secs(20), |l| {
            l.level == "INFO" && l.message() == "ready"
        });
        assert!(
            ready.is_some(),
            "the agent did not get ready; stderr:\n{}",
            agent.log.dump()
        );
        agent
    }

    /// Starts the agent without waiting for readiness.
    pub fn spawn(config: &Path) -> AgentProcess {
        let mut child = run_command(&labagent_bin(), config)
            .spawn()
            .expect("spawn labagent");
        let log = Arc::new(LogBuffer::default());
        let stderr = child.stderr.take().expect("piped stderr");
        // The reader thread ends at EOF, which SIGKILL guarantees.
        let _reader = log.spawn_reader(stderr);
        AgentProcess {
            child: ChildGuard::new(child),
            log,
            config: config.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr log.
    pub fn log(&self) -> &LogBuffer {
        &self.log
    }

    /// Waits for a log line; see [`LogBuffer::wait_for`].
    pub fn wait_for_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&LogLine) -> bool,
    ) -> Option<LogLine> {
        self.log.wait_for(timeout, pred)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_timeout(timeout)
    }

    /// Resident set size in KiB, from `/proc/<pid>/status` (`VmRSS`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }

    /// SIGKILL and reap: a crash at an arbitrary instant.
    pub fn kill(&mut self) {
        self.child.kill();
    }
}

/// The outcome of `labagent simulate`.
#[derive(Debug, Clone)]
pub struct SimOutcome {
    /// Exit code (`None` when killed by a signal or timed out).
    pub code: Option<i32>,
    /// Its stdout (`sent N message(s)...`).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl SimOutcome {
    /// N from `sent N message(s)` on stdout: messages every frame of which was ACKed.
    pub fn sent(&self) -> usize {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("sent "))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `labagent simulate ARGS...` to completion (killed after `timeout`).
pub fn simulate<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> SimOutcome {
    let mut child = Command::new(labagent_bin())
        .arg("simulate")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn labagent simulate");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut guard = ChildGuard::new(child);
    let status = guard.wait_timeout(timeout);
    guard.kill();
    SimOutcome {
        code: status.and_then(|s| s.code()),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// A `socat` pty pair: two linked pseudo-terminals, like a null-modem cable.
#[derive(Debug)]
pub struct PtyPair {
    /// One end (give it to the agent).
    pub a: PathBuf,
    /// The other end (give it to `simulate --serial`).
    pub b: PathBuf,
    _socat: ChildGuard,
}

impl PtyPair {
    /// Creates `dir/pty-a` and `dir/pty-b` and waits for socat's "starting data transfer
    /// loop".
    pub fn new(dir: &Path) -> PtyPair {
        let a = dir.join("pty-a");
        let b = dir.join("pty-b");
        let mut child = Command::new("socat")
            .args(["-d", "-d"])
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("socat must be installed (apt-get install socat)");
        let stderr = child.stderr.take().expect("stderr");
        let guard = ChildGuard::new(child);
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let mut ready = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            ready = line.contains("starting data transfer loop");
            seen.push(line);
            if ready {
                break;
            }
        }
        assert!(ready, "socat did not start:\n{}", seen.join("\n"));
        // Keep draining socat's stderr so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        PtyPair {
            a,
            b,
            _socat: guard,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_split_into_level_message_and_fields() {
        let l = LogLine::parse(
            "2026-11-25T12:23:47.923017Z  INFO delivered sink=outbox record=#1 control_id=x1",
        );
        assert_eq!(l.level, "INFO");
        assert_eq!(l.message(), "delivered");
        assert!(l.info_or_above());
        let w = LogLine::parse(
            "2026-11-25T12:23:47.9Z  WARN delivery failed; will retry sink=ehr reason=a b=c",
        );
        assert_eq!(w.message(), "delivery failed; will retry");
        let cli = LogLine::parse("labagent: store x: invalid");
        assert_eq!(cli.level, "");
        assert!(!cli.info_or_above());
    }

    #[test]
    fn sent_count_is_read_from_stdout() {
        let o = SimOutcome {
            code: Some(1),
            stdout: "sent 2 message(s); 1 failed\n".into(),
            stderr: String::new(),
        };
        assert_eq!(o.sent(), 2);
        assert!(!o.success());
    }
}
