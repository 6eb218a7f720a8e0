//! The HTTP interface of a real `labagent run`: probes, `/api/status`, `/metrics`, the queue
//! API, the bearer token, the status page (also as rendered by headless Chromium), and that no
//! answer carries patient data.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labagent");
/// Patient data of the built-in sample (`labagent simulate` without `--file`): name, date of
/// birth, a result value. None of it may appear in any HTTP answer.
const PATIENT_DATA: [&str; 3] = ["Patient", "19800101", "6.42"];

struct Agent {
    child: Child,
    http: SocketAddr,
    astm: u16,
    dir: tempfile::TempDir,
    token: Option<String>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A parsed HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = body.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// A minimal HTTP/1.1 client: one request per connection.
fn request(addr: SocketAddr, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP interface");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

impl Agent {
    fn get(&self, path: &str) -> Response {
        self.call("GET", path, &[])
    }

    fn post(&self, path: &str) -> Response {
        self.call("POST", path, &[])
    }

    /// A request with the agent's token, if it has one.
    fn call(&self, method: &str, path: &str, extra: &[(&str, &str)]) -> Response {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = extra.to_vec();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        request(self.http, method, path, &headers)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn simulate(&self, file: Option<&Path>) {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "simulate",
            "--to",
            &format!("tcp://127.0.0.1:{}", self.astm),
        ]);
        if let Some(f) = file {
            cmd.arg("--file").arg(f);
        }
        let out = cmd.output().expect("run simulate");
        assert!(
            out.status.success(),
            "simulate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Polls until `check` holds, at most 20 s.
    fn wait_for(&self, what: &str, mut check: impl FnMut(&Agent) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; agent log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Starts `labagent run` with an astm-tcp source `an` and a file sink `files`, and waits until
/// `/readyz` answers 200.
fn start(token: Option<&str>) -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http_port, astm) = (free_port(), free_port());
    let token_line = match token {
        Some(t) => {
            std::fs::write(dir.path().join("token"), format!("{t}\n")).expect("token file");
            "token_file = \"token\"\n"
        }
        None => "",
    };
    let config = dir.path().join("labagent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"http-test\"\nstate_dir = \"state\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n{token_line}\n\
             [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{astm}\"\n\n\
             [[sink]]\nname = \"files\"\nkind = \"file\"\ndir = \"out\"\n"
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start agent");
    let mut agent = Agent {
        child,
        http: SocketAddr::from(([127, 0, 0, 1], http_port)),
        astm,
        dir,
        token: token.map(str::to_string),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!("agent exited with {status}:\n{}", agent.stderr());
        }
        let ready = TcpStream::connect(agent.http).is_ok() && agent.get("/readyz").status == 200;
        if ready {
            return agent;
        }
        assert!(
            Instant::now() < deadline,
            "agent not ready in time:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn assert_no_patient_data(what: &str, text: &str) {
    for p in PATIENT_DATA {
        assert!(
            !text.contains(p),
            "{what} contains patient data {p:?}:\n{text}"
        );
    }
}

/// Parses Prometheus text: every line is blank, a comment, or `name{labels} value`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

fn parked_of(agent: &Agent) -> Vec<Value> {
    let r = agent.get("/api/queue?sink=files&parked=true");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["sinks"][0]["parked"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn probes_status_metrics_queue_and_page() {
    let agent = start(None);
    assert_eq!(agent.get("/healthz").status, 200);
    assert_eq!(agent.get("/readyz").status, 200);

    // One result delivered to the file sink, one host query parked as untranslatable.
    agent.simulate(None);
    agent.simulate(Some(&corpus().join("ortho_vitros3600_3.astm")));
    agent.wait_for("the result to be delivered", |a| {
        let s = a.get("/api/status").json();
        s["sinks"][0]["delivered"].as_u64() == Some(1) && s["sinks"][0]["parked"] == 1
    });

    let r = agent.get("/api/status");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("application/json"), "{}", r.headers);
    let status = r.json();
    assert_eq!(status["agent_id"], "http-test");
    assert_eq!(status["ready"], true);
    let sources = status["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["name"], "an");
    assert_eq!(sources[0]["messages"], 1, "{status}");
    let sinks = status["sinks"].as_array().expect("sinks");
    assert_eq!(sinks.len(), 1);
    assert_eq!(sinks[0]["name"], "files");
    assert_eq!(sinks[0]["queue_depth"], 0, "{status}");
    assert_eq!(sinks[0]["parked"], 1, "{status}");
    assert_no_patient_data("/api/status", &r.body);

    let r = agent.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("text/plain"), "{}", r.headers);
    let samples = parse_metrics(&r.body);
    assert!(samples.iter().all(|(s, _)| s.starts_with("labagent_")));
    assert!(sample(&samples, "labagent_messages_committed_total{source=\"an\"}") >= 1.0);
    // Every commit was timed: append + fsync before the upstream ACK.
    assert!(sample(&samples, "labagent_commit_duration_seconds_count") >= 1.0);
    assert!(
        sample(
            &samples,
            "labagent_commit_duration_seconds_bucket{le=\"+Inf\"}"
        ) >= 1.0
    );
    assert_eq!(
        sample(
            &samples,
            "labagent_messages_delivered_total{sink=\"files\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&samples, "labagent_queue_depth{sink=\"files\"}"),
        0.0
    );
    assert_eq!(
        sample(&samples, "labagent_queue_parked{sink=\"files\"}"),
        1.0
    );
    assert!(sample(&samples, "labagent_frames_received_total{source=\"an\"}") >= 1.0);
    assert!(sample(&samples, "labagent_uptime_seconds") >= 0.0);
    assert_no_patient_data("/metrics", &r.body);

    // The queue API: the parked host query with its reason, metadata only.
    let r = agent.get("/api/queue?sink=files&parked=true");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_no_patient_data("/api/queue?parked=true", &r.body);
    let parked = parked_of(&agent);
    assert_eq!(parked.len(), 1, "{}", r.body);
    let reason = parked[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("host query"), "{reason}");
    assert_eq!(parked[0]["kind"], "ASTM");
    assert!(parked[0].get("payload").is_none());
    let id = parked[0]["id"].as_u64().expect("id");

    let r = agent.get("/api/queue?sink=files");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["sinks"][0]["pending"], serde_json::json!([]));
    assert_eq!(agent.get("/api/queue?sink=nope").status, 404);

    let r = agent.get(&format!("/api/queue/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    let entry = r.json();
    assert_eq!(entry["id"], id);
    assert_eq!(entry["source"], "an");
    assert_eq!(entry["sinks"][0]["state"], "parked");
    assert_no_patient_data("/api/queue/ID", &r.body);
    assert_eq!(agent.get("/api/queue/999999").status, 404);
    assert_eq!(agent.get("/api/queue/x").status, 400);

    // The page: a card per source and sink, the parked id and reason, no patient data.
    let r = agent.get("/");
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("text/html"), "{}", r.headers);
    let page = &r.body;
    assert!(page.contains("data-source=\"an\""), "{page}");
    assert!(page.contains("data-sink=\"files\""), "{page}");
    assert!(
        page.contains("class=\"card amber\" data-sink=\"files\""),
        "{page}"
    );
    assert!(page.contains(&format!("data-parked-id=\"{id}\"")), "{page}");
    assert!(page.contains("host query"), "{page}");
    assert_no_patient_data("/", page);

    // A browser page of another origin cannot operate the queue.
    let r = agent.call(
        "POST",
        &format!("/api/queue/{id}/retry"),
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(parked_of(&agent).len(), 1);

    // Retry while running: the parked count drops at once, and the woken sink takes the entry
    // again: it is translated again, and a host query is still untranslatable, so the sink
    // parks it again with the precise reason.
    let r = agent.post(&format!("/api/queue/{id}/retry"));
    assert_eq!(r.status, 200, "{}", r.body);
    let result = r.json();
    assert_eq!(result["retried"], 1, "{result}");
    assert_eq!(result["sinks"][0]["parked"], 0, "{result}");
    agent.wait_for("the sink to take the retried entry", |a| {
        parked_of(a)
            .first()
            .and_then(|p| p["reason"].as_str())
            .is_some_and(|r| r.contains("not translatable: no results to translate"))
    });
    assert_eq!(
        agent
            .post(&format!("/api/queue/{id}/retry?sink=nope"))
            .status,
        404
    );
    assert_eq!(agent.post("/api/queue/999999/retry").status, 404);

    let r = agent.post("/api/queue/retry-parked?sink=files");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["retried"], 1, "{}", r.body);
    assert_eq!(agent.get("/api/queue/retry-parked").status, 405);
}

#[test]
fn token_is_required_when_configured() {
    let token = "s3cret-token-0123456789";
    let agent = start(Some(token));
    for path in [
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/status",
        "/api/queue",
    ] {
        let r = request(agent.http, "GET", path, &[]);
        assert_eq!(r.status, 401, "{path} without a token");
        assert!(
            r.headers.contains("www-authenticate: bearer"),
            "{}",
            r.headers
        );
        let r = request(
            agent.http,
            "GET",
            path,
            &[("Authorization", "Bearer wrong-token")],
        );
        assert_eq!(r.status, 401, "{path} with a wrong token");
        let r = agent.get(path);
        assert_eq!(r.status, 200, "{path} with the token: {}", r.body);
    }
    let r = request(agent.http, "POST", "/api/queue/retry-parked", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(agent.post("/api/queue/retry-parked").status, 200);
    // The token never shows up in what the agent logs.
    assert!(!agent.stderr().contains(token));
}

#[test]
fn empty_token_file_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), "  \n").expect("token file");
    let config = dir.path().join("labagent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"t\"\nstate_dir = \"state\"\n\n\
             [http]\nlisten = \"127.0.0.1:{}\"\ntoken_file = \"token\"\n\n\
             [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{}\"\n\n\
             [[sink]]\nname = \"files\"\nkind = \"file\"\ndir = \"out\"\n",
            free_port(),
            free_port()
        ),
    )
    .expect("write config");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.token_file") && err.contains("empty"),
        "{err}"
    );
}

/// The page as a real browser renders it: headless Chromium's DOM has a card for every source
/// and sink. Chromium is required (CI installs it); without it this test fails with the hint.
#[test]
fn status_page_in_headless_chromium() {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .unwrap_or_else(|| {
            panic!("chromium is not installed: run `apt-get install -y chromium` (CI installs it)")
        });
    let agent = start(None);
    agent.simulate(None);
    agent.wait_for("the result to be delivered", |a| {
        a.get("/api/status").json()["sinks"][0]["delivered"].as_u64() == Some(1)
    });
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("http://{}/", agent.http))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().expect("chromium status").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let dom = reader.join().expect("reader");
    assert!(dom.contains("data-source=\"an\""), "DOM:\n{dom}");
    assert!(dom.contains("data-sink=\"files\""), "DOM:\n{dom}");
    assert!(dom.contains("class=\"card green\""), "DOM:\n{dom}");
    assert!(dom.contains("id=\"overall\""), "DOM:\n{dom}");
    assert_no_patient_data("the rendered page", &dom);
}
