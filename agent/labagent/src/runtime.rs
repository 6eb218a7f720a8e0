//! The running agent: open the store (recovery), bind every listener, start every source and
//! sink, report readiness, and stop cleanly. [`start`] can be called in-process (tests, `demo`);
//! [`run`] is what `labagent run` executes.

use crate::config::{self, Config, SinkKind, SourceTransport, TcpRole};
use crate::health::{Health, SinkHealth, SourceHealth};
use crate::pipeline::sequence::Sequence;
use crate::pipeline::{Pipeline, SinkSpec, SourceSpec};
use crate::sinks::file::FileSink;
use crate::sinks::mllp::{MllpSink, MllpTimeouts, MllpTls};
use crate::sinks::run_sink;
use crate::sources::mllp::MllpSourceOptions;
use crate::sources::serial::SerialSettings;
use crate::sources::{astm, mllp};
use crate::tls;
use crate::translate::{CodeEntry, Mapping};
use labagent_astm::link::LinkConfig;
use labagent_store::{Options, RecoveryReport, Store};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the agent could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is valid TOML but cannot run (e.g. an unknown time zone).
    #[error("{0}")]
    Config(String),
    /// The state directory or store could not be opened.
    #[error("store {path}: {reason}")]
    Store {
        /// The store directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A listener could not bind.
    #[error("source {source_name}: cannot listen on {addr}: {reason}")]
    Bind {
        /// The source.
        source_name: String,
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// TLS files could not be loaded.
    #[error("{component}: {reason}")]
    Tls {
        /// The source or sink.
        component: String,
        /// What failed.
        reason: String,
    },
    /// The HTTP token file is configured but unreadable or empty (its path is not shown: it
    /// names a secret).
    #[error("http.token_file: {reason}")]
    HttpToken {
        /// What failed.
        reason: String,
    },
    /// The HTTP interface could not bind.
    #[error("http: cannot listen on {addr}: {reason}")]
    HttpBind {
        /// The address (`[http] listen`).
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// A configured component is not available in this build.
    #[error("{component}: {reason}")]
    Unsupported {
        /// The source or sink.
        component: String,
        /// Why.
        reason: String,
    },
}

/// A started agent.
pub struct Agent {
    /// Bound listen addresses by source name (the real port when 0 was configured).
    pub listeners: Vec<(String, SocketAddr)>,
    /// The ingest pipeline (and through it the store).
    pub pipeline: Arc<Pipeline>,
    /// What recovery found when the store was opened.
    pub recovery: RecoveryReport,
    /// Live health of every source and sink.
    pub health: Arc<Health>,
    /// The bound address of the HTTP interface (the real port when 0 was configured).
    pub http: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("listeners", &self.listeners)
            .field("http", &self.http)
            .finish()
    }
}

impl Agent {
    /// A probe that is true while every source and sink task is still running.
    pub fn tasks_alive(&self) -> impl Fn() -> bool + Send + 'static {
        let handles: Vec<tokio::task::AbortHandle> =
            self.tasks.iter().map(JoinHandle::abort_handle).collect();
        move || handles.iter().all(|h| !h.is_finished())
    }

    /// The bound address of a listening source.
    pub fn listener(&self, source: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == source)
            .map(|(_, a)| *a)
    }

    /// Asks every task to stop and waits for them, at most `deadline`.
    pub async fn stop(self, deadline: Duration) {
        self.shutdown.cancel();
        let all = futures_join(self.tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(?deadline, "some tasks did not stop in time");
        }
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// The translation mapping of a configured source.
pub fn mapping_of(source: &config::SourceConfig) -> Mapping {
    let m = &source.mapping;
    Mapping {
        sending_application: m.sending_application.clone(),
        sending_facility: m.sending_facility.clone(),
        receiving_application: m.receiving_application.clone(),
        receiving_facility: m.receiving_facility.clone(),
        specimen_id: m.specimen_id.clone(),
        test_code: m.test_code.clone(),
        tests: m
            .tests
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    CodeEntry {
                        code: v.code.clone(),
                        text: v.text.clone(),
                        system: v.system.clone(),
                    },
                )
            })
            .collect(),
        specimen_type: None,
    }
}

fn link_config(settings: &config::AstmLinkSettings) -> LinkConfig {
    LinkConfig {
        receive_timeout: settings.receive_timeout,
        max_frame_text: settings.max_frame_len.get() as usize,
        ..LinkConfig::default()
    }
}

fn serial_settings(device: &std::path::Path, s: &config::SerialSettings) -> SerialSettings {
    use tokio_serial::{DataBits, FlowControl, Parity, StopBits};
    SerialSettings {
        device: device.to_string_lossy().into_owned(),
        baud: s.baud.get(),
        data_bits: match s.data_bits {
            config::DataBits::Five => DataBits::Five,
            config::DataBits::Six => DataBits::Six,
            config::DataBits::Seven => DataBits::Seven,
            config::DataBits::Eight => DataBits::Eight,
        },
        parity: match s.parity {
            config::Parity::None => Parity::None,
            config::Parity::Even => Parity::Even,
            config::Parity::Odd => Parity::Odd,
        },
        stop_bits: match s.stop_bits {
            config::StopBits::One => StopBits::One,
            config::StopBits::Two => StopBits::Two,
        },
        flow_control: match s.flow_control {
            config::FlowControl::None => FlowControl::None,
            config::FlowControl::Software => FlowControl::Software,
            config::FlowControl::Hardware => FlowControl::Hardware,
        },
    }
}

fn client_tls(component: &str, t: &config::ClientTls, host: &str) -> Result<MllpTls, StartError> {
    let spec = tls::ClientTls {
        ca: t.ca.clone(),
        cert: t.identity.as_ref().map(|i| i.cert.clone()),
        key: t.identity.as_ref().map(|i| i.key.clone()),
        server_name: t.server_name.clone(),
    };
    let err = |e: tls::TlsError| StartError::Tls {
        component: component.to_string(),
        reason: e.to_string(),
    };
    Ok(MllpTls {
        config: tls::client_config(&spec).map_err(err)?,
        server_name: tls::server_name(&spec, host).map_err(err)?,
    })
}

fn server_tls(
    component: &str,
    t: &Option<config::ServerTls>,
) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    let Some(t) = t else { return Ok(None) };
    tls::server_config(&tls::ServerTls {
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
    })
    .map(Some)
    .map_err(|e| StartError::Tls {
        component: component.to_string(),
        reason: e.to_string(),
    })
}

async fn bind(source: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        source_name: source.to_string(),
        addr,
        reason: e.to_string(),
    })
}

/// Opens the store, binds every listener and starts every task. When this returns, the agent
/// is ready: recovery is done and every listener accepts connections.
pub async fn start(config: &Config, shutdown: CancellationToken) -> Result<Agent, StartError> {
    let http_token = read_token(config)?;
    let tz = labagent_hl7::time::time_zone(config.agent.timezone.as_str()).map_err(|e| {
        StartError::Config(format!(
            "agent.timezone: {}: {e}",
            config.agent.timezone.as_str()
        ))
    })?;
    let state_dir = config.agent.state_dir.clone();
    let store_dir = state_dir.join("store");
    let store_err = |reason: String| StartError::Store {
        path: store_dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&store_dir).map_err(|e| store_err(e.to_string()))?;
    let mut options = Options::new(config.sinks.iter().map(|s| s.name.as_str().to_string()));
    options.max_bytes = config.store.max_bytes.get();
    // Segments of at most 32 MiB, and at least 8 of them within max_bytes, so a small store
    // (the config accepts 1 MiB) still rotates and frees space as sinks acknowledge.
    options.segment_bytes = (options.max_bytes / 8).clamp(64 * 1024, 32 << 20);
    let (store, recovery) = {
        let dir = store_dir.clone();
        tokio::task::spawn_blocking(move || Store::open(&dir, options))
            .await
            .map_err(|e| store_err(e.to_string()))?
            .map_err(|e| store_err(e.to_string()))?
    };
    if recovery.is_clean() {
        tracing::info!(store = %store_dir.display(), "store opened");
    } else {
        tracing::warn!(store = %store_dir.display(), report = %recovery, "store recovered with damage");
    }
    let sequence =
        Sequence::open(&state_dir.join("msh10.seq")).map_err(|e| store_err(e.to_string()))?;
    let sources: HashMap<String, SourceSpec> = config
        .sources
        .iter()
        .map(|s| {
            (
                s.name.as_str().to_string(),
                SourceSpec {
                    mapping: mapping_of(s),
                    charset: s.encoding,
                },
            )
        })
        .collect();
    let sinks: Vec<SinkSpec> = config
        .sinks
        .iter()
        .map(|s| SinkSpec {
            name: s.name.as_str().to_string(),
            sources: s.sources.iter().map(|n| n.as_str().to_string()).collect(),
        })
        .collect();
    let pipeline = Arc::new(
        Pipeline::new(
            Arc::new(store),
            config.agent.id.as_str(),
            sequence,
            tz,
            sources,
            sinks.clone(),
        )
        .map_err(StartError::Config)?,
    );
    let ingest = Arc::new(pipeline.clone());
    let mut tasks = Vec::new();
    let mut listeners = Vec::new();
    let source_health: Vec<Arc<SourceHealth>> = config
        .sources
        .iter()
        .map(|s| SourceHealth::new(s.name.as_str(), s.kind_name(), source_endpoint(s)))
        .collect();
    let sink_health: Vec<Arc<SinkHealth>> = config
        .sinks
        .iter()
        .map(|s| SinkHealth::new(s.name.as_str(), s.kind_name(), sink_endpoint(s)))
        .collect();
    let health = Arc::new(Health::new(
        config.agent.id.as_str(),
        source_health.clone(),
        sink_health.clone(),
    ));

    // Sinks first: they only read the store.
    for ((sink, spec), sink_health) in config.sinks.iter().zip(sinks).zip(sink_health) {
        let name = sink.name.as_str().to_string();
        match &sink.kind {
            SinkKind::File(f) => {
                let dest = FileSink::new(f.dir.clone());
                tasks.push(tokio::spawn(run_sink(
                    name,
                    spec.sources,
                    pipeline.clone(),
                    dest,
                    sink_health.clone(),
                    shutdown.clone(),
                )));
            }
            SinkKind::Mllp(m) => {
                let tls = match &m.tls {
                    Some(t) => Some(client_tls(&format!("sink {name}"), t, &m.connect.host)?),
                    None => None,
                };
                let dest = MllpSink::new(
                    m.connect.to_string(),
                    tls,
                    MllpTimeouts {
                        connect: m.delivery.connect_timeout,
                        ack: m.delivery.ack_timeout,
                        max_backoff: m.delivery.max_backoff,
                    },
                );
                tasks.push(tokio::spawn(run_sink(
                    name,
                    spec.sources,
                    pipeline.clone(),
                    dest,
                    sink_health.clone(),
                    shutdown.clone(),
                )));
            }
            SinkKind::Mqtt(m) => {
                let agent_id = config.agent.id.as_str();
                let dest = crate::sinks::mqtt::MqttSink::new(m, agent_id, &name).map_err(|e| {
                    StartError::Tls {
                        component: format!("sink {name}"),
                        reason: e.to_string(),
                    }
                })?;
                // The first mqtt sink's broker also carries the fleet heartbeat (own connection).
                let first_mqtt = config
                    .sinks
                    .iter()
                    .find(|s| matches!(s.kind, SinkKind::Mqtt(_)));
                if first_mqtt.is_some_and(|s| s.name == sink.name) {
                    tasks.push(tokio::spawn(crate::heartbeat::run(
                        crate::heartbeat::connect_settings(dest.connect_settings(), agent_id),
                        health.clone(),
                        pipeline.store().clone(),
                        crate::heartbeat::DEFAULT_INTERVAL,
                        shutdown.clone(),
                    )));
                }
                tasks.push(tokio::spawn(run_sink(
                    name,
                    spec.sources,
                    pipeline.clone(),
                    dest,
                    sink_health.clone(),
                    shutdown.clone(),
                )));
            }
        }
    }

    for (source, health) in config.sources.iter().zip(source_health) {
        let name: Arc<str> = Arc::from(source.name.as_str());
        match &source.transport {
            SourceTransport::AstmTcp(t) => {
                let link = link_config(&t.link);
                match &t.role {
                    TcpRole::Listen(l) => {
                        let listener = bind(&name, l.addr).await?;
                        let addr = listener.local_addr().unwrap_or(l.addr);
                        listeners.push((name.to_string(), addr));
                        tracing::info!(source = %name, %addr, "listening for ASTM");
                        tasks.push(tokio::spawn(astm::serve_tcp(
                            listener,
                            name.clone(),
                            l.allow.clone(),
                            link,
                            ingest.clone(),
                            health.clone(),
                            shutdown.clone(),
                        )));
                    }
                    TcpRole::Connect(target) => {
                        tasks.push(tokio::spawn(astm::dial_tcp(
                            target.to_string(),
                            name.clone(),
                            link,
                            ingest.clone(),
                            health.clone(),
                            shutdown.clone(),
                        )));
                    }
                }
            }
            SourceTransport::AstmSerial(s) => {
                tasks.push(tokio::spawn(astm::run_serial(
                    serial_settings(&s.device, &s.serial),
                    name.clone(),
                    link_config(&s.link),
                    ingest.clone(),
                    health.clone(),
                    shutdown.clone(),
                )));
            }
            SourceTransport::Mllp(m) => {
                let tls = server_tls(&format!("source {name}"), &m.listener.tls)?;
                let listener = bind(&name, m.listener.addr).await?;
                let addr = listener.local_addr().unwrap_or(m.listener.addr);
                listeners.push((name.to_string(), addr));
                tracing::info!(source = %name, %addr, tls = tls.is_some(), "listening for MLLP");
                let options = MllpSourceOptions {
                    allow: m.listener.allow.clone(),
                    tls,
                    max_message: usize::try_from(source.max_message_bytes.get())
                        .unwrap_or(usize::MAX),
                    idle_timeout: m.idle_timeout.unwrap_or(Duration::from_secs(24 * 3600)),
                    max_connections: m.listener.max_connections.get() as usize,
                };
                tasks.push(tokio::spawn(mllp::serve(
                    listener,
                    name.clone(),
                    options,
                    ingest.clone(),
                    health.clone(),
                    shutdown.clone(),
                )));
            }
        }
    }
    // The HTTP interface is a listener too: bound before the agent reports ready.
    let http_listener =
        TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| StartError::HttpBind {
                addr: config.http.listen,
                reason: e.to_string(),
            })?;
    let http_addr = http_listener.local_addr().unwrap_or(config.http.listen);
    tracing::info!(addr = %http_addr, token = http_token.is_some(), "HTTP status listening");
    tasks.push(tokio::spawn(crate::http::serve(
        http_listener,
        crate::http::HttpState {
            health: health.clone(),
            store: pipeline.store().clone(),
            token: http_token,
            wake: Some(pipeline.committed.clone()),
        },
        shutdown.clone(),
    )));
    health.set_ready();
    Ok(Agent {
        listeners,
        pipeline,
        recovery,
        health,
        http: Some(http_addr),
        tasks,
        shutdown,
    })
}

/// The HTTP bearer token, trimmed, when `[http] token_file` is set.
fn read_token(config: &Config) -> Result<Option<String>, StartError> {
    let Some(path) = &config.http.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path.expose()).map_err(|e| StartError::HttpToken {
        reason: format!("cannot read the token file: {e}"),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(StartError::HttpToken {
            reason: "the token file is empty: write a long random token into it".into(),
        });
    }
    Ok(Some(token.to_string()))
}

fn source_endpoint(s: &config::SourceConfig) -> String {
    match &s.transport {
        SourceTransport::AstmSerial(a) => a.device.display().to_string(),
        SourceTransport::AstmTcp(t) => match &t.role {
            TcpRole::Listen(l) => format!("listen {}", l.addr),
            TcpRole::Connect(c) => format!("connect {c}"),
        },
        SourceTransport::Mllp(m) => format!("listen {}", m.listener.addr),
    }
}

fn sink_endpoint(s: &config::SinkConfig) -> String {
    match &s.kind {
        SinkKind::Mllp(m) => format!(
            "{}{}",
            m.connect,
            if m.tls.is_some() { " (TLS)" } else { "" }
        ),
        SinkKind::Mqtt(m) => m.broker.to_string(),
        SinkKind::File(f) => f.dir.display().to_string(),
    }
}

/// `labagent run`: start, notify systemd, run until SIGINT/SIGTERM, drain, stop.
pub async fn run(config: Config) -> Result<(), StartError> {
    let shutdown = CancellationToken::new();
    let agent = start(&config, shutdown.clone()).await?;
    let summary = format!(
        "{} source(s), {} sink(s) running",
        config.sources.len(),
        config.sinks.len()
    );
    tracing::info!(%summary, "ready");
    crate::systemd::ready(&summary);
    let supervisor = tokio::spawn(supervise(
        agent.health.clone(),
        agent.pipeline.clone(),
        agent.tasks_alive(),
        shutdown.clone(),
    ));
    wait_for_signal().await;
    supervisor.abort();
    tracing::info!("stopping");
    crate::systemd::stopping();
    agent.stop(Duration::from_secs(10)).await;
    Ok(())
}

/// Keeps systemd informed: a STATUS= line every 5 s, and WATCHDOG=1 at half the configured
/// interval only while every pipeline task is alive (a dead task stops the petting, so systemd
/// restarts the agent).
async fn supervise(
    health: Arc<Health>,
    pipeline: Arc<Pipeline>,
    alive: impl Fn() -> bool + Send + 'static,
    shutdown: CancellationToken,
) {
    let watchdog = crate::systemd::watchdog_period();
    let tick = watchdog
        .unwrap_or(Duration::from_secs(5))
        .min(Duration::from_secs(5));
    let mut interval = tokio::time::interval(tick);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let healthy = alive();
        if watchdog.is_some() && healthy {
            crate::systemd::watchdog();
        } else if !healthy {
            tracing::error!("a source or sink task has stopped; no longer petting the watchdog");
        }
        let store = pipeline.clone();
        let status = tokio::task::spawn_blocking(move || store.store().status().ok())
            .await
            .ok()
            .flatten();
        crate::systemd::status(&crate::systemd::status_line(
            &health.snapshot(status.as_ref()),
        ));
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
