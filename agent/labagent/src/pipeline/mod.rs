//! The ingest path: translate, assign MSH-10, append and fsync in the store, then tell the sinks.
//!
//! Records are made durable through the [`committer`], which group-commits whatever the sources
//! hand it while it syncs. ASTM translation (CPU work, and the control-id sequence writes a file
//! now and then) and parking run as blocking code ([`crate::blocking::run`]); an HL7 message
//! needs neither and goes straight to the committer. A message that cannot be parsed or
//! translated is stored raw and parked for every sink that takes its source, with the reason, so
//! nothing is silently dropped and an operator can see it in `labagent queue`.

pub mod committer;
pub mod sequence;

use crate::ingest::{Inbound, Ingest, IngestError, Outcome, Payload};
use crate::translate::{self, Context, Mapping};
use committer::{Committer, OwnedRecord};
use labagent_astm::charset::Charset;
use labagent_astm::record::parse_message;
use labagent_hl7::control_id::{ControlId, ControlIdGenerator};
use labagent_hl7::time::Hl7Ts;
use labagent_store::{Kind, NewRecord, Store};
use sequence::Sequence;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// What the pipeline needs to know about a source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// How its ASTM messages are translated.
    pub mapping: Mapping,
    /// Its character set.
    pub charset: Charset,
}

/// A sink as the pipeline sees it: its name and the sources it takes.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// The sink's name (its store cursor).
    pub name: String,
    /// Source names it delivers.
    pub sources: Vec<String>,
}

/// Shared state of the ingest path.
pub struct Pipeline {
    store: Arc<Store>,
    sources: RwLock<HashMap<String, SourceSpec>>,
    sinks: RwLock<Vec<SinkSpec>>,
    tz: jiff::tz::TimeZone,
    ids: ControlIdGenerator,
    sequence: Mutex<Sequence>,
    /// Held while a parked record is appended and parked, and by sinks while they fetch their
    /// next entry, so no sink can pick up a record that is about to be parked.
    pub catalog: Mutex<()>,
    /// Woken after every commit; sinks wait on it when their queue is empty.
    pub committed: Arc<Notify>,
    /// Time from handing records to the committer until they are durable.
    pub commit_latency: Arc<crate::health::CommitLatency>,
    committer: Committer,
}

/// A message ready for the store: records to commit, or raw bytes to park with a reason.
enum Prepared {
    Commit(Vec<OwnedRecord>),
    Park {
        payload: Vec<u8>,
        kind: Kind,
        reason: String,
    },
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline over an open store. `agent_id` prefixes every MSH-10; the counter lives in
    /// `sequence`.
    pub fn new(
        store: Arc<Store>,
        agent_id: &str,
        sequence: Sequence,
        tz: jiff::tz::TimeZone,
        sources: HashMap<String, SourceSpec>,
        sinks: Vec<SinkSpec>,
    ) -> Result<Pipeline, String> {
        let ids = ControlIdGenerator::new(agent_id).map_err(|e| format!("agent id: {e}"))?;
        let committed = Arc::new(Notify::new());
        let commit_latency = Arc::<crate::health::CommitLatency>::default();
        let committer = Committer::start(store.clone(), committed.clone(), commit_latency.clone())
            .map_err(|e| format!("cannot start the commit thread: {e}"))?;
        Ok(Pipeline {
            store,
            sources: RwLock::new(sources),
            sinks: RwLock::new(sinks),
            tz,
            ids,
            sequence: Mutex::new(sequence),
            catalog: Mutex::new(()),
            committed,
            commit_latency,
            committer,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Replaces the source mappings and sink filters (configuration reload).
    pub fn update_specs(&self, sources: HashMap<String, SourceSpec>, sinks: Vec<SinkSpec>) {
        if let Ok(mut s) = self.sources.write() {
            *s = sources;
        }
        if let Ok(mut s) = self.sinks.write() {
            *s = sinks;
        }
    }

    /// How `source`'s ASTM is translated (the default mapping for a source no longer
    /// configured).
    fn spec(&self, source: &str) -> SourceSpec {
        self.sources
            .read()
            .ok()
            .and_then(|s| s.get(source).cloned())
            .unwrap_or_else(|| SourceSpec {
                mapping: Mapping::default_for(source),
                charset: Charset::Latin1,
            })
    }

    /// Names of the sinks that deliver messages of `source`.
    fn sinks_for(&self, source: &str) -> Vec<String> {
        self.sinks
            .read()
            .map(|sinks| {
                sinks
                    .iter()
                    .filter(|s| s.sources.iter().any(|n| n == source))
                    .map(|s| s.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn next_control_id(&self) -> Result<ControlId, IngestError> {
        let mut seq = self
            .sequence
            .lock()
            .map_err(|_| IngestError::Io("control id sequence poisoned".into()))?;
        let n = seq
            .take()
            .map_err(|e| IngestError::Io(format!("control id sequence: {e}")))?;
        Ok(self.ids.generate(n))
    }

    /// Translates a stored raw ASTM record again (an operator retried it, perhaps after fixing
    /// the mapping). Control ids are derived from the record id, in a counter range the
    /// sequence never reaches (from 2^50), so every attempt yields the same MSH-10s.
    pub fn retranslate(
        &self,
        entry: &labagent_store::Entry,
    ) -> Result<Vec<(String, String)>, String> {
        let spec = self.spec(&entry.source);
        let message = parse_message(&entry.payload, spec.charset).map_err(|e| e.to_string())?;
        let now = jiff::Zoned::now().with_time_zone(self.tz.clone());
        let ctx = Context {
            tz: &self.tz,
            now: Hl7Ts::from_zoned(&now).map_err(|e| e.to_string())?,
        };
        let base = (1u64 << 50) + entry.id.get().saturating_mul(64);
        let mut n = 0;
        let orus = translate::translate(&message, &spec.mapping, &ctx, &mut || {
            n += 1;
            self.ids.generate(base + n)
        })
        .map_err(|e| e.to_string())?;
        orus.iter()
            .map(|o| {
                o.encode()
                    .map(|text| (o.msh.control_id.as_str().to_string(), text))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    /// Translates one ASTM message into records to commit, or says why it must be parked.
    /// Blocking: translation is CPU work and the control-id sequence writes a file now and then.
    fn prepare_astm(
        &self,
        source: &Arc<str>,
        text: Vec<u8>,
        received_ms: i64,
    ) -> Result<Prepared, IngestError> {
        let park = |text: Vec<u8>, reason: String| Prepared::Park {
            payload: text,
            kind: Kind::RawAstm,
            reason,
        };
        let spec = self.spec(source);
        let message = match parse_message(&text, spec.charset) {
            Ok(m) => m,
            Err(e) => return Ok(park(text, e.to_string())),
        };
        let now = jiff::Zoned::now().with_time_zone(self.tz.clone());
        let ctx = Context {
            tz: &self.tz,
            now: Hl7Ts::from_zoned(&now).map_err(|e| IngestError::Io(e.to_string()))?,
        };
        let mut id_error = None;
        let result = translate::translate(&message, &spec.mapping, &ctx, &mut || {
            match self.next_control_id() {
                Ok(id) => id,
                Err(e) => {
                    id_error = Some(e);
                    // Never used: the error below aborts the commit.
                    self.ids.generate(0)
                }
            }
        });
        if let Some(e) = id_error {
            return Err(e);
        }
        let orus = match result {
            Ok(orus) => orus,
            Err(e) => return Ok(park(text, e.to_string())),
        };
        let mut records = Vec::with_capacity(orus.len());
        for oru in &orus {
            match oru.encode() {
                Ok(encoded) => records.push(OwnedRecord {
                    control_id: oru.msh.control_id.as_str().to_string(),
                    source: source.clone(),
                    received_ms,
                    kind: Kind::Oru,
                    payload: encoded.into_bytes(),
                }),
                Err(e) => return Ok(park(text, e.to_string())),
            }
        }
        Ok(Prepared::Commit(records))
    }

    /// An HL7 message is stored as received, under its own MSH-10.
    fn prepare_hl7(
        source: &Arc<str>,
        bytes: Vec<u8>,
        control_id: Result<String, String>,
        received_ms: i64,
    ) -> Prepared {
        match control_id {
            Ok(control_id) => Prepared::Commit(vec![OwnedRecord {
                control_id,
                source: source.clone(),
                received_ms,
                kind: Kind::RawHl7,
                payload: bytes,
            }]),
            Err(reason) => Prepared::Park {
                payload: bytes,
                kind: Kind::RawHl7,
                reason,
            },
        }
    }

    /// Stores a message raw and parks it for every sink of its source, with `reason`.
    fn park_raw(
        &self,
        source: &str,
        payload: &[u8],
        kind: Kind,
        reason: &str,
        received_ms: i64,
    ) -> Result<Outcome, IngestError> {
        let _guard = self
            .catalog
            .lock()
            .map_err(|_| IngestError::Io("catalog lock poisoned".into()))?;
        let id = self
            .store
            .append(&NewRecord {
                control_id: "-",
                source,
                received_ms,
                kind,
                payload,
            })
            .map_err(store_error)?;
        let reason = format!("not translatable: {reason}");
        for sink in self.sinks_for(source) {
            self.store
                .park(&sink, id, &reason, unix_ms(SystemTime::now()))
                .map_err(store_error)?;
        }
        tracing::warn!(%source, record = %id, %reason, "message parked");
        Ok(Outcome::Parked { reason })
    }
}

fn store_error(e: labagent_store::Error) -> IngestError {
    match e {
        labagent_store::Error::Full { .. } => IngestError::Full,
        other => IngestError::Io(other.to_string()),
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Ingest for Arc<Pipeline> {
    async fn ingest(&self, inbound: Inbound) -> Result<Outcome, IngestError> {
        let received_ms = unix_ms(inbound.received);
        let source = inbound.source;
        let prepared = match inbound.payload {
            Payload::Hl7 { bytes, control_id } => {
                Pipeline::prepare_hl7(&source, bytes, control_id, received_ms)
            }
            Payload::Astm { text, .. } => {
                let (this, source) = (self.clone(), source.clone());
                crate::blocking::run(move || this.prepare_astm(&source, text, received_ms))
                    .await
                    .map_err(|e| IngestError::Io(format!("ingest: {e}")))??
            }
        };
        match prepared {
            Prepared::Commit(records) => {
                let control_ids = records.iter().map(|r| r.control_id.clone()).collect();
                self.committer.commit(records).await?;
                Ok(Outcome::Committed { control_ids })
            }
            Prepared::Park {
                payload,
                kind,
                reason,
            } => {
                let this = self.clone();
                crate::blocking::run(move || {
                    this.park_raw(&source, &payload, kind, &reason, received_ms)
                })
                .await
                .map_err(|e| IngestError::Io(format!("ingest: {e}")))?
            }
        }
    }
}
