//! `labagent translate` with a configuration: the source's mapping applies; a capture that
//! cannot be translated exits 1 naming the file, message and reason.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/validator.rs"]
mod validator;

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

fn corpus() -> PathBuf {
    std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"))
}

/// `labagent translate --config CONFIG --source SOURCE` of a corpus capture at a fixed time;
/// its standard output (it must succeed).
fn translate(config: &Path, source: &str, capture: &str) -> String {
    let out = Command::new(BIN)
        .args(["translate", "--config"])
        .arg(config)
        .args(["--source", source, "--at", "20261125120000+0000"])
        .arg(corpus().join(capture))
        .output()
        .expect("translate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn translate_uses_the_sources_mapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        r#"
[agent]
id = "lab1"
state_dir = "state"
timezone = "Europe/London"

[[source]]
name = "xn"
kind = "astm-tcp"
listen = "127.0.0.1:5299"
mapping = "sysmex-xn"

[mapping.sysmex-xn]
sending_application = "XN-550"
sending_facility = "LAB1"
receiving_application = "EHR"
receiving_facility = "CLINIC"
specimen_id = "O.4.3"
test_code = "R.3.5"
specimen_type = "BLD"
[mapping.sysmex-xn.tests]
"WBC" = { code = "6690-2", text = "Leukocytes [#/volume] in Blood", system = "LN" }

[[sink]]
name = "files"
kind = "file"
dir = "out"
"#,
    )
    .expect("config");
    let text = translate(&config, "xn", "reconstructed/sysmex_xn550_1.wire.astm");
    let segments: Vec<&str> = text.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    assert!(
        segments[0]
            .starts_with("MSH|^~\\&|XN-550|LAB1|EHR|CLINIC|20261125120000+0000||ORU^R01^ORU_R01|")
    );
    assert!(
        segments
            .iter()
            .any(|s| s.starts_with("OBR|1|QC-82151403|QC-82151403|"))
    );
    assert!(
        segments.iter().any(|s| s
            .starts_with("OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood^LN^WBC^WBC^L||16.74|")),
        "{text}"
    );

    let spm = segments
        .iter()
        .find(|s| s.starts_with("SPM|"))
        .expect("SPM");
    assert_eq!(
        spm.split('|').nth(4),
        Some("BLD^Whole blood^HL70487"),
        "SPM-4 from specimen_type: {spm}"
    );

    let out = Command::new(BIN)
        .args(["translate", "--config"])
        .arg(&config)
        .args(["--source", "nope"])
        .arg(corpus().join("roche_cobase411_4.astm"))
        .output()
        .expect("translate");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn untranslatable_capture_exits_1_with_the_reason() {
    let out = Command::new(BIN)
        .args(["translate"])
        .arg(corpus().join("ortho_vitros3600_3.astm"))
        .output()
        .expect("translate");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ortho_vitros3600_3.astm: message 1: no results to translate (a host query)"),
        "{err}"
    );
}

/// The shipped Pentra sample maps each test to a UCUM unit, because the Pentra's R.5 is a unit
/// set index (`1`): OBX-6 carries the unit, the index stays as the alternate triplet, and the
/// message passes the strict validator.
#[test]
fn pentra_sample_sends_ucum_units_for_its_unit_index() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/horiba-pentra.toml");
    let text = translate(&config, "pentra", "horiba_pentraxlr_1.astm");
    let obx6 = |code: &str| -> Option<String> {
        text.split(['\r', '\n'])
            .filter(|s| s.starts_with("OBX|"))
            .find(|s| {
                s.split('|')
                    .nth(3)
                    .is_some_and(|f| f.contains(&format!("^{code}^L")))
            })
            .and_then(|s| s.split('|').nth(6).map(str::to_string))
    };
    assert_eq!(
        obx6("WBC").as_deref(),
        Some("10*3/uL^10*3/uL^UCUM^1^^L"),
        "{text}"
    );
    assert_eq!(
        obx6("HGB").as_deref(),
        Some("g/dL^g/dL^UCUM^1^^L"),
        "{text}"
    );
    assert_eq!(obx6("HCT").as_deref(), Some("%^%^UCUM^1^^L"), "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("pentra.hl7");
    std::fs::write(&file, text.as_bytes()).expect("write");
    let (summary, ok) = validator::validate_strictly(&[file]);
    assert!(ok >= 1, "{summary}");
}
