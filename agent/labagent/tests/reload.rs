//! SIGHUP: a valid new configuration restarts only what changed; an invalid one is refused with
//! its errors logged and the running configuration keeps working.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

struct Agent {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(config: &Path) -> Agent {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let agent = Agent { child, lines };
        agent.wait_for("ready");
        agent
    }

    /// Waits for a log line containing `needle`; returns every line seen up to it.
    fn wait_for(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {needle:?} in {seen:#?}"));
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return seen;
            }
        }
    }

    fn hup(&self) {
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn config(http: u16, port: u16, app: &str, outdir: &str) -> String {
    format!(
        "[agent]\nid = \"rl\"\nstate_dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
         [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{port}\"\nmapping = \"m\"\n\
         [mapping.m]\nsending_application = \"{app}\"\n\
         [[sink]]\nname = \"files\"\nkind = \"file\"\ndir = \"{outdir}\"\n"
    )
}

fn simulate(port: u16) -> bool {
    Command::new(BIN)
        .args(["simulate", "--to", &format!("tcp://127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("simulate")
        .success()
}

fn wait_file(dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(f) = std::fs::read_dir(dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "hl7"))
        }) {
            return std::fs::read_to_string(f).expect("read");
        }
        assert!(Instant::now() < deadline, "nothing in {}", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_applies_changes_and_refuses_bad_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("labagent.toml");
    let (http, port1, port2) = (free_port(), free_port(), free_port());
    std::fs::write(&path, config(http, port1, "APP1", "out1")).expect("write");
    let agent = Agent::start(&path);
    assert!(simulate(port1));
    assert!(wait_file(&dir.path().join("out1")).starts_with("MSH|^~\\&|APP1|"));

    // New mapping, new listen port, new sink directory: both components restart.
    std::fs::write(&path, config(http, port2, "APP2", "out2")).expect("write");
    agent.hup();
    let lines = agent.wait_for("configuration reloaded");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("an") && l.contains("files")),
        "{lines:#?}"
    );
    assert!(!simulate(port1), "the old port is closed");
    assert!(simulate(port2));
    assert!(wait_file(&dir.path().join("out2")).starts_with("MSH|^~\\&|APP2|"));

    // An invalid configuration: every error logged, the running one kept.
    std::fs::write(
        &path,
        config(http, port2, "APP3", "out3").replace("kind = \"file\"", "kind = \"fiel\""),
    )
    .expect("write");
    agent.hup();
    let lines = agent.wait_for("keeping the running one");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("reload refused") && l.contains("fiel")),
        "{lines:#?}"
    );
    assert!(
        simulate(port2),
        "still serving on the running configuration"
    );
    assert!(!dir.path().join("out3").exists());
}

fn corpus() -> std::path::PathBuf {
    std::env::var_os("LABAGENT_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
}

/// The operator's loop for an analyser whose specimen id sits somewhere unexpected: the
/// message is parked (nothing lost), the mapping is fixed, SIGHUP, `queue retry`: the parked
/// message is translated again and delivered.
#[test]
fn parked_message_is_delivered_after_the_mapping_is_fixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("labagent.toml");
    let (http, port) = (free_port(), free_port());
    let with_specimen = |sel: &str| {
        config(http, port, "EUROIMMUN", "out").replace(
            "[mapping.m]\n",
            &format!("[mapping.m]\nspecimen_id = \"{sel}\"\n"),
        )
    };
    std::fs::write(&path, with_specimen("O.3")).expect("write");
    let agent = Agent::start(&path);
    let trace = corpus().join("euroimmun_analyzer1_1.astm");
    let sent = Command::new(BIN)
        .args([
            "simulate",
            "--to",
            &format!("tcp://127.0.0.1:{port}"),
            "--file",
        ])
        .arg(&trace)
        .status()
        .expect("simulate");
    assert!(
        sent.success(),
        "the analyser got its ACK: the message is safe"
    );
    let queue = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["queue", "--config"])
            .arg(&path)
            .args(args)
            .output()
            .expect("queue");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list) = queue(&["list", "--parked"]);
        if list.contains("no specimen id in O.3") {
            break;
        }
        assert!(Instant::now() < deadline, "not parked: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!dir.path().join("out").exists(), "nothing delivered yet");

    std::fs::write(&path, with_specimen("P.4")).expect("write");
    agent.hup();
    agent.wait_for("configuration reloaded");
    let (ok, out) = queue(&["retry", "--all-parked"]);
    assert!(ok, "{out}");
    let outbox = dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(10);
    let count = || {
        std::fs::read_dir(&outbox).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "hl7"))
                .count()
        })
    };
    while count() < 20 {
        assert!(Instant::now() < deadline, "{} of 20 delivered", count());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, list) = queue(&["list", "--parked"]);
    assert!(list.trim().is_empty(), "{list}");
}

/// A reload whose new settings cannot start (the new port is taken) starts the old settings
/// again, so the source keeps serving; a later stop is clean (the replaced component's handle is
/// not awaited twice).
#[test]
fn a_source_that_cannot_start_keeps_its_old_settings_and_the_agent_still_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("labagent.toml");
    let (http, port1) = (free_port(), free_port());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port2 = taken.local_addr().expect("addr").port();
    std::fs::write(&path, config(http, port1, "APP1", "out1")).expect("write");
    let mut agent = Agent::start(&path);
    std::fs::write(&path, config(http, port2, "APP1", "out1")).expect("write");
    agent.hup();
    let lines = agent.wait_for("reload failed part-way");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cannot start the new settings")),
        "{lines:#?}"
    );
    assert!(simulate(port1), "the old settings serve again");
    assert!(wait_file(&dir.path().join("out1")).starts_with("MSH|^~\\&|APP1|"));
    // A second reload of the same failing change, then a stop: both must be clean.
    agent.hup();
    agent.wait_for("reload failed part-way");
    assert!(simulate(port1));
    let ok = Command::new("kill")
        .args(["-TERM", &agent.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = agent.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "stopped with {status:?}");
    drop(taken);
}
