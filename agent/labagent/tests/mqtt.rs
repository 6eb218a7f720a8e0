//! MQTT delivery against a real mosquitto broker (Debian packages `mosquitto` and
//! `mosquitto-clients`): plain and mutual-TLS publishing from the real agent, a broker restart
//! mid-stream, and the retained status heartbeat with its last will.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `done` every 20 ms until it holds, failing with `what` after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async variant of [`wait_until`].
async fn wait_until_async(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// mosquitto

/// A mosquitto process on 127.0.0.1, killed on drop.
struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    /// The port of the first listener.
    port: u16,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// A broker with one plain listener, anonymous access and a persistence file (so that a
    /// persistent subscriber session survives a restart once saved with [`Broker::save`]).
    fn plain() -> Broker {
        let port = free_port();
        Broker::with_listeners(port, &format!("listener {port} 127.0.0.1\n"))
    }

    /// A broker with `listeners` (mosquitto.conf text) and common settings.
    fn with_listeners(port: u16, listeners: &str) -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("mosquitto.conf");
        let text = format!(
            "# written by tests/mqtt.rs\n\
             user root\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {}/\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             {listeners}",
            dir.path().display()
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let mut broker = Broker {
            child: None,
            conf,
            port,
            _dir: dir,
        };
        broker.start();
        broker
    }

    fn start(&mut self) {
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        let port = self.port;
        wait_until(Duration::from_secs(10), "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGKILL: no goodbye to anyone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-STOP`, `-USR1`, ...) with kill(1).
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {signal} {pid}");
    }

    /// Asks mosquitto to write its persistence file now (SIGUSR1) and waits until it exists.
    fn save(&self) {
        self.signal("-USR1");
        let db = self.conf.with_file_name("mosquitto.db");
        wait_until(Duration::from_secs(10), "mosquitto.db", || db.exists());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// the agent

/// `labagent run` with its stderr collected line by line; SIGKILLed on drop.
struct Agent {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn start(config: &Path) -> Agent {
        let mut child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "labagent=debug")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start agent");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let agent = Agent { child, log };
        agent.wait_log(Duration::from_secs(15), "ready", |l| {
            l.contains("ready") && l.contains("running")
        });
        agent
    }

    /// Waits for a log line matching `pred`; returns it.
    fn wait_log(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let log = self.log.clone();
        wait_until(limit, what, || {
            found = log.lock().unwrap().iter().find(|l| pred(l)).cloned();
            found.is_some()
        });
        found.unwrap_or_default()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An agent directory with an astm-tcp source `an` and an mqtt sink `cloud` (`sink_extra` is
/// appended to the sink table). Returns (config path, astm port).
fn agent_config(dir: &Path, id: &str, broker: &str, sink_extra: &str) -> (PathBuf, u16) {
    let astm = free_port();
    let config = dir.join("labagent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{id}\"\nstate_dir = \"state\"\n\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n\
             [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{astm}\"\n\n\
             [[sink]]\nname = \"cloud\"\nkind = \"mqtt\"\nbroker = \"{broker}\"\n\
             topic = \"labagent/{{agent_id}}/results/{{source}}\"\n\
             ack_timeout = \"5s\"\nconnect_timeout = \"3s\"\nmax_backoff = \"2s\"\n{sink_extra}",
            http = free_port(),
        ),
    )
    .expect("write config");
    (config, astm)
}

/// `labagent simulate --count N`: N ORU^R01 messages through the ASTM source.
fn simulate(astm: u16, count: u32, interval_ms: u32) {
    let ok = Command::new(BIN)
        .args(["simulate", "--to", &format!("tcp://127.0.0.1:{astm}")])
        .args(["--count", &count.to_string()])
        .args(["--interval", &interval_ms.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("simulate");
    assert!(ok.success(), "simulate failed");
}

/// MSH-10 of an ER7 message.
fn control_id(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    assert!(text.starts_with("MSH|"), "not HL7: {text:?}");
    text.split('\r')
        .next()
        .and_then(|msh| msh.split('|').nth(9))
        .expect("MSH-10")
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// a subscriber

/// A message as received.
#[derive(Debug, Clone)]
struct Received {
    topic: String,
    payload: Vec<u8>,
}

/// A rumqttc subscriber that keeps reconnecting; everything received lands in `messages`.
struct Subscriber {
    messages: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to `port` and subscribes to `filter` with QoS 1; returns once subscribed.
    /// `persistent`: clean_session = false with a fixed client id, so the broker queues
    /// messages for it while it is disconnected.
    async fn start(port: u16, filter: &str, client_id: &str, persistent: bool) -> Subscriber {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(!persistent)
            .set_max_packet_size(1 << 20, 1 << 20);
        Subscriber::with_options(o, filter).await
    }

    async fn with_options(options: MqttOptions, filter: &str) -> Subscriber {
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let store = messages.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        store.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        });
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    // Bounded retry pace while the broker is away.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
            .await
            .expect("SUBACK in time");
        Subscriber { messages, task }
    }

    fn received(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    /// Control ids of the results (not the status) in order of arrival.
    fn control_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|m| m.topic.contains("/results/"))
            .map(|m| control_id(&m.payload))
            .collect()
    }
}

/// Unique values in order of first appearance.
fn first_arrivals(ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().filter(|i| seen.insert(*i)).cloned().collect()
}

/// The agent's counter in a control id: `<agent id><counter in base 36, zero padded>`.
fn counter(id: &str, agent_id: &str) -> u64 {
    let tail = id
        .strip_prefix(agent_id)
        .expect("MSH-10 starts with the agent id");
    u64::from_str_radix(tail, 36).expect("base-36 counter after the agent id")
}

// ---------------------------------------------------------------------------------------------
// PKI

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn pki() -> Pki {
    fn leaf(
        issuer: &CertifiedIssuer<'static, KeyPair>,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "labagent mqtt test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let (server_cert, server_key) = leaf(
        &ca,
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(&ca, &["lab1-pi"], ExtendedKeyUsagePurpose::ClientAuth);
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("ca.pem", &ca.pem());
    write("server.pem", &server_cert);
    write("server.key", &server_key);
    write("client.pem", &client_cert);
    write("client.key", &client_key);
    Pki { dir }
}

// ---------------------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread")]
async fn plain_mqtt_delivers_every_oru_on_its_topic() {
    let broker = Broker::plain();
    let sub = Subscriber::start(broker.port, "labagent/#", "plain-sub", false).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, astm) = agent_config(
        dir.path(),
        "plain1",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "",
    );
    let agent = Agent::start(&config);
    const N: usize = 5;
    tokio::task::spawn_blocking(move || simulate(astm, N as u32, 0))
        .await
        .unwrap();
    let results = || {
        sub.received()
            .into_iter()
            .filter(|m| m.topic.contains("/results/"))
            .collect::<Vec<_>>()
    };
    wait_until_async(Duration::from_secs(20), "5 ORUs", || {
        first_arrivals(
            &results()
                .iter()
                .map(|m| control_id(&m.payload))
                .collect::<Vec<_>>(),
        )
        .len()
            == N
    })
    .await;
    let got = results();
    for m in &got {
        assert_eq!(m.topic, "labagent/plain1/results/an");
        let text = String::from_utf8_lossy(&m.payload);
        assert!(text.contains("ORU^R01"), "{text:?}");
        assert!(text.contains("\rOBX|"), "ER7 with CR separators: {text:?}");
    }
    let ids: Vec<String> = got.iter().map(|m| control_id(&m.payload)).collect();
    let firsts = first_arrivals(&ids);
    let mut sorted = firsts.clone();
    sorted.sort_by_key(|i| counter(i, "plain1"));
    assert_eq!(firsts, sorted, "in commit order");
    assert!(
        agent.log_text().contains("delivered"),
        "{}",
        agent.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtts_with_client_certificate_delivers_and_without_one_is_refused() {
    let pki = pki();
    let plain = free_port();
    let tls = free_port();
    let broker = Broker::with_listeners(
        plain,
        &format!(
            "listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n",
            ca = pki.path("ca.pem").display(),
            cert = pki.path("server.pem").display(),
            key = pki.path("server.key").display(),
        ),
    );
    wait_until(Duration::from_secs(10), "the TLS listener", || {
        TcpStream::connect(("127.0.0.1", tls)).is_ok()
    });
    // The test's subscriber uses the plain listener of the same broker.
    let sub = Subscriber::start(broker.port, "labagent/#", "tls-sub", false).await;

    // With a client certificate: delivered.
    let dir = tempfile::tempdir().unwrap();
    let (config, astm) = agent_config(
        dir.path(),
        "tls1",
        &format!("mqtts://localhost:{tls}"),
        &format!(
            "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            pki.path("ca.pem").display(),
            pki.path("client.pem").display(),
            pki.path("client.key").display()
        ),
    );
    let agent = Agent::start(&config);
    tokio::task::spawn_blocking(move || simulate(astm, 2, 0))
        .await
        .unwrap();
    wait_until_async(Duration::from_secs(20), "2 ORUs over mTLS", || {
        first_arrivals(&sub.control_ids()).len() == 2
    })
    .await;
    let results: Vec<Received> = sub
        .received()
        .into_iter()
        .filter(|m| m.topic.contains("/results/"))
        .collect();
    assert!(
        results
            .iter()
            .all(|m| m.topic == "labagent/tls1/results/an"),
        "{results:?}"
    );
    // The heartbeat went over the same mTLS settings (its own connection).
    assert!(
        sub.received()
            .iter()
            .any(|m| m.topic == "labagent/tls1/status")
    );
    drop(agent);

    // Without a client certificate: the broker refuses; the sink keeps failing and keeps the
    // message.
    let dir = tempfile::tempdir().unwrap();
    let (config, astm) = agent_config(
        dir.path(),
        "tls2",
        &format!("mqtts://localhost:{tls}"),
        &format!("tls = {{ ca = \"{}\" }}\n", pki.path("ca.pem").display()),
    );
    let agent = Agent::start(&config);
    tokio::task::spawn_blocking(move || simulate(astm, 1, 0))
        .await
        .unwrap();
    let warned = agent.wait_log(Duration::from_secs(20), "a delivery warning", |l| {
        l.contains("WARN") && l.contains("delivery failed; will retry") && l.contains("cloud")
    });
    // A second failed attempt: it keeps trying.
    wait_until_async(Duration::from_secs(20), "a retry", || {
        agent
            .log_text()
            .matches("delivery failed; will retry")
            .count()
            >= 2
    })
    .await;
    assert!(
        !sub.received()
            .iter()
            .any(|m| m.topic.contains("/tls2/results/")),
        "nothing may arrive without a client certificate"
    );
    let out = Command::new(BIN)
        .args(["queue", "--config"])
        .arg(&config)
        .arg("status")
        .output()
        .expect("queue status");
    let status = String::from_utf8_lossy(&out.stdout);
    let line = status
        .lines()
        .find(|l| l.starts_with("cloud"))
        .unwrap_or_else(|| panic!("cloud line in {status}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols[1], "1",
        "the message is still pending: {status}\n{warned}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_mid_stream_loses_nothing() {
    let mut broker = Broker::plain();
    // A persistent subscriber session, saved to the broker's persistence file before the
    // kill, so that the restarted broker queues for it whatever arrives while it reconnects.
    let sub = Subscriber::start(broker.port, "labagent/+/results/#", "restart-sub", true).await;
    broker.save();
    let dir = tempfile::tempdir().unwrap();
    let (config, astm) = agent_config(
        dir.path(),
        "rs1",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "",
    );
    let agent = Agent::start(&config);
    // Back to back, so that the kill most likely lands while a publish awaits its PUBACK.
    const N: usize = 60;
    let feeder = tokio::task::spawn_blocking(move || simulate(astm, N as u32, 0));
    wait_until_async(Duration::from_secs(20), "the first messages", || {
        first_arrivals(&sub.control_ids()).len() >= 5
    })
    .await;
    // Freeze the broker so that a publish is in flight (no PUBACK) while more results are
    // committed behind it, then kill it: the sink must resend the unacknowledged message from
    // the store over a new connection, then drain the backlog.
    broker.signal("-STOP");
    let committed = || agent.log_text().matches("message committed").count();
    let before = committed();
    wait_until_async(Duration::from_secs(20), "a backlog", || {
        committed() >= before + 3
    })
    .await;
    broker.kill();
    broker.start();
    feeder.await.unwrap();
    wait_until_async(
        Duration::from_secs(60),
        "every message after the restart",
        || first_arrivals(&sub.control_ids()).len() >= N,
    )
    .await;
    let ids = sub.control_ids();
    let firsts = first_arrivals(&ids);
    assert_eq!(firsts.len(), N, "no extra messages: {firsts:?}");
    let mut sorted = firsts.clone();
    sorted.sort_by_key(|i| counter(i, "rs1"));
    assert_eq!(firsts, sorted, "first arrivals in order");
    let counters: Vec<u64> = sorted.iter().map(|i| counter(i, "rs1")).collect();
    assert!(
        counters.windows(2).all(|w| w[1] == w[0] + 1),
        "none missing: {counters:?}"
    );
    assert!(
        agent.log_text().contains("delivery failed; will retry"),
        "the in-flight publish failed and was retried:\n{}",
        agent.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeat_is_retained_online_and_the_will_says_offline() {
    let broker = Broker::plain();
    let dir = tempfile::tempdir().unwrap();
    let (config, _astm) = agent_config(
        dir.path(),
        "hb1",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "keep_alive = \"2s\"\n",
    );
    let mut agent = Agent::start(&config);
    let topic = "labagent/hb1/status";
    // Subscribing after the agent published: the broker hands over the retained status.
    let status_of = |sub: &Subscriber| -> Vec<serde_json::Value> {
        sub.received()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| serde_json::from_slice(&m.payload).expect("status JSON"))
            .collect()
    };
    let mut online = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while online.is_none() {
        assert!(Instant::now() < deadline, "no retained online status");
        let sub = Subscriber::start(broker.port, topic, "hb-sub", false).await;
        let mut found = None;
        let until = Instant::now() + Duration::from_secs(2);
        while found.is_none() && Instant::now() < until {
            found = status_of(&sub).into_iter().find(|s| s["state"] == "online");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        online = found;
    }
    let online = online.unwrap();
    assert_eq!(online["agent_id"], "hb1");
    assert_eq!(online["version"], env!("CARGO_PKG_VERSION"));
    assert!(online["uptime_s"].is_u64(), "{online}");
    assert_eq!(online["sources"][0]["name"], "an");
    assert_eq!(online["sinks"][0]["name"], "cloud");
    assert_eq!(online["sinks"][0]["kind"], "mqtt");

    // SIGKILL: the socket closes without DISCONNECT and the broker publishes the will.
    let sub = Subscriber::start(broker.port, topic, "hb-sub-2", false).await;
    agent.kill();
    wait_until_async(Duration::from_secs(10), "the last will", || {
        status_of(&sub)
            .iter()
            .any(|s| *s == serde_json::json!({"state": "offline"}))
    })
    .await;
    // And it is retained for whoever asks later.
    let later = Subscriber::start(broker.port, topic, "hb-sub-3", false).await;
    wait_until_async(
        Duration::from_secs(10),
        "the retained offline status",
        || {
            status_of(&later)
                .iter()
                .any(|s| *s == serde_json::json!({"state": "offline"}))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_publishes_offline() {
    let broker = Broker::plain();
    let dir = tempfile::tempdir().unwrap();
    let (config, _astm) = agent_config(
        dir.path(),
        "hb2",
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "",
    );
    let agent = Agent::start(&config);
    let topic = "labagent/hb2/status";
    let sub = Subscriber::start(broker.port, topic, "hb2-sub", false).await;
    let states = |sub: &Subscriber| -> Vec<String> {
        sub.received()
            .iter()
            .filter(|m| m.topic == topic)
            .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
            .map(|s| s["state"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    wait_until_async(Duration::from_secs(20), "online", || {
        states(&sub).iter().any(|s| s == "online")
    })
    .await;
    let pid = agent.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_until_async(Duration::from_secs(15), "offline after SIGTERM", || {
        states(&sub).last().is_some_and(|s| s == "offline")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_subscriber_sanity() {
    // The test's own TLS client (rumqttc + labagent's rustls config) talks to the mTLS
    // listener: proves the broker set-up the refusal test relies on accepts good clients.
    let pki = pki();
    let tls = free_port();
    let _broker = Broker::with_listeners(
        tls,
        &format!(
            "listener {tls} 127.0.0.1\n\
             cafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n",
            ca = pki.path("ca.pem").display(),
            cert = pki.path("server.pem").display(),
            key = pki.path("server.key").display(),
        ),
    );
    let config = labagent::tls::client_config(&labagent::tls::ClientTls {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("client.pem")),
        key: Some(pki.path("client.key")),
        server_name: None,
    })
    .unwrap();
    let mut o = MqttOptions::new("tls-sanity", "localhost", tls);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    let _sub = Subscriber::with_options(o, "x/#").await;
}

// ---------------------------------------------------------------------------------------------
// the sink against a scripted broker: deterministic PUBACK timeout and refused CONNECT

mod scripted {
    use labagent::config;
    use labagent::sinks::mqtt::MqttSink;
    use labagent::sinks::{Deliver, DeliveryError};
    use labagent_store::{Entry, Kind, RecordId};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn sink(port: u16, ack_timeout: Duration) -> MqttSink {
        let cfg = config::MqttSink {
            broker: config::MqttBroker {
                tls: false,
                host: "127.0.0.1".into(),
                port,
            },
            topic: "r/{agent_id}/{source}".into(),
            client_id: "{agent_id}".into(),
            username: None,
            password_file: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            delivery: config::Delivery {
                ack_timeout,
                connect_timeout: Duration::from_secs(2),
                max_backoff: Duration::from_secs(1),
            },
        };
        MqttSink::new(&cfg, "a1", "cloud").unwrap()
    }

    fn entry() -> Entry {
        Entry {
            id: RecordId::new(7),
            control_id: "a10000000000007".into(),
            source: "an".into(),
            received_ms: 0,
            kind: Kind::Oru,
            payload: b"MSH|^~\\&|X|Y|||||ORU^R01^ORU_R01|a10000000000007|P|2.5.1\r".to_vec(),
        }
    }

    /// Reads one MQTT packet: (first byte, body).
    async fn packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let first = s.read_u8().await.expect("packet type");
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await.expect("length");
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.expect("body");
        (first, body)
    }

    /// Accepts a connection and answers CONNECT with return code `code`.
    async fn accept(l: &TcpListener, code: u8) -> TcpStream {
        let (mut s, _) = l.accept().await.unwrap();
        let (first, _) = packet(&mut s).await;
        assert_eq!(first, 0x10, "CONNECT");
        s.write_all(&[0x20, 0x02, 0x00, code]).await.unwrap();
        s
    }

    /// Reads until a PUBLISH; returns (topic, packet id, payload).
    async fn publish(s: &mut TcpStream) -> (String, u16, Vec<u8>) {
        loop {
            let (first, body) = packet(s).await;
            if first & 0xf0 != 0x30 {
                continue;
            }
            assert_eq!(first & 0x06, 0x02, "QoS 1");
            assert_eq!(first & 0x01, 0x00, "not retained");
            let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let topic = String::from_utf8(body[2..2 + tlen].to_vec()).unwrap();
            let pkid = u16::from_be_bytes([body[2 + tlen], body[3 + tlen]]);
            return (topic, pkid, body[4 + tlen..].to_vec());
        }
    }

    #[tokio::test]
    async fn missing_puback_means_resend_over_a_new_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            // First connection: takes the message, never acknowledges it.
            let mut first = accept(&l, 0).await;
            let one = publish(&mut first).await;
            // Second connection: the same bytes again; acknowledged this time.
            let mut second = accept(&l, 0).await;
            let two = publish(&mut second).await;
            let [hi, lo] = two.1.to_be_bytes();
            second.write_all(&[0x40, 0x02, hi, lo]).await.unwrap();
            (one, two, first, second)
        });
        let mut sink = sink(port, Duration::from_millis(300));
        let e = entry();
        match sink.deliver(&e).await {
            Err(DeliveryError::Transient(reason)) => {
                assert!(reason.contains("no PUBACK"), "{reason}")
            }
            other => panic!("expected a transient failure, got {other:?}"),
        }
        sink.deliver(&e)
            .await
            .expect("acknowledged on the second connection");
        let (one, two, _a, _b) = broker.await.unwrap();
        assert_eq!(one.0, "r/a1/an");
        assert_eq!(one.2, e.payload, "the stored bytes, unchanged");
        assert_eq!(two.2, e.payload, "resent from the store");
    }

    #[tokio::test]
    async fn refused_connect_is_transient_with_a_clear_reason() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            // 4: bad user name or password; 5: not authorised.
            let a = accept(&l, 4).await;
            let b = accept(&l, 5).await;
            (a, b)
        });
        let mut sink = sink(port, Duration::from_secs(2));
        for expected in ["password", "not authorised"] {
            match sink.deliver(&entry()).await {
                Err(DeliveryError::Transient(reason)) => {
                    assert!(reason.contains("refused"), "{reason}");
                    assert!(reason.contains(expected), "{reason}");
                }
                other => panic!("expected a transient failure, got {other:?}"),
            }
        }
        drop(broker.await.unwrap());
    }
}
