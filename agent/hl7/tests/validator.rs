//! Built ORU^R01 messages validate as ORU_R01 v2.5.1 with the project's external validator
//! (`shared/tools/validate_oru.py`, hl7apy strict mode plus a segment-order check).
//!
//! Locations: `LABAGENT_VALIDATOR_PY` (a python with hl7apy) else
//! `<workspace>/.venv-tools/bin/python`; `LABAGENT_SHARED` else `<workspace>/../shared`.
//! A missing python, hl7apy or script FAILS this test; set `LABAGENT_SKIP_VALIDATOR=1` to skip
//! it explicitly.

mod common;

use std::path::PathBuf;
use std::process::Command;

use labagent_hl7::Message;

const INSTALL: &str = "install it once with: python3 -m venv .venv-tools && \
                       .venv-tools/bin/pip install hl7apy==1.3.5 (in the workspace root), or set \
                       LABAGENT_VALIDATOR_PY, or LABAGENT_SKIP_VALIDATOR=1 to skip explicitly";

#[test]
fn built_messages_pass_validate_oru() {
    if std::env::var("LABAGENT_SKIP_VALIDATOR").as_deref() == Ok("1") {
        eprintln!("LABAGENT_SKIP_VALIDATOR=1: external ORU validation skipped");
        return;
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("LABAGENT_VALIDATOR_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".venv-tools/bin/python"));
    let shared = std::env::var_os("LABAGENT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("../shared"));
    let script = shared.join("tools/validate_oru.py");
    assert!(
        python.exists(),
        "validator python not found at {}; {INSTALL}",
        python.display()
    );
    assert!(
        script.exists(),
        "validator script not found at {} (set LABAGENT_SHARED)",
        script.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, oru) in common::validator_set() {
        let text = oru.encode().unwrap();
        // Our own parser reads back what we built.
        let parsed = Message::parse_str(&text).unwrap();
        assert_eq!(parsed.encode(), text);
        let path = dir.path().join(format!("{name}.hl7"));
        std::fs::write(&path, text).unwrap();
        files.push(path);
    }
    let out = Command::new(&python)
        .arg(&script)
        .args(["--as-version", "2.5.1"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL}", python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named"),
        "hl7apy is missing from {}: {stderr}; {INSTALL}",
        python.display()
    );
    assert!(
        out.status.success(),
        "validate_oru.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("SUMMARY ok={} fail=0", files.len())),
        "unexpected validator summary:\n{stdout}"
    );
}
