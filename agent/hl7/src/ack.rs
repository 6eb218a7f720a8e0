//! General acknowledgments (ACK, HL7 v2.5.1 §2.9 and §2.14.1): building them for inbound
//! messages and reading the ones an EHR returns.
//!
//! **Building** (the agent as MLLP server, after the inbound message is durably stored):
//! MSH-3..6 are the inbound MSH-5, MSH-6, MSH-3, MSH-4 (sender and receiver swapped); MSH-7 and
//! MSH-10 are supplied by the caller; MSH-9 is `ACK^<inbound MSH-9.2>^ACK`; MSH-11 and MSH-12
//! echo the inbound values; MSA-2 echoes the inbound MSH-10 byte for byte. The ACK is written in
//! the inbound message's own delimiters, so every echoed field is copied unchanged.
//!
//! **Which MSA-1 code** (§2.9.2, §2.9.3, table 0008):
//! * original mode (MSH-15 and MSH-16 both empty): `AA` / `AE` / `AR`;
//! * enhanced mode (either valued): `CA` / `CE` / `CR` when MSH-15 asks for an accept
//!   acknowledgment for this outcome (`AL`; `ER` for errors; `SU` for success). When MSH-15 does
//!   not ask for one (`NE`, or `ER` on success), the single ACK the agent sends is the
//!   application acknowledgment MSH-16 asks for, so it carries `AA` / `AE` / `AR`. This is why
//!   the BioSystems BA400 (`ER|AL`) got `AA` from its host (corpus `biosystems_ba400_1_ack.hl7`).
//!   [`build_ack_with_code`] forces a code when a receiver wants otherwise.
//!
//! **Reading** ([`parse_ack`]): MSA-1, MSA-2, MSA-3 and the first ERR, classified for the sink's
//! cursor (PROTOCOLS §5): accepted (`AA`/`CA`: advance), error (`AE`/`CE`: park, do not loop),
//! reject (`AR`/`CR`: retry with backoff, same bytes). [`Ack::acknowledges`] guards against an
//! ACK for another message (delivery rule 2: advance only when MSA-2 equals the MSH-10 sent).

use crate::control_id::ControlId;
use crate::escape::Delimiters;
use crate::message::{Message, ParseError, strip_mllp};
use crate::time::Hl7Ts;
use crate::types::{AckType, Hd, ProcessingId};
use crate::writer::Er7Writer;

/// MSA-1 acknowledgment code (table 0008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: original mode / application acknowledgment: accept.
    AA,
    /// `AE`: application error.
    AE,
    /// `AR`: application reject.
    AR,
    /// `CA`: enhanced mode accept acknowledgment: commit accept.
    CA,
    /// `CE`: commit error.
    CE,
    /// `CR`: commit reject.
    CR,
}

impl AckCode {
    /// The table 0008 code.
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    /// Reads a table 0008 code (exact, upper case).
    pub fn from_code(s: &str) -> Option<AckCode> {
        Some(match s {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return None,
        })
    }

    /// What the code means for the sender.
    pub fn class(self) -> AckClass {
        match self {
            AckCode::AA | AckCode::CA => AckClass::Accepted,
            AckCode::AE | AckCode::CE => AckClass::Error,
            AckCode::AR | AckCode::CR => AckClass::Reject,
        }
    }
}

/// The outcome an ACK reports, independent of mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckClass {
    /// `AA`/`CA`: stored by the receiver; the sender advances its cursor.
    Accepted,
    /// `AE`/`CE`: the content was refused; the sender parks the message (no loop).
    Error,
    /// `AR`/`CR`: the receiver could not take it now (or does not support MSH-9/11/12); the
    /// sender retries the same bytes with backoff.
    Reject,
}

/// Acknowledgment mode of an inbound message (§2.9.2 original, §2.9.3 enhanced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 both empty.
    Original,
    /// MSH-15 or MSH-16 valued (`None`: empty; an unknown MSH-15 code reads as `AL`, an
    /// unknown MSH-16 code as `None`).
    Enhanced {
        /// MSH-15.
        accept: Option<AckType>,
        /// MSH-16.
        application: Option<AckType>,
    },
}

impl AckMode {
    /// Reads MSH-15 and MSH-16.
    pub fn of(msg: &Message) -> AckMode {
        Self::from_fields(&msg.accept_ack_type(), &msg.application_ack_type())
    }

    fn from_fields(msh15: &str, msh16: &str) -> AckMode {
        if msh15.is_empty() && msh16.is_empty() {
            AckMode::Original
        } else {
            // A valued but unknown MSH-15 is read as `AL`: answering with an accept ACK is
            // the conservative reading of "the sender wants enhanced mode".
            let accept =
                (!msh15.is_empty()).then(|| AckType::from_code(msh15).unwrap_or(AckType::Always));
            AckMode::Enhanced {
                accept,
                application: AckType::from_code(msh16),
            }
        }
    }

    /// The MSA-1 code for this outcome (see the module docs).
    pub fn code_for(self, class: AckClass) -> AckCode {
        let commit = match self {
            AckMode::Original => false,
            AckMode::Enhanced { accept, .. } => match accept {
                Some(AckType::Always) => true,
                Some(AckType::ErrorOnly) => class != AckClass::Accepted,
                Some(AckType::SuccessOnly) => class == AckClass::Accepted,
                // NE, or MSH-15 empty while MSH-16 is valued: no accept ACK is wanted, so the
                // ACK sent is the application ACK.
                Some(AckType::Never) | None => false,
            },
        };
        match (commit, class) {
            (false, AckClass::Accepted) => AckCode::AA,
            (false, AckClass::Error) => AckCode::AE,
            (false, AckClass::Reject) => AckCode::AR,
            (true, AckClass::Accepted) => AckCode::CA,
            (true, AckClass::Error) => AckCode::CE,
            (true, AckClass::Reject) => AckCode::CR,
        }
    }
}

/// ERR-3 HL7 error code (table 0357).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hl7ErrorCode {
    /// `0` message accepted.
    MessageAccepted,
    /// `100` segment sequence error.
    SegmentSequenceError,
    /// `101` required field missing.
    RequiredFieldMissing,
    /// `102` data type error.
    DataTypeError,
    /// `103` table value not found.
    TableValueNotFound,
    /// `200` unsupported message type.
    UnsupportedMessageType,
    /// `201` unsupported event code.
    UnsupportedEventCode,
    /// `202` unsupported processing id.
    UnsupportedProcessingId,
    /// `203` unsupported version id.
    UnsupportedVersionId,
    /// `204` unknown key identifier.
    UnknownKeyIdentifier,
    /// `205` duplicate key identifier.
    DuplicateKeyIdentifier,
    /// `206` application record locked.
    ApplicationRecordLocked,
    /// `207` application internal error (e.g. the store is full or failed to commit).
    ApplicationInternalError,
}

impl Hl7ErrorCode {
    /// The code and its table 0357 text.
    pub fn code_and_text(self) -> (&'static str, &'static str) {
        match self {
            Hl7ErrorCode::MessageAccepted => ("0", "Message accepted"),
            Hl7ErrorCode::SegmentSequenceError => ("100", "Segment sequence error"),
            Hl7ErrorCode::RequiredFieldMissing => ("101", "Required field missing"),
            Hl7ErrorCode::DataTypeError => ("102", "Data type error"),
            Hl7ErrorCode::TableValueNotFound => ("103", "Table value not found"),
            Hl7ErrorCode::UnsupportedMessageType => ("200", "Unsupported message type"),
            Hl7ErrorCode::UnsupportedEventCode => ("201", "Unsupported event code"),
            Hl7ErrorCode::UnsupportedProcessingId => ("202", "Unsupported processing id"),
            Hl7ErrorCode::UnsupportedVersionId => ("203", "Unsupported version id"),
            Hl7ErrorCode::UnknownKeyIdentifier => ("204", "Unknown key identifier"),
            Hl7ErrorCode::DuplicateKeyIdentifier => ("205", "Duplicate key identifier"),
            Hl7ErrorCode::ApplicationRecordLocked => ("206", "Application record locked"),
            Hl7ErrorCode::ApplicationInternalError => ("207", "Application internal error"),
        }
    }
}

/// ERR-4 severity (table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// `E`: error, the message was not processed as sent.
    Error,
    /// `W`: warning.
    Warning,
    /// `I`: information.
    Information,
}

impl Severity {
    /// The table 0516 code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// ERR-2 error location (ERL, §2.A.27): where in the inbound message the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    /// ERL.1 segment id.
    pub segment_id: String,
    /// ERL.2 segment sequence (1-based occurrence of that id).
    pub sequence: usize,
    /// ERL.3 field position, when known.
    pub field: Option<usize>,
}

/// The content of an ERR segment the agent sends (§2.14.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// ERR-3 HL7 error code.
    pub code: Hl7ErrorCode,
    /// ERR-4 severity.
    pub severity: Severity,
    /// ERR-2 location.
    pub location: Option<ErrorLocation>,
    /// ERR-7 diagnostic information (for the sender's engineers).
    pub diagnostic: Option<String>,
    /// ERR-8 user message.
    pub user_message: Option<String>,
}

impl ErrorDetail {
    /// The ERR content describing why an inbound message could not be parsed.
    pub fn from_parse_error(e: &ParseError) -> ErrorDetail {
        let (code, location) = match e {
            ParseError::InvalidSegmentId { .. } => (Hl7ErrorCode::SegmentSequenceError, None),
            ParseError::Empty | ParseError::MissingMsh { .. } => (
                Hl7ErrorCode::SegmentSequenceError,
                Some(ErrorLocation {
                    segment_id: "MSH".into(),
                    sequence: 1,
                    field: None,
                }),
            ),
            ParseError::InvalidEncodingCharacters { field, .. } => (
                Hl7ErrorCode::DataTypeError,
                Some(ErrorLocation {
                    segment_id: "MSH".into(),
                    sequence: 1,
                    field: Some(usize::from(*field)),
                }),
            ),
            ParseError::InvalidUtf8 { .. } => (Hl7ErrorCode::DataTypeError, None),
            ParseError::TooLarge { .. }
            | ParseError::TooManySegments { .. }
            | ParseError::TooManyFields { .. } => (Hl7ErrorCode::ApplicationInternalError, None),
        };
        ErrorDetail {
            code,
            severity: Severity::Error,
            location,
            diagnostic: Some(e.to_string()),
            user_message: Some("message could not be parsed".into()),
        }
    }
}

/// What the caller supplies for every ACK it builds.
#[derive(Debug, Clone, Copy)]
pub struct AckParams<'a> {
    /// MSH-7 of the ACK.
    pub datetime: &'a Hl7Ts,
    /// MSH-10 of the ACK (a new id, not the inbound one).
    pub control_id: &'a ControlId,
    /// MSA-3 text message (optional; MSA-3 is deprecated in 2.5.1 in favour of ERR, but many
    /// receivers still display it).
    pub text: Option<&'a str>,
    /// ERR segment, for errors and rejects.
    pub error: Option<&'a ErrorDetail>,
}

/// Builds the ACK for a parsed inbound message, choosing MSA-1 by [`AckMode::code_for`].
pub fn build_ack(inbound: &Message, class: AckClass, params: &AckParams<'_>) -> String {
    build_ack_with_code(inbound, AckMode::of(inbound).code_for(class), params)
}

/// Builds the ACK for a parsed inbound message with an explicit MSA-1 code.
pub fn build_ack_with_code(inbound: &Message, code: AckCode, params: &AckParams<'_>) -> String {
    let msh = inbound.msh();
    let echo = InboundHeader {
        sending_application: msh.field(3).raw(),
        sending_facility: msh.field(4).raw(),
        receiving_application: msh.field(5).raw(),
        receiving_facility: msh.field(6).raw(),
        trigger: msh.field(9).component(2).raw(),
        control_id: msh.field(10).raw(),
        processing_id: msh.field(11).raw(),
        version: msh.field(12).component(1).raw(),
        character_set: msh.field(18).raw(),
    };
    write_ack(inbound.delimiters(), &echo, code, params)
}

/// Defaults for an ACK to bytes whose MSH cannot even be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckDefaults {
    /// MSH-3 of the ACK (the agent).
    pub sending_application: Hd,
    /// MSH-4 of the ACK.
    pub sending_facility: Hd,
    /// MSH-11 of the ACK.
    pub processing_id: ProcessingId,
    /// MSH-12 of the ACK.
    pub version: &'static str,
}

impl Default for AckDefaults {
    fn default() -> Self {
        AckDefaults {
            sending_application: Hd::from("labagent"),
            sending_facility: Hd::default(),
            processing_id: ProcessingId::Production,
            version: "2.5.1",
        }
    }
}

/// Builds an ACK for inbound bytes that [`Message::parse`] refused.
///
/// The MSH line is salvaged leniently when it can be (first line starting `MSH` with valid
/// delimiters: the ACK then echoes its fields and MSH-10 as [`build_ack`] would); otherwise the
/// ACK uses `defaults`, `|^~\&`, MSH-9 `ACK` and an empty MSA-2. Use [`AckClass::Error`]
/// (`AE`/`CE`: resending the same bytes cannot help) and
/// [`ErrorDetail::from_parse_error`] for ERR.
pub fn build_ack_unparsed(
    raw: &[u8],
    class: AckClass,
    defaults: &AckDefaults,
    params: &AckParams<'_>,
) -> String {
    let body = strip_mllp(raw);
    let line_end = body
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(body.len());
    let line = String::from_utf8_lossy(&body[..line_end]);
    let lb = line.as_bytes();
    let salvaged = (lb.starts_with(b"MSH") && lb.len() >= 8)
        .then(|| {
            let fs = lb[3];
            let enc_end = lb[4..]
                .iter()
                .position(|&b| b == fs)
                .map_or(lb.len(), |p| p + 4);
            Delimiters::from_bytes(fs, &lb[4..enc_end]).ok()
        })
        .flatten();
    if let Some(d) = salvaged {
        // fields[n] == MSH-n for n >= 2.
        let mut fields: Vec<&str> = vec![""];
        fields.extend(line[3..].split(d.field()));
        let get = |n: usize| fields.get(n).copied().unwrap_or("");
        let comp = |n: usize, c: usize| get(n).split(d.component()).nth(c - 1).unwrap_or("");
        let echo = InboundHeader {
            sending_application: get(3),
            sending_facility: get(4),
            receiving_application: get(5),
            receiving_facility: get(6),
            trigger: comp(9, 2),
            control_id: get(10),
            processing_id: get(11),
            version: comp(12, 1),
            character_set: get(18),
        };
        let mode = AckMode::from_fields(&d.unescape(get(15)), &d.unescape(get(16)));
        return write_ack(&d, &echo, mode.code_for(class), params);
    }
    let d = Delimiters::STANDARD;
    let mut w = Er7Writer::new(String::with_capacity(256), d);
    w.msh().field();
    defaults.sending_application.write(&mut w);
    w.field();
    defaults.sending_facility.write(&mut w);
    w.skip(2).field().raw(params.datetime.as_str());
    w.field().field().raw("ACK");
    w.field().raw(params.control_id.as_str());
    w.field().raw(defaults.processing_id.code());
    w.field().text(defaults.version);
    write_msa_err(
        &mut w,
        AckMode::Original.code_for(class),
        "",
        params,
        defaults.version,
    );
    w.finish()
}

/// Raw (escaped, in the inbound delimiters) inbound MSH fields echoed into an ACK.
struct InboundHeader<'a> {
    sending_application: &'a str,
    sending_facility: &'a str,
    receiving_application: &'a str,
    receiving_facility: &'a str,
    trigger: &'a str,
    control_id: &'a str,
    processing_id: &'a str,
    version: &'a str,
    character_set: &'a str,
}

fn write_ack(d: &Delimiters, h: &InboundHeader<'_>, code: AckCode, p: &AckParams<'_>) -> String {
    let mut w = Er7Writer::new(String::with_capacity(256), *d);
    // Raw copies: the fields come from a message in these same delimiters.
    w.msh().field().raw(h.receiving_application);
    w.field().raw(h.receiving_facility);
    w.field().raw(h.sending_application);
    w.field().raw(h.sending_facility);
    w.field().raw(p.datetime.as_str());
    w.field().field().raw("ACK").component().raw(h.trigger);
    w.component().raw("ACK");
    w.field().raw(p.control_id.as_str());
    w.field().raw(if h.processing_id.is_empty() {
        "P"
    } else {
        h.processing_id
    });
    let version = if h.version.is_empty() {
        "2.5.1"
    } else {
        h.version
    };
    w.field().raw(version);
    if !h.character_set.is_empty() {
        w.skip(5).field().raw(h.character_set);
    }
    write_msa_err(&mut w, code, h.control_id, p, version);
    w.finish()
}

fn write_msa_err(
    w: &mut Er7Writer,
    code: AckCode,
    acked_raw: &str,
    p: &AckParams<'_>,
    version: &str,
) {
    w.segment("MSA").field().raw(code.as_str());
    w.field().raw(acked_raw);
    if let Some(t) = p.text {
        w.field_text(t);
    }
    let Some(e) = p.error else { return };
    let (c, text) = e.code.code_and_text();
    w.segment("ERR").field();
    // ERR-1 (ELD) is how versions before 2.5 carry the error; 2.5+ keep it for backward
    // compatibility only (§2.14.5.1), so it is written for older receivers alone.
    let pre_25 = matches!(version, "2.1" | "2.2" | "2.3" | "2.3.1" | "2.4");
    if pre_25 {
        if let Some(l) = &e.location {
            w.text(&l.segment_id).component();
            push_usize(w, l.sequence);
            w.component();
            if let Some(f) = l.field {
                push_usize(w, f);
            }
        } else {
            w.component().component();
        }
        w.component().raw(c).subcomponent().text(text);
        w.subcomponent().raw("HL70357");
    }
    w.field();
    if let Some(l) = &e.location {
        w.text(&l.segment_id).component();
        push_usize(w, l.sequence);
        if let Some(f) = l.field {
            w.component();
            push_usize(w, f);
        }
    }
    w.field()
        .raw(c)
        .component()
        .text(text)
        .component()
        .raw("HL70357");
    w.field().raw(e.severity.code());
    w.skip(2).field();
    if let Some(diag) = &e.diagnostic {
        w.text(diag);
    }
    w.field();
    if let Some(m) = &e.user_message {
        w.text(m);
    }
}

fn push_usize(w: &mut Er7Writer, n: usize) {
    w.raw(&n.to_string());
}

/// Why bytes could not be read as an acknowledgment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The bytes are not an ER7 message.
    #[error("ACK is not a valid HL7 message: {0}")]
    Parse(#[from] ParseError),
    /// No MSA segment (§2.14.1: MSA is required in ACK).
    #[error("ACK has no MSA segment ({segments} segments)")]
    MissingMsa {
        /// How many segments the message had.
        segments: usize,
    },
    /// MSA-1 is not a table 0008 code.
    #[error("MSA-1 (segment {segment_index}) is {value:?}, not AA/AE/AR/CA/CE/CR")]
    UnknownCode {
        /// Position of the MSA segment.
        segment_index: usize,
        /// The value found.
        value: String,
    },
    /// MSA-2 (the control id acknowledged, required) is empty.
    #[error("MSA-2 (segment {segment_index}) is empty: the ACK names no message")]
    MissingControlId {
        /// Position of the MSA segment.
        segment_index: usize,
    },
}

/// The error an EHR reported in ERR (2.5+: ERR-3/4/8; older ERR-1 ELD.4 as a fallback).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReportedError {
    /// ERR-3.1 (or ERR-1.4.1) error code, e.g. `207`.
    pub code: String,
    /// ERR-3.2 (or ERR-1.4.2) its text.
    pub code_text: String,
    /// ERR-4 severity, e.g. `E`.
    pub severity: String,
    /// ERR-7 diagnostic information.
    pub diagnostic: String,
    /// ERR-8 user message.
    pub user_message: String,
}

/// An acknowledgment read from the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// MSA-1.
    pub code: AckCode,
    /// MSA-2: the MSH-10 of the message acknowledged.
    pub control_id_acked: String,
    /// MSA-3 text message, if any.
    pub text: Option<String>,
    /// The first ERR segment, if any.
    pub error: Option<ReportedError>,
    /// The ACK's own MSH-10.
    pub message_control_id: String,
}

impl Ack {
    /// [`AckCode::class`] of MSA-1.
    pub fn class(&self) -> AckClass {
        self.code.class()
    }

    /// True when MSA-2 names `sent` (the MSH-10 the sink is waiting for). An ACK for anything
    /// else must not advance the cursor.
    ///
    /// Takes a [`ControlId`] for messages the agent built, or any `&str` for forwarded messages
    /// whose MSH-10 is longer than 20 characters (IHE LAW senders use UUIDs).
    pub fn acknowledges<S: AsRef<str> + ?Sized>(&self, sent: &S) -> bool {
        self.control_id_acked == sent.as_ref()
    }
}

/// Reads an ACK (MLLP framing tolerated). Never panics.
pub fn parse_ack(bytes: &[u8]) -> Result<Ack, AckError> {
    let msg = Message::parse(bytes)?;
    let msa = msg.segment("MSA").ok_or(AckError::MissingMsa {
        segments: msg.segment_count(),
    })?;
    let code_text = msa.field(1).text();
    let code = AckCode::from_code(code_text.trim()).ok_or_else(|| AckError::UnknownCode {
        segment_index: msa.index(),
        value: code_text.to_string(),
    })?;
    let control_id_acked = msa.field(2).text().into_owned();
    if control_id_acked.is_empty() {
        return Err(AckError::MissingControlId {
            segment_index: msa.index(),
        });
    }
    let text = Some(msa.field(3).text().into_owned()).filter(|t| !t.is_empty());
    let error = msg.segment("ERR").map(|err| {
        let (code, code_text) = if err.field(3).is_empty() {
            let eld = err.field(1).component(4);
            (eld.subcomponent(1).text(), eld.subcomponent(2).text())
        } else {
            let c = err.field(3);
            (c.component(1).text(), c.component(2).text())
        };
        ReportedError {
            code: code.into_owned(),
            code_text: code_text.into_owned(),
            severity: err.field(4).text().into_owned(),
            diagnostic: err.field(7).text().into_owned(),
            user_message: err.field(8).text().into_owned(),
        }
    });
    Ok(Ack {
        code,
        control_id_acked,
        text,
        error,
        message_control_id: msg.control_id().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params<'a>(ts: &'a Hl7Ts, id: &'a ControlId) -> AckParams<'a> {
        AckParams {
            datetime: ts,
            control_id: id,
            text: None,
            error: None,
        }
    }

    const INBOUND: &str = "MSH|^~\\&|XN-550|LAB1|LABAGENT|SITE|20260115093000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\rPID|1||123\r";

    #[test]
    fn original_mode_ack() {
        let m = Message::parse_str(INBOUND).unwrap();
        let ts = Hl7Ts::parse("20260115093001+0000").unwrap();
        let id = ControlId::new("ACK1").unwrap();
        assert_eq!(
            build_ack(&m, AckClass::Accepted, &params(&ts, &id)),
            "MSH|^~\\&|LABAGENT|SITE|XN-550|LAB1|20260115093001+0000||ACK^R01^ACK|ACK1|P|2.5.1\rMSA|AA|MSG00001\r"
        );
        let err = ErrorDetail {
            code: Hl7ErrorCode::ApplicationInternalError,
            severity: Severity::Error,
            location: None,
            diagnostic: None,
            user_message: Some("store full|retry".into()),
        };
        let p = AckParams {
            text: Some("store full"),
            error: Some(&err),
            ..params(&ts, &id)
        };
        let ack = build_ack(&m, AckClass::Reject, &p);
        assert!(ack.ends_with(
            "MSA|AR|MSG00001|store full\rERR|||207^Application internal error^HL70357|E||||store full\\F\\retry\r"
        ), "{ack}");
        let parsed = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(parsed.code, AckCode::AR);
        assert_eq!(parsed.class(), AckClass::Reject);
        let e = parsed.error.unwrap();
        assert_eq!((e.code.as_str(), e.severity.as_str()), ("207", "E"));
        assert_eq!(e.user_message, "store full|retry");
    }

    #[test]
    fn enhanced_mode_codes() {
        let ts = Hl7Ts::parse("20260115093001+0000").unwrap();
        let id = ControlId::new("ACK2").unwrap();
        let al = Message::parse_str(&INBOUND.replace("|2.5.1\r", "|2.5.1|||AL|NE\r")).unwrap();
        assert_eq!(AckMode::of(&al).code_for(AckClass::Accepted), AckCode::CA);
        assert_eq!(AckMode::of(&al).code_for(AckClass::Error), AckCode::CE);
        assert_eq!(AckMode::of(&al).code_for(AckClass::Reject), AckCode::CR);
        let ack = build_ack(&al, AckClass::Accepted, &params(&ts, &id));
        assert!(ack.contains("\rMSA|CA|MSG00001\r"), "{ack}");
        // BA400 style ER|AL: success goes back as the application ACK (AA), errors as CE.
        let er = Message::parse_str(&INBOUND.replace("|2.5.1\r", "|2.5.1|||ER|AL\r")).unwrap();
        assert_eq!(AckMode::of(&er).code_for(AckClass::Accepted), AckCode::AA);
        assert_eq!(AckMode::of(&er).code_for(AckClass::Error), AckCode::CE);
        let su = Message::parse_str(&INBOUND.replace("|2.5.1\r", "|2.5.1|||SU\r")).unwrap();
        assert_eq!(AckMode::of(&su).code_for(AckClass::Accepted), AckCode::CA);
        assert_eq!(AckMode::of(&su).code_for(AckClass::Reject), AckCode::AR);
        let only16 = Message::parse_str(&INBOUND.replace("|2.5.1\r", "|2.5.1||||AL\r")).unwrap();
        assert_eq!(
            AckMode::of(&only16).code_for(AckClass::Accepted),
            AckCode::AA
        );
        let unknown = Message::parse_str(&INBOUND.replace("|2.5.1\r", "|2.5.1|||XX\r")).unwrap();
        assert_eq!(
            AckMode::of(&unknown).code_for(AckClass::Accepted),
            AckCode::CA
        );
        let orig = Message::parse_str(INBOUND).unwrap();
        assert_eq!(AckMode::of(&orig), AckMode::Original);
        let forced = build_ack_with_code(&orig, AckCode::CA, &params(&ts, &id));
        assert!(forced.contains("MSA|CA|"));
    }

    #[test]
    fn ack_uses_inbound_delimiters_and_echoes_raw() {
        let m = Message::parse_str("MSH#@*!$#A@1#F#B#G#2026##ORU@R01#ID!F!1#T#2.4######8859/1\r")
            .unwrap();
        let ts = Hl7Ts::parse("20260115093001").unwrap();
        let id = ControlId::new("X").unwrap();
        let ack = build_ack(&m, AckClass::Accepted, &params(&ts, &id));
        assert_eq!(
            ack,
            "MSH#@*!$#B#G#A@1#F#20260115093001##ACK@R01@ACK#X#T#2.4######8859/1\rMSA#AA#ID!F!1\r"
        );
        let parsed = parse_ack(ack.as_bytes()).unwrap();
        assert_eq!(parsed.control_id_acked, "ID#1");
    }

    #[test]
    fn ack_for_unparsable_input() {
        let ts = Hl7Ts::parse("20260115093001+0000").unwrap();
        let id = ControlId::new("ACK3").unwrap();
        let defaults = AckDefaults::default();
        // MSH readable, a later segment broken: MSH fields are echoed.
        let raw = b"MSH|^~\\&|A|B|C|D|2026||ORU^R01|ID9|P|2.3.1\rbad segment\r";
        let e = Message::parse(raw).unwrap_err();
        let detail = ErrorDetail::from_parse_error(&e);
        let p = AckParams {
            error: Some(&detail),
            ..params(&ts, &id)
        };
        let ack = build_ack_unparsed(raw, AckClass::Error, &defaults, &p);
        assert!(
            ack.starts_with("MSH|^~\\&|C|D|A|B|20260115093001+0000||ACK^R01^ACK|ACK3|P|2.3.1\rMSA|AE|ID9\rERR|^^^100&Segment sequence error&HL70357||100^Segment sequence error^HL70357|E|||"),
            "{ack}"
        );
        // Nothing readable at all: defaults.
        let ack = build_ack_unparsed(
            b"\x0bgarbage\x1c\r",
            AckClass::Error,
            &defaults,
            &params(&ts, &id),
        );
        assert_eq!(
            ack,
            "MSH|^~\\&|labagent||||20260115093001+0000||ACK|ACK3|P|2.5.1\rMSA|AE\r"
        );
        assert!(Message::parse(ack.as_bytes()).is_ok());
    }

    #[test]
    fn parse_ack_variants() {
        let id = ControlId::new("MSG00001").unwrap();
        let other = ControlId::new("MSG00002").unwrap();
        let ack = parse_ack(
            b"\x0bMSH|^~\\&|EHR|C|LA|L|20260101||ACK|A1|P|2.5.1\rMSA|CA|MSG00001\r\x1c\r",
        )
        .unwrap();
        assert_eq!(ack.class(), AckClass::Accepted);
        assert!(ack.acknowledges(&id));
        assert!(!ack.acknowledges(&other));
        assert_eq!(ack.message_control_id, "A1");
        let ack =
            parse_ack(b"MSH|^~\\&\rMSA|CE|MSG00001|bad OBX\rERR|^^^102&Data type error&HL70357\r")
                .unwrap();
        assert_eq!(ack.class(), AckClass::Error);
        assert_eq!(ack.text.as_deref(), Some("bad OBX"));
        assert_eq!(ack.error.unwrap().code, "102");
        assert!(matches!(
            parse_ack(b"MSH|^~\\&\rPID|1\r"),
            Err(AckError::MissingMsa { segments: 2 })
        ));
        assert!(matches!(
            parse_ack(b"MSH|^~\\&\rMSA|OK|1\r"),
            Err(AckError::UnknownCode {
                segment_index: 1,
                ..
            })
        ));
        assert!(matches!(
            parse_ack(b"MSH|^~\\&\rMSA|AA\r"),
            Err(AckError::MissingControlId { .. })
        ));
        assert!(matches!(
            parse_ack(b""),
            Err(AckError::Parse(ParseError::Empty))
        ));
    }
}
