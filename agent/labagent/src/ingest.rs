//! The seam between sources and the store: a source hands over what it received and learns
//! whether it is durable, so it can acknowledge (ASTM ACK, MLLP AA/CA) or refuse (NAK, AE/CE).

use labagent_astm::link::MessageEnd;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

/// What a source received, before translation.
#[derive(Clone)]
pub struct Inbound {
    /// The source's configured name.
    pub source: Arc<str>,
    /// The bytes, by protocol.
    pub payload: Payload,
    /// When the last byte arrived.
    pub received: SystemTime,
}

impl std::fmt::Debug for Inbound {
    // Payloads are patient data: Debug shows sizes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, len) = match &self.payload {
            Payload::Astm { text, .. } => ("astm", text.len()),
            Payload::Hl7 { bytes, .. } => ("hl7", bytes.len()),
        };
        f.debug_struct("Inbound")
            .field("source", &self.source)
            .field("kind", &kind)
            .field("len", &len)
            .finish()
    }
}

/// Received bytes by protocol.
#[derive(Clone)]
pub enum Payload {
    /// One ASTM message, H..L, records separated by CR.
    Astm {
        /// The message text.
        text: Vec<u8>,
        /// How it ended (an L record, or EOT without one).
        end: MessageEnd,
    },
    /// One HL7 v2 message (ER7), MLLP framing removed.
    Hl7 {
        /// The message bytes.
        bytes: Vec<u8>,
        /// Its MSH-10, or why it could not be parsed: the source has parsed it already (to
        /// build the ACK), so the commit path does not parse it again.
        control_id: Result<String, String>,
    },
}

/// What became of an inbound message. Both outcomes are durable, so both are acknowledged
/// upstream: resending a message that cannot be translated would not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored for delivery; the MSH-10 control ids assigned (one per ORU produced).
    Committed {
        /// Control ids, in order.
        control_ids: Vec<String>,
    },
    /// Stored as parked (dead letter) with its reason, for an operator to look at.
    Parked {
        /// Why it could not be translated or accepted.
        reason: String,
    },
}

/// Why an inbound message could not be stored. The source refuses it (NAK / AE), so the sender
/// keeps it and retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The store is full: back-pressure, nothing is dropped.
    #[error("store full")]
    Full,
    /// Writing or syncing failed.
    #[error("store write failed: {0}")]
    Io(String),
}

/// Commits inbound messages durably. Implemented by the pipeline over the store, and by test
/// doubles.
pub trait Ingest: Send + Sync + 'static {
    /// Translates (where needed), stores and fsyncs; returns only once durable or refused.
    fn ingest(&self, inbound: Inbound)
    -> impl Future<Output = Result<Outcome, IngestError>> + Send;
}
