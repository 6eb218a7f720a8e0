//! The E1394 record types (E1394 §7–§14, PROTOCOLS §2.2).

use std::fmt;

/// The type of a record, from its first byte (field 1).
///
/// Unknown first bytes are kept as [`RecordType::Other`] so that vendor records are carried
/// through, never dropped. A leading frame-number digit (`1H|…`, left in by some captures) is
/// *not* stripped here: that is the frame layer's job, and such a record is `Other(b'1')`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// `H`: message header (§7.1); defines the delimiters.
    Header,
    /// `P`: patient information (§8.1).
    Patient,
    /// `O`: test order (§9.4).
    Order,
    /// `R`: result (§10.1).
    Result,
    /// `C`: comment (§10.2); may follow any record.
    Comment,
    /// `Q`: request information, i.e. a host query (§12.1).
    Query,
    /// `M`: manufacturer information (§14); vendor-defined fields.
    Manufacturer,
    /// `S`: scientific (§13); rarely used.
    Scientific,
    /// `L`: message terminator (§11).
    Terminator,
    /// Any other first byte, kept as sent.
    Other(u8),
}

impl RecordType {
    /// The record type for a record's first byte. Case-sensitive, as E1394 defines uppercase
    /// letters only.
    pub fn from_byte(byte: u8) -> RecordType {
        match byte {
            b'H' => RecordType::Header,
            b'P' => RecordType::Patient,
            b'O' => RecordType::Order,
            b'R' => RecordType::Result,
            b'C' => RecordType::Comment,
            b'Q' => RecordType::Query,
            b'M' => RecordType::Manufacturer,
            b'S' => RecordType::Scientific,
            b'L' => RecordType::Terminator,
            other => RecordType::Other(other),
        }
    }

    /// The record's type byte, as it appears on the wire.
    pub fn byte(&self) -> u8 {
        match self {
            RecordType::Header => b'H',
            RecordType::Patient => b'P',
            RecordType::Order => b'O',
            RecordType::Result => b'R',
            RecordType::Comment => b'C',
            RecordType::Query => b'Q',
            RecordType::Manufacturer => b'M',
            RecordType::Scientific => b'S',
            RecordType::Terminator => b'L',
            RecordType::Other(b) => *b,
        }
    }

    /// The E1394 name of the record type ("Other" for unknown bytes).
    pub fn name(&self) -> &'static str {
        match self {
            RecordType::Header => "Header",
            RecordType::Patient => "Patient",
            RecordType::Order => "Order",
            RecordType::Result => "Result",
            RecordType::Comment => "Comment",
            RecordType::Query => "Query",
            RecordType::Manufacturer => "Manufacturer",
            RecordType::Scientific => "Scientific",
            RecordType::Terminator => "Terminator",
            RecordType::Other(_) => "Other",
        }
    }
}

impl fmt::Display for RecordType {
    /// The type letter (`R`); an unknown byte prints as itself when it is printable ASCII and
    /// as `0xNN` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.byte();
        if b.is_ascii_graphic() {
            write!(f, "{}", char::from(b))
        } else {
            write!(f, "0x{b:02X}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip() {
        for b in *b"HPORCQMSL" {
            let kind = RecordType::from_byte(b);
            assert!(!matches!(kind, RecordType::Other(_)));
            assert_eq!(kind.byte(), b);
            assert_eq!(kind.to_string(), char::from(b).to_string());
        }
    }

    #[test]
    fn unknown_bytes_are_kept() {
        assert_eq!(RecordType::from_byte(b'1'), RecordType::Other(b'1'));
        assert_eq!(RecordType::from_byte(b'h'), RecordType::Other(b'h'));
        assert_eq!(RecordType::Other(b'#').to_string(), "#");
        assert_eq!(RecordType::Other(0x02).to_string(), "0x02");
        assert_eq!(RecordType::Other(b'X').name(), "Other");
        assert_eq!(RecordType::Result.name(), "Result");
    }
}
