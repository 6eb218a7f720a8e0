//! E1381 control bytes (LIS1-A §6.1; PROTOCOLS.md 1.1). Hex, one line of why each.

/// Start of text: opens every frame.
pub const STX: u8 = 0x02;
/// End of text: closes the last frame of a record (or of a whole message in "cobas type").
pub const ETX: u8 = 0x03;
/// End of transmission: ends the transfer phase; sent instead of ACK it is a receiver interrupt.
pub const EOT: u8 = 0x04;
/// Enquiry: the sender asks for the line (establishment phase).
pub const ENQ: u8 = 0x05;
/// Positive acknowledgement of an ENQ or a frame.
pub const ACK: u8 = 0x06;
/// Line feed: second byte of the frame trailer.
pub const LF: u8 = 0x0A;
/// Carriage return: record terminator inside text, and first byte of the frame trailer.
pub const CR: u8 = 0x0D;
/// Negative acknowledgement: bad frame, or receiver busy when answering an ENQ.
pub const NAK: u8 = 0x15;
/// End of transmission block: closes an intermediate frame of a record longer than one frame.
pub const ETB: u8 = 0x17;

/// Start of heading: not allowed in frame text (LIS1-A restricted characters).
pub const SOH: u8 = 0x01;
/// Data link escape: not allowed in frame text.
pub const DLE: u8 = 0x10;
/// Device controls 1-4 (XON, DC2, XOFF, DC4): not allowed in frame text.
pub const DC1: u8 = 0x11;
/// Device control 2.
pub const DC2: u8 = 0x12;
/// Device control 3 (XOFF).
pub const DC3: u8 = 0x13;
/// Device control 4.
pub const DC4: u8 = 0x14;
/// Synchronous idle: not allowed in frame text.
pub const SYN: u8 = 0x16;

/// True for the bytes LIS1-A forbids inside frame text (CR is allowed: it ends records).
pub const fn is_restricted(b: u8) -> bool {
    matches!(
        b,
        SOH | STX | ETX | EOT | ENQ | ACK | DLE | NAK | SYN | ETB | LF | DC1 | DC2 | DC3 | DC4
    )
}
