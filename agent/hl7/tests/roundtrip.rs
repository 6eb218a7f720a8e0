//! Property tests: generated messages survive encode → parse, builder values survive
//! builder → parser (every delimiter, the escape character, CR and LF included), and no input
//! makes the parsers panic.

mod common;

use labagent_hl7::*;
use proptest::prelude::*;

/// Delimiter sets to generate with: standard and two unusual ones.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    prop_oneof![
        Just(Delimiters::STANDARD),
        Just(Delimiters::new('#', '@', '*', '!', '$').unwrap()),
        Just(Delimiters::new('|', '`', '\\', '&', '^').unwrap()),
    ]
}

/// Text using every delimiter of every set, escape-looking sequences, CR, LF and non-ASCII.
fn value() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        "([a-z0-9 ]|[|^~\\\\&#@*!$`\r\n]|é|中|\\\\F\\\\|\\\\X0D\\\\){0,12}",
    )
    .unwrap()
}

type Field = Vec<Vec<Vec<String>>>; // repetitions -> components -> subcomponents
type Seg = (String, Vec<Field>);

fn segment() -> impl Strategy<Value = Seg> {
    let id = prop_oneof![
        Just("PID"),
        Just("OBX"),
        Just("NTE"),
        Just("ZXY"),
        Just("SPM"),
        Just("TCD")
    ]
    .prop_map(str::to_owned);
    let field = prop::collection::vec(
        prop::collection::vec(prop::collection::vec(value(), 1..3), 1..4),
        1..3,
    );
    (id, prop::collection::vec(field, 0..8))
}

fn write(d: Delimiters, header: &[String], segs: &[Seg]) -> String {
    let mut w = Er7Writer::new(String::new(), d);
    w.msh();
    for v in header {
        w.field_text(v);
    }
    for (id, fields) in segs {
        w.segment(id);
        for f in fields {
            w.field();
            for (r, rep) in f.iter().enumerate() {
                if r > 0 {
                    w.repetition();
                }
                for (c, comp) in rep.iter().enumerate() {
                    if c > 0 {
                        w.component();
                    }
                    for (s, sub) in comp.iter().enumerate() {
                        if s > 0 {
                            w.subcomponent();
                        }
                        w.text(sub);
                    }
                }
            }
        }
    }
    w.finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_messages_round_trip(
        d in delimiters(),
        header in prop::collection::vec(value(), 0..12),
        segs in prop::collection::vec(segment(), 0..6),
    ) {
        let text = write(d, &header, &segs);
        let m = Message::parse_str(&text).unwrap();
        prop_assert_eq!(m.encode(), text.as_str());
        prop_assert_eq!(&Message::parse(m.as_bytes()).unwrap(), &m);
        prop_assert_eq!(*m.delimiters(), d);
        prop_assert_eq!(m.segment_count(), segs.len() + 1);
        for (i, v) in header.iter().enumerate() {
            prop_assert_eq!(m.msh().field(i + 3).text(), v.as_str());
        }
        for (si, (id, fields)) in segs.iter().enumerate() {
            let seg = m.segment_at(si + 1).unwrap();
            prop_assert_eq!(seg.id(), id.as_str());
            for (fi, f) in fields.iter().enumerate() {
                let field = seg.field(fi + 1);
                for (ri, rep) in f.iter().enumerate() {
                    for (ci, comp) in rep.iter().enumerate() {
                        for (ki, sub) in comp.iter().enumerate() {
                            let got = field.repetition(ri + 1).component(ci + 1).subcomponent(ki + 1);
                            prop_assert_eq!(got.text(), sub.as_str());
                        }
                    }
                }
            }
        }
        // LF and CRLF separators give the same message.
        prop_assert_eq!(&Message::parse_str(&text.replace('\r', "\n")).unwrap(), &m);
        prop_assert_eq!(&Message::parse_str(&text.replace('\r', "\r\n")).unwrap(), &m);
    }

    #[test]
    fn builder_values_round_trip(
        st in value(), note in value(), range in value(), family in value(),
        given in value(), unit in value(), code_text in value(), flag in value(),
        id in value(), specimen in value(),
    ) {
        let mut oru = common::representative();
        let p = oru.patient.as_mut().unwrap();
        p.name.family = family.clone();
        p.name.given = given.clone();
        p.ids[0].id = format!("x{id}");
        oru.order.notes = vec![note.clone()];
        oru.specimen.placer_id = Some(Ei::from(format!("s{specimen}").as_str()));
        let obs = &mut oru.observations[2];
        obs.value = ObservationValue::String(st.clone());
        obs.reference_range = Some(range.clone());
        obs.units = Some(Coded::new("u", &unit, "99U").into());
        obs.code.primary.text = code_text.clone();
        obs.abnormal_flags = vec![flag.clone(), "H".into()];
        obs.notes = vec![note.clone(), st.clone()];

        let text = oru.encode().unwrap();
        let m = Message::parse_str(&text).unwrap();
        prop_assert_eq!(m.encode(), text.as_str());
        let pid = m.segment("PID").unwrap();
        if !(family.is_empty() && given.is_empty()) {
            prop_assert_eq!(pid.field(5).component(1).text(), family.as_str());
            prop_assert_eq!(pid.field(5).component(2).text(), given.as_str());
        }
        prop_assert_eq!(pid.field(3).component(1).text().into_owned(), format!("x{id}"));
        prop_assert_eq!(m.segment("NTE").unwrap().field(3).text(), note.as_str());
        prop_assert_eq!(
            m.segment("SPM").unwrap().field(2).component(1).subcomponent(1).text().into_owned(),
            format!("s{specimen}")
        );
        let obx = m.segments_with_id("OBX").nth(2).unwrap();
        prop_assert_eq!(obx.field(5).text(), st.as_str());
        prop_assert_eq!(obx.field(7).text(), range.as_str());
        prop_assert_eq!(obx.field(6).component(2).text(), unit.as_str());
        prop_assert_eq!(obx.field(3).component(2).text(), code_text.as_str());
        prop_assert_eq!(obx.field(8).repetition(1).text(), flag.as_str());
        prop_assert_eq!(obx.field(8).repetition(2).text(), "H");
        let notes: Vec<String> = m
            .segments()
            .skip_while(|s| s.index() <= obx.index())
            .take_while(|s| s.id() == "NTE")
            .map(|s| s.field(3).text().into_owned())
            .collect();
        prop_assert_eq!(notes, vec![note.clone(), st.clone()]);
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(&bytes);
        let _ = parse_ack(&bytes);
        let mut with_header = b"MSH|^~\\&|".to_vec();
        with_header.extend_from_slice(&bytes);
        if let Ok(m) = Message::parse(&with_header) {
            for s in m.segments() {
                for f in s.fields() {
                    for r in f.repetitions() {
                        for c in r.components() {
                            for sc in c.subcomponents() {
                                let _ = sc.text();
                            }
                        }
                    }
                }
            }
            let _ = m.message_type();
        }
        let _ = parse_ack(&with_header);
    }

    #[test]
    fn structured_lines_never_panic(
        lines in prop::collection::vec("[A-Z]{3}[|^~\\\\&\r\n a-z0-9\"]{0,30}", 0..10),
        sep in prop_oneof![Just("\r"), Just("\n"), Just("\r\n")],
    ) {
        let text = format!("MSH|^~\\&|A{}{}", sep, lines.join(sep));
        if let Ok(m) = Message::parse_str(&text) {
            prop_assert!(m.segment_count() >= 1);
            prop_assert_eq!(&Message::parse(m.as_bytes()).unwrap(), &m);
        }
        let _ = parse_ack(text.as_bytes());
    }
}

#[test]
fn every_delimiter_and_cr_through_builder_and_parser() {
    let nasty = "|^~\\&\r\n\\F\\ end";
    let mut oru = common::representative();
    oru.observations[2].value = ObservationValue::String(nasty.into());
    oru.observations[2].notes = vec![nasty.into()];
    let text = oru.encode().unwrap();
    assert_eq!(text.matches('\r').count(), 10, "{text:?}");
    let m = Message::parse_str(&text).unwrap();
    let obx = m.segments_with_id("OBX").nth(2).unwrap();
    assert_eq!(obx.field(5).text(), nasty);
    assert_eq!(
        m.segment_at(obx.index() + 1).unwrap().field(3).text(),
        nasty
    );
}
