//! Delivery: one task per sink, walking the store in order from the sink's cursor.
//!
//! For each entry: skip (acknowledge) it when the sink does not take its source; park raw ASTM
//! that could not be translated; otherwise deliver it, then acknowledge on success, park on a
//! permanent refusal (MLLP AE/CE, a malformed message), and on a transient failure (AR/CR,
//! timeout, connection loss, full disk) wait with capped exponential backoff and jitter and send
//! the same entry again, forever. The cursor moves only after the downstream acknowledgement.

pub mod file;
pub mod mllp;
pub mod mqtt;

use crate::health::SinkHealth;
use crate::pipeline::{Pipeline, unix_ms};
use crate::retry::{Backoff, jitter_seed};
use labagent_store::{Entry, Kind};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How a delivery attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try the same entry again later (connection lost, timeout, AR/CR, disk full).
    #[error("transient: {0}")]
    Transient(String),
    /// The destination refused this entry for good (AE/CE, malformed): park it.
    #[error("refused: {0}")]
    Permanent(String),
}

/// A destination.
pub trait Deliver: Send + 'static {
    /// Delivers one entry; returns once the destination has acknowledged it durably.
    fn deliver(&mut self, entry: &Entry) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// The longest wait between two attempts (the sink's `max_backoff`).
    fn max_backoff(&self) -> Duration {
        Duration::from_secs(60)
    }
}

/// Runs one sink until shutdown.
pub async fn run_sink<D: Deliver>(
    name: String,
    sources: Vec<String>,
    pipeline: Arc<Pipeline>,
    mut destination: D,
    health: Arc<SinkHealth>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(500).min(destination.max_backoff()),
        destination.max_backoff(),
    );
    loop {
        let committed = pipeline.committed.clone();
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = {
            let (p, n) = (pipeline.clone(), name.clone());
            tokio::task::spawn_blocking(move || {
                let _guard = p.catalog.lock();
                p.store().next(&n)
            })
            .await
        };
        let entry = match next {
            Ok(Ok(Some(entry))) => entry,
            Ok(Ok(None)) => {
                tokio::select! {
                    () = &mut notified => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            Ok(Err(e)) => {
                tracing::error!(sink = %name, error = %e, "cannot read the store");
                if sleep_or_stop(&mut backoff, &shutdown).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "store task failed");
                return;
            }
        };
        let skip = !sources.contains(&entry.source);
        let outcome = if skip {
            Settle::Ack
        } else if entry.kind == Kind::RawAstm {
            // Parked at ingest as untranslatable and now retried by an operator (perhaps after
            // fixing the mapping): translate it again. The ORUs get control ids derived from
            // the record id, so a repeated attempt resends the same MSH-10s.
            let (p, raw) = (pipeline.clone(), entry.clone());
            match tokio::task::spawn_blocking(move || p.retranslate(&raw)).await {
                Ok(Ok(orus)) => {
                    let mut settle = Settle::Ack;
                    for (control_id, payload) in orus {
                        let oru = Entry {
                            control_id,
                            kind: Kind::Oru,
                            payload: payload.into_bytes(),
                            ..entry.clone()
                        };
                        let Some(s) = deliver_until_settled(
                            &mut destination,
                            &oru,
                            &name,
                            &health,
                            &mut backoff,
                            &shutdown,
                        )
                        .await
                        else {
                            return;
                        };
                        if let Settle::Park(_) = s {
                            settle = s;
                            break;
                        }
                    }
                    settle
                }
                Ok(Err(reason)) => Settle::Park(format!("not translatable: {reason}")),
                Err(e) => Settle::Park(format!("not translatable: task failed: {e}")),
            }
        } else {
            match deliver_until_settled(
                &mut destination,
                &entry,
                &name,
                &health,
                &mut backoff,
                &shutdown,
            )
            .await
            {
                Some(s) => s,
                None => return,
            }
        };
        let (p, n, id) = (pipeline.clone(), name.clone(), entry.id);
        let settled = tokio::task::spawn_blocking(move || match &outcome {
            Settle::Ack => p.store().ack(&n, id).map(|()| None),
            Settle::Park(reason) => p
                .store()
                .park(&n, id, reason, unix_ms(SystemTime::now()))
                .map(|()| Some(reason.clone())),
        })
        .await;
        match settled {
            Ok(Ok(None)) if skip => {
                tracing::debug!(sink = %name, record = %entry.id, source = %entry.source, "not for this sink");
            }
            Ok(Ok(None)) => {
                health.delivered();
                tracing::info!(sink = %name, record = %entry.id, control_id = %entry.control_id, "delivered");
            }
            Ok(Ok(Some(reason))) => {
                health.parked(&reason);
                tracing::warn!(sink = %name, record = %entry.id, control_id = %entry.control_id, %reason, "parked");
            }
            Ok(Err(e)) => {
                tracing::error!(sink = %name, record = %entry.id, error = %e, "cannot record the delivery; it will be repeated");
                if sleep_or_stop(&mut backoff, &shutdown).await {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "store task failed");
                return;
            }
        }
    }
}

/// Delivers one entry until the destination accepts it (Ack) or refuses it for good (Park),
/// backing off between transient failures. `None` when shutdown came first.
async fn deliver_until_settled<D: Deliver>(
    destination: &mut D,
    entry: &Entry,
    name: &str,
    health: &SinkHealth,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Option<Settle> {
    loop {
        let attempt = tokio::select! {
            r = destination.deliver(entry) => r,
            () = shutdown.cancelled() => return None,
        };
        match attempt {
            Ok(()) => {
                backoff.reset();
                return Some(Settle::Ack);
            }
            Err(DeliveryError::Permanent(reason)) => {
                backoff.reset();
                return Some(Settle::Park(reason));
            }
            Err(DeliveryError::Transient(reason)) => {
                health.failed(&reason);
                tracing::warn!(sink = %name, record = %entry.id, control_id = %entry.control_id, %reason, "delivery failed; will retry");
                if sleep_or_stop(backoff, shutdown).await {
                    return None;
                }
            }
        }
    }
}

enum Settle {
    Ack,
    Park(String),
}

/// Waits out the next backoff delay; true when shutdown came first.
async fn sleep_or_stop(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    let delay = backoff.next_delay(jitter_seed());
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = shutdown.cancelled() => true,
    }
}
