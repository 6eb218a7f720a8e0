//! ASTM E1394 message -> HL7 v2.5.1 ORU^R01, as pure functions (no I/O, no clock: the commit
//! time and the control ids come in).
//!
//! One ORU per O record (specimen), following PROTOCOLS.md §2.3:
//! - PID-3 from P.3 then P.4; PID-5/7/8 from P.6/P.8/P.9. No P, or a P without ids, gives no PID
//!   (the PATIENT group is optional in ORU_R01, and QC runs have no patient).
//! - OBR-2, OBR-3 and SPM-2 carry the specimen id chosen by the mapping's selectors (first
//!   non-empty, trimmed). OBR-4 is O.5's single test, or a generic panel named after the analyser.
//!   OBR-7 and SPM-17 the collection time (O.8, else O.7), OBR-25 the report status (O.26).
//! - One OBX per R: OBX-3 the mapped code with the analyser's local code as the alternate triplet
//!   (unmapped codes pass through as local codes); OBX-2/5 by [`value::normalise`]; OBX-6 R.5;
//!   OBX-7 [`value::reference_range`]; OBX-8 table 0078 flags; OBX-11 [`value::status`] (X when
//!   the analyser sent a no-result marker); OBX-14 R.12; OBX-19 R.13; OBX-18 R.14 or the
//!   analyser's serial from H.5. C records become NTEs after their OBX (or OBR).
//! - QC runs (H.12 = Q, or O.12 = Q) are marked with SPM-11 = Q (control specimen) so an EHR
//!   can filter them; they are never passed off as patient data.
//!
//! Manufacturer (M) records carry instrument data (histograms, reagent lots) that ORU^R01 has no
//! place for; they are not translated.

pub mod value;

use labagent_astm::record::{FieldPath, Message, Record, RecordType};
use labagent_hl7::control_id::ControlId;
use labagent_hl7::oru::{
    MshFields, Observation, ObservationValue, Order, OrderStatus, OruR01, Patient, PatientId,
    PersonName, ResultStatus, Sex, Specimen, SpecimenRole,
};
use labagent_hl7::time::{Hl7Ts, astm_local_to_hl7};
use labagent_hl7::types::{Coded, Cwe, Ei, Hd, ProcessingId};

pub use crate::config::{Mapping, TestCode};

/// Why a message could not be translated. The runtime parks it raw with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The message has no O record with results (e.g. a host query: H, Q, L).
    #[error("no results to translate ({0})")]
    NoResults(&'static str),
    /// Results came before any O record, so they belong to no specimen.
    #[error("{count} record(s) outside any order (record {first_type} first)")]
    Orphans {
        /// How many records.
        count: usize,
        /// The type letter of the first.
        first_type: char,
    },
    /// An order has no specimen id in any configured field.
    #[error("order {order}: no specimen id in {selectors}")]
    NoSpecimenId {
        /// 1-based order index in the message.
        order: usize,
        /// The selectors tried.
        selectors: String,
    },
    /// The HL7 builder refused a value.
    #[error("order {order}: {reason}")]
    Build {
        /// 1-based order index.
        order: usize,
        /// What the builder said.
        reason: String,
    },
}

/// What the caller supplies: the zone ASTM times are in, and the commit time for MSH-7.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The analyser's time zone (ASTM timestamps carry no offset).
    pub tz: &'a jiff::tz::TimeZone,
    /// MSH-7.
    pub now: Hl7Ts,
}

/// Translates one ASTM message into ORU^R01 messages, one per order. `next_id` is called once
/// per ORU for its MSH-10.
pub fn translate(
    message: &Message,
    mapping: &Mapping,
    ctx: &Context<'_>,
    next_id: &mut dyn FnMut() -> ControlId,
) -> Result<Vec<OruR01>, TranslateError> {
    let tree = message.tree();
    if let Some(first) = tree
        .orphans
        .iter()
        .find(|r| matches!(r.kind(), RecordType::Result | RecordType::Order))
    {
        return Err(TranslateError::Orphans {
            count: tree.orphans.len(),
            first_type: char::from(first.kind().byte()),
        });
    }
    let header = tree.header;
    let qc_run = header.field(12).trim() == "Q";
    let equipment = analyser_equipment(header);
    let mut out = Vec::new();
    let mut order_index = 0;
    for patient_group in &tree.patients {
        let patient = patient_group.record.and_then(patient);
        for order in &patient_group.orders {
            order_index += 1;
            let o = order.record;
            let specimen_id = select_first(o, patient_group.record, &mapping.specimen_id)
                .ok_or_else(|| TranslateError::NoSpecimenId {
                    order: order_index,
                    selectors: join_paths(&mapping.specimen_id),
                })?;
            let qc = qc_run || o.field(12).trim() == "Q";
            let collected = time(o.field(8), ctx).or_else(|| time(o.field(7), ctx));
            let mut observations = Vec::with_capacity(order.results.len());
            for result in &order.results {
                observations.push(observation(
                    result.record,
                    &result.comments,
                    mapping,
                    ctx,
                    &equipment,
                ));
            }
            let order_status = order_status(o.field(26), &observations);
            let oru = OruR01 {
                msh: MshFields {
                    sending_application: Hd::from(mapping.sending_application.as_str()),
                    sending_facility: Hd::from(mapping.sending_facility.as_str()),
                    receiving_application: Hd::from(mapping.receiving_application.as_str()),
                    receiving_facility: Hd::from(mapping.receiving_facility.as_str()),
                    datetime: ctx.now.clone(),
                    control_id: next_id(),
                    processing_id: ProcessingId::Production,
                    accept_ack_type: None,
                    application_ack_type: None,
                    character_set: None,
                },
                patient: if qc { None } else { patient.clone() },
                visit: None,
                order: Order {
                    placer_order_number: Some(Ei::from(specimen_id.as_str())),
                    filler_order_number: Some(Ei::from(specimen_id.as_str())),
                    universal_service_id: panel(o, mapping),
                    observation_time: collected.clone(),
                    results_reported_at: None,
                    diagnostic_section: None,
                    result_status: order_status,
                    notes: comments(&order.comments),
                },
                observations,
                specimen: Specimen {
                    placer_id: None,
                    filler_id: Some(Ei::from(specimen_id.as_str())),
                    specimen_type: Specimen::table_0487((
                        &mapping.specimen_type.0,
                        &mapping.specimen_type.1,
                    )),
                    role: if qc {
                        SpecimenRole::Control
                    } else {
                        SpecimenRole::Patient
                    },
                    collected_at: collected,
                    received_at: time(o.field(15), ctx),
                },
            };
            if oru.observations.is_empty() {
                // An order without results (e.g. an order echo) carries nothing for the EHR.
                continue;
            }
            oru.validate().map_err(|e| TranslateError::Build {
                order: order_index,
                reason: e.to_string(),
            })?;
            out.push(oru);
        }
    }
    if out.is_empty() {
        let what = if !tree.queries.is_empty() {
            "a host query"
        } else if order_index == 0 {
            "no order records"
        } else {
            "orders without result records"
        };
        return Err(TranslateError::NoResults(what));
    }
    Ok(out)
}

fn join_paths(paths: &[FieldPath]) -> String {
    paths
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first non-empty value among `paths`, looked up in the O or P record as each path says.
/// A path without a component takes the field's first non-empty component (c311 pads
/// `11625^CL-PL-24-0370 ^1`; a mapping that needs another component names it).
fn select_first(o: &Record, p: Option<&Record>, paths: &[FieldPath]) -> Option<String> {
    paths.iter().find_map(|path| {
        let record = match path.record() {
            RecordType::Order => o,
            RecordType::Patient => p?,
            _ => return None,
        };
        let value = match path.component() {
            Some(c) => record
                .component(path.field().get(), c.get())
                .trim()
                .to_string(),
            None => record
                .repeats(path.field().get())
                .next()
                .and_then(|r| r.components().map(str::trim).find(|c| !c.is_empty()))
                .unwrap_or_default()
                .to_string(),
        };
        (!value.is_empty()).then_some(value)
    })
}

fn patient(p: &Record) -> Option<Patient> {
    let ids: Vec<PatientId> = [3, 4]
        .into_iter()
        .map(|f| p.component(f, 1).trim())
        .filter(|id| !id.is_empty())
        .map(|id| PatientId {
            id: id.to_string(),
            assigning_authority: None,
            id_type: None,
        })
        .collect();
    if ids.is_empty() {
        return None;
    }
    let birth = p.field(8).trim();
    let birth_date = birth
        .get(..8)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| Hl7Ts::parse(d).ok());
    let sex = match p.field(9).trim() {
        "M" => Some(Sex::Male),
        "F" => Some(Sex::Female),
        "U" => Some(Sex::Unknown),
        "O" => Some(Sex::Other),
        _ => None,
    };
    Some(Patient {
        ids,
        name: PersonName {
            family: p.component(6, 1).trim().to_string(),
            given: p.component(6, 2).trim().to_string(),
            middle: p.component(6, 3).trim().to_string(),
        },
        birth_date,
        sex,
    })
}

/// OBX-18 default from H.5 (`name^version^serial`): the serial in the analyser's namespace.
fn analyser_equipment(h: &Record) -> Option<Ei> {
    // EI.2 is an IS of at most 20 characters (HL7 v2.5.1 §2.A.28): a longer analyser name is
    // cut there, since it only labels the namespace of the serial.
    let name = truncate(h.component(5, 1).trim(), 20);
    let serial = h.component(5, 3).trim();
    match (name.is_empty(), serial.is_empty()) {
        (_, false) if !name.is_empty() => Some(Ei::with_namespace(serial, name)),
        (_, false) => Some(Ei::from(serial)),
        (false, true) => Some(Ei::from(name)),
        (true, true) => None,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].trim_end(),
        None => s,
    }
}

fn time(value: &str, ctx: &Context<'_>) -> Option<Hl7Ts> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    // A malformed time must not block a result: it is left out (the raw value is not patient
    // data but is also not worth an error).
    astm_local_to_hl7(v, ctx.tz).ok()
}

fn test_code(r: &Record, mapping: &Mapping) -> String {
    mapping
        .test_code
        .iter()
        .filter(|p| p.record() == RecordType::Result)
        .map(|p| r.select(p).trim())
        .find(|c| !c.is_empty())
        .unwrap_or_default()
        .to_string()
}

fn observation(
    r: &Record,
    comment_records: &[&Record],
    mapping: &Mapping,
    ctx: &Context<'_>,
    analyser: &Option<Ei>,
) -> Observation {
    let local = test_code(r, mapping);
    let local_coded = Coded::new(&local, &local, "L");
    let entry = mapping.tests.get(&local);
    let code = match entry {
        Some(e) => Cwe::with_alternate(Coded::new(&e.code, &e.text, &e.system), local_coded),
        None => Cwe::from(local_coded),
    };
    let components: Vec<&str> = r
        .repeats(4)
        .next()
        .map(|rep| rep.components().collect())
        .unwrap_or_default();
    let normalised = value::normalise(&components);
    let range_components: Vec<&str> = r
        .repeats(6)
        .next()
        .map(|rep| rep.components().collect())
        .unwrap_or_default();
    let (flags, vendor_flags) = value::flags(r.repeats(7).map(|rep| rep.components().collect()));
    let status_code = r
        .repeats(9)
        .next()
        .map(|rep| rep.component(1).to_string())
        .unwrap_or_default();
    let status = if normalised.no_result {
        ResultStatus::CannotObtain
    } else {
        value::status(&status_code)
    };
    let mut notes = Vec::new();
    if !normalised.aside.is_empty() {
        notes.push(format!(
            "analyser also reported: {}",
            normalised.aside.join(" ")
        ));
    }
    if !vendor_flags.is_empty() {
        notes.push(format!("analyser flags: {}", vendor_flags.join(" ")));
    }
    if status_code.trim() == "W" {
        notes.push("analyser marked this result with a warning (W)".to_string());
    }
    notes.extend(comments(comment_records));
    let instrument = r.field(14).trim();
    let equipment = if instrument.is_empty() {
        analyser.iter().cloned().collect()
    } else {
        vec![Ei::from(instrument)]
    };
    let sent = r.component(5, 1).trim();
    // The code table's unit for what the analyser sent (its R.5 may be an index, not a unit)
    // goes first, with R.5 beside it as the alternate triplet; anything else is sent as is.
    let units = match entry.and_then(|e| e.units.get(sent)) {
        Some(ucum) => Some(Cwe::with_alternate(
            Coded::new(ucum, ucum, "UCUM"),
            Coded::new(sent, "", "L"),
        )),
        None => (!sent.is_empty()).then(|| Cwe::from(Coded::new(sent, "", ""))),
    };
    Observation {
        code,
        sub_id: None,
        value: normalised.value,
        units,
        reference_range: value::reference_range(&range_components),
        abnormal_flags: flags,
        status,
        observed_at: time(r.field(12), ctx),
        equipment,
        analysed_at: time(r.field(13), ctx),
        notes,
    }
}

/// NTE texts from C records: C.4's components joined with spaces, empty comments skipped.
fn comments(records: &[&Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|c| {
            let text = c
                .repeats(4)
                .flat_map(|rep| {
                    rep.components()
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
                .join(" ");
            (!text.is_empty()).then_some(text)
        })
        .collect()
}

/// OBR-4: O.5's single test (its code found by the same component selectors as R.3, mapped
/// like OBX-3), or a generic panel named after the analyser.
fn panel(o: &Record, mapping: &Mapping) -> Cwe {
    let tests: Vec<String> = o
        .repeats(5)
        .filter_map(|rep| {
            mapping
                .test_code
                .iter()
                .filter_map(|p| p.component())
                .map(|c| rep.component(c.get()).trim())
                .find(|c| !c.is_empty())
                .map(String::from)
        })
        .collect();
    if let [only] = tests.as_slice() {
        let local = Coded::new(only, only, "L");
        return match mapping.tests.get(only) {
            Some(e) => Cwe::with_alternate(Coded::new(&e.code, &e.text, &e.system), local),
            None => Cwe::from(local),
        };
    }
    let app = if mapping.sending_application.is_empty() {
        "ANALYSER"
    } else {
        mapping.sending_application.as_str()
    };
    Cwe::from(Coded::new(app, &format!("{app} results"), "L"))
}

fn order_status(report_type: &str, observations: &[Observation]) -> OrderStatus {
    match report_type.trim() {
        "P" => OrderStatus::Preliminary,
        "C" => OrderStatus::Corrected,
        "X" => OrderStatus::Cancelled,
        "I" => OrderStatus::InProcess,
        _ if observations
            .iter()
            .any(|o| o.status == ResultStatus::Preliminary) =>
        {
            OrderStatus::Preliminary
        }
        _ => OrderStatus::Final,
    }
}

/// Whether a value is present (used by tests and by `translate` summaries).
pub fn has_value(o: &Observation) -> bool {
    !matches!(o.value, ObservationValue::None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use labagent_astm::charset::Charset;
    use labagent_astm::record::parse_message;
    use labagent_hl7::control_id::ControlIdGenerator;

    fn run(text: &str, mapping: &Mapping) -> Result<Vec<OruR01>, TranslateError> {
        let message = parse_message(text.as_bytes(), Charset::Latin1).expect("parse");
        let tz = labagent_hl7::time::time_zone("Europe/London").expect("tz");
        let ctx = Context {
            tz: &tz,
            now: Hl7Ts::parse("20261125120000+0000").expect("ts"),
        };
        let ids = ControlIdGenerator::new("X").expect("prefix");
        let mut n = 0;
        translate(&message, mapping, &ctx, &mut || {
            n += 1;
            ids.generate(n)
        })
    }

    fn one(text: &str) -> OruR01 {
        let mut v = run(text, &Mapping::default_for("an")).expect("translate");
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn one_oru_per_order_with_patient_fields() {
        let orus = run(
            "H|\\^&\rP|1|PRAC1|LAB1||Doe^Jane^Q||19800102|F\rO|1|S1||^^^A\rR|1|^^^A|1\rO|2|S2||^^^B\rR|1|^^^B|2\rL|1|N\r",
            &Mapping::default_for("an"),
        )
        .expect("translate");
        assert_eq!(orus.len(), 2);
        let p = orus[0].patient.as_ref().expect("PID");
        assert_eq!(p.ids[0].id, "PRAC1");
        assert_eq!(p.ids[1].id, "LAB1");
        assert_eq!(p.name.family, "Doe");
        assert_eq!(p.name.given, "Jane");
        assert_eq!(p.sex, Some(Sex::Female));
        assert_eq!(p.birth_date.as_ref().map(Hl7Ts::as_str), Some("19800102"));
        assert_eq!(
            orus[1]
                .order
                .filler_order_number
                .as_ref()
                .map(|e| e.id.as_str()),
            Some("S2")
        );
        assert_ne!(orus[0].msh.control_id, orus[1].msh.control_id);
    }

    #[test]
    fn sysmex_specimen_in_o4_component_3_and_code_in_r3_5() {
        let mut mapping = Mapping::default_for("xn");
        mapping.specimen_id = vec!["O.4.3".parse().expect("path")];
        mapping.test_code = vec!["R.3.5".parse().expect("path")];
        mapping.tests.insert(
            "WBC".into(),
            TestCode {
                code: "6690-2".into(),
                text: "Leukocytes".into(),
                system: "LN".into(),
                units: std::collections::BTreeMap::new(),
            },
        );
        let orus = run(
            "H|\\^&\rP|1\rO|1||1^1^           QC-82151403^B|^^^^WBC\rR|1|^^^^WBC^1|6.2|10*3/uL\rL|1\r",
            &mapping,
        )
        .expect("translate");
        let o = &orus[0];
        assert_eq!(
            o.specimen.filler_id.as_ref().map(|e| e.id.as_str()),
            Some("QC-82151403"),
            "trimmed"
        );
        let code = &o.observations[0].code;
        assert_eq!(code.primary.code, "6690-2");
        assert_eq!(
            code.alternate.as_ref().map(|a| a.code.as_str()),
            Some("WBC")
        );
        let units = o.observations[0].units.as_ref().expect("OBX-6");
        assert_eq!(
            (units.primary.code.as_str(), units.primary.system.as_str()),
            ("10*3/uL", ""),
            "no unit in the table: R.5 as sent"
        );
        assert!(units.alternate.is_none());
    }

    #[test]
    fn a_table_unit_replaces_the_unit_index_it_names_which_stays_as_the_alternate() {
        let mut mapping = Mapping::default_for("pentra");
        mapping.test_code = vec!["R.3.4".parse().expect("path")];
        mapping.tests.insert(
            "HGB".into(),
            TestCode {
                code: "718-7".into(),
                text: "Hemoglobin".into(),
                system: "LN".into(),
                units: std::collections::BTreeMap::from([("1".to_string(), "g/dL".to_string())]),
            },
        );
        let orus = run(
            "H|\\^&\rP|1\rO|1|S1\rR|1|^^^HGB^717-9^1|14.0|1\rR|2|^^^PLT^777-3^1|234|1\rR|3|^^^X|1|\rR|4|^^^HGB^717-9^1|140|2\rL|1\r",
            &mapping,
        )
        .expect("translate");
        let obs = &orus[0].observations;
        let hgb = obs[0].units.as_ref().expect("OBX-6");
        assert_eq!(hgb.primary, Coded::new("g/dL", "g/dL", "UCUM"));
        assert_eq!(hgb.alternate, Some(Coded::new("1", "", "L")));
        let plt = obs[1].units.as_ref().expect("OBX-6");
        assert_eq!(
            plt.primary,
            Coded::new("1", "", ""),
            "not in the table: as sent"
        );
        assert!(obs[2].units.is_none(), "no R.5, no table unit: no OBX-6");
        let other_set = obs[3].units.as_ref().expect("OBX-6");
        assert_eq!(
            (other_set.primary.clone(), other_set.alternate.clone()),
            (Coded::new("2", "", ""), None),
            "an index the table does not name is sent as received, never relabelled"
        );
    }

    #[test]
    fn no_result_marker_gives_status_x() {
        let o = one("H|\\^&\rP|1\rO|1|S\rR|1|^^^WBC^804-5^1|-----|1||||W\rL|1\r");
        assert_eq!(o.observations[0].value, ObservationValue::None);
        assert_eq!(o.observations[0].status, ResultStatus::CannotObtain);
    }

    #[test]
    fn qc_runs_are_marked_and_carry_no_patient() {
        let o = one("H|\\^&|||H500|||||||Q|LIS2-A2\rP|1|PAT1\rO|1|QC1\rR|1|^^^WBC|6.1\rL|1\r");
        assert_eq!(o.specimen.role, SpecimenRole::Control);
        assert!(o.patient.is_none());
        let o = one("H|\\^&\rP|1\rO|1|QC2||^^^A|||||||Q\rR|1|^^^A|1\rL|1\r");
        assert_eq!(o.specimen.role, SpecimenRole::Control, "O.12 = Q");
    }

    #[test]
    fn panther_status_repeat_and_vitros_flags() {
        let o = one("H|\\^&\rP|5\rO|1|S\rR|1|^^^HPV|POS||||||F\\R\rL|1\r");
        assert_eq!(o.observations[0].status, ResultStatus::Final);
        let o = one("H|\\^&\rP|1\rO|1|S\rR|1|^^^ALB|3.1|g/dL||^0^FRMN\\^0^NR||V\rL|1\r");
        assert_eq!(o.observations[0].abnormal_flags, vec!["NR".to_string()]);
        assert!(o.observations[0].notes.iter().any(|n| n.contains("FRMN")));
    }

    #[test]
    fn comments_become_notes_after_their_result() {
        let o = one(
            "H|\\^&\rP|1\rO|1|S\rC|1|I|order note|G\rR|1|^^^A|1\rC|1|I|Instrument Flag^A|I\rL|1\r",
        );
        assert_eq!(o.order.notes, vec!["order note".to_string()]);
        assert_eq!(
            o.observations[0].notes,
            vec!["Instrument Flag A".to_string()]
        );
    }

    #[test]
    fn times_convert_with_bst_and_gmt() {
        let o = one(
            "H|\\^&\rP|1\rO|1|S|||||20260701093000\rR|1|^^^A|1||||||||20261201080000|20260329013000\rL|1\r",
        );
        assert_eq!(
            o.order.observation_time.as_ref().map(Hl7Ts::as_str),
            Some("20260701093000+0100")
        );
        let r = &o.observations[0];
        assert_eq!(
            r.observed_at.as_ref().map(Hl7Ts::as_str),
            Some("20261201080000+0000")
        );
        // 01:30 on 29 March 2026 does not exist in London: shifted forward into BST.
        assert_eq!(
            r.analysed_at.as_ref().map(Hl7Ts::as_str),
            Some("20260329023000+0100")
        );
    }

    #[test]
    fn untranslatable_messages_are_errors_with_reasons() {
        let m = Mapping::default_for("an");
        assert_eq!(
            run("H|\\^&\rQ|1|^S1||ALL\rL|1\r", &m),
            Err(TranslateError::NoResults("a host query"))
        );
        assert!(matches!(
            run("H|\\^&\rP|1\rO|1\rR|1|^^^A|1\rL|1\r", &m),
            Err(TranslateError::NoSpecimenId { order: 1, .. })
        ));
        assert!(matches!(
            run("H|\\^&\rR|1|^^^A|1\rL|1\r", &m),
            Err(TranslateError::Orphans {
                first_type: 'R',
                ..
            })
        ));
    }
}
