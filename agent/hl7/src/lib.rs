//! # labagent-hl7
//!
//! The HL7 v2 layer of labagent: the ER7 ("pipe and hat") model with parsing and encoding,
//! the ORU^R01 v2.5.1 builder that carries lab results to the EHR, general acknowledgments
//! (ACK) in both directions, message control ids and HL7 timestamps.
//!
//! ## Boundary
//!
//! Pure functions and plain data. No sockets, files, clocks, threads or async runtime: times
//! ([`Hl7Ts`], jiff values) and ids ([`ControlId`], the counter given to
//! [`ControlIdGenerator::generate`]) come in as arguments. MLLP framing on the wire belongs to
//! the `labagent` crate; this crate only strips or adds one envelope ([`strip_mllp`],
//! [`frame_mllp`]). The ASTM → ORU mapping lives in `labagent::translate`: the builder takes
//! neutral structs ([`OruR01`]), not ASTM records. Character-set decoding (MSH-18) happens
//! before [`Message::parse`], which takes UTF-8.
//!
//! ## Formats
//!
//! * **ER7** (HL7 v2.5.1 chapter 2): segments end with CR (§2.5.1); fields, repetitions,
//!   components and subcomponents are separated by the delimiters declared in MSH-1 and MSH-2
//!   (§2.5.4), any choice, not only `|^~\&`. HL7 numbering throughout: MSH-1 *is* the field
//!   separator, so `msh.field(2)` is the encoding characters and `msh.field(10)` the control id.
//! * **Escapes** (§2.7): `\F\ \S\ \T\ \R\ \E\ \Xhh…\ \.br\`, see [`escape`].
//! * **ORU^R01** (chapter 7, §7.3.1): `MSH [PID [PV1]] ORC OBR {NTE} {OBX {NTE}} SPM`, see
//!   [`oru`].
//! * **ACK** (§2.9, §2.14.1): MSH, MSA, optional ERR, see [`ack`].
//! * **TS** (§2.A.22/§2.A.79): `YYYYMMDDHHMMSS+ZZZZ`, see [`time`].
//!
//! ## Invariants
//!
//! * Parsing is bounded ([`ParseLimits`]: bytes, segments, fields) and never panics; every
//!   refusal is a [`ParseError`] naming the segment index, id, field and byte offset.
//! * Parsing keeps everything: unknown segments (Z-segments, TCD, SID, SAC, SPM) and fields
//!   beyond the standard (OBX-29) stay in place, and [`Message::encode`] returns the input bytes
//!   with CR as the only segment separator (LF and CRLF are accepted on input).
//! * Everything the builders write is escaped; values round-trip through builder and parser
//!   unchanged, including delimiters, the escape character, CR and LF.
//! * A [`ControlId`] is 1–20 characters of `[A-Za-z0-9._-]` (MSH-10 is ST 20, §2.14.9.10) and
//!   never needs escaping; generated ids are unique per (prefix, counter).
//! * Builders validate before writing: a [`BuildError`] leaves no partial output.
//!
//! ## Why
//!
//! Analysers and EHRs disagree on details (PROTOCOLS §7 quirk 16: empty OBX-2, `\S\` in values,
//! Z-segments, OBX-29), so the model is lossless and lenient on input and strict on output:
//! what the agent emits validates as ORU_R01 v2.5.1 (`shared/tools/validate_oru.py`), and what
//! it receives is forwarded byte for byte.

#![deny(missing_docs)]

pub mod ack;
pub mod control_id;
pub mod escape;
pub mod message;
pub mod oru;
pub mod time;
pub mod types;
pub mod writer;

pub use ack::{
    Ack, AckClass, AckCode, AckDefaults, AckError, AckMode, AckParams, ErrorDetail, ErrorLocation,
    Hl7ErrorCode, ReportedError, Severity, build_ack, build_ack_unparsed, build_ack_with_code,
    parse_ack,
};
pub use control_id::{ControlId, ControlIdError, ControlIdGenerator};
pub use escape::{DelimiterError, Delimiters};
pub use message::{
    Component, Field, Message, MessageType, ParseError, ParseLimits, Repetition, Segment,
    Subcomponent, frame_mllp, strip_mllp,
};
pub use oru::{
    BuildError, Comparator, MshFields, Observation, ObservationValue, Order, OrderStatus, OruR01,
    Patient, PatientClass, PatientId, PersonName, ResultStatus, Sex, SnSeparator, Specimen,
    SpecimenRole, StructuredNumeric, Visit,
};
pub use time::{Hl7Ts, TimeError, astm_local_to_hl7, astm_local_to_hl7_in, astm_local_to_zoned};
pub use types::{AckType, Coded, Cwe, Ei, Hd, ProcessingId};
pub use writer::Er7Writer;
