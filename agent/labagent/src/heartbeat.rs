//! MQTT fleet telemetry: a retained JSON status on `labagent/{agent_id}/status`, with the
//! last will `{"state":"offline"}` (retained, QoS 1) on the same topic.
//!
//! The status is `{"state":"online", "agent_id", "version", "uptime_s", "ready", "store_bytes",
//! "store_max_bytes", "sources":[...], "sinks":[...]}` (the [`AgentStatus`] snapshot: names,
//! counts, times and reasons, never patient data). It is published when the connection comes
//! up, every `interval`, and (checked every second, best effort) when a coarse part of the
//! state changes: readiness, a source's connection, a sink's connection, a new error or a new
//! parked message. Counters alone do not trigger a publish.
//!
//! # Connection
//! The heartbeat has its own MQTT connection to the first mqtt sink's broker, with client id
//! `{client_id}-hb` and the last will set on its CONNECT. It shares nothing with the sink's
//! connection, so it never waits in, or takes a packet id from, the sink's one-message window:
//! a slow or broken heartbeat cannot delay delivery. Publishes use `try_publish`: when the
//! request queue is full the heartbeat is skipped, never awaited. On a lost connection it
//! reconnects with backoff (the broker will have published the will meanwhile; the first
//! status after reconnecting replaces it).
//!
//! On shutdown it publishes `{"state":"offline"}` itself (the will is not sent after a clean
//! DISCONNECT), then disconnects.

use crate::health::{AgentStatus, Health};
use crate::retry::{Backoff, jitter_seed};
use crate::sinks::mqtt::{Connection, MqttConnect, Note};
use labagent_store::Store;
use rumqttc::{LastWill, QoS};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Default time between heartbeats.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the state is checked for a change worth publishing at once.
const CHANGE_CHECK: Duration = Duration::from_secs(1);
/// How long shutdown waits for the broker to take the final `offline` status.
const GOODBYE: Duration = Duration::from_secs(2);
/// The payload of the last will and of the final status on shutdown.
pub const OFFLINE: &str = r#"{"state":"offline"}"#;

/// The status topic of agent `agent_id`.
pub fn status_topic(agent_id: &str) -> String {
    format!("labagent/{agent_id}/status")
}

/// The retained JSON published while the agent runs.
#[derive(Debug, Serialize)]
pub struct OnlineStatus<'a> {
    /// Always `"online"`.
    pub state: &'static str,
    /// The agent's status.
    #[serde(flatten)]
    pub status: &'a AgentStatus,
}

/// The settings to connect with: the first mqtt sink's broker settings, client id with `-hb`
/// appended, and the last will on the status topic.
pub fn connect_settings(sink: &MqttConnect, agent_id: &str) -> MqttConnect {
    sink.clone()
        .with_client_id_suffix("-hb")
        .with_last_will(LastWill::new(
            status_topic(agent_id),
            OFFLINE,
            QoS::AtLeastOnce,
            true,
        ))
}

/// Publishes the heartbeat until `shutdown`. `connect` should come from [`connect_settings`].
pub async fn run(
    connect: MqttConnect,
    health: Arc<Health>,
    store: Arc<Store>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let topic = status_topic(&health.agent_id);
    let interval = interval.max(Duration::from_secs(1));
    let mut backoff = Backoff::reconnect();
    loop {
        let opened = tokio::select! {
            c = connect.open(8) => c,
            () = shutdown.cancelled() => return,
        };
        let mut conn = match opened {
            Ok(c) => c,
            Err(reason) => {
                tracing::warn!(broker = %connect.broker(), %reason, "heartbeat: cannot connect; will retry");
                if wait_or_stop(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(broker = %connect.broker(), client_id = %connect.client_id(), %topic, "heartbeat connected");
        backoff.reset();
        let mut last = Signature::of(&health);
        publish_status(&conn, &topic, &health, &store).await;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(CHANGE_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                note = conn.events.recv() => match note {
                    Some(Note::Lost(reason)) => break reason,
                    None | Some(Note::Closed) => break "connection closed".to_string(),
                    Some(_) => {}
                },
                _ = beat.tick() => {
                    last = Signature::of(&health);
                    publish_status(&conn, &topic, &health, &store).await;
                }
                _ = check.tick() => {
                    let now = Signature::of(&health);
                    if now != last {
                        last = now;
                        publish_status(&conn, &topic, &health, &store).await;
                    }
                }
                () = shutdown.cancelled() => {
                    goodbye(conn, &topic).await;
                    return;
                }
            }
        };
        tracing::warn!(broker = %connect.broker(), %reason, "heartbeat connection lost; will reconnect");
        drop(conn);
        if wait_or_stop(&mut backoff, &shutdown).await {
            return;
        }
    }
}

/// Builds the status JSON now.
pub async fn status_json(health: &Health, store: &Arc<Store>) -> Vec<u8> {
    let store = store.clone();
    let st = tokio::task::spawn_blocking(move || store.status())
        .await
        .ok()
        .and_then(Result::ok);
    let snapshot = health.snapshot(st.as_ref());
    serde_json::to_vec(&OnlineStatus {
        state: "online",
        status: &snapshot,
    })
    .unwrap_or_else(|_| br#"{"state":"online"}"#.to_vec())
}

async fn publish_status(conn: &Connection, topic: &str, health: &Health, store: &Arc<Store>) {
    let payload = status_json(health, store).await;
    if let Err(e) = conn
        .client
        .try_publish(topic, QoS::AtLeastOnce, true, payload)
    {
        tracing::debug!(error = %e, "heartbeat skipped");
    }
}

/// Publishes the final `offline` status and disconnects. rumqttc writes requests in order, so
/// the broker has the status before it reads the DISCONNECT; waits at most [`GOODBYE`] for the
/// DISCONNECT to be written.
async fn goodbye(mut conn: Connection, topic: &str) {
    if conn
        .client
        .try_publish(topic, QoS::AtLeastOnce, true, OFFLINE)
        .is_err()
        || conn.client.try_disconnect().is_err()
    {
        return;
    }
    let closed = async {
        while let Some(note) = conn.events.recv().await {
            if matches!(note, Note::Closed | Note::Lost(_)) {
                return;
            }
        }
    };
    if tokio::time::timeout(GOODBYE, closed).await.is_err() {
        tracing::debug!("heartbeat: the offline status was not sent before shutdown");
    }
}

/// The coarse state whose change is worth an immediate heartbeat.
#[derive(Debug, PartialEq, Eq)]
struct Signature(Vec<String>);

impl Signature {
    fn of(health: &Health) -> Signature {
        let mut parts = vec![format!("ready={}", health.is_ready())];
        for s in &health.sources {
            let s = s.snapshot();
            parts.push(format!(
                "source {} up={} parked={} error={:?}",
                s.name,
                s.connections > 0,
                s.parked,
                s.last_error.map(|e| e.at_ms)
            ));
        }
        for s in &health.sinks {
            let s = s.snapshot();
            parts.push(format!(
                "sink {} up={} parked={} error={:?}",
                s.name,
                s.connected,
                s.parked_total,
                s.last_error.map(|e| e.reason)
            ));
        }
        Signature(parts)
    }
}

async fn wait_or_stop(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    let delay = backoff.next_delay(jitter_seed());
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = shutdown.cancelled() => true,
    }
}
