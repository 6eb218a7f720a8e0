//! `GET /metrics`: Prometheus text (exposition format 0.0.4), built at scrape time from the
//! health snapshot and the store's status, so there is no second set of counters to keep in
//! step. Every name starts with `labagent_`; labels are component names only (no patient data).
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `labagent_build_info` | gauge (1) | `version`, `agent_id` |
//! | `labagent_up` / `labagent_ready` | gauge | |
//! | `labagent_uptime_seconds` | gauge | |
//! | `labagent_store_bytes`, `labagent_store_max_bytes` | gauge | |
//! | `labagent_frames_received_total` | counter | `source` |
//! | `labagent_frames_naked_total` | counter | `source` |
//! | `labagent_messages_committed_total` | counter | `source` |
//! | `labagent_messages_untranslatable_total` | counter | `source` |
//! | `labagent_messages_refused_total` | counter | `source` |
//! | `labagent_source_connections` | gauge | `source` |
//! | `labagent_source_last_result_timestamp_seconds` | gauge (absent before the first) | `source` |
//! | `labagent_messages_delivered_total` | counter | `sink` |
//! | `labagent_messages_parked_total` | counter | `sink` |
//! | `labagent_delivery_failures_total` | counter | `sink` |
//! | `labagent_sink_connected` | gauge (0/1) | `sink` |
//! | `labagent_queue_depth` | gauge (messages) | `sink` |
//! | `labagent_queue_bytes` | gauge | `sink` |
//! | `labagent_queue_oldest_age_seconds` | gauge (0 when empty) | `sink` |
//! | `labagent_queue_parked` | gauge (messages now parked) | `sink` |
//!
//! | `labagent_commit_duration_seconds` | histogram | |
//!
//! Counters restart from zero with the process (Prometheus handles resets).

use crate::health::AgentStatus;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

type Labels = Vec<(&'static str, String)>;
type GaugeF = Gauge<f64, AtomicU64>;

fn counter(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_f(reg: &mut Registry, name: &str, help: &str) -> Family<Labels, GaugeF> {
    let f = Family::<Labels, GaugeF>::default();
    reg.register(name, help, f.clone());
    f
}

/// A count as a gauge value (counts never reach `i64::MAX`; saturate if one did).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The metrics text for one scrape.
pub fn encode(status: &AgentStatus) -> Result<String, std::fmt::Error> {
    encode_at(
        status,
        crate::pipeline::unix_ms(std::time::SystemTime::now()),
    )
}

/// The metrics text for a snapshot taken at `now_ms` (unix ms).
pub fn encode_at(status: &AgentStatus, now_ms: i64) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("labagent");

    let info = gauge(
        &mut reg,
        "build_info",
        "labagent version and agent id (always 1)",
    );
    info.get_or_create(&vec![
        ("version", status.version.to_string()),
        ("agent_id", status.agent_id.clone()),
    ])
    .set(1);
    let none: Labels = Vec::new();
    gauge(&mut reg, "up", "1 while the agent serves this endpoint")
        .get_or_create(&none)
        .set(1);
    gauge(
        &mut reg,
        "ready",
        "1 once the store recovered and every listener is bound",
    )
    .get_or_create(&none)
    .set(i64::from(status.ready));
    gauge_f(
        &mut reg,
        "uptime_seconds",
        "Seconds since the agent started",
    )
    .get_or_create(&none)
    .set(status.uptime_s as f64);
    gauge(
        &mut reg,
        "store_bytes",
        "Bytes of the store's segment files",
    )
    .get_or_create(&none)
    .set(int(status.store_bytes));
    gauge(
        &mut reg,
        "store_max_bytes",
        "The store's configured limit in bytes",
    )
    .get_or_create(&none)
    .set(int(status.store_max_bytes));

    let frames = counter(
        &mut reg,
        "frames_received",
        "Frames (or MLLP blocks) accepted from the source",
    );
    let naked = counter(
        &mut reg,
        "frames_naked",
        "Frames answered NAK (bad checksum, sequence, size)",
    );
    let committed = counter(
        &mut reg,
        "messages_committed",
        "Messages committed durably to the store",
    );
    let untranslatable = counter(
        &mut reg,
        "messages_untranslatable",
        "Messages stored raw and parked because they could not be translated",
    );
    let refused = counter(
        &mut reg,
        "messages_refused",
        "Messages refused (store full or failing); the sender keeps them",
    );
    let connections = gauge(
        &mut reg,
        "source_connections",
        "Peers connected to the source now (1 for an open serial port)",
    );
    let last_result = gauge_f(
        &mut reg,
        "source_last_result_timestamp_seconds",
        "When the source's last message was committed (unix seconds)",
    );
    for s in &status.sources {
        let l: Labels = vec![("source", s.name.clone())];
        frames.get_or_create(&l).inc_by(s.frames);
        naked.get_or_create(&l).inc_by(s.frames_naked);
        committed.get_or_create(&l).inc_by(s.messages);
        untranslatable.get_or_create(&l).inc_by(s.parked);
        refused.get_or_create(&l).inc_by(s.refused);
        connections.get_or_create(&l).set(int(s.connections));
        if let Some(ms) = s.last_result_ms {
            last_result.get_or_create(&l).set(seconds(ms));
        }
    }

    let delivered = counter(
        &mut reg,
        "messages_delivered",
        "Messages acknowledged by the destination",
    );
    let parked_total = counter(
        &mut reg,
        "messages_parked",
        "Messages the destination refused for good (parked)",
    );
    let failures = counter(
        &mut reg,
        "delivery_failures",
        "Failed delivery attempts (retried with backoff)",
    );
    let connected = gauge(
        &mut reg,
        "sink_connected",
        "1 when the last delivery attempt reached the destination",
    );
    let depth = gauge(&mut reg, "queue_depth", "Messages waiting for delivery");
    let bytes = gauge(
        &mut reg,
        "queue_bytes",
        "Bytes of the messages waiting for delivery",
    );
    let oldest = gauge_f(
        &mut reg,
        "queue_oldest_age_seconds",
        "Age of the oldest undelivered message (0 when none waits)",
    );
    let parked_now = gauge(
        &mut reg,
        "queue_parked",
        "Messages parked now (waiting for an operator)",
    );
    for s in &status.sinks {
        let l: Labels = vec![("sink", s.name.clone())];
        delivered.get_or_create(&l).inc_by(s.delivered);
        parked_total.get_or_create(&l).inc_by(s.parked_total);
        failures.get_or_create(&l).inc_by(s.failures);
        connected.get_or_create(&l).set(i64::from(s.connected));
        depth.get_or_create(&l).set(int(s.queue_depth));
        bytes.get_or_create(&l).set(int(s.queue_bytes));
        let age = s
            .oldest_pending_ms
            .filter(|_| s.queue_depth > 0)
            .map_or(0.0, |ms| seconds((now_ms - ms).max(0)));
        oldest.get_or_create(&l).set(age);
        parked_now.get_or_create(&l).set(int(s.parked));
    }

    let mut out = String::new();
    prometheus_text::encode(&mut out, &reg)?;
    let histogram = commit_histogram(&status.commit_latency);
    match out.rfind("# EOF") {
        Some(i) => out.insert_str(i, &histogram),
        None => out.push_str(&histogram),
    }
    Ok(out)
}

/// `labagent_commit_duration_seconds`, written by hand: its buckets are kept as atomics in
/// [`crate::health::CommitLatency`] and read at scrape time like every other figure here.
fn commit_histogram(h: &crate::health::LatencySnapshot) -> String {
    use std::fmt::Write;
    let name = "labagent_commit_duration_seconds";
    let mut out = format!(
        "# HELP {name} Time from handing a message to the store until it is fsynced (its upstream ACK waits for this).\n\
         # TYPE {name} histogram\n"
    );
    for (bound_us, count) in &h.buckets {
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {count}",
            *bound_us as f64 / 1e6
        );
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {}", h.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{SinkStatus, SourceStatus};

    fn status() -> AgentStatus {
        AgentStatus {
            agent_id: "lab\"1".into(),
            version: "0.1.0",
            uptime_s: 42,
            ready: true,
            store_bytes: 10,
            store_max_bytes: 100,
            sources: vec![SourceStatus {
                name: "an".into(),
                kind: "astm-tcp",
                endpoint: "listen 127.0.0.1:1".into(),
                connections: 1,
                frames: 7,
                frames_naked: 1,
                messages: 3,
                parked: 1,
                refused: 0,
                last_frame_ms: Some(1_000),
                last_result_ms: Some(2_000),
                last_error: None,
            }],
            sinks: vec![SinkStatus {
                name: "files".into(),
                kind: "file",
                endpoint: "/out".into(),
                connected: true,
                delivered: 2,
                parked_total: 0,
                failures: 0,
                last_delivery_ms: None,
                last_error: None,
                queue_depth: 1,
                queue_bytes: 300,
                oldest_pending_ms: Some(4_000),
                parked: 1,
            }],
            commit_latency: crate::health::LatencySnapshot {
                buckets: vec![(1_000, 2), (10_000, 3)],
                count: 3,
                sum_us: 6_500,
            },
        }
    }

    #[test]
    fn names_values_and_shape() {
        let text = encode_at(&status(), 10_000).expect("encode");
        for want in [
            "labagent_commit_duration_seconds_bucket{le=\"0.001\"} 2\n",
            "labagent_commit_duration_seconds_bucket{le=\"+Inf\"} 3\n",
            "labagent_commit_duration_seconds_count 3\n",
            "labagent_messages_committed_total{source=\"an\"} 3\n",
            "labagent_frames_naked_total{source=\"an\"} 1\n",
            "labagent_messages_delivered_total{sink=\"files\"} 2\n",
            "labagent_queue_depth{sink=\"files\"} 1\n",
            "labagent_queue_oldest_age_seconds{sink=\"files\"} 6.0\n",
            "labagent_uptime_seconds 42.0\n",
            "labagent_queue_bytes{sink=\"files\"} 300\n",
            "labagent_build_info{version=\"0.1.0\",agent_id=\"lab\\\"1\"} 1\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("labagent_"),
                "{line}"
            );
        }
    }
}
