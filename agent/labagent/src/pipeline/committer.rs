//! The committer: one thread that makes the ingest path's records durable.
//!
//! A source must not acknowledge before its message is `fdatasync`ed, but the wait must not
//! hold a runtime worker. Running each commit in place on the worker (`block_in_place`) hands
//! the worker's other tasks to a fresh thread per message; with 8 senders that meant about 15
//! context switches per message on a 2-core box. Here a connection task sends its records to
//! this thread and awaits the answer: one wake-up each way. Whatever arrives while the thread
//! syncs goes into the next group commit together ([`Store::append_units`]), one `fdatasync`
//! for all of it, and no thread is parked per waiting message.
//!
//! The exception is a lone message on a fast disk: when nothing else is being committed, the
//! last commit took under [`IN_PLACE_MAX`], and the runtime has more than one worker, the
//! caller commits in place on its own thread, blocking it for the commit (usually one write
//! and one `fdatasync`; now and then a segment rotation). Only one caller at a time can be in
//! there, so other workers serve everything else meanwhile, and the round trip of a single
//! sender, the common case beside an analyser, costs no thread wake-up at all (the e2e bench's
//! 1-sender rate rose by about a tenth with it). On a slow disk (an SD card's fsync can take
//! tens of milliseconds) the wake-ups are noise next to the sync and a blocked worker would
//! delay the rest, so every commit goes to the thread.

use crate::health::CommitLatency;
use crate::ingest::IngestError;
use labagent_store::{Kind, NewRecord, RecordId, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// A commit that took longer than this (in place or on the thread) sends the next lone
/// message to the thread instead of blocking a runtime worker for it.
pub const IN_PLACE_MAX: Duration = Duration::from_millis(2);

/// A record to commit, owned so it can cross to the committer thread.
#[derive(Debug, Clone)]
pub struct OwnedRecord {
    /// MSH-10.
    pub control_id: String,
    /// The source's name.
    pub source: Arc<str>,
    /// When it was received, unix ms.
    pub received_ms: i64,
    /// What the payload is.
    pub kind: Kind,
    /// The message bytes.
    pub payload: Vec<u8>,
}

impl OwnedRecord {
    fn as_new(&self) -> NewRecord<'_> {
        NewRecord {
            control_id: &self.control_id,
            source: &self.source,
            received_ms: self.received_ms,
            kind: self.kind,
            payload: &self.payload,
        }
    }
}

/// One unit to commit (all its records or none) and where its result goes.
struct Job {
    records: Vec<OwnedRecord>,
    submitted: Instant,
    reply: oneshot::Sender<Result<Vec<RecordId>, labagent_store::Error>>,
}

/// Handle to the committer thread; dropping it stops the thread once queued units are done.
pub struct Committer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What callers and the thread share.
struct Shared {
    store: Arc<Store>,
    committed: Arc<Notify>,
    latency: Arc<CommitLatency>,
    /// Units submitted and not yet answered (in place or by the thread).
    in_flight: AtomicUsize,
    /// Groups the thread has committed, and the units in them.
    groups: AtomicU64,
    units: AtomicU64,
    /// How long the last commit took on the disk, microseconds.
    last_us: AtomicU64,
}

impl Shared {
    fn record_commit(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_us.store(us, Ordering::Relaxed);
    }

    fn disk_is_fast(&self) -> bool {
        self.last_us.load(Ordering::Relaxed) < IN_PLACE_MAX.as_micros() as u64
    }
}

/// Takes back an in-place commit's count in [`Shared::in_flight`], even if the store panics.
struct InPlace<'a>(&'a AtomicUsize);

impl Drop for InPlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Starts the thread. After each group it records every unit's wait in `latency` (from
    /// submission to durable) and wakes `committed` (the sinks).
    pub fn start(
        store: Arc<Store>,
        committed: Arc<Notify>,
        latency: Arc<CommitLatency>,
    ) -> std::io::Result<Committer> {
        let shared = Arc::new(Shared {
            store,
            committed,
            latency,
            in_flight: AtomicUsize::new(0),
            groups: AtomicU64::new(0),
            units: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("labagent-commit".into())
                .spawn(move || serve(&shared, &rx))?
        };
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// How many groups the thread has committed (each one write and one `fdatasync` for every
    /// unit queued while the previous group synced), and how many units were in them.
    pub fn groups(&self) -> (u64, u64) {
        (
            self.shared.groups.load(Ordering::Relaxed),
            self.shared.units.load(Ordering::Relaxed),
        )
    }

    /// Commits `records` as one unit; returns their ids once they are durable.
    pub async fn commit(&self, records: Vec<OwnedRecord>) -> Result<Vec<RecordId>, IngestError> {
        let shared = &self.shared;
        let alone = shared.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        if alone && shared.disk_is_fast() && may_block_here() {
            // See the module documentation.
            let _count = InPlace(&shared.in_flight);
            let started = Instant::now();
            let new: Vec<NewRecord<'_>> = records.iter().map(OwnedRecord::as_new).collect();
            let result = shared.store.append_batch(&new);
            let took = started.elapsed();
            if touched_disk(&result) {
                // A refusal (store full, record too large) comes at once and says nothing
                // about the disk; an I/O error after a slow sync does.
                shared.record_commit(took);
            }
            if result.is_ok() {
                shared.latency.observe(took);
                shared.committed.notify_waiters();
            }
            return result.map_err(super::store_error);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            records,
            submitted: Instant::now(),
            reply,
        };
        let stopped = || IngestError::Io("the committer has stopped".into());
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        if !matches!(sent, Some(Ok(()))) {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(stopped());
        }
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(super::store_error)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            // The store lock is released only when the thread's handle on the store is gone.
            let _ = t.join();
        }
    }
}

/// Whether a commit's outcome came from the disk (written, or an I/O error), not from a
/// refusal before any write (store full, record too large).
fn touched_disk<T>(result: &Result<T, labagent_store::Error>) -> bool {
    matches!(result, Ok(_) | Err(labagent_store::Error::Io { .. }))
}

/// Whether this thread may block for a commit: a worker of a multi-thread runtime with another
/// worker to run the rest meanwhile (or no runtime at all).
fn may_block_here() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current().map_or(true, |h| {
        h.runtime_flavor() == RuntimeFlavor::MultiThread && h.metrics().num_workers() > 1
    })
}

fn serve(shared: &Shared, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let records: Vec<Vec<NewRecord<'_>>> = jobs
            .iter()
            .map(|j| j.records.iter().map(OwnedRecord::as_new).collect())
            .collect();
        let units: Vec<&[NewRecord<'_>]> = records.iter().map(Vec::as_slice).collect();
        let started = Instant::now();
        let results = shared.store.append_units(&units);
        if results.iter().any(touched_disk) {
            shared.record_commit(started.elapsed());
        }
        shared.groups.fetch_add(1, Ordering::Relaxed);
        shared.units.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        drop(units);
        drop(records);
        shared.in_flight.fetch_sub(jobs.len(), Ordering::AcqRel);
        let mut any = false;
        for (job, result) in jobs.into_iter().zip(results) {
            if result.is_ok() {
                // From submission to durable: what the source's acknowledgement waited for.
                shared.latency.observe(job.submitted.elapsed());
                any = true;
            }
            // The caller may be gone (its connection closed): the records stay committed.
            let _ = job.reply.send(result);
        }
        if any {
            shared.committed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use labagent_store::Options;

    fn record(control_id: String, payload: &[u8]) -> OwnedRecord {
        OwnedRecord {
            control_id,
            source: Arc::from("lis"),
            received_ms: 1,
            kind: Kind::RawHl7,
            payload: payload.to_vec(),
        }
    }

    fn open(dir: &std::path::Path, max_bytes: Option<u64>) -> Arc<Store> {
        let mut o = Options::new(vec!["ehr".to_string()]);
        if let Some(m) = max_bytes {
            o.max_bytes = m;
            o.segment_bytes = m;
            o.preallocate_bytes = 0;
        }
        Arc::new(Store::open(dir, o).expect("open").0)
    }

    #[test]
    fn concurrent_commits_are_grouped_and_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), None);
        let committed = Arc::new(Notify::new());
        let latency = Arc::new(CommitLatency::default());
        let committer =
            Arc::new(Committer::start(store.clone(), committed, latency.clone()).expect("start"));
        const TASKS: usize = 32;
        const PER: usize = 20;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let per_task: Vec<Vec<u64>> = rt.block_on(async {
            let handles: Vec<_> = (0..TASKS)
                .map(|t| {
                    let c = committer.clone();
                    tokio::spawn(async move {
                        let mut ids = Vec::new();
                        for i in 0..PER {
                            let unit = vec![
                                record(format!("T{t}-{i}a"), b"one"),
                                record(format!("T{t}-{i}b"), b"two"),
                            ];
                            let got = c.commit(unit).await.expect("commit");
                            assert_eq!(got.len(), 2);
                            assert_eq!(got[1].get(), got[0].get() + 1, "a unit stays whole");
                            ids.extend(got.iter().map(|id| id.get()));
                        }
                        ids
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("task"));
            }
            out
        });
        let commits = (TASKS * PER) as u64;
        let mut all: Vec<u64> = per_task.concat();
        all.sort_unstable();
        assert_eq!(all, (1..=2 * commits).collect::<Vec<_>>());
        assert_eq!(latency.snapshot().count, commits);
        let (groups, units) = committer.groups();
        eprintln!("{commits} commits: {units} by the thread in {groups} groups");
        assert!(
            units > groups,
            "the thread committed {units} units in {groups} groups: nothing was grouped"
        );
        // Dropping the committer joins its thread, so the store can be reopened at once.
        drop(committer);
        drop(store);
        let store = open(dir.path(), None);
        let entries = store.peek("ehr", usize::MAX).expect("peek");
        assert_eq!(entries.len() as u64, 2 * commits);
        for e in &entries {
            let want: &[u8] = if e.control_id.ends_with('a') {
                b"one"
            } else {
                b"two"
            };
            assert_eq!(e.payload, want, "{}", e.control_id);
        }
    }

    /// On `rt`: a first commit into a 4 KiB store wakes the sinks and is committed the way
    /// `groups` (the thread's (groups, units) after it) says; then the store fills, and a
    /// refused commit wakes no sink.
    fn lone_commit_then_full(rt: &tokio::runtime::Runtime, groups: (u64, u64), why: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), Some(4096));
        let committed = Arc::new(Notify::new());
        let latency = Arc::new(CommitLatency::default());
        let committer =
            Committer::start(store.clone(), committed.clone(), latency.clone()).expect("start");
        rt.block_on(async {
            let woken = committed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let ids = committer
                .commit(vec![record("M1".into(), b"x")])
                .await
                .expect("commit");
            assert_eq!(ids[0].get(), 1);
            assert_eq!(committer.groups(), groups, "{why}");
            tokio::time::timeout(Duration::from_secs(1), woken)
                .await
                .expect("the sinks were woken");
            assert_eq!(fill(&committer).await, IngestError::Full);
            let woken = committed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let refused = committer
                .commit(vec![record("X".into(), &[b'x'; 500])])
                .await;
            assert_eq!(refused, Err(IngestError::Full));
            assert!(
                tokio::time::timeout(Duration::from_millis(100), woken)
                    .await
                    .is_err(),
                "a commit that stored nothing woke the sinks"
            );
        });
        committer.shared.record_commit(Duration::from_micros(1));
        let refused = rt.block_on(committer.commit(vec![record("Y".into(), &[b'x'; 500])]));
        assert_eq!(refused, Err(IngestError::Full));
        assert_eq!(
            committer.shared.last_us.load(Ordering::Relaxed),
            1,
            "a full store's quick refusal is not a disk timing"
        );
        let stored = store.status().expect("status").sinks[0].pending;
        assert_eq!(
            latency.snapshot().count,
            stored,
            "commit latency counts the commits that stored something, not the refusals"
        );
    }

    #[test]
    fn a_lone_commit_runs_in_place_and_a_full_store_is_back_pressure() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        lone_commit_then_full(&rt, (0, 0), "nothing else in flight: committed in place");
    }

    #[test]
    fn a_single_thread_runtime_commits_on_the_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        lone_commit_then_full(
            &rt,
            (1, 1),
            "a runtime with one thread never blocks it: the commit went to the thread",
        );
    }

    #[test]
    fn a_slow_disk_sends_lone_commits_to_the_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), None);
        let committer = Committer::start(store, Arc::default(), Arc::default()).expect("start");
        committer.shared.record_commit(IN_PLACE_MAX * 3);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        rt.block_on(async {
            committer
                .commit(vec![record("M1".into(), b"x")])
                .await
                .expect("commit");
        });
        assert_eq!(committer.groups(), (1, 1), "the commit went to the thread");
    }

    /// Commits 500-byte units until the store refuses one; that refusal.
    async fn fill(committer: &Committer) -> IngestError {
        for i in 0..100 {
            if let Err(e) = committer
                .commit(vec![record(format!("F{i}"), &[b'x'; 500])])
                .await
            {
                return e;
            }
        }
        panic!("a 4 KiB store took 50 KB");
    }
}
