//! Live health of every source and sink: counters and last-seen times that the components
//! update as they work, and a serialisable snapshot for the status page, `/api/status`,
//! `/metrics` and the MQTT heartbeat. Nothing here holds patient data: only names, counts,
//! times and reasons.

use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

fn now_ms() -> i64 {
    crate::pipeline::unix_ms(SystemTime::now())
}

/// Counters of one source.
#[derive(Debug)]
pub struct SourceHealth {
    /// Configured name.
    pub name: String,
    /// `astm-serial`, `astm-tcp` or `mllp`.
    pub kind: &'static str,
    /// Device, listen or connect address.
    pub endpoint: String,
    connections: AtomicU64,
    frames: AtomicU64,
    frames_naked: AtomicU64,
    messages: AtomicU64,
    parked: AtomicU64,
    refused: AtomicU64,
    last_frame_ms: AtomicI64,
    last_result_ms: AtomicI64,
    last_error: LastErrorCell,
}

impl SourceHealth {
    /// A source with zeroed counters.
    pub fn new(name: &str, kind: &'static str, endpoint: String) -> Arc<SourceHealth> {
        Arc::new(SourceHealth {
            name: name.to_string(),
            kind,
            endpoint,
            connections: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            frames_naked: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_frame_ms: AtomicI64::new(0),
            last_result_ms: AtomicI64::new(0),
            last_error: LastErrorCell::default(),
        })
    }

    /// A peer connected (or the serial port opened).
    pub fn connected(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer disconnected (or the port closed).
    pub fn disconnected(&self) {
        let _ = self
            .connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
    }

    /// A frame (or MLLP block) was accepted.
    pub fn frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_frame_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A frame was answered NAK.
    pub fn frame_naked(&self, reason: &str) {
        self.frames_naked.fetch_add(1, Ordering::Relaxed);
        self.error(reason);
    }

    /// A message was committed durably.
    pub fn committed(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.last_result_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A message was stored but parked (not translatable).
    pub fn parked(&self, reason: &str) {
        self.parked.fetch_add(1, Ordering::Relaxed);
        self.error(reason);
    }

    /// A message was refused (store full or failing): the sender keeps it.
    pub fn refused(&self, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.error(reason);
    }

    /// Records the latest problem.
    pub fn error(&self, reason: &str) {
        self.last_error.set(reason);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> SourceStatus {
        SourceStatus {
            name: self.name.clone(),
            kind: self.kind,
            endpoint: self.endpoint.clone(),
            connections: self.connections.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            frames_naked: self.frames_naked.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            last_frame_ms: nonzero(self.last_frame_ms.load(Ordering::Relaxed)),
            last_result_ms: nonzero(self.last_result_ms.load(Ordering::Relaxed)),
            last_error: self.last_error.get(),
        }
    }
}

/// Counters of one sink.
#[derive(Debug)]
pub struct SinkHealth {
    /// Configured name.
    pub name: String,
    /// `mllp`, `mqtt` or `file`.
    pub kind: &'static str,
    /// Destination (address, broker or directory).
    pub endpoint: String,
    connected: AtomicBool,
    delivered: AtomicU64,
    parked: AtomicU64,
    failures: AtomicU64,
    last_delivery_ms: AtomicI64,
    last_error: LastErrorCell,
}

impl SinkHealth {
    /// A sink with zeroed counters.
    pub fn new(name: &str, kind: &'static str, endpoint: String) -> Arc<SinkHealth> {
        Arc::new(SinkHealth {
            name: name.to_string(),
            kind,
            endpoint,
            connected: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_delivery_ms: AtomicI64::new(0),
            last_error: LastErrorCell::default(),
        })
    }

    /// A message was acknowledged downstream.
    pub fn delivered(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A message was refused for good and parked.
    pub fn parked(&self, reason: &str) {
        self.connected.store(true, Ordering::Relaxed);
        self.parked.fetch_add(1, Ordering::Relaxed);
        self.set_error(reason);
    }

    /// A delivery attempt failed and will be repeated.
    pub fn failed(&self, reason: &str) {
        self.connected.store(false, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.set_error(reason);
    }

    /// Whether the last attempt reached the destination.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    fn set_error(&self, reason: &str) {
        self.last_error.set(reason);
    }

    /// A snapshot (queue figures are filled in from the store by [`Health::snapshot`]).
    pub fn snapshot(&self) -> SinkStatus {
        SinkStatus {
            name: self.name.clone(),
            kind: self.kind,
            endpoint: self.endpoint.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            parked_total: self.parked.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_delivery_ms: nonzero(self.last_delivery_ms.load(Ordering::Relaxed)),
            last_error: self.last_error.get(),
            queue_depth: 0,
            queue_bytes: 0,
            oldest_pending_ms: None,
            parked: 0,
        }
    }
}

/// The latest problem of a component, shared between the component and the snapshots.
#[derive(Debug, Default)]
struct LastErrorCell(Mutex<Option<LastError>>);

impl LastErrorCell {
    fn set(&self, reason: &str) {
        if let Ok(mut e) = self.0.lock() {
            *e = Some(LastError {
                at_ms: now_ms(),
                reason: reason.to_string(),
            });
        }
    }

    fn get(&self) -> Option<LastError> {
        self.0.lock().ok().and_then(|e| e.clone())
    }
}

fn nonzero(v: i64) -> Option<i64> {
    (v != 0).then_some(v)
}

/// The latest problem of a component.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LastError {
    /// When, unix ms.
    pub at_ms: i64,
    /// What happened (no patient data).
    pub reason: String,
}

/// A source as shown on the status page and in `/api/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// Endpoint.
    pub endpoint: String,
    /// Peers connected now (1 for an open serial port).
    pub connections: u64,
    /// Frames or MLLP blocks accepted.
    pub frames: u64,
    /// Frames answered NAK.
    pub frames_naked: u64,
    /// Messages committed.
    pub messages: u64,
    /// Messages parked as untranslatable.
    pub parked: u64,
    /// Messages refused (store full or failing).
    pub refused: u64,
    /// Last accepted frame, unix ms.
    pub last_frame_ms: Option<i64>,
    /// Last committed message, unix ms.
    pub last_result_ms: Option<i64>,
    /// Latest problem.
    pub last_error: Option<LastError>,
}

/// A sink as shown on the status page and in `/api/status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SinkStatus {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: &'static str,
    /// Endpoint.
    pub endpoint: String,
    /// Whether the last attempt reached the destination.
    pub connected: bool,
    /// Messages delivered since start.
    pub delivered: u64,
    /// Messages parked since start.
    pub parked_total: u64,
    /// Failed attempts since start.
    pub failures: u64,
    /// Last delivery, unix ms.
    pub last_delivery_ms: Option<i64>,
    /// Latest problem.
    pub last_error: Option<LastError>,
    /// Messages waiting (from the store).
    pub queue_depth: u64,
    /// Their bytes.
    pub queue_bytes: u64,
    /// Received time of the oldest waiting message, unix ms.
    pub oldest_pending_ms: Option<i64>,
    /// Parked messages in the store now.
    pub parked: u64,
}

/// The whole agent's status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AgentStatus {
    /// Agent id.
    pub agent_id: String,
    /// labagent version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Recovered and listening.
    pub ready: bool,
    /// Store bytes used.
    pub store_bytes: u64,
    /// Store limit.
    pub store_max_bytes: u64,
    /// Sources.
    pub sources: Vec<SourceStatus>,
    /// Sinks.
    pub sinks: Vec<SinkStatus>,
    /// Store commit latency (from hand-over to durable, successful commits only).
    pub commit_latency: LatencySnapshot,
}

/// Upper bounds (microseconds) of the commit-latency histogram buckets.
pub const COMMIT_BUCKETS_US: [u64; 12] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
];

/// How long successful commits take, from handing the records to the store until they are
/// fsynced (waiting for a group commit included): the time an analyser or sender waits for its
/// ACK beyond the protocol itself. On a Pi's SD card this is the figure to watch.
#[derive(Debug, Default)]
pub struct CommitLatency {
    buckets: [AtomicU64; COMMIT_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl CommitLatency {
    /// Records one commit.
    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        for (bound, bucket) in COMMIT_BUCKETS_US.iter().zip(&self.buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative bucket counts, count and sum.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: COMMIT_BUCKETS_US
                .iter()
                .zip(&self.buckets)
                .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram as cumulative counts per upper bound (microseconds).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// `(upper bound in µs, observations at or below it)`.
    pub buckets: Vec<(u64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum in µs.
    pub sum_us: u64,
}

/// The registry every component reports into.
#[derive(Debug)]
pub struct Health {
    /// Agent id.
    pub agent_id: String,
    started: Instant,
    ready: AtomicBool,
    /// Sources, in configuration order.
    pub sources: Vec<Arc<SourceHealth>>,
    /// Sinks, in configuration order.
    pub sinks: Vec<Arc<SinkHealth>>,
    /// Store commit latency, observed by the pipeline.
    pub commit_latency: Arc<CommitLatency>,
}

impl Health {
    /// A registry for these components.
    pub fn new(
        agent_id: &str,
        sources: Vec<Arc<SourceHealth>>,
        sinks: Vec<Arc<SinkHealth>>,
        commit_latency: Arc<CommitLatency>,
    ) -> Health {
        Health {
            agent_id: agent_id.to_string(),
            started: Instant::now(),
            ready: AtomicBool::new(false),
            sources,
            sinks,
            commit_latency,
        }
    }

    /// Marks the agent ready (store recovered, listeners bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// Whether the agent is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<SourceHealth>> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&Arc<SinkHealth>> {
        self.sinks.iter().find(|s| s.name == name)
    }

    /// A snapshot, with queue figures from the store's status.
    pub fn snapshot(&self, store: Option<&labagent_store::Status>) -> AgentStatus {
        let mut sinks: Vec<SinkStatus> = self.sinks.iter().map(|s| s.snapshot()).collect();
        if let Some(st) = store {
            for sink in &mut sinks {
                if let Some(q) = st.sinks.iter().find(|q| q.name == sink.name) {
                    sink.queue_depth = q.pending;
                    sink.queue_bytes = q.pending_bytes;
                    sink.oldest_pending_ms = q.oldest_pending_received_ms;
                    sink.parked = q.parked;
                }
            }
        }
        AgentStatus {
            agent_id: self.agent_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            ready: self.is_ready(),
            store_bytes: store.map_or(0, |s| s.total_bytes),
            store_max_bytes: store.map_or(0, |s| s.max_bytes),
            sources: self.sources.iter().map(|s| s.snapshot()).collect(),
            sinks,
            commit_latency: self.commit_latency.snapshot(),
        }
    }
}
