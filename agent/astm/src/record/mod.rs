//! The ASTM E1394 (CLSI LIS2-A2) record layer: records, messages and their hierarchy.
//!
//! # Boundary
//! Input is the *text* of one or more messages: the frame layer (E1381) has already removed
//! STX, frame numbers, ETB/ETX, checksums and trailers and concatenated the frame texts
//! (PROTOCOLS §1.2). Output is typed [`Message`]s whose [`Record`]s keep their exact bytes next
//! to the parsed fields, so vendor-specific content is never lost. No I/O, no clock, no panics
//! on any input: malformed input becomes a [`RecordError`], unknown content is kept verbatim.
//!
//! # Pipeline
//! 1. [`split_records`] cuts text at the record terminator CR (tolerating CR LF, LF, CR CR).
//! 2. [`split_messages`] groups records into H … L messages (several per transmission, L
//!    possibly missing).
//! 3. [`parse_message`] reads the [`Delimiters`] from the H record (E1394 §7.1.2) and parses
//!    each record into fields → repeats → components, resolving escape sequences
//!    ([`unescape`]) on bytes and then decoding with the analyser's
//!    [`Charset`](crate::charset::Charset).
//! 4. [`Message::tree`] builds the H > P > O > R (> C/M) hierarchy from record order.
//!
//! [`FieldPath`] (`O.3`, `R.3.4`) names a field or component for configuration.
//!
//! # Field numbering
//! As in E1394 and PROTOCOLS §2.2: field 1 is the record type letter, H.2 is the delimiter
//! definition (kept whole), and in every other record field 2 is the sequence number.
//!
//! # Invariants
//! - A [`Message`] always starts with its H record.
//! - Every record of a message is reachable from its [`Tree`] exactly once.
//! - [`split_records`] never yields an empty record or a terminator byte.
//! - `unescape(escape(v)) == v` for every value `v`.

mod delimiters;
mod escape;
mod kind;
mod message;
mod path;
#[allow(
    clippy::module_inception,
    reason = "record::record holds the Record type, named after the protocol noun"
)]
mod record;
mod separator;
mod tree;

pub use delimiters::{DelimiterError, DelimiterRole, Delimiters};
pub use escape::{escape, unescape};
pub use kind::RecordType;
pub use message::{
    Message, RecordError, TerminationCode, parse_message, parse_messages, split_messages,
};
pub use path::{FieldPath, FieldPathError};
pub use record::{Record, Repeat};
pub use separator::{RecordSpans, split_records};
pub use tree::{OrderGroup, PatientGroup, ResultGroup, Tree};

#[cfg(test)]
mod corpus_tests {
    //! Parses BARE (unframed) traces from the shared corpus (required: a missing corpus fails). The corpus is
    //! read in place, never copied.

    use std::path::PathBuf;

    use super::*;
    use crate::charset::Charset;

    /// `$LABAGENT_CORPUS`, else `shared/corpus` three or two levels above the manifest (the
    /// real crate sits at `agent/astm` in the repo, a scratch copy one level higher).
    fn corpus_dir() -> Option<PathBuf> {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        std::env::var_os("LABAGENT_CORPUS")
            .map(PathBuf::from)
            .into_iter()
            .chain([
                manifest.join("../../../shared/corpus"),
                manifest.join("../../shared/corpus"),
            ])
            .find(|dir| dir.join("abbott_architect_1.astm").is_file())
    }

    fn read(name: &str) -> Option<Vec<u8>> {
        // A missing corpus is a failure, not a skip: CI always has it beside the repository.
        let dir = corpus_dir().expect("corpus not found: set LABAGENT_CORPUS");
        Some(std::fs::read(dir.join(name)).unwrap())
    }

    fn parse_all(name: &str) -> Option<Vec<Result<Message, RecordError>>> {
        read(name).map(|text| parse_messages(&text, Charset::Latin1))
    }

    #[test]
    fn abbott_architect_five_messages() {
        let Some(parsed) = parse_all("abbott_architect_1.astm") else {
            return;
        };
        assert_eq!(parsed.len(), 5);
        let messages: Vec<Message> = parsed.into_iter().map(Result::unwrap).collect();
        for m in &messages {
            assert!(m.terminated(), "L|1 present");
            assert_eq!(m.termination_code(), None, "L|1 has no code");
            assert_eq!(m.header().component(5, 1), "ARCHITECT");
            assert_eq!(m.header().component(5, 3), "F3452430028");
            assert_eq!(m.header().field(14), "20250613131519");
            assert_eq!(m.tree().record_count(), m.records().len());
        }
        let t = messages[0].tree();
        assert_eq!(t.patients.len(), 1);
        let order = &t.patients[0].orders[0];
        assert_eq!(order.record.field(3), "276056250158121");
        assert_eq!(order.record.component(4, 2), "U265");
        assert_eq!(order.results.len(), 3);
        let r1 = order.results[0].record;
        assert_eq!(
            &r1.fields_display()[..5],
            [
                "R",
                "1",
                "^^^580^Anti-HBcII^UNDILUTED^P^73294BE00^02130^^F",
                "0.15",
                "S/CO"
            ]
        );
        assert_eq!(r1.component(3, 4), "580");
        assert_eq!(r1.component(3, 11), "F");
        assert_eq!(order.results[1].record.field(4), "Nonreactive");
        // The fourth message has two results (no interpretation record).
        assert_eq!(messages[3].tree().results().count(), 2);
        assert_eq!(
            messages[4].tree().patients[0].orders[0].record.field(3),
            "CL5X1A30VH"
        );
    }

    /// SOURCES.md says "sample id in P.3"; by E1394 numbering (type = field 1) the record
    /// `P|1||TEST-27-079-5-1` has it in P.4 (laboratory-assigned patient ID), P.3 being empty.
    #[test]
    fn euroimmun_twenty_patients_with_id_in_p4() {
        let Some(parsed) = parse_all("euroimmun_analyzer1_1.astm") else {
            return;
        };
        assert_eq!(parsed.len(), 1);
        let m = parsed.into_iter().next().unwrap().unwrap();
        assert!(m.terminated());
        assert_eq!(m.termination_code(), Some(&TerminationCode::Normal));
        let t = m.tree();
        assert_eq!(t.patients.len(), 20);
        let ids: Vec<&str> = t
            .patients
            .iter()
            .map(|p| p.record.map_or("", |r| r.field(4)))
            .collect();
        assert_eq!(ids[0], "TEST-27-079-5-1");
        assert_eq!(ids[19], "TEST-27-031-5-1");
        let p4: FieldPath = "P.4".parse().unwrap();
        assert_eq!(
            t.patients[1].record.map(|r| r.select(&p4)),
            Some("TEST-27-077-5-1")
        );
        assert_eq!(t.patients[1].record.map(|r| r.field(3)), Some(""));
        for (i, p) in t.patients.iter().enumerate() {
            assert_eq!(
                p.record.map(|r| r.field(2)),
                Some((i + 1).to_string().as_str())
            );
            assert_eq!(p.orders.len(), 1);
            let o = &p.orders[0];
            assert_eq!(o.record.field(2), "1", "O.2 is always 1");
            assert_eq!(o.record.field(3), "", "O.3 is empty");
            assert_eq!(o.results.len(), 1);
            assert_eq!(o.results[0].record.component(3, 4), "SARSCOV2IGA");
        }
        let values: Vec<&str> = t.results().map(|(_, _, r)| r.record.field(4)).collect();
        assert_eq!(&values[..2], [">8", "7,41"]);
        assert_eq!(t.record_count(), m.records().len());
    }

    #[test]
    fn ortho_vision_comment_line_and_empty_l_sequence() {
        let Some(text) = read("ortho_vision_1.astm") else {
            return;
        };
        let parts = split_messages(&text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], b"# VISION ");
        let parsed = parse_messages(&text, Charset::Latin1);
        assert_eq!(
            parsed[0],
            Err(RecordError::MissingHeader {
                index: 0,
                offset: 0,
                found: RecordType::Other(b'#')
            })
        );
        let m = parsed[1].as_ref().unwrap();
        assert!(m.terminated());
        assert_eq!(m.termination_code(), None);
        let last = m.records().last().unwrap();
        assert_eq!(last.raw(), b"L||");
        assert_eq!(last.field(2), "", "empty L sequence number");
        assert_eq!(m.header().component(5, 2), "VISION");
        assert_eq!(m.header().field(13), "LIS2-A");
        let t = m.tree();
        let p = &t.patients[0];
        assert_eq!(p.record.map(|r| r.field(3)), Some("PID123456"));
        assert_eq!(p.record.map(|r| r.component(6, 2)), Some("Bobby"));
        let o = &p.orders[0];
        assert_eq!(o.record.field(3), "SID101");
        assert_eq!(o.results.len(), 2);
        let abo = &o.results[0];
        assert_eq!(abo.record.field(3), "ABO");
        assert_eq!(abo.record.field(4), "A");
        assert_eq!(abo.record.field(7), "T");
        assert_eq!(abo.manufacturer.len(), 3);
        assert_eq!(abo.manufacturer[0].field(3), "Anti-A");
        assert_eq!(o.results[1].record.field(4), "NEG");
        assert_eq!(o.results[1].manufacturer.len(), 2);
        assert!(t.orphans.is_empty());
        assert_eq!(t.record_count(), m.records().len());
    }

    #[test]
    fn other_bare_traces_quirks() {
        if let Some(parsed) = parse_all("abbott_m2000_1.astm") {
            let m = parsed[0].as_ref().unwrap();
            assert!(!m.terminated(), "snippet has no L");
            let r = m.tree().results().next().map(|(_, _, r)| r.record);
            assert_eq!(r.map(|r| r.field(4)), Some("< 839"));
            assert_eq!(r.map(|r| r.field(5)), Some("Copies / mL"));
        }
        if let Some(parsed) = parse_all("abbott_m2000_2.astm") {
            let m = parsed[0].as_ref().unwrap();
            let o = &m.tree().patients[0].orders[0];
            assert_eq!(o.record.field(3), "DB&23-33E22");
            assert_eq!(o.record.component(4, 1), "DB&23-33E22");
        }
        if let Some(parsed) = parse_all("horiba_yumizenh550_2.astm") {
            let m = parsed[0].as_ref().unwrap();
            assert_eq!(m.delimiters(), Delimiters::default());
            assert_eq!(m.header().field(2), "\\\\^&");
            assert_eq!(m.header().component(5, 1), "H550");
            assert_eq!(m.termination_code(), Some(&TerminationCode::Normal));
            assert_eq!(m.tree().results().count(), 20);
        }
        if let Some(parsed) = parse_all("hologic_panther_1.astm") {
            let m = parsed[0].as_ref().unwrap();
            let t = m.tree();
            assert_eq!(t.patients[0].record.map(|p| p.field(2)), Some("5"));
            let (_, _, r) = t.results().next().unwrap();
            let status: Vec<&str> = r.record.repeats(9).map(|rep| rep.component(1)).collect();
            assert_eq!(status, ["F", "R"]);
            assert_eq!(t.results().count(), 7);
        }
    }

    /// Every BARE `.astm` file (no control bytes, i.e. not framed) parses into messages that
    /// account for every record.
    #[test]
    fn every_bare_trace_accounts_for_every_record() {
        let dir = corpus_dir().expect("corpus not found: set LABAGENT_CORPUS");
        let mut visited = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "astm") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            if text.iter().any(|&b| b < 0x20 && b != b'\r' && b != b'\n') {
                continue; // framed: the frame layer's job
            }
            visited += 1;
            let parsed = parse_messages(&text, Charset::Latin1);
            let total: usize = split_messages(&text)
                .iter()
                .map(|part| split_records(part).count())
                .sum();
            assert_eq!(total, split_records(&text).count(), "{}", path.display());
            for m in parsed.iter().flatten() {
                assert_eq!(
                    m.tree().record_count(),
                    m.records().len(),
                    "{}",
                    path.display()
                );
            }
            if path.file_name().is_some_and(|n| n == "roche_psm_1.astm") {
                // Frame numbers left in front of every record (`1H|…`): stripping them is the
                // frame layer's job, so here nothing is a header and nothing is dropped.
                assert!(parsed.iter().all(|m| matches!(
                    m,
                    Err(RecordError::MissingHeader {
                        found: RecordType::Other(b'0'..=b'7'),
                        ..
                    })
                )));
            } else {
                assert!(parsed.iter().any(Result::is_ok), "{}", path.display());
            }
        }
        assert!(
            visited >= 10,
            "only {visited} bare traces found in {}",
            dir.display()
        );
    }
}
