//! Golden files: the ORU^R01 messages produced from every corpus trace with results are
//! committed under `tests/golden/` and compared byte for byte, so any change to the output is a
//! reviewed diff. Regenerate with `LABAGENT_BLESS=1 cargo test -p labagent --test golden`.
//! Every golden message must also pass the strict validator (../shared/tools/validate_oru.py).

use labagent::commands::translate::translate_capture;
use labagent::translate::{Context, Mapping};
use labagent_astm::charset::Charset;
use labagent_astm::record::FieldPath;
use labagent_hl7::control_id::ControlIdGenerator;
use labagent_hl7::time::{Hl7Ts, time_zone};
use std::path::{Path, PathBuf};

#[path = "support/validator.rs"]
mod validator;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> PathBuf {
    let dir = std::env::var_os("LABAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/corpus"));
    assert!(dir.is_dir(), "corpus missing at {}", dir.display());
    dir
}

fn golden_dir() -> PathBuf {
    workspace().join("tests/golden")
}

fn paths(list: &[&str]) -> Vec<FieldPath> {
    list.iter().map(|p| p.parse().expect("selector")).collect()
}

/// (trace, specimen id selectors, test code selectors, problems expected)
/// Selectors follow each analyser family's habit (PROTOCOLS.md §7 quirks 8 and 9); `None`
/// keeps the defaults.
type Case = (
    &'static str,
    Option<&'static [&'static str]>,
    Option<&'static [&'static str]>,
    usize,
);

const CASES: &[Case] = &[
    ("abbott_afinion2_1.astm", Some(&["O.4"]), None, 0),
    ("abbott_architect_1.astm", None, None, 0),
    ("abbott_architect_2.astm", None, None, 0),
    ("abbott_m2000_1.astm", None, None, 0),
    ("abbott_m2000_2.astm", None, None, 0),
    ("abbott_m2000_3.astm", None, None, 0),
    ("biorad_ih1000_1.astm", None, None, 0),
    ("cepheid_genexpert_1.astm", None, None, 0),
    ("erba_xl640_1.astm", None, None, 0),
    ("euroimmun_analyzer1_1.astm", Some(&["P.4"]), None, 0),
    ("hologic_panther_1.astm", None, None, 0),
    ("horiba_pentraxlr_1.astm", None, None, 0),
    ("horiba_yumizenh500_1.astm", None, None, 0),
    ("horiba_yumizenh500_2.astm", None, None, 0),
    ("horiba_yumizenh550_1.astm", None, None, 0),
    ("horiba_yumizenh550_2.astm", None, None, 0),
    ("immucor_galileoecho_1.astm", None, None, 0),
    ("immucor_rvt_1.astm", None, None, 0),
    ("ortho_vision_1.astm", None, Some(&["R.3.1"]), 1),
    ("ortho_vitros3600_1.astm", None, None, 0),
    ("ortho_vitros3600_2.astm", None, None, 0),
    ("reconstructed/erba_em200_1.wire.astm", None, None, 0),
    ("reconstructed/roche_cobase411_2.wire.astm", None, None, 0),
    (
        "reconstructed/sysmex_xn550_1.wire.astm",
        Some(&["O.4.3"]),
        Some(&["R.3.5"]),
        0,
    ),
    ("roche_cobasc111_1.astm", None, None, 0),
    ("roche_cobasc311_1.astm", Some(&["O.3.2"]), None, 0),
    ("roche_cobase411_1.astm", None, None, 0),
    ("roche_cobase411_4.astm", None, None, 0),
    ("siemens_dcavantage_1.astm", None, None, 0),
    ("stago_stasatellitemax_1.astm", None, None, 0),
    ("sysmex_xn550_2.astm", Some(&["O.4.3"]), Some(&["R.3.5"]), 0),
    ("sysmex_xp100_1.astm", None, None, 0),
];

fn golden_name(trace: &str) -> String {
    format!("{}.hl7", trace.replace('/', "_").trim_end_matches(".astm"))
}

fn translate(
    trace: &str,
    specimen: Option<&[&str]>,
    test: Option<&[&str]>,
) -> (String, Vec<String>) {
    let bytes = std::fs::read(corpus().join(trace)).expect("trace");
    let source = trace
        .rsplit('/')
        .next()
        .and_then(|f| f.split('_').nth(1))
        .unwrap_or("analyser");
    let mut mapping = Mapping::default_for(source);
    mapping.sending_facility = "LAB1".into();
    mapping.receiving_application = "EHR".into();
    mapping.receiving_facility = "CLINIC".into();
    if let Some(s) = specimen {
        mapping.specimen_id = paths(s);
    }
    if let Some(t) = test {
        mapping.test_code = paths(t);
    }
    let tz = time_zone("Europe/London").expect("tz");
    let ctx = Context {
        tz: &tz,
        now: Hl7Ts::parse("20261125120000+0000").expect("ts"),
    };
    let ids = ControlIdGenerator::new("G").expect("prefix");
    let mut n = 0;
    let (messages, problems) =
        translate_capture(&bytes, Charset::Latin1, &mapping, &ctx, &mut || {
            n += 1;
            ids.generate(n)
        });
    let text: String = messages.iter().map(|m| format!("{m}\n")).collect();
    (text, problems)
}

#[test]
fn corpus_translations_match_golden_files() {
    let bless = std::env::var_os("LABAGENT_BLESS").is_some();
    let dir = golden_dir();
    if bless {
        std::fs::create_dir_all(&dir).expect("golden dir");
    }
    let mut mismatches = Vec::new();
    for &(trace, specimen, test, expected_problems) in CASES {
        let (text, problems) = translate(trace, specimen, test);
        assert_eq!(problems.len(), expected_problems, "{trace}: {problems:?}");
        assert!(!text.is_empty(), "{trace}: no ORU produced");
        let path = dir.join(golden_name(trace));
        if bless {
            std::fs::write(&path, &text).expect("write golden");
            continue;
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with LABAGENT_BLESS=1)", path.display()));
        if golden != text {
            mismatches.push(trace);
        }
    }
    assert!(
        mismatches.is_empty(),
        "output differs from golden files: {mismatches:?}"
    );
    eprintln!("golden: {} traces compared", CASES.len());
}

/// Every golden file passes the strict ORU_R01 v2.5.1 validator.
#[test]
fn golden_files_validate_strictly() {
    let files: Vec<PathBuf> = CASES
        .iter()
        .map(|(trace, ..)| golden_dir().join(golden_name(trace)))
        .collect();
    let (summary, ok) = validator::validate_strictly(&files);
    assert!(ok >= CASES.len(), "only {ok} messages validated: {summary}");
    eprintln!("validator: {summary}");
}
