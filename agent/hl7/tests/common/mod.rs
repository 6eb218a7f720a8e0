//! Sample ORU^R01 messages shared by the integration tests.
#![allow(dead_code)]

use labagent_hl7::*;

pub fn ts(s: &str) -> Hl7Ts {
    Hl7Ts::parse(s).expect("valid test timestamp")
}

pub fn msh(control_id: &str) -> MshFields {
    MshFields {
        sending_application: "XN-550".into(),
        sending_facility: "LAB1".into(),
        receiving_application: "EHR".into(),
        receiving_facility: "CLINIC".into(),
        datetime: ts("20260329023000+0100"),
        control_id: ControlId::new(control_id).expect("valid test control id"),
        processing_id: ProcessingId::Production,
        accept_ack_type: None,
        application_ack_type: None,
        character_set: Some("UNICODE UTF-8".into()),
    }
}

pub fn numeric_obs(local: &str, loinc: &str, text: &str, value: &str, unit: &str) -> Observation {
    Observation {
        code: Cwe::with_alternate(
            Coded::new(loinc, text, "LN"),
            Coded::new(local, local, "99XN"),
        ),
        value: ObservationValue::Numeric(value.into()),
        units: Some(Coded::new(unit, unit, "UCUM").into()),
        reference_range: Some("4.0-11.0".into()),
        abnormal_flags: vec!["N".into()],
        status: ResultStatus::Final,
        equipment: vec![Ei::with_namespace("XN-550", "Sysmex"), Ei::from("14718")],
        analysed_at: Some(ts("20260329021500+0100")),
        ..Observation::default()
    }
}

/// A representative message: patient, numeric, SN, ST with every delimiter, and notes.
pub fn representative() -> OruR01 {
    OruR01 {
        msh: msh("lab1-pi0000000000001"),
        patient: Some(Patient {
            ids: vec![
                PatientId {
                    id: "9434765919".into(),
                    assigning_authority: Some("NHS".into()),
                    id_type: Some("NH".into()),
                },
                PatientId {
                    id: "L12345".into(),
                    assigning_authority: Some("LAB1".into()),
                    id_type: Some("MR".into()),
                },
            ],
            name: PersonName {
                family: "O'Brien".into(),
                given: "Ann".into(),
                middle: "M".into(),
            },
            birth_date: Some(ts("19800101")),
            sex: Some(Sex::Female),
        }),
        visit: None,
        order: Order {
            placer_order_number: None,
            filler_order_number: Some(Ei::from("SID123")),
            universal_service_id: Coded::new(
                "58410-2",
                "CBC panel - Blood by Automated count",
                "LN",
            )
            .into(),
            observation_time: Some(ts("20260329020000+0100")),
            results_reported_at: None,
            diagnostic_section: Some("HM".into()),
            result_status: OrderStatus::Final,
            notes: vec!["Sample slightly haemolysed".into()],
        },
        observations: vec![
            numeric_obs(
                "WBC",
                "6690-2",
                "Leukocytes [#/volume] in Blood",
                "6.2",
                "10*9/L",
            ),
            Observation {
                code: Cwe::with_alternate(
                    Coded::new(
                        "1988-5",
                        "C reactive protein [Mass/volume] in Serum or Plasma",
                        "LN",
                    ),
                    Coded::new("CRP", "CRP", "99XN"),
                ),
                value: ObservationValue::Structured(StructuredNumeric::compare(
                    Comparator::Lt,
                    "0.5",
                )),
                units: Some(Coded::new("mg/L", "mg/L", "UCUM").into()),
                abnormal_flags: vec!["L".into(), "<".into()],
                status: ResultStatus::Final,
                ..Observation::default()
            },
            Observation {
                code: Cwe::with_alternate(
                    Coded::new("X-COMMENT", "Analyser comment", "99LOCAL"),
                    Coded::new("MSG", "MSG", "99XN"),
                ),
                value: ObservationValue::String("Pos|itive ^ & ~ \\ done".into()),
                status: ResultStatus::Preliminary,
                notes: vec!["Repeat: 1^2|3".into(), "second note".into()],
                ..Observation::default()
            },
        ],
        specimen: Specimen {
            placer_id: Some(Ei::from("SID123")),
            filler_id: None,
            specimen_type: Specimen::table_0487(Specimen::TYPE_WHOLE_BLOOD),
            role: SpecimenRole::Patient,
            collected_at: Some(ts("20260329020000+0100")),
            received_at: None,
        },
    }
}

/// The set written for the external validator.
pub fn validator_set() -> Vec<(&'static str, OruR01)> {
    let numeric = representative();

    let mut sn = representative();
    sn.msh.control_id = ControlId::new("SN1").expect("valid");
    sn.observations = vec![
        Observation {
            value: ObservationValue::Structured(StructuredNumeric::compare(
                Comparator::Gt,
                "15000",
            )),
            ..numeric_obs(
                "PLT",
                "777-3",
                "Platelets [#/volume] in Blood",
                "1",
                "10*9/L",
            )
        },
        Observation {
            value: ObservationValue::Structured(StructuredNumeric::range("1", "5")),
            ..numeric_obs(
                "RBCU",
                "13945-1",
                "Erythrocytes [#/area] in Urine sediment",
                "1",
                "/[HPF]",
            )
        },
        Observation {
            value: ObservationValue::Structured(StructuredNumeric::ratio("1", "128")),
            ..numeric_obs(
                "TITR",
                "5048-4",
                "Nuclear Ab [Titer] in Serum",
                "1",
                "{titer}",
            )
        },
    ];

    let mut st = representative();
    st.msh.control_id = ControlId::new("ST1").expect("valid");
    st.observations = vec![
        Observation {
            value: ObservationValue::String("a|b^c~d\\e&f\rg\nh".into()),
            notes: vec!["note with | ^ ~ \\ & and\rCR".into()],
            ..numeric_obs("TXT", "X-1", "Text", "1", "1")
        },
        Observation {
            value: ObservationValue::Text("free text\nline 2".into()),
            units: None,
            ..numeric_obs("TX", "X-2", "Text", "1", "1")
        },
        Observation {
            value: ObservationValue::Coded(Coded::new("260385009", "Negative", "SCT").into()),
            units: None,
            ..numeric_obs("CW", "X-3", "Coded", "1", "1")
        },
    ];

    let mut x = representative();
    x.msh.control_id = ControlId::new("X1").expect("valid");
    x.order.result_status = OrderStatus::Cancelled;
    x.observations = vec![Observation {
        value: ObservationValue::None,
        units: None,
        reference_range: None,
        abnormal_flags: vec![],
        status: ResultStatus::CannotObtain,
        notes: vec!["-----".into()],
        ..numeric_obs(
            "HGB",
            "718-7",
            "Hemoglobin [Mass/volume] in Blood",
            "1",
            "g/dL",
        )
    }];

    let mut qc = representative();
    qc.msh.control_id = ControlId::new("QC1").expect("valid");
    qc.patient = None;
    qc.specimen.role = SpecimenRole::Control;
    qc.specimen.placer_id = Some(Ei::from("QC-82151403"));
    qc.order.filler_order_number = Some(Ei::from("QC-82151403"));

    let mut anon = representative();
    anon.msh.control_id = ControlId::new("NOPAT1").expect("valid");
    anon.patient = None;
    anon.msh.accept_ack_type = Some(AckType::Always);
    anon.msh.application_ack_type = Some(AckType::Never);

    let mut visit = representative();
    visit.msh.control_id = ControlId::new("PV1").expect("valid");
    visit.visit = Some(Visit {
        patient_class: PatientClass::Outpatient,
        visit_number: Some("V42".into()),
    });
    visit.order.placer_order_number = Some(Ei::with_namespace("ORD9", "EHR"));
    visit.specimen.filler_id = Some(Ei::with_namespace("SID123", "LAB1"));
    visit.specimen.specimen_type = Specimen::default().specimen_type;

    vec![
        ("numeric", numeric),
        ("sn", sn),
        ("st", st),
        ("no_result_x", x),
        ("qc", qc),
        ("no_patient", anon),
        ("visit", visit),
    ]
}
