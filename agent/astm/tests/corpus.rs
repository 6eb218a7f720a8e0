//! Conformance over the real analyser traces in `../shared/corpus` (or `$LABAGENT_CORPUS`).
//!
//! Every framed trace whose stored checksums verify (corpus/SOURCES.md) must decode with zero
//! checksum errors, the frame count SOURCES.md gives, and the record and message counts below
//! (counted independently from the files). Bare traces must split into the messages they hold.

use labagent_astm::capture;
use labagent_astm::charset::Charset;
use labagent_astm::frame::DEFAULT_MAX_TEXT;
use labagent_astm::record::parse_message;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    if let Some(dir) = std::env::var_os("LABAGENT_CORPUS") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../../shared/corpus"),
        manifest.join("../../shared/corpus"),
    ];
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!("corpus not found: set LABAGENT_CORPUS or place shared/ beside the repository")
        })
}

/// (file, frames, messages, records in all messages)
const FRAMED_VERIFIED: &[(&str, u64, usize, usize)] = &[
    ("abbott_afinion2_1.astm", 1, 1, 5),
    ("abbott_architect_2.astm", 1, 1, 8),
    ("abbott_m2000_3.astm", 7, 1, 7),
    ("cepheid_genexpert_1.astm", 1, 1, 91),
    ("erba_xl640_1.astm", 1, 1, 6),
    ("horiba_pentraxlr_1.astm", 28, 1, 28),
    ("horiba_yumizenh500_1.astm", 125, 1, 36),
    ("horiba_yumizenh500_2.astm", 31, 1, 31),
    ("ortho_vitros3600_1.astm", 16, 1, 16),
    ("ortho_vitros3600_2.astm", 9, 1, 9),
    ("ortho_vitros3600_3.astm", 3, 1, 3),
    ("reconstructed/erba_em200_1.wire.astm", 2, 2, 12),
    ("reconstructed/erba_em200_2.wire.astm", 1, 1, 3),
    ("reconstructed/roche_cobase411_2.wire.astm", 2, 1, 6),
    ("reconstructed/roche_cobase411_3.wire.astm", 1, 1, 3),
    ("reconstructed/roche_cobase411_5.wire.astm", 1, 1, 3),
    ("reconstructed/sysmex_xn550_1.wire.astm", 40, 1, 40),
    ("roche_cobasc111_1.astm", 7, 1, 7),
    ("roche_cobasc311_1.astm", 1, 1, 18),
    ("roche_cobase411_1.astm", 3, 1, 12),
    ("roche_cobase411_4.astm", 1, 1, 5),
    ("siemens_dcavantage_1.astm", 1, 1, 9),
    ("stago_stasatellitemax_1.astm", 31, 1, 31),
    ("sysmex_xn550_2.astm", 1, 1, 48),
    ("sysmex_xp100_1.astm", 1, 1, 24),
    ("thermo_indiko_1.astm", 3, 1, 3),
];

#[test]
fn verified_framed_traces_decode_cleanly() {
    let dir = corpus();
    let mut checked = 0;
    for &(file, frames, messages, records) in FRAMED_VERIFIED {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let c = capture::decode(&bytes, DEFAULT_MAX_TEXT);
        assert!(c.framed, "{file}: framing not detected");
        let errors: Vec<_> = c.errors().collect();
        assert!(errors.is_empty(), "{file}: {errors:?}");
        assert_eq!(c.frames, frames, "{file}: frames");
        assert_eq!(c.messages.len(), messages, "{file}: messages");
        let mut total = 0;
        for m in &c.messages {
            let parsed =
                parse_message(&m.text, Charset::Latin1).unwrap_or_else(|e| panic!("{file}: {e}"));
            total += parsed.records().len();
        }
        assert_eq!(total, records, "{file}: records");
        checked += 1;
    }
    eprintln!("corpus conformance: {checked} framed traces checked");
    assert!(checked > 0);
}

/// Captures whose checksums do not verify as stored (storage artefacts, SOURCES.md) must be
/// reported as damaged, never silently accepted.
#[test]
fn damaged_captures_are_reported() {
    let dir = corpus();
    for file in [
        "sysmex_xn550_1.astm",
        "roche_cobase411_2.astm",
        "erba_em200_1.astm",
    ] {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let c = capture::decode(&bytes, DEFAULT_MAX_TEXT);
        assert!(c.errors().next().is_some(), "{file}: damage not reported");
    }
}

/// (file, messages)
const BARE: &[(&str, usize)] = &[
    ("abbott_architect_1.astm", 5),
    ("abbott_m2000_1.astm", 1),
    ("abbott_m2000_2.astm", 1),
    ("euroimmun_analyzer1_1.astm", 1),
    ("hologic_panther_1.astm", 1),
    ("horiba_yumizenh550_1.astm", 1),
    ("immucor_galileoecho_1.astm", 1),
];

#[test]
fn bare_traces_split_into_messages() {
    let dir = corpus();
    let mut checked = 0;
    for &(file, messages) in BARE {
        let bytes = std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let c = capture::decode(&bytes, DEFAULT_MAX_TEXT);
        assert!(!c.framed, "{file}");
        assert_eq!(c.messages.len(), messages, "{file}: messages");
        for m in &c.messages {
            let parsed =
                parse_message(&m.text, Charset::Latin1).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(parsed.records()[0].kind().byte(), b'H', "{file}");
        }
        checked += 1;
    }
    eprintln!("corpus conformance: {checked} bare traces checked");
}
