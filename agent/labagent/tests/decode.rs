//! `labagent decode` on real corpus traces and on damaged input.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

fn corpus() -> PathBuf {
    let dir = std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    assert!(dir.is_dir(), "corpus missing at {}", dir.display());
    dir
}

fn decode(files: &[PathBuf]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = Command::new(BIN)
        .arg("decode")
        .args(files)
        .output()
        .expect("run labagent");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (
        out.status.code(),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn decodes_sysmex_wire_capture() {
    let file = corpus().join("reconstructed/sysmex_xn550_1.wire.astm");
    let (code, lines, stderr) = decode(std::slice::from_ref(&file));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 1);
    let m = &lines[0];
    assert_eq!(m["frames"], 40);
    assert_eq!(m["checksum_errors"], 0);
    assert_eq!(m["file"], file.display().to_string());
    let records = m["records"].as_array().expect("records");
    assert_eq!(records.len(), 40);
    assert_eq!(records[0]["type"], "H");
    assert_eq!(records[0]["fields"][1], "\\^&");
    let r1 = records.iter().find(|r| r["type"] == "R").expect("an R");
    assert_eq!(r1["fields"][0], "R");
    assert_eq!(r1["fields"][1], "1");
    assert_eq!(r1["fields"][2], "^^^^WBC^1");
}

#[test]
fn decodes_several_messages_and_files() {
    let dir = corpus();
    let (code, lines, stderr) = decode(&[
        dir.join("abbott_architect_1.astm"),
        dir.join("roche_cobase411_1.astm"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 6, "5 ARCHITECT messages and 1 e411 message");
    // The e411 R record split mid-field across ETB frames is whole again.
    let e411 = &lines[5]["records"];
    let r2 = e411
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["type"] == "R" && r["fields"][1] == "2")
        .expect("R|2");
    assert_eq!(r2["fields"][2], "^^^7/1/not");
    assert_eq!(r2["fields"][3], "9.61");
}

#[test]
fn damaged_capture_names_file_and_offset_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.astm");
    // ENQ, a frame with a wrong checksum at byte 1, EOT.
    std::fs::write(&path, b"\x05\x021H|\\^&\r\x0300\r\n\x04").expect("write");
    let (code, _, stderr) = decode(std::slice::from_ref(&path));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad.astm"), "{stderr}");
    assert!(stderr.contains("byte 1"), "{stderr}");
    assert!(stderr.contains("checksum"), "{stderr}");
}

#[test]
fn decodes_hl7_files() {
    let file = corpus().join("siemens_clinitekstatus_1.hl7");
    let (code, lines, stderr) = decode(std::slice::from_ref(&file));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 1);
    let segs = lines[0]["segments"].as_array().expect("segments");
    assert_eq!(segs[0]["id"], "MSH");
    assert!(segs.iter().any(|s| s["id"] == "OBX"));
}

#[test]
fn missing_file_exits_1() {
    let (code, _, stderr) = decode(&[PathBuf::from("/nonexistent/capture.astm")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/capture.astm"));
}

#[test]
fn decodes_two_mllp_framed_messages_and_names_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("two.hl7");
    let mut bytes =
        b"\x0bMSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5.1\rOBX|1|ST|X||a\\S\\b\r\x1c\r".to_vec();
    bytes.extend_from_slice(b"\x0bMSH|^~\\&|A|B|C|D|20260101||ORU^R01|2|P|2.5.1\r\x1c\r");
    std::fs::write(&path, &bytes).expect("write");
    let (code, lines, stderr) = decode(std::slice::from_ref(&path));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines.len(), 2);
    let obx = &lines[0]["segments"][1];
    assert_eq!(obx["id"], "OBX");
    assert_eq!(obx["fields"][5], "a^b", "escape resolved");
    assert_eq!(lines[1]["segments"][0]["fields"][10], "2");

    std::fs::write(&path, b"MSH|^~\\&|A\rPID|1\rOBX|bad segment id\r1BAD|x\r").expect("write");
    let (code, _, stderr) = decode(std::slice::from_ref(&path));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("two.hl7: message 1"), "{stderr}");
}
