//! ORU^R01 v2.5.1 builder (HL7 v2.5.1 chapter 7, §7.3.1) from neutral Rust structs.
//!
//! Segment order (ORU_R01 abstract syntax, §7.3.1), of which this builder emits one patient
//! result with one order observation:
//!
//! ```text
//! MSH [PID [PV1]] ORC OBR {NTE} {OBX {NTE}} SPM
//! ```
//!
//! * MSH-9 `ORU^R01^ORU_R01`, MSH-12 `2.5.1`, MSH-11 from [`MshFields::processing_id`].
//! * **QC runs** are marked by SPM-11 specimen role `Q^Control specimen^HL70369` (§7.4.3.11,
//!   table 0369) with MSH-11 left at `P`. QC results are production data for the lab's QC
//!   review; `T` (training) would make many receivers drop them, while SPM-11 is the field the
//!   standard defines for "this specimen is a control". See [`SpecimenRole`].
//! * OBX-2 follows the value: `NM`, `SN`, `ST`, `CWE`, `TX`, or empty when there is no value
//!   (e.g. OBX-11 `X`, §7.4.2.2: OBX-2 is required only when OBX-5 is valued).
//! * Every value is escaped (§2.7); validation happens before anything is written, so an error
//!   never leaves half a message behind.

use crate::control_id::ControlId;
use crate::escape::Delimiters;
use crate::time::Hl7Ts;
use crate::types::{AckType, Coded, Cwe, Ei, Hd, ProcessingId};
use crate::writer::Er7Writer;

/// Why an ORU^R01 could not be built. Set ids are the OBX-1 / NTE-1 numbers the segment would
/// have had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A field that v2.5.1 requires (R) is empty.
    #[error("{segment}-{field} (set id {set_id}): {what} is required")]
    MissingField {
        /// Segment id, e.g. `OBX`.
        segment: &'static str,
        /// Set id of the segment (1 for single segments).
        set_id: usize,
        /// Field number.
        field: u8,
        /// What is missing.
        what: &'static str,
    },
    /// A numeric value is not an HL7 NM (§2.A.47: optional sign, digits, optional point).
    #[error("{segment}-{field} (set id {set_id}): {value:?} is not a number")]
    InvalidNumber {
        /// Segment id.
        segment: &'static str,
        /// Set id of the segment.
        set_id: usize,
        /// Field number.
        field: u8,
        /// The value refused.
        value: String,
    },
}

/// The MSH fields the caller decides (§2.14.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MshFields {
    /// MSH-3 sending application (the analyser or the agent source name).
    pub sending_application: Hd,
    /// MSH-4 sending facility (the lab).
    pub sending_facility: Hd,
    /// MSH-5 receiving application (the EHR).
    pub receiving_application: Hd,
    /// MSH-6 receiving facility (the clinic).
    pub receiving_facility: Hd,
    /// MSH-7 date/time of message (supplied by the caller: no clocks here). Use
    /// [`Hl7Ts::from_zoned`] for a jiff `Zoned`, [`Hl7Ts::parse`] for a formatted value.
    pub datetime: Hl7Ts,
    /// MSH-10 message control id, assigned once at commit.
    pub control_id: ControlId,
    /// MSH-11 processing id.
    pub processing_id: ProcessingId,
    /// MSH-15 accept acknowledgment type; `None` (with MSH-16 `None`) asks for original mode.
    pub accept_ack_type: Option<AckType>,
    /// MSH-16 application acknowledgment type.
    pub application_ack_type: Option<AckType>,
    /// MSH-18 character set, e.g. `UNICODE UTF-8` (table 0211); `None` means ASCII.
    pub character_set: Option<String>,
}

/// A PID-3 identifier (CX, §2.A.14).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientId {
    /// CX.1 id number.
    pub id: String,
    /// CX.4.1 assigning authority namespace, e.g. `NHS`.
    pub assigning_authority: Option<String>,
    /// CX.5 identifier type code (table 0203), e.g. `MR`, `NH`, `PI`.
    pub id_type: Option<String>,
}

/// PID-5 name (XPN, §2.A.88): family^given^middle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersonName {
    /// XPN.1 family name.
    pub family: String,
    /// XPN.2 given name.
    pub given: String,
    /// XPN.3 second and further given names or initials.
    pub middle: String,
}

/// PID-8 administrative sex (table 0001).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sex {
    /// `F`.
    Female,
    /// `M`.
    Male,
    /// `O`.
    Other,
    /// `U`.
    Unknown,
    /// `A`: ambiguous.
    Ambiguous,
    /// `N`: not applicable.
    NotApplicable,
}

impl Sex {
    /// The table 0001 code.
    pub fn code(self) -> &'static str {
        match self {
            Sex::Female => "F",
            Sex::Male => "M",
            Sex::Other => "O",
            Sex::Unknown => "U",
            Sex::Ambiguous => "A",
            Sex::NotApplicable => "N",
        }
    }
}

/// The PID segment (§3.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patient {
    /// PID-3 patient identifier list (required: at least one).
    pub ids: Vec<PatientId>,
    /// PID-5 name. When every part is empty, PID-5 is written as `^^^^^^U` (name type
    /// "unspecified", table 0200) because v2.5.1 requires the field.
    pub name: PersonName,
    /// PID-7 date of birth, usually date-only (`YYYYMMDD`).
    pub birth_date: Option<Hl7Ts>,
    /// PID-8 administrative sex.
    pub sex: Option<Sex>,
}

/// PV1-2 patient class (table 0004).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientClass {
    /// `O`.
    Outpatient,
    /// `I`.
    Inpatient,
    /// `E`.
    Emergency,
    /// `N`: not applicable.
    NotApplicable,
    /// `U`: unknown.
    Unknown,
}

impl PatientClass {
    /// The table 0004 code.
    pub fn code(self) -> &'static str {
        match self {
            PatientClass::Outpatient => "O",
            PatientClass::Inpatient => "I",
            PatientClass::Emergency => "E",
            PatientClass::NotApplicable => "N",
            PatientClass::Unknown => "U",
        }
    }
}

/// The optional PV1 segment (§3.4.3), written only with a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// PV1-2 patient class (required in PV1).
    pub patient_class: PatientClass,
    /// PV1-19 visit number.
    pub visit_number: Option<String>,
}

/// OBR-25 result status (table 0123).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderStatus {
    /// `O`: order received, specimen not yet received.
    OrderReceived,
    /// `I`: no results available, specimen received, procedure incomplete.
    InProcess,
    /// `S`: procedure scheduled, not done.
    Scheduled,
    /// `A`: some, not all, results available.
    SomeResults,
    /// `P`: preliminary.
    Preliminary,
    /// `C`: correction to results.
    Corrected,
    /// `R`: results stored, not yet verified.
    ResultsStored,
    /// `F`: final results.
    #[default]
    Final,
    /// `X`: no results available, order cancelled.
    Cancelled,
}

impl OrderStatus {
    /// The table 0123 code.
    pub fn code(self) -> &'static str {
        match self {
            OrderStatus::OrderReceived => "O",
            OrderStatus::InProcess => "I",
            OrderStatus::Scheduled => "S",
            OrderStatus::SomeResults => "A",
            OrderStatus::Preliminary => "P",
            OrderStatus::Corrected => "C",
            OrderStatus::ResultsStored => "R",
            OrderStatus::Final => "F",
            OrderStatus::Cancelled => "X",
        }
    }
}

/// OBX-11 observation result status (table 0085).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResultStatus {
    /// `C`: correction of a previously transmitted final result.
    Corrected,
    /// `D`: delete the previously transmitted result.
    Deleted,
    /// `F`: final.
    #[default]
    Final,
    /// `I`: specimen in lab, results pending.
    Pending,
    /// `N`: not asked.
    NotAsked,
    /// `P`: preliminary.
    Preliminary,
    /// `R`: results entered, not verified.
    NotVerified,
    /// `S`: partial.
    Partial,
    /// `U`: results status change to final without retransmitting the value.
    ChangedToFinal,
    /// `W`: previous final result was wrong.
    Wrong,
    /// `X`: results cannot be obtained.
    CannotObtain,
}

impl ResultStatus {
    /// The table 0085 code.
    pub fn code(self) -> &'static str {
        match self {
            ResultStatus::Corrected => "C",
            ResultStatus::Deleted => "D",
            ResultStatus::Final => "F",
            ResultStatus::Pending => "I",
            ResultStatus::NotAsked => "N",
            ResultStatus::Preliminary => "P",
            ResultStatus::NotVerified => "R",
            ResultStatus::Partial => "S",
            ResultStatus::ChangedToFinal => "U",
            ResultStatus::Wrong => "W",
            ResultStatus::CannotObtain => "X",
        }
    }
}

/// The order: ORC and OBR (§4.5.1, §7.4.1) plus the NTEs after OBR.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Order {
    /// ORC-2 / OBR-2 placer order number.
    pub placer_order_number: Option<Ei>,
    /// ORC-3 / OBR-3 filler order number (the specimen or accession id, PROTOCOLS §2.3).
    pub filler_order_number: Option<Ei>,
    /// OBR-4 universal service identifier (panel), required.
    pub universal_service_id: Cwe,
    /// OBR-7 observation date/time (specimen collection time when known).
    pub observation_time: Option<Hl7Ts>,
    /// OBR-22 results report/status change date/time.
    pub results_reported_at: Option<Hl7Ts>,
    /// OBR-24 diagnostic service section id (table 0074), e.g. `CH`, `HM`.
    pub diagnostic_section: Option<String>,
    /// OBR-25 result status.
    pub result_status: OrderStatus,
    /// Order-level comments: one NTE each after OBR.
    pub notes: Vec<String>,
}

/// SN comparator (§2.A.70, SN.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `<>`
    Ne,
}

impl Comparator {
    /// The SN.1 text.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Gt => ">",
            Comparator::Lt => "<",
            Comparator::Ge => ">=",
            Comparator::Le => "<=",
            Comparator::Eq => "=",
            Comparator::Ne => "<>",
        }
    }
}

/// SN separator/suffix (§2.A.70, SN.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnSeparator {
    /// `-`: range, `^1^-^5`.
    Range,
    /// `/`: ratio, `^1^/^128`.
    Ratio,
    /// `:`: ratio, `^1^:^128`.
    Colon,
    /// `+`: "greater than num1", `^2^+`.
    Plus,
}

impl SnSeparator {
    /// The SN.3 text.
    pub fn as_str(self) -> &'static str {
        match self {
            SnSeparator::Range => "-",
            SnSeparator::Ratio => "/",
            SnSeparator::Colon => ":",
            SnSeparator::Plus => "+",
        }
    }
}

/// Structured numeric value (SN, §2.A.70): `comparator^num1^separator^num2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StructuredNumeric {
    /// SN.1.
    pub comparator: Option<Comparator>,
    /// SN.2 (NM).
    pub num1: Option<String>,
    /// SN.3.
    pub separator: Option<SnSeparator>,
    /// SN.4 (NM).
    pub num2: Option<String>,
}

impl StructuredNumeric {
    /// `<^0.5`, `>^15000`.
    pub fn compare(comparator: Comparator, num: &str) -> Self {
        StructuredNumeric {
            comparator: Some(comparator),
            num1: Some(num.to_owned()),
            ..Self::default()
        }
    }

    /// `^1^-^5`.
    pub fn range(low: &str, high: &str) -> Self {
        StructuredNumeric {
            comparator: None,
            num1: Some(low.to_owned()),
            separator: Some(SnSeparator::Range),
            num2: Some(high.to_owned()),
        }
    }

    /// `^1^:^128`.
    pub fn ratio(a: &str, b: &str) -> Self {
        StructuredNumeric {
            comparator: None,
            num1: Some(a.to_owned()),
            separator: Some(SnSeparator::Colon),
            num2: Some(b.to_owned()),
        }
    }
}

/// OBX-5 with the OBX-2 value type it implies (table 0125).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ObservationValue {
    /// No value (OBX-2 and OBX-5 empty), e.g. with OBX-11 `X`.
    #[default]
    None,
    /// `NM`: a plain number, validated (§2.A.47).
    Numeric(String),
    /// `SN`: structured numeric.
    Structured(StructuredNumeric),
    /// `ST`: short string.
    String(String),
    /// `CWE`: coded value.
    Coded(Cwe),
    /// `TX`: free text.
    Text(String),
}

impl ObservationValue {
    /// The OBX-2 value type, `None` for no value.
    pub fn value_type(&self) -> Option<&'static str> {
        match self {
            ObservationValue::None => None,
            ObservationValue::Numeric(_) => Some("NM"),
            ObservationValue::Structured(_) => Some("SN"),
            ObservationValue::String(_) => Some("ST"),
            ObservationValue::Coded(_) => Some("CWE"),
            ObservationValue::Text(_) => Some("TX"),
        }
    }
}

/// One OBX (§7.4.2) and the NTEs after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    /// OBX-3: mapped code as the primary triplet, analyser's local code as the alternate.
    pub code: Cwe,
    /// OBX-4 sub-id.
    pub sub_id: Option<String>,
    /// OBX-2 and OBX-5.
    pub value: ObservationValue,
    /// OBX-6 units (CE), e.g. `10*9/L^10*9/L^UCUM`, optionally with the analyser's own unit as
    /// the alternate triplet.
    pub units: Option<Cwe>,
    /// OBX-7 reference range, e.g. `4.0-11.0`.
    pub reference_range: Option<String>,
    /// OBX-8 abnormal flags (table 0078), repeated: `L`, `H`, `LL`, `HH`, `<`, `>`, `N`, `A` …
    pub abnormal_flags: Vec<String>,
    /// OBX-11 result status.
    pub status: ResultStatus,
    /// OBX-14 date/time of the observation (specimen-related time).
    pub observed_at: Option<Hl7Ts>,
    /// OBX-18 equipment instance identifiers (analyser name, serial), repeated.
    pub equipment: Vec<Ei>,
    /// OBX-19 date/time of the analysis (v2.5+).
    pub analysed_at: Option<Hl7Ts>,
    /// Result comments: one NTE each after this OBX.
    pub notes: Vec<String>,
}

/// SPM-11 specimen role (table 0369).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpecimenRole {
    /// `P^Patient^HL70369`.
    #[default]
    Patient,
    /// `Q^Control specimen^HL70369`: marks a QC run.
    Control,
    /// `C^Calibrator^HL70369`.
    Calibrator,
}

impl SpecimenRole {
    fn coded(self) -> (&'static str, &'static str) {
        match self {
            SpecimenRole::Patient => ("P", "Patient"),
            SpecimenRole::Control => ("Q", "Control specimen"),
            SpecimenRole::Calibrator => ("C", "Calibrator"),
        }
    }
}

/// The SPM segment (§7.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Specimen {
    /// SPM-2.1 placer-assigned specimen id (EIP.1).
    pub placer_id: Option<Ei>,
    /// SPM-2.2 filler-assigned specimen id (EIP.2).
    pub filler_id: Option<Ei>,
    /// SPM-4 specimen type (table 0487), required. Default [`Specimen::TYPE_OTHER`].
    pub specimen_type: Cwe,
    /// SPM-11 specimen role; [`SpecimenRole::Control`] marks QC.
    pub role: SpecimenRole,
    /// SPM-17 collection date/time (DR.1).
    pub collected_at: Option<Hl7Ts>,
    /// SPM-18 received date/time.
    pub received_at: Option<Hl7Ts>,
}

impl Specimen {
    /// `ORH^Other^HL70487`: the honest default when the analyser does not say what the
    /// specimen is (claiming `BLD` for a urine analyser would be wrong). Mappings should set it.
    pub const TYPE_OTHER: (&'static str, &'static str) = ("ORH", "Other");
    /// `BLD^Whole blood^HL70487`.
    pub const TYPE_WHOLE_BLOOD: (&'static str, &'static str) = ("BLD", "Whole blood");
    /// `SER^Serum^HL70487`.
    pub const TYPE_SERUM: (&'static str, &'static str) = ("SER", "Serum");
    /// `PLAS^Plasma^HL70487`.
    pub const TYPE_PLASMA: (&'static str, &'static str) = ("PLAS", "Plasma");
    /// `UR^Urine^HL70487`.
    pub const TYPE_URINE: (&'static str, &'static str) = ("UR", "Urine");

    /// A table 0487 specimen type from one of the `TYPE_*` constants (or any code and text).
    pub fn table_0487(entry: (&str, &str)) -> Cwe {
        Coded::new(entry.0, entry.1, "HL70487").into()
    }
}

impl Default for Specimen {
    fn default() -> Self {
        Specimen {
            placer_id: None,
            filler_id: None,
            specimen_type: Specimen::table_0487(Specimen::TYPE_OTHER),
            role: SpecimenRole::Patient,
            collected_at: None,
            received_at: None,
        }
    }
}

/// One ORU^R01 v2.5.1 message: one patient, one order, its observations and its specimen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OruR01 {
    /// MSH.
    pub msh: MshFields,
    /// PID; `None` for QC and anonymous runs (PATIENT is optional in ORU_R01).
    pub patient: Option<Patient>,
    /// PV1; written only when `patient` is present.
    pub visit: Option<Visit>,
    /// ORC, OBR and the order NTEs.
    pub order: Order,
    /// OBX and their NTEs, OBX-1 numbered from 1.
    pub observations: Vec<Observation>,
    /// SPM.
    pub specimen: Specimen,
}

/// Checks HL7 NM syntax (§2.A.47): `[+|-]digits[.digits]`, at least one digit.
pub fn is_hl7_numeric(s: &str) -> bool {
    let b = s.strip_prefix(['+', '-']).unwrap_or(s).as_bytes();
    let mut digits = 0;
    let mut dots = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            _ => return false,
        }
    }
    digits > 0 && dots <= 1
}

fn require(
    ok: bool,
    segment: &'static str,
    set_id: usize,
    field: u8,
    what: &'static str,
) -> Result<(), BuildError> {
    if ok {
        Ok(())
    } else {
        Err(BuildError::MissingField {
            segment,
            set_id,
            field,
            what,
        })
    }
}

fn number(value: &str, segment: &'static str, set_id: usize, field: u8) -> Result<(), BuildError> {
    if is_hl7_numeric(value) {
        Ok(())
    } else {
        Err(BuildError::InvalidNumber {
            segment,
            set_id,
            field,
            value: value.to_owned(),
        })
    }
}

fn ts(w: &mut Er7Writer, t: &Option<Hl7Ts>) {
    if let Some(t) = t {
        // Hl7Ts is validated to digits, '.', '+' and '-': nothing to escape.
        w.raw(t.as_str());
    }
}

fn ei(w: &mut Er7Writer, e: &Option<Ei>) {
    if let Some(e) = e {
        e.write(w);
    }
}

/// Writes a set id (decimal) without allocating.
fn push_set_id(w: &mut Er7Writer, n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n;
    loop {
        i -= 1;
        // `v % 10` is one decimal digit.
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    w.raw(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

impl OruR01 {
    /// True when the specimen is a control (QC run, SPM-11 `Q`).
    pub fn is_qc(&self) -> bool {
        self.specimen.role == SpecimenRole::Control
    }

    /// Checks every rule the builder enforces, without writing anything.
    pub fn validate(&self) -> Result<(), BuildError> {
        if let Some(p) = &self.patient {
            require(
                !p.ids.is_empty() && p.ids.iter().all(|i| !i.id.is_empty()),
                "PID",
                1,
                3,
                "patient identifier",
            )?;
        }
        require(
            !self.order.universal_service_id.primary.code.is_empty(),
            "OBR",
            1,
            4,
            "universal service identifier",
        )?;
        for (i, o) in self.observations.iter().enumerate() {
            let set_id = i + 1;
            require(
                !o.code.primary.code.is_empty(),
                "OBX",
                set_id,
                3,
                "observation identifier",
            )?;
            match &o.value {
                ObservationValue::Numeric(v) => number(v, "OBX", set_id, 5)?,
                ObservationValue::Structured(sn) => {
                    for n in [&sn.num1, &sn.num2].into_iter().flatten() {
                        number(n, "OBX", set_id, 5)?;
                    }
                    require(
                        sn.num1.is_some() || sn.num2.is_some(),
                        "OBX",
                        set_id,
                        5,
                        "a number in the structured numeric value",
                    )?;
                }
                ObservationValue::Coded(c) => require(
                    !c.primary.code.is_empty(),
                    "OBX",
                    set_id,
                    5,
                    "coded value identifier",
                )?,
                _ => {}
            }
        }
        require(
            !self.specimen.specimen_type.primary.code.is_empty(),
            "SPM",
            1,
            4,
            "specimen type",
        )?;
        Ok(())
    }

    /// Builds the message as ER7 text with CR segment terminators (standard delimiters).
    pub fn encode(&self) -> Result<String, BuildError> {
        let mut out = String::with_capacity(512 + 256 * self.observations.len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the message to `out` (reuse one buffer for many messages). On error `out` is
    /// left unchanged.
    pub fn encode_into(&self, out: &mut String) -> Result<(), BuildError> {
        self.validate()?;
        let mut w = Er7Writer::new(std::mem::take(out), Delimiters::STANDARD);
        self.write_msh(&mut w);
        if let Some(p) = &self.patient {
            write_pid(&mut w, p);
            if let Some(v) = &self.visit {
                w.segment("PV1").field_text("1");
                w.field().raw(v.patient_class.code());
                if let Some(n) = &v.visit_number {
                    w.skip(16).field_text(n);
                }
            }
        }
        let o = &self.order;
        // ORC-1 RE: observations to follow (table 0119), as in a result message (§4.5.1.1).
        w.segment("ORC").field_text("RE").field();
        ei(&mut w, &o.placer_order_number);
        w.field();
        ei(&mut w, &o.filler_order_number);
        w.segment("OBR").field_text("1").field();
        ei(&mut w, &o.placer_order_number);
        w.field();
        ei(&mut w, &o.filler_order_number);
        w.field();
        o.universal_service_id.write(&mut w);
        w.skip(2).field();
        ts(&mut w, &o.observation_time);
        w.skip(14).field();
        ts(&mut w, &o.results_reported_at);
        w.skip(1).field();
        if let Some(s) = &o.diagnostic_section {
            w.text(s);
        }
        w.field().raw(o.result_status.code());
        write_notes(&mut w, &o.notes);
        for (i, obs) in self.observations.iter().enumerate() {
            write_obx(&mut w, i + 1, obs);
            write_notes(&mut w, &obs.notes);
        }
        self.write_spm(&mut w);
        *out = w.finish();
        Ok(())
    }

    fn write_msh(&self, w: &mut Er7Writer) {
        let m = &self.msh;
        w.msh().field();
        m.sending_application.write(w);
        w.field();
        m.sending_facility.write(w);
        w.field();
        m.receiving_application.write(w);
        w.field();
        m.receiving_facility.write(w);
        w.field().raw(m.datetime.as_str());
        w.field()
            .field()
            .raw("ORU")
            .component()
            .raw("R01")
            .component();
        w.raw("ORU_R01");
        // ControlId is validated to [A-Za-z0-9._-]: nothing to escape.
        w.field().raw(m.control_id.as_str());
        w.field().raw(m.processing_id.code());
        w.field().raw("2.5.1");
        w.skip(2).field();
        if let Some(a) = m.accept_ack_type {
            w.raw(a.code());
        }
        w.field();
        if let Some(a) = m.application_ack_type {
            w.raw(a.code());
        }
        w.skip(1).field();
        if let Some(cs) = &m.character_set {
            w.text(cs);
        }
    }

    fn write_spm(&self, w: &mut Er7Writer) {
        let s = &self.specimen;
        w.segment("SPM").field_text("1").field();
        if let Some(p) = &s.placer_id {
            p.write_sub(w);
        }
        if let Some(f) = &s.filler_id {
            w.component();
            f.write_sub(w);
        }
        w.skip(1).field();
        s.specimen_type.write(w);
        w.skip(6).field();
        let (code, text) = s.role.coded();
        w.raw(code).component().raw(text).component().raw("HL70369");
        w.skip(5).field();
        ts(w, &s.collected_at);
        w.field();
        ts(w, &s.received_at);
    }
}

fn write_pid(w: &mut Er7Writer, p: &Patient) {
    w.segment("PID").field_text("1").skip(1).field();
    for (i, id) in p.ids.iter().enumerate() {
        if i > 0 {
            w.repetition();
        }
        w.text(&id.id).component().component().component();
        if let Some(a) = &id.assigning_authority {
            w.text(a);
        }
        w.component();
        if let Some(t) = &id.id_type {
            w.text(t);
        }
    }
    w.skip(1).field();
    let n = &p.name;
    if n.family.is_empty() && n.given.is_empty() && n.middle.is_empty() {
        // PID-5 is required (§3.4.2.5) but analysers rarely know the name: XPN.7 name type
        // `U` (unspecified, table 0200) says so without inventing one.
        for _ in 0..6 {
            w.component();
        }
        w.raw("U");
    } else {
        w.components(&[&n.family, &n.given, &n.middle]);
    }
    w.skip(1).field();
    ts(w, &p.birth_date);
    w.field();
    if let Some(s) = p.sex {
        w.raw(s.code());
    }
}

fn write_notes(w: &mut Er7Writer, notes: &[String]) {
    for (i, n) in notes.iter().enumerate() {
        w.segment("NTE");
        w.field();
        push_set_id(w, i + 1);
        // NTE-2 source of comment `L`: ancillary (filler) department (table 0105).
        w.field().raw("L").field_text(n);
    }
}

fn write_obx(w: &mut Er7Writer, set_id: usize, o: &Observation) {
    w.segment("OBX").field();
    push_set_id(w, set_id);
    w.field();
    if let Some(t) = o.value.value_type() {
        w.raw(t);
    }
    w.field();
    o.code.write(w);
    w.field();
    if let Some(s) = &o.sub_id {
        w.text(s);
    }
    w.field();
    match &o.value {
        ObservationValue::None => {}
        ObservationValue::Numeric(v) | ObservationValue::String(v) | ObservationValue::Text(v) => {
            w.text(v);
        }
        ObservationValue::Structured(sn) => {
            if let Some(c) = sn.comparator {
                w.raw(c.as_str());
            }
            w.component();
            if let Some(n) = &sn.num1 {
                w.text(n);
            }
            w.component();
            if let Some(s) = sn.separator {
                w.raw(s.as_str());
            }
            w.component();
            if let Some(n) = &sn.num2 {
                w.text(n);
            }
        }
        ObservationValue::Coded(c) => c.write(w),
    }
    w.field();
    if let Some(u) = &o.units {
        u.write(w);
    }
    w.field();
    if let Some(r) = &o.reference_range {
        w.text(r);
    }
    w.field();
    for (i, f) in o.abnormal_flags.iter().enumerate() {
        if i > 0 {
            w.repetition();
        }
        w.text(f);
    }
    w.skip(2).field().raw(o.status.code());
    w.skip(2).field();
    ts(w, &o.observed_at);
    w.skip(3).field();
    for (i, e) in o.equipment.iter().enumerate() {
        if i > 0 {
            w.repetition();
        }
        e.write(w);
    }
    w.field();
    ts(w, &o.analysed_at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn minimal() -> OruR01 {
        OruR01 {
            msh: MshFields {
                sending_application: "A".into(),
                sending_facility: Hd {
                    namespace_id: "LAB".into(),
                    universal_id: Some("X26".into()),
                    universal_id_type: Some("L".into()),
                },
                receiving_application: "E".into(),
                receiving_facility: "C".into(),
                datetime: Hl7Ts::parse("20260101120000+0000").unwrap(),
                control_id: ControlId::new("C1").unwrap(),
                processing_id: ProcessingId::Training,
                accept_ack_type: None,
                application_ack_type: None,
                character_set: None,
            },
            patient: None,
            visit: None,
            order: Order {
                universal_service_id: Coded::new("P", "Panel", "99L").into(),
                ..Order::default()
            },
            observations: vec![],
            specimen: Specimen::default(),
        }
    }

    #[test]
    fn minimal_message_exact() {
        assert_eq!(
            minimal().encode().unwrap(),
            "MSH|^~\\&|A|LAB^X26^L|E|C|20260101120000+0000||ORU^R01^ORU_R01|C1|T|2.5.1\r\
             ORC|RE\r\
             OBR|1|||P^Panel^99L|||||||||||||||||||||F\r\
             SPM|1|||ORH^Other^HL70487|||||||P^Patient^HL70369\r"
        );
    }

    #[test]
    fn empty_name_is_unspecified_and_ids_repeat() {
        let mut m = minimal();
        m.patient = Some(Patient {
            ids: vec![
                PatientId {
                    id: "1".into(),
                    ..PatientId::default()
                },
                PatientId {
                    id: "2".into(),
                    assigning_authority: None,
                    id_type: Some("MR".into()),
                },
            ],
            ..Patient::default()
        });
        let s = m.encode().unwrap();
        assert!(s.contains("\rPID|1||1~2^^^^MR||^^^^^^U\r"), "{s}");
    }

    #[test]
    fn validation_errors_name_segment_and_field() {
        let mut m = minimal();
        m.order.universal_service_id = Cwe::default();
        assert_eq!(
            m.encode(),
            Err(BuildError::MissingField {
                segment: "OBR",
                set_id: 1,
                field: 4,
                what: "universal service identifier"
            })
        );
        let mut m = minimal();
        m.observations = vec![
            Observation {
                code: Coded::new("A", "", "").into(),
                value: ObservationValue::Numeric("1.5".into()),
                ..Observation::default()
            },
            Observation {
                code: Coded::new("B", "", "").into(),
                value: ObservationValue::Numeric("< 1.5".into()),
                ..Observation::default()
            },
        ];
        assert_eq!(
            m.encode(),
            Err(BuildError::InvalidNumber {
                segment: "OBX",
                set_id: 2,
                field: 5,
                value: "< 1.5".into()
            })
        );
        m.observations[1].value =
            ObservationValue::Structured(StructuredNumeric::compare(Comparator::Lt, "1,5"));
        assert!(matches!(
            m.encode(),
            Err(BuildError::InvalidNumber { set_id: 2, .. })
        ));
        m.observations[1].code = Cwe::default();
        assert!(matches!(
            m.encode(),
            Err(BuildError::MissingField {
                segment: "OBX",
                set_id: 2,
                field: 3,
                ..
            })
        ));
        let mut m = minimal();
        m.patient = Some(Patient::default());
        assert!(matches!(
            m.encode(),
            Err(BuildError::MissingField {
                segment: "PID",
                field: 3,
                ..
            })
        ));
        let mut buf = String::from("keep");
        assert!(m.encode_into(&mut buf).is_err());
        assert_eq!(buf, "keep");
    }

    #[test]
    fn numeric_syntax() {
        for ok in ["0", "-1", "+1.5", ".5", "5.", "000123.4500"] {
            assert!(is_hl7_numeric(ok), "{ok}");
        }
        for bad in ["", "-", ".", "1.2.3", "1e5", " 1", "1,5", "<1", "NaN"] {
            assert!(!is_hl7_numeric(bad), "{bad}");
        }
    }

    #[test]
    fn set_ids_count_up_and_parse_back() {
        let mut m = minimal();
        m.observations = (0..12)
            .map(|i| Observation {
                code: Coded::new(&format!("T{i}"), "", "").into(),
                value: ObservationValue::Numeric(i.to_string()),
                notes: vec!["n".into(); 2],
                ..Observation::default()
            })
            .collect();
        let msg = Message::parse_str(&m.encode().unwrap()).unwrap();
        let set_ids: Vec<_> = msg
            .segments_with_id("OBX")
            .map(|s| s.field(1).raw().to_owned())
            .collect();
        assert_eq!(set_ids, (1..=12).map(|i| i.to_string()).collect::<Vec<_>>());
        let nte: Vec<_> = msg
            .segments_with_id("NTE")
            .map(|s| s.field(1).raw())
            .collect();
        assert_eq!(nte.len(), 24);
        assert_eq!(&nte[..2], ["1", "2"]);
    }
}
