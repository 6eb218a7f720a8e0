//! Every real HL7 trace in the shared corpus parses, keeps every byte, and the BA400 ACK reads.
//!
//! The corpus is third-party data read in place (never copied): `LABAGENT_CORPUS`, else
//! `<crate>/../../../shared/corpus`. When it is absent these tests say so and pass.

use std::path::{Path, PathBuf};

use labagent_hl7::*;

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("corpus not found at {}: skipping", dir.display());
        None
    }
}

fn hl7_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hl7") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// What `encode` must return: framing removed, separators CR, blank lines dropped.
fn normalised(bytes: &[u8]) -> String {
    let s = std::str::from_utf8(strip_mllp(bytes)).unwrap();
    let mut out = String::new();
    for line in s.split(['\r', '\n']) {
        if !line.trim().is_empty() {
            out.push_str(line);
            out.push('\r');
        }
    }
    out
}

#[test]
fn every_corpus_hl7_file_parses_losslessly() {
    let Some(dir) = corpus_dir() else { return };
    let files = hl7_files(&dir);
    assert!(
        files.len() >= 8,
        "expected the corpus HL7 files, found {files:?}"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let m = Message::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(m.encode(), normalised(&bytes), "{}", f.display());
        assert_eq!(Message::parse(m.as_bytes()).unwrap(), m, "{}", f.display());
        assert!(m.segment_count() >= 2, "{}", f.display());
        assert!(!m.control_id().is_empty(), "{}", f.display());
    }
}

#[test]
fn vendor_segments_and_fields_are_kept() {
    let Some(dir) = corpus_dir() else { return };
    let m = Message::parse(&std::fs::read(dir.join("roche_cobas5800_1.hl7")).unwrap()).unwrap();
    let obx = m.segment("OBX").unwrap();
    assert_eq!(obx.field(29).text(), "RSLT");
    assert_eq!(
        obx.field(18).repetition(2).component(1).text(),
        "c5800.1640"
    );
    assert_eq!(
        m.segment("SPM")
            .unwrap()
            .field(2)
            .component(1)
            .subcomponent(2)
            .text(),
        "ROCHE"
    );
    assert_eq!(m.accept_ack_type(), "NE");
    assert_eq!(m.application_ack_type(), "AL");

    let m = Message::parse(&std::fs::read(dir.join("roche_citm_1.hl7")).unwrap()).unwrap();
    for id in ["TCD", "SID", "ZRI", "SAC"] {
        assert!(m.segment(id).is_some(), "{id}");
    }
    let obx = m.segment("OBX").unwrap();
    assert_eq!(obx.field(2).raw(), "");
    assert_eq!(obx.field(5).raw(), "34\\S\\");
    assert_eq!(obx.field(5).text(), "34^");
    assert_eq!(m.version(), "2.4");

    let m =
        Message::parse(&std::fs::read(dir.join("siemens_clinitekstatus_1.hl7")).unwrap()).unwrap();
    assert_eq!(m.segments_with_id("OBX").count(), 12);
    assert_eq!(m.message_type().trigger, "R01");
}

#[test]
fn truncated_ba400_still_gives_segments() {
    let Some(dir) = corpus_dir() else { return };
    let bytes = std::fs::read(dir.join("biosystems_ba400_1.hl7")).unwrap();
    assert_eq!(bytes.len(), 1024);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.control_id(), "11b511e6-4655-4643-9bce-e5bfff81aa3a");
    assert_eq!(m.segment("OBR").unwrap().field(2).raw(), "\"\"");
    assert!(m.segment("OBR").unwrap().field(2).is_null());
    let last = m.segment_at(m.segment_count() - 1).unwrap();
    assert_eq!(last.id(), "OBX");
    assert_eq!(last.field(18).repetition(2).raw(), "834");
    // Every prefix of the capture parses or fails with a typed error, never a panic.
    for n in 0..=bytes.len() {
        let _ = Message::parse(&bytes[..n]);
    }
}

#[test]
fn ba400_ack_parses_and_matches_its_message() {
    let Some(dir) = corpus_dir() else { return };
    let ack = parse_ack(&std::fs::read(dir.join("biosystems_ba400_1_ack.hl7")).unwrap()).unwrap();
    assert_eq!(ack.code, AckCode::AA);
    assert_eq!(ack.class(), AckClass::Accepted);
    assert_eq!(ack.message_control_id, "30101");
    let oul = Message::parse(&std::fs::read(dir.join("biosystems_ba400_1.hl7")).unwrap()).unwrap();
    assert!(ack.acknowledges(oul.control_id().as_ref()));
    assert!(!ack.acknowledges(&ControlId::new("30101").unwrap()));

    // Our own ACK to the same OUL has the corpus ACK's shape: ER|AL success -> AA.
    let ts = Hl7Ts::parse("20230511171717+0530").unwrap();
    let id = ControlId::new("30101").unwrap();
    let ours = build_ack(
        &oul,
        AckClass::Accepted,
        &AckParams {
            datetime: &ts,
            control_id: &id,
            text: None,
            error: None,
        },
    );
    assert_eq!(
        ours,
        "MSH|^~\\&|Host|Host provider|BA400|Biosystems|20230511171717+0530||ACK^R22^ACK|30101|P|2.5.1||||||UNICODE UTF-8\rMSA|AA|11b511e6-4655-4643-9bce-e5bfff81aa3a\r"
    );
    let back = parse_ack(ours.as_bytes()).unwrap();
    assert!(back.acknowledges(oul.control_id().as_ref()));
}
