//! Inputs the fuzz targets once found failing (agent/fuzz/regressions/), replayed on every test
//! run with the same invariant as the hl7_parse target: parse, encode, parse is stable.

use labagent_hl7::Message;
use std::path::Path;

#[test]
fn hl7_parse_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/hl7_parse");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        if let Ok(m) = Message::parse(&bytes) {
            let encoded = m.encode().to_string();
            let again = Message::parse(encoded.as_bytes()).expect("re-encoded parses");
            assert_eq!(again.encode(), encoded);
        }
        checked += 1;
    }
    assert!(
        checked > 0,
        "no regression inputs found in {}",
        dir.display()
    );
}
