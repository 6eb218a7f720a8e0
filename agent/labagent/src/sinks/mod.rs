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
use labagent_store::{Entry, Kind, RecordId, Settlement};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
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

/// Entries fetched from the store at a time.
const BATCH: usize = 64;
/// Delivered outcomes are written to the store (one durable write for all of them) at the latest
/// this long after the oldest of them was delivered, ...
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// ... or once this many are waiting, ...
const FLUSH_MAX: usize = 1024;
/// ... or when the queue has been empty this long, so an idle sink's cursor is on disk at once.
const FLUSH_IDLE: Duration = Duration::from_millis(5);
/// Within this long of a read that found the sink caught up, the next entries are read in
/// place, at most [`FRESH_BATCH`] of them (see [`run_sink`]).
const FRESH: Duration = Duration::from_secs(1);
/// Entries read in place at a time: few, so that if they are not in the page cache after all
/// (an operator retried old dead letters) the worker is not held for long.
const FRESH_BATCH: usize = 8;

/// Runs one sink until shutdown.
///
/// Entries are delivered one at a time, in order. Their outcomes are recorded in the store
/// lazily, with one durable write per [`FLUSH_EVERY`] / [`FLUSH_MAX`] / [`FLUSH_IDLE`] (and
/// always before waiting out a failure and at shutdown), instead of a file replacement per
/// message: a steady stream from one sender would otherwise pay two more syncs per message than
/// its ingest. The price is bounded: a crash loses at most those unwritten outcomes, whose
/// entries are then delivered again with the same control ids (at least once, as after any
/// crash between a downstream ACK and the cursor write).
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
    let mut ledger = Ledger {
        name: name.clone(),
        pipeline: pipeline.clone(),
        health: health.clone(),
        pending: Vec::new(),
        unsettled: HashSet::new(),
        decided: HashMap::new(),
        oldest: None,
    };
    // When the last read found fewer than a batch (the sink was caught up).
    let mut caught_up: Option<Instant> = None;
    loop {
        let committed = pipeline.committed.clone();
        let notified = committed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Caught up moments ago: what is new was most likely just committed and is in the page
        // cache, so read a few entries here rather than hand this worker's tasks to another
        // thread and back. A backlog (after an outage, at start) is read on a blocking thread.
        let inline = if caught_up.is_some_and(|t| t.elapsed() < FRESH) {
            pipeline.catalog.try_lock().ok().map(|_guard| {
                pipeline
                    .store()
                    .peek_except(&name, FRESH_BATCH, &ledger.unsettled)
            })
        } else {
            None
        };
        let asked = if inline.is_some() { FRESH_BATCH } else { BATCH };
        let batch = match inline {
            Some(r) => Ok(r),
            None => {
                let (p, n) = (pipeline.clone(), name.clone());
                let except = std::mem::take(&mut ledger.unsettled);
                crate::blocking::run(move || {
                    let _guard = p.catalog.lock();
                    let r = p.store().peek_except(&n, BATCH, &except);
                    (r, except)
                })
                .await
                .map(|(r, except)| {
                    ledger.unsettled = except;
                    r
                })
            }
        };
        // Fewer than asked for: the sink has caught up.
        caught_up = matches!(&batch, Ok(Ok(b)) if b.len() < asked).then(Instant::now);
        let batch = match batch {
            Ok(Ok(b)) if b.is_empty() => {
                if ledger.pending.is_empty() {
                    tokio::select! {
                        () = &mut notified => {}
                        () = shutdown.cancelled() => return,
                    }
                } else {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep(FLUSH_IDLE) => {
                            if !ledger.flush().await && sleep_or_stop(&mut backoff, &shutdown).await {
                                return;
                            }
                        }
                        () = shutdown.cancelled() => {
                            ledger.flush().await;
                            return;
                        }
                    }
                }
                continue;
            }
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(sink = %name, error = %e, "cannot read the store");
                ledger.flush().await;
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
        // Whether outcomes replayed from `decided` wait in the ledger unwritten.
        let mut replayed = false;
        for entry in batch {
            let skip = !sources.contains(&entry.source);
            let known = ledger.decided.remove(&entry.id);
            if known.is_none() && replayed {
                // Write the replayed outcomes before sending anything new: while the ledger
                // cannot be written, nothing more is delivered (and `decided` cannot grow).
                if !ledger.flush().await {
                    if sleep_or_stop(&mut backoff, &shutdown).await {
                        return;
                    }
                    break;
                }
                replayed = false;
            }
            let outcome = if let Some(known) = known {
                // Decided before a failed ledger write (acknowledged or refused downstream):
                // record that outcome, do not send it again.
                replayed = true;
                Some(known)
            } else if skip {
                Some(Settle::Skip)
            } else if entry.kind == Kind::RawAstm {
                retranslate_and_deliver(
                    &entry,
                    &pipeline,
                    &mut destination,
                    &mut ledger,
                    &mut backoff,
                    &shutdown,
                )
                .await
            } else {
                deliver_until_settled(
                    &mut destination,
                    &entry,
                    &mut ledger,
                    &mut backoff,
                    &shutdown,
                )
                .await
            };
            let Some(outcome) = outcome else {
                ledger.flush().await;
                return;
            };
            if let Settle::Restart = outcome {
                break;
            }
            ledger.push(entry, outcome);
            if ledger.due() && !ledger.flush().await {
                if sleep_or_stop(&mut backoff, &shutdown).await {
                    return;
                }
                // The store did not take the outcomes: fetch from the cursor again.
                break;
            }
        }
    }
}

/// Outcomes delivered but not yet written to the store.
struct Ledger {
    name: String,
    pipeline: Arc<Pipeline>,
    health: Arc<SinkHealth>,
    pending: Vec<(Entry, Settle)>,
    /// The ids in `pending`, left out when the store is read for more.
    unsettled: HashSet<RecordId>,
    /// Outcomes (acknowledged, passed over, refused) that a failed write did not record: when
    /// the store hands those entries out again their outcome is recorded as it was, and
    /// nothing is sent twice or out of order. (An operator's retry of a parked entry ahead of
    /// the cursor makes the next write fail, as the entries after it can no longer be
    /// acknowledged before it.)
    decided: HashMap<RecordId, Settle>,
    /// When the oldest of `pending` was delivered.
    oldest: Option<Instant>,
}

impl Ledger {
    fn push(&mut self, entry: Entry, outcome: Settle) {
        self.oldest.get_or_insert_with(Instant::now);
        self.unsettled.insert(entry.id);
        self.pending.push((entry, outcome));
    }

    /// Whether the pending outcomes must be written now.
    fn due(&self) -> bool {
        self.pending.len() >= FLUSH_MAX || self.oldest.is_some_and(|t| t.elapsed() >= FLUSH_EVERY)
    }

    /// Writes the pending outcomes with one durable store write; false when that failed (the
    /// entries will be delivered again).
    async fn flush(&mut self) -> bool {
        self.oldest = None;
        self.unsettled.clear();
        if self.pending.is_empty() {
            return true;
        }
        let pending = std::mem::take(&mut self.pending);
        let (p, n) = (self.pipeline.clone(), self.name.clone());
        let now = unix_ms(SystemTime::now());
        let (written, pending) = match crate::blocking::run(move || {
            let items: Vec<Settlement<'_>> = pending
                .iter()
                .filter_map(|(e, s)| match s {
                    Settle::Ack | Settle::Skip => Some(Settlement::Ack(e.id)),
                    Settle::Park(reason) => Some(Settlement::Park {
                        id: e.id,
                        reason,
                        now_ms: now,
                    }),
                    // Never pushed (`run_sink` restarts instead).
                    Settle::Restart => None,
                })
                .collect();
            let r = p.store().settle(&n, &items);
            (r, pending)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "store task failed");
                return false;
            }
        };
        if let Err(e) = written {
            // Nothing of the batch was recorded. The outcomes are kept, so that reading again
            // from the cursor records them instead of sending the entries again.
            let count = pending.len();
            self.decided.extend(
                pending
                    .into_iter()
                    .filter(|(_, s)| !matches!(s, Settle::Restart))
                    .map(|(e, s)| (e.id, s)),
            );
            if self.decided.len() > 4 * FLUSH_MAX {
                // Bounded: past this, some are sent again (at least once, same control ids).
                self.decided.clear();
            }
            tracing::error!(sink = %self.name, error = %e, count, "cannot record deliveries; reading again from the cursor");
            return false;
        }
        for (entry, settle) in &pending {
            match settle {
                Settle::Restart => {}
                Settle::Skip => {
                    tracing::debug!(sink = %self.name, record = %entry.id, source = %entry.source, "not for this sink");
                }
                Settle::Ack => {
                    self.health.delivered();
                    tracing::info!(sink = %self.name, record = %entry.id, control_id = %entry.control_id, "delivered");
                }
                Settle::Park(reason) => {
                    self.health.parked(reason);
                    tracing::warn!(sink = %self.name, record = %entry.id, control_id = %entry.control_id, %reason, "parked");
                }
            }
        }
        true
    }
}

/// A retried raw ASTM record (parked at ingest as untranslatable): translate it again with the
/// current mapping and deliver its ORUs. Their control ids derive from the record id, so a
/// repeated attempt resends the same MSH-10s. `None` on shutdown.
async fn retranslate_and_deliver<D: Deliver>(
    entry: &Entry,
    pipeline: &Arc<Pipeline>,
    destination: &mut D,
    ledger: &mut Ledger,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> Option<Settle> {
    let (p, raw) = (pipeline.clone(), entry.clone());
    match crate::blocking::run(move || p.retranslate(&raw)).await {
        Ok(Ok(orus)) => {
            for (control_id, payload) in orus {
                let oru = Entry {
                    control_id,
                    kind: Kind::Oru,
                    payload: payload.into_bytes(),
                    ..entry.clone()
                };
                let settle =
                    deliver_until_settled(destination, &oru, ledger, backoff, shutdown).await?;
                if let Settle::Park(_) | Settle::Restart = settle {
                    return Some(settle);
                }
            }
            Some(Settle::Ack)
        }
        Ok(Err(reason)) => Some(Settle::Park(format!("not translatable: {reason}"))),
        Err(e) => Some(Settle::Park(format!("not translatable: task failed: {e}"))),
    }
}

/// Delivers one entry until the destination accepts it (Ack) or refuses it for good (Park),
/// backing off between transient failures; outcomes already settled are written before each
/// wait, so an outage never holds acknowledged deliveries in memory. `None` on shutdown.
async fn deliver_until_settled<D: Deliver>(
    destination: &mut D,
    entry: &Entry,
    ledger: &mut Ledger,
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
                ledger.health.failed(&reason);
                tracing::warn!(sink = %ledger.name, record = %entry.id, control_id = %entry.control_id, %reason, "delivery failed; will retry");
                let flushed = ledger.flush().await;
                if sleep_or_stop(backoff, shutdown).await {
                    return None;
                }
                if !flushed {
                    // The outcomes before this entry were not recorded: start again from the
                    // cursor, so they are delivered again before it, in order.
                    return Some(Settle::Restart);
                }
            }
        }
    }
}

enum Settle {
    /// Not an outcome: the ledger could not be written; fetch again from the cursor.
    Restart,
    /// Delivered and acknowledged downstream.
    Ack,
    /// Not for this sink (another source): passed over.
    Skip,
    /// Refused for good: parked with the reason.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{Inbound, Ingest, Outcome, Payload};
    use crate::pipeline::sequence::Sequence;
    use crate::pipeline::{SinkSpec, SourceSpec};
    use crate::translate::Mapping;
    use labagent_astm::charset::Charset;
    use labagent_store::{Options, Store};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use tokio::sync::Notify;

    /// A destination that records what it was sent and acknowledges it, except `refuse`
    /// (refused for good, as an AE); it holds the entry with control id `hold` until `release`.
    struct Recorder {
        seen: Arc<Mutex<Vec<RecordId>>>,
        hold: Option<String>,
        refuse: &'static str,
        reached: Arc<Notify>,
        release: Arc<Notify>,
    }

    impl Deliver for Recorder {
        async fn deliver(&mut self, entry: &Entry) -> Result<(), DeliveryError> {
            if self.hold.as_deref() == Some(entry.control_id.as_str()) {
                self.hold = None;
                self.reached.notify_one();
                self.release.notified().await;
            }
            self.seen.lock().expect("lock").push(entry.id);
            if entry.control_id == self.refuse {
                return Err(DeliveryError::Permanent("AE".into()));
            }
            Ok(())
        }
    }

    fn hl7(control_id: Result<&str, &str>) -> Inbound {
        Inbound {
            source: Arc::from("lis"),
            payload: Payload::Hl7 {
                bytes: b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X|P|2.5.1\r".to_vec(),
                control_id: control_id.map(str::to_string).map_err(str::to_string),
            },
            received: SystemTime::now(),
        }
    }

    /// An operator retries an entry parked at ingest while the sink holds outcomes past it
    /// that are not yet recorded (deliveries, and a refusal): the next ledger write fails
    /// (they can no longer be acknowledged before it), and reading again from the cursor
    /// records those outcomes instead of sending the entries a second time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retry_behind_unrecorded_deliveries_sends_nothing_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(
            Store::open(dir.path().join("store"), Options::new(["ehr"]))
                .expect("store")
                .0,
        );
        let sequence = Sequence::open(&dir.path().join("seq")).expect("sequence");
        let sources = HashMap::from([(
            "lis".to_string(),
            SourceSpec {
                mapping: Mapping::default_for("lis"),
                charset: Charset::Latin1,
            },
        )]);
        let sinks = vec![SinkSpec {
            name: "ehr".into(),
            sources: vec!["lis".into()],
        }];
        let pipeline = Arc::new(
            Pipeline::new(
                store.clone(),
                "LAB",
                sequence,
                jiff::tz::TimeZone::UTC,
                sources,
                sinks,
            )
            .expect("pipeline"),
        );
        for m in [Ok("A"), Err("unparseable"), Ok("C"), Ok("D"), Ok("E")] {
            let outcome = pipeline.ingest(hl7(m)).await.expect("ingest");
            assert_eq!(matches!(outcome, Outcome::Parked { .. }), m.is_err());
        }
        let parked = RecordId::new(2);
        let (seen, reached, release) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        let recorder = Recorder {
            seen: seen.clone(),
            hold: Some("E".into()),
            refuse: "C",
            reached: reached.clone(),
            release: release.clone(),
        };
        let token = CancellationToken::new();
        let health = SinkHealth::new("ehr", "test", "test".into());
        let task = tokio::spawn(run_sink(
            "ehr".into(),
            vec!["lis".into()],
            pipeline.clone(),
            recorder,
            health,
            token.clone(),
        ));
        reached.notified().await;
        // A and D are delivered, C refused, E is being delivered (recorded or not: a slow
        // machine may have written the ledger by now; the outcome below is the same).
        store.retry("ehr", parked).expect("retry");
        release.notify_one();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.status().expect("status").sinks[0].pending > 0 {
            assert!(Instant::now() < deadline, "never recorded: {seen:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        token.cancel();
        task.await.expect("sink");
        let seen = seen.lock().expect("lock").clone();
        let ids: Vec<u64> = seen.iter().map(|id| id.get()).collect();
        assert_eq!(ids, [1, 3, 4, 5, 2], "each entry sent exactly once");
        let status = store.status().expect("status");
        assert_eq!(
            status.sinks[0].parked, 1,
            "the refusal was recorded: {status:?}"
        );
    }
}
