//! Runs the strict ORU_R01 v2.5.1 validator (`../shared/tools/validate_oru.py`) over files. A
//! missing validator is a failure, never a skip: `.ci/run` installs it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Validates `files`; panics with the failures unless every message passes. Returns the
/// validator's summary line (`... ok=N fail=0`) and N.
pub fn validate_strictly(files: &[PathBuf]) -> (String, usize) {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("LABAGENT_VALIDATOR_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".venv-tools/bin/python"));
    let validator = std::env::var_os("LABAGENT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("../shared"))
        .join("tools/validate_oru.py");
    assert!(
        python.exists(),
        "validator python missing at {} (python3 -m venv .venv-tools && .venv-tools/bin/pip install hl7apy==1.3.5)",
        python.display()
    );
    let out = Command::new(&python)
        .arg(&validator)
        .args(["--as-version", "2.5.1"])
        .args(files)
        .output()
        .expect("run validator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        out.status.success(),
        "validator failed: {}\n{}",
        summary,
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL") || l.contains("error:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(summary.contains("fail=0"), "{summary}");
    let ok: usize = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ok="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (summary, ok)
}
