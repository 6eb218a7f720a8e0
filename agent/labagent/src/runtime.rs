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
    components: Arc<tokio::sync::Mutex<Vec<Component>>>,
    ctx: SpawnCtx,
    running: Config,
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
        let components = self.components.clone();
        move || {
            let fixed = handles.iter().all(|h| !h.is_finished());
            // A reload holds the lock while it swaps a component: count that as alive.
            let parts = components
                .try_lock()
                .map(|c| c.iter().all(|c| !c.handle.is_finished()))
                .unwrap_or(true);
            fixed && parts
        }
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
        let mut handles = self.tasks;
        handles.extend(
            std::mem::take(&mut *self.components.lock().await)
                .into_iter()
                .map(|c| c.handle),
        );
        let all = futures_join(handles);
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
    let pipeline = Arc::new(
        Pipeline::new(
            Arc::new(store),
            config.agent.id.as_str(),
            sequence,
            tz,
            source_specs(config),
            sink_specs(config),
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
        pipeline.commit_latency.clone(),
    ));

    let ctx = SpawnCtx {
        agent_id: config.agent.id.as_str().to_string(),
        pipeline: pipeline.clone(),
        ingest: ingest.clone(),
        health: health.clone(),
    };
    let mut components = Vec::new();
    // Sinks first: they only read the store.
    for sink in &config.sinks {
        let (part, token) = (Part::Sink(Box::new(sink.clone())), shutdown.child_token());
        let handle = start_part(&part, &ctx, token.clone(), &mut listeners).await?;
        components.push(Component {
            part,
            token,
            handle,
        });
    }
    // The first mqtt sink's broker also carries the fleet heartbeat, on its own connection.
    if let Some((sink, m)) = config.sinks.iter().find_map(|s| match &s.kind {
        SinkKind::Mqtt(m) => Some((s, m)),
        _ => None,
    }) {
        let name = sink.name.as_str();
        let probe = crate::sinks::mqtt::MqttSink::new(m, &ctx.agent_id, name).map_err(|e| {
            StartError::Tls {
                component: format!("sink {name}"),
                reason: e.to_string(),
            }
        })?;
        tasks.push(tokio::spawn(crate::heartbeat::run(
            crate::heartbeat::connect_settings(probe.connect_settings(), &ctx.agent_id),
            health.clone(),
            pipeline.store().clone(),
            crate::heartbeat::DEFAULT_INTERVAL,
            shutdown.clone(),
        )));
    }
    for source in &config.sources {
        let (part, token) = (
            Part::Source(Box::new(source.clone())),
            shutdown.child_token(),
        );
        let handle = start_part(&part, &ctx, token.clone(), &mut listeners).await?;
        components.push(Component {
            part,
            token,
            handle,
        });
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
        components: Arc::new(tokio::sync::Mutex::new(components)),
        ctx,
        running: config.clone(),
        shutdown,
    })
}

/// What every spawned component shares.
#[derive(Clone)]
struct SpawnCtx {
    agent_id: String,
    pipeline: Arc<Pipeline>,
    #[allow(clippy::redundant_allocation)] // the sources take `Arc<I>` with `I = Arc<Pipeline>`
    ingest: Arc<Arc<Pipeline>>,
    health: Arc<Health>,
}

/// A running source or sink with its own stop token, so a reload can replace it alone.
struct Component {
    part: Part,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

enum Part {
    Source(Box<config::SourceConfig>),
    Sink(Box<config::SinkConfig>),
}

impl Part {
    fn name(&self) -> &str {
        match self {
            Part::Source(s) => s.name.as_str(),
            Part::Sink(s) => s.name.as_str(),
        }
    }
}

fn spawn_sink(
    sink: &config::SinkConfig,
    ctx: &SpawnCtx,
    token: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let name = sink.name.as_str().to_string();
    let sources: Vec<String> = sink
        .sources
        .iter()
        .map(|n| n.as_str().to_string())
        .collect();
    let health = ctx
        .health
        .sink(&name)
        .cloned()
        .unwrap_or_else(|| SinkHealth::new(&name, sink.kind_name(), sink_endpoint(sink)));
    let pipeline = ctx.pipeline.clone();
    Ok(match &sink.kind {
        SinkKind::File(f) => tokio::spawn(run_sink(
            name,
            sources,
            pipeline,
            FileSink::new(f.dir.clone()),
            health,
            token,
        )),
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
            tokio::spawn(run_sink(name, sources, pipeline, dest, health, token))
        }
        SinkKind::Mqtt(m) => {
            let dest = crate::sinks::mqtt::MqttSink::new(m, &ctx.agent_id, &name).map_err(|e| {
                StartError::Tls {
                    component: format!("sink {name}"),
                    reason: e.to_string(),
                }
            })?;
            tokio::spawn(run_sink(name, sources, pipeline, dest, health, token))
        }
    })
}

async fn spawn_source(
    source: &config::SourceConfig,
    ctx: &SpawnCtx,
    token: CancellationToken,
) -> Result<(JoinHandle<()>, Option<SocketAddr>), StartError> {
    let name: Arc<str> = Arc::from(source.name.as_str());
    let health =
        ctx.health.source(&name).cloned().unwrap_or_else(|| {
            SourceHealth::new(&name, source.kind_name(), source_endpoint(source))
        });
    let ingest = ctx.ingest.clone();
    Ok(match &source.transport {
        SourceTransport::AstmTcp(t) => {
            let link = link_config(&t.link);
            match &t.role {
                TcpRole::Listen(l) => {
                    let listener = bind(&name, l.addr).await?;
                    let addr = listener.local_addr().unwrap_or(l.addr);
                    tracing::info!(source = %name, %addr, "listening for ASTM");
                    let handle = tokio::spawn(astm::serve_tcp(
                        listener,
                        name.clone(),
                        l.allow.clone(),
                        link,
                        ingest,
                        health,
                        token,
                    ));
                    (handle, Some(addr))
                }
                TcpRole::Connect(target) => (
                    tokio::spawn(astm::dial_tcp(
                        target.to_string(),
                        name.clone(),
                        link,
                        ingest,
                        health,
                        token,
                    )),
                    None,
                ),
            }
        }
        SourceTransport::AstmSerial(s) => (
            tokio::spawn(astm::run_serial(
                serial_settings(&s.device, &s.serial),
                name.clone(),
                link_config(&s.link),
                ingest,
                health,
                token,
            )),
            None,
        ),
        SourceTransport::Mllp(m) => {
            let tls = server_tls(&format!("source {name}"), &m.listener.tls)?;
            let listener = bind(&name, m.listener.addr).await?;
            let addr = listener.local_addr().unwrap_or(m.listener.addr);
            tracing::info!(source = %name, %addr, tls = tls.is_some(), "listening for MLLP");
            let options = MllpSourceOptions {
                allow: m.listener.allow.clone(),
                tls,
                max_message: usize::try_from(source.max_message_bytes.get()).unwrap_or(usize::MAX),
                idle_timeout: m.idle_timeout.unwrap_or(Duration::from_secs(24 * 3600)),
                max_connections: m.listener.max_connections.get() as usize,
            };
            let handle = tokio::spawn(mllp::serve(
                listener,
                name.clone(),
                options,
                ingest,
                health,
                token,
            ));
            (handle, Some(addr))
        }
    })
}

fn source_specs(config: &Config) -> HashMap<String, SourceSpec> {
    config
        .sources
        .iter()
        .map(|s| {
            (
                s.name.as_str().to_string(),
                SourceSpec {
                    mapping: s.mapping.clone(),
                    charset: s.encoding,
                },
            )
        })
        .collect()
}

fn sink_specs(config: &Config) -> Vec<SinkSpec> {
    config
        .sinks
        .iter()
        .map(|s| SinkSpec {
            name: s.name.as_str().to_string(),
            sources: s.sources.iter().map(|n| n.as_str().to_string()).collect(),
        })
        .collect()
}

/// What a reload did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Components restarted with their new settings.
    pub restarted: Vec<String>,
    /// Changes that need a full restart, with why.
    pub needs_restart: Vec<String>,
}

impl Agent {
    /// Applies a new configuration: sources and sinks whose settings changed are stopped and
    /// started again with the new settings; everything else keeps running untouched. Changes
    /// to `[agent]`, `[store]` and `[http]`, and added or removed sources or sinks, need a
    /// restart (the store's cursors and the listeners are set up once) and are reported, not
    /// applied. A component whose new settings cannot start (an address in use, say) is
    /// started again with its old ones, and the first such error is returned.
    pub async fn reload(&mut self, new: &Config) -> Result<ReloadReport, StartError> {
        let mut report = ReloadReport::default();
        let old = &self.running;
        if old.agent != new.agent {
            report.needs_restart.push("[agent]".into());
        }
        if old.store != new.store {
            report.needs_restart.push("[store]".into());
        }
        if old.http != new.http {
            report.needs_restart.push("[http]".into());
        }
        let names = |c: &Config| {
            let mut v: Vec<String> = c
                .sources
                .iter()
                .map(|s| format!("source {}", s.name))
                .chain(c.sinks.iter().map(|s| format!("sink {}", s.name)))
                .collect();
            v.sort();
            v
        };
        let (old_names, new_names) = (names(old), names(new));
        for n in old_names.iter().filter(|n| !new_names.contains(n)) {
            report.needs_restart.push(format!("{n} removed"));
        }
        for n in new_names.iter().filter(|n| !old_names.contains(n)) {
            report.needs_restart.push(format!("{n} added"));
        }
        self.pipeline
            .update_specs(source_specs(new), sink_specs(new));
        let mut components = self.components.lock().await;
        let replacements: Vec<(usize, Part)> = components
            .iter()
            .enumerate()
            .filter_map(|(i, component)| {
                let part = match &component.part {
                    Part::Source(s) => new
                        .source(s.name.as_str())
                        .filter(|n| *n != s.as_ref())
                        .map(|n| Part::Source(Box::new(n.clone()))),
                    Part::Sink(s) => new
                        .sink(s.name.as_str())
                        .filter(|n| *n != s.as_ref())
                        .map(|n| Part::Sink(Box::new(n.clone()))),
                }?;
                Some((i, part))
            })
            .collect();
        // Stop every changed component first, together (a listener must release its address
        // before it is bound again), and wait for them under one deadline.
        for (i, _) in &replacements {
            components[*i].token.cancel();
        }
        let deadline = tokio::time::Instant::now()
            + crate::sources::CONNECTIONS_GRACE
            + Duration::from_secs(1);
        for (i, part) in &replacements {
            let handle = &mut components[*i].handle;
            if tokio::time::timeout_at(deadline, &mut *handle)
                .await
                .is_err()
            {
                // It must not keep a serial port or an address the replacement needs.
                tracing::warn!(component = %part.name(), "did not stop in time; aborted");
                handle.abort();
                let _ = handle.await;
            }
        }
        // Start the replacements. One that cannot start gets its old settings back (they ran
        // a moment ago), and does not keep the others down.
        let mut failed = None;
        for (i, part) in replacements {
            let token = self.shutdown.child_token();
            match start_part(&part, &self.ctx, token.clone(), &mut self.listeners).await {
                Ok(handle) => {
                    report.restarted.push(part.name().to_string());
                    components[i] = Component {
                        part,
                        token,
                        handle,
                    };
                }
                Err(e) => {
                    tracing::error!(component = %part.name(), error = %e, "cannot start the new settings; restarting the old ones");
                    let token = self.shutdown.child_token();
                    let old = &components[i].part;
                    components[i].handle = match start_part(
                        old,
                        &self.ctx,
                        token.clone(),
                        &mut self.listeners,
                    )
                    .await
                    {
                        Ok(handle) => handle,
                        Err(e) => {
                            tracing::error!(component = %old.name(), error = %e, "cannot restart the old settings either; it stays stopped");
                            // Finished at once: the watchdog sees a dead component.
                            tokio::spawn(async {})
                        }
                    };
                    components[i].token = token;
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        drop(components);
        self.running = new.clone();
        Ok(report)
    }
}

/// Starts a source or sink; a listening source's bound address goes into `listeners`.
async fn start_part(
    part: &Part,
    ctx: &SpawnCtx,
    token: CancellationToken,
    listeners: &mut Vec<(String, SocketAddr)>,
) -> Result<JoinHandle<()>, StartError> {
    match part {
        Part::Source(s) => {
            let (handle, addr) = spawn_source(s, ctx, token).await?;
            if let Some(addr) = addr {
                listeners.retain(|(n, _)| n != s.name.as_str());
                listeners.push((s.name.as_str().to_string(), addr));
            }
            Ok(handle)
        }
        Part::Sink(s) => spawn_sink(s, ctx, token),
    }
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

/// `labagent run`: start, notify systemd, run until SIGINT/SIGTERM, drain, stop. SIGHUP
/// re-reads `path` (when the configuration came from a file) and applies what changed; an
/// invalid new configuration is refused with every error logged, and the old one keeps running.
pub async fn run(config: Config, path: Option<PathBuf>) -> Result<(), StartError> {
    // Before READY: a SIGHUP or SIGTERM that arrives before its handler is installed gets the
    // default action, which kills the process (a reload right after start did).
    let mut signals = Signals::new();
    let shutdown = CancellationToken::new();
    let mut agent = start(&config, shutdown.clone()).await?;
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
    while let Signal::Reload = signals.next().await {
        reload(&mut agent, path.as_deref()).await;
    }
    supervisor.abort();
    tracing::info!("stopping");
    crate::systemd::stopping();
    agent.stop(Duration::from_secs(10)).await;
    Ok(())
}

async fn reload(agent: &mut Agent, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: running on the embedded configuration");
        return;
    };
    crate::systemd::reloading();
    match config::load(path) {
        Err(errors) => {
            for e in errors.errors() {
                tracing::error!(error = %e, "reload refused");
            }
            tracing::error!(
                count = errors.len(),
                "the new configuration is invalid; keeping the running one"
            );
        }
        Ok(new) => match agent.reload(&new).await {
            Ok(report) => {
                for what in &report.needs_restart {
                    tracing::warn!(change = %what, "not applied by reload: restart the agent");
                }
                tracing::info!(restarted = ?report.restarted, "configuration reloaded");
            }
            Err(e) => tracing::error!(error = %e, "reload failed part-way"),
        },
    }
    crate::systemd::ready("configuration reloaded");
}

enum Signal {
    Stop,
    Reload,
}

/// SIGTERM / SIGINT stop; SIGHUP reloads.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                hup: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            let term = async {
                match &mut self.term {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let hup = async {
                match &mut self.hup {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => Signal::Stop,
                _ = tokio::signal::ctrl_c() => Signal::Stop,
                () = hup => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
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
