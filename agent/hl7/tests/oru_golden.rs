//! The builder's exact output for a representative message, and its values read back.

mod common;

use labagent_hl7::*;

const GOLDEN: &str = concat!(
    "MSH|^~\\&|XN-550|LAB1|EHR|CLINIC|20260329023000+0100||ORU^R01^ORU_R01|lab1-pi0000000000001|P|2.5.1||||||UNICODE UTF-8\r",
    "PID|1||9434765919^^^NHS^NH~L12345^^^LAB1^MR||O'Brien^Ann^M||19800101|F\r",
    "ORC|RE||SID123\r",
    "OBR|1||SID123|58410-2^CBC panel - Blood by Automated count^LN|||20260329020000+0100|||||||||||||||||HM|F\r",
    "NTE|1|L|Sample slightly haemolysed\r",
    "OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood^LN^WBC^WBC^99XN||6.2|10*9/L^10*9/L^UCUM|4.0-11.0|N|||F|||||||XN-550^Sysmex~14718|20260329021500+0100\r",
    "OBX|2|SN|1988-5^C reactive protein [Mass/volume] in Serum or Plasma^LN^CRP^CRP^99XN||<^0.5|mg/L^mg/L^UCUM||L~<|||F\r",
    "OBX|3|ST|X-COMMENT^Analyser comment^99LOCAL^MSG^MSG^99XN||Pos\\F\\itive \\S\\ \\T\\ \\R\\ \\E\\ done||||||P\r",
    "NTE|1|L|Repeat: 1\\S\\2\\F\\3\r",
    "NTE|2|L|second note\r",
    "SPM|1|SID123||BLD^Whole blood^HL70487|||||||P^Patient^HL70369||||||20260329020000+0100\r",
);

#[test]
fn representative_message_is_exact() {
    assert_eq!(common::representative().encode().unwrap(), GOLDEN);
}

#[test]
fn representative_message_reads_back() {
    let m = Message::parse_str(GOLDEN).unwrap();
    assert_eq!(m.encode(), GOLDEN);
    assert_eq!(m.control_id(), "lab1-pi0000000000001");
    assert_eq!(m.message_type().structure, "ORU_R01");
    assert_eq!(m.version(), "2.5.1");
    let ids: Vec<_> = m.segments().map(|s| s.id()).collect();
    assert_eq!(
        ids,
        [
            "MSH", "PID", "ORC", "OBR", "NTE", "OBX", "OBX", "OBX", "NTE", "NTE", "SPM"
        ]
    );
    let obx: Vec<_> = m.segments_with_id("OBX").collect();
    assert_eq!(obx[0].field(3).component(4).text(), "WBC");
    assert_eq!(obx[0].field(18).repetition(2).text(), "14718");
    assert_eq!(obx[1].field(5).component(1).text(), "<");
    assert_eq!(obx[1].field(5).component(2).text(), "0.5");
    assert_eq!(obx[2].field(5).text(), "Pos|itive ^ & ~ \\ done");
    let nte = m.segment_at(8).unwrap();
    assert_eq!(nte.field(3).text(), "Repeat: 1^2|3");
}

#[test]
fn encode_into_appends_to_a_reused_buffer() {
    // encode_into appends: two messages in one buffer parse separately.
    let oru = common::representative();
    let mut buf = String::new();
    oru.encode_into(&mut buf).unwrap();
    let first = buf.len();
    oru.encode_into(&mut buf).unwrap();
    assert_eq!(&buf[..first], &buf[first..]);
}
