//! Config compiler: any text either compiles or gives errors that each carry the origin, and
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match labagent::config::from_str(text, "fuzz.toml", std::path::Path::new("/nonexistent")) {
        Ok(config) => assert!(!config.sources.is_empty() && !config.sinks.is_empty()),
        Err(errors) => {
            assert!(errors.len() > 0);
            for line in errors.to_string().lines() {
                assert!(line.starts_with("fuzz.toml"), "{line}");
            }
        }
    }
});
