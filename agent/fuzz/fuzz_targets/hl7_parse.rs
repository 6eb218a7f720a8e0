//! ER7 parser: never panics; a parsed message re-encodes to its own bytes (CR separators), and
//! parsing that again gives the same segments and fields.
#![no_main]

use labagent_hl7::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let encoded = message.encode().to_string();
    let again = Message::parse(encoded.as_bytes()).expect("a re-encoded message parses");
    assert_eq!(again.encode(), encoded, "re-encoding is stable");
    assert_eq!(again.segment_count(), message.segment_count());
    for (a, b) in message.segments().zip(again.segments()) {
        assert_eq!(a.id(), b.id());
        assert_eq!(a.field_count(), b.field_count());
        for n in 1..=a.field_count() {
            assert_eq!(a.field(n).raw(), b.field(n).raw());
            assert_eq!(a.field(n).text(), b.field(n).text());
        }
    }
    let _ = message.control_id();
    let _ = message.message_type();
});
