//! ACK parser: never panics; an ACK it accepts acknowledges exactly its MSA-2, and its class
//! follows MSA-1 (AA/CA accepted, AE/CE error, AR/CR reject).
#![no_main]

use labagent_hl7::ack::{AckClass, parse_ack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ack) = parse_ack(data) else { return };
    assert!(ack.acknowledges(ack.control_id_acked.as_str()));
    let expected = match ack.code.as_str() {
        "AA" | "CA" => AckClass::Accepted,
        "AE" | "CE" => AckClass::Error,
        _ => AckClass::Reject,
    };
    assert_eq!(ack.class(), expected);
});
