//! `labagent queue` against a real agent: read-only views while it runs, retry once stopped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn corpus() -> PathBuf {
    std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
}

/// Starts `labagent run` and returns once it logged that it is ready.
fn start(config: &Path) -> Agent {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("agent did not become ready");
        if line.contains("ready") {
            break;
        }
    }
    Agent(child)
}

fn queue(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["queue", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run queue");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn queue_views_while_running_and_retry_when_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("labagent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"q1\"\nstate_dir = \"state\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
             [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{port}\"\n\n\
             [[sink]]\nname = \"files\"\nkind = \"file\"\ndir = \"out\"\n",
            free_port()
        ),
    )
    .expect("write config");
    let agent = start(&config);
    let to = format!("tcp://127.0.0.1:{port}");
    // A host query cannot become an ORU: it is parked with its reason, never dropped.
    let query = corpus().join("ortho_vitros3600_3.astm");
    for extra in [
        vec!["--file".to_string(), query.display().to_string()],
        vec![],
    ] {
        let ok = Command::new(BIN)
            .args(["simulate", "--to", &to])
            .args(&extra)
            .status()
            .expect("simulate");
        assert!(ok.success());
    }
    // Wait (bounded) until the sink has recorded the delivery: nothing pending, one parked.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, status, err) = queue(&config, &["status"]);
        assert_eq!(code, 0, "{err}");
        let line = status
            .lines()
            .find(|l| l.starts_with("files"))
            .expect("files line")
            .to_string();
        let cols: Vec<&str> = line.split_whitespace().collect();
        if (cols[1], cols[4]) == ("0", "1") {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (code, list, _) = queue(&config, &["list", "--parked"]);
    assert_eq!(code, 0);
    assert!(
        list.contains("not translatable: no results to translate (a host query)"),
        "{list}"
    );
    let id = list.split_whitespace().next().expect("id").to_string();
    let (code, show, _) = queue(&config, &["show", &id]);
    assert_eq!(code, 0);
    assert!(
        show.contains("kind: ASTM") && show.contains("Q|1|^1068687||ALL"),
        "{show}"
    );

    // While the agent runs, retry goes through its HTTP interface. The retried query is
    // untranslatable again, so it comes back parked: wait for that, then stop the agent.
    let (code, out, err) = queue(&config, &["retry", "--all-parked"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retried through the running agent"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, list, _) = queue(&config, &["list", "--parked"]);
        if list.contains("not translatable") {
            break;
        }
        assert!(Instant::now() < deadline, "not parked again: {list}");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(agent);

    // Stopped: retry opens the store itself.
    let (code, out, err) = queue(&config, &["retry", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("queued again"), "{out}");
    let (_, status, _) = queue(&config, &["status"]);
    let line = status
        .lines()
        .find(|l| l.starts_with("files"))
        .expect("line");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cols[1], cols[4]), ("1", "0"), "{status}");
    let (code, _, err) = queue(&config, &["show", "#999"]);
    assert_eq!(code, 1);
    assert!(!err.is_empty());
}
