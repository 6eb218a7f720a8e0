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
//! The exception is a lone message: when nothing else is being committed and the runtime has
//! more than one worker, the caller commits in place on its own thread, blocking it for one
//! write and `fdatasync`. Only one caller at a time can be in there, so at most one worker is
//! ever blocked while the others serve everything else, and the round trip of a single sender,
//! the common case beside an analyser, costs no thread wake-up at all (the e2e bench's 1-sender
//! rate rose by about a tenth with it).

use crate::health::CommitLatency;
use crate::ingest::IngestError;
use labagent_store::{Kind, NewRecord, RecordId, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{Notify, oneshot};

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
    /// Groups the thread has committed.
    groups: AtomicU64,
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
    /// unit queued while the previous group synced).
    pub fn groups(&self) -> u64 {
        self.shared.groups.load(Ordering::Relaxed)
    }

    /// Commits `records` as one unit; returns their ids once they are durable.
    pub async fn commit(&self, records: Vec<OwnedRecord>) -> Result<Vec<RecordId>, IngestError> {
        let shared = &self.shared;
        if shared.in_flight.fetch_add(1, Ordering::AcqRel) == 0 && may_block_here() {
            // Nothing else in flight: commit in place (see the module documentation).
            let started = Instant::now();
            let new: Vec<NewRecord<'_>> = records.iter().map(OwnedRecord::as_new).collect();
            let result = shared.store.append_batch(&new);
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            shared.latency.observe(started.elapsed());
            if result.is_ok() {
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
        let results = shared.store.append_units(&units);
        shared.groups.fetch_add(1, Ordering::Relaxed);
        drop(units);
        drop(records);
        shared.in_flight.fetch_sub(jobs.len(), Ordering::AcqRel);
        let mut any = false;
        for (job, result) in jobs.into_iter().zip(results) {
            shared.latency.observe(job.submitted.elapsed());
            any |= result.is_ok();
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
    fn concurrent_commits_are_grouped_durable_and_in_order_per_caller() {
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
        for ids in &per_task {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids rise per caller");
        }
        let mut all: Vec<u64> = per_task.concat();
        all.sort_unstable();
        assert_eq!(all, (1..=2 * commits).collect::<Vec<_>>());
        assert_eq!(latency.snapshot().count, commits);
        let groups = committer.groups();
        eprintln!("{commits} commits, {groups} groups by the thread");
        assert!(
            groups < commits,
            "{groups} groups for {commits} commits: nothing was grouped"
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

    #[test]
    fn a_lone_commit_runs_in_place_and_a_full_store_is_back_pressure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), Some(4096));
        let committed = Arc::new(Notify::new());
        let committer =
            Committer::start(store.clone(), committed.clone(), Arc::default()).expect("start");
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let ids = single
            .block_on(committer.commit(vec![record("M1".into(), b"x")]))
            .expect("commit");
        assert_eq!(ids[0].get(), 1);
        assert_eq!(
            committer.groups(),
            1,
            "a runtime with one thread never blocks it: the commit went to the thread"
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let woken = committed.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let ids = committer
                .commit(vec![record("M2".into(), b"x")])
                .await
                .expect("commit");
            assert_eq!(ids[0].get(), 2);
            assert_eq!(
                committer.groups(),
                1,
                "nothing else in flight: committed in place"
            );
            tokio::time::timeout(std::time::Duration::from_secs(1), woken)
                .await
                .expect("the sinks were woken");
            let mut full = None;
            for i in 0..100 {
                match committer
                    .commit(vec![record(format!("F{i}"), &[b'x'; 500])])
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        full = Some(e);
                        break;
                    }
                }
            }
            assert_eq!(full, Some(IngestError::Full));
        });
    }
}
