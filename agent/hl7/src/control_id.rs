//! Message control ids (MSH-10, HL7 v2.5.1 §2.14.9.10: ST, at most 20 characters).
//!
//! The agent assigns MSH-10 once, when a result is committed to the store, and never changes it
//! on retransmission (delivery rule 3), so the EHR can recognise duplicates and the MLLP sink can
//! match MSA-2 against it. [`ControlIdGenerator`] is a pure function of an agent prefix and a
//! counter the caller owns (the store's record id): no clock, no state, no randomness.

use std::fmt;

/// Longest MSH-10 allowed (§2.14.9.10, ST 20).
pub const MAX_CONTROL_ID_LEN: usize = 20;

/// Why a control id or generator prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlIdError {
    /// Empty value.
    #[error("control id is empty")]
    Empty,
    /// Longer than allowed.
    #[error("{value:?} is {len} characters, over the limit of {max}")]
    TooLong {
        /// The value refused.
        value: String,
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Holds a character outside `[A-Za-z0-9._-]`.
    #[error("{value:?} holds {found:?}; only ASCII letters, digits, '.', '_' and '-' are allowed")]
    InvalidCharacter {
        /// The value refused.
        value: String,
        /// The first character refused.
        found: char,
    },
}

/// A validated MSH-10: 1 to 20 characters from `[A-Za-z0-9._-]`.
///
/// The character set is narrower than ST so the id never needs escaping, is safe as a file name
/// (the file sink writes `<MSH-10>.hl7`) and survives any delimiter choice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlId(String);

fn check(value: &str, max: usize) -> Result<(), ControlIdError> {
    if value.is_empty() {
        return Err(ControlIdError::Empty);
    }
    if let Some(found) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ControlIdError::InvalidCharacter {
            value: value.to_owned(),
            found,
        });
    }
    if value.len() > max {
        return Err(ControlIdError::TooLong {
            value: value.to_owned(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

impl ControlId {
    /// Validates a control id.
    pub fn new(value: &str) -> Result<ControlId, ControlIdError> {
        check(value, MAX_CONTROL_ID_LEN)?;
        Ok(ControlId(value.to_owned()))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ControlId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ControlId {
    type Err = ControlIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ControlId::new(s)
    }
}

impl AsRef<str> for ControlId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Fewest digits used for the counter: 36^10 (3.6e15) ids per agent, more than any analyser
/// will ever send. A shorter prefix leaves room for more digits (`u64::MAX` needs 13).
pub const COUNTER_WIDTH: usize = 10;

/// Longest generator prefix: 20 − 10 counter digits (an agent id of up to 10 characters).
pub const MAX_PREFIX_LEN: usize = MAX_CONTROL_ID_LEN - COUNTER_WIDTH;

/// Makes control ids `<prefix><counter in base 36, zero padded to 20 characters in all>`: the
/// counter gets `20 - prefix length` digits (at least 10). A counter too large for its digits
/// keeps its low digits (36^10 ids at the least: unreachable in practice).
///
/// Uniqueness: for one prefix the mapping counter → id is injective; across prefixes of
/// different lengths the ids differ in length, and across prefixes of the same length they
/// differ in the prefix. So ids are unique fleet-wide as long as agents have distinct prefixes
/// and each agent never reuses a counter value (the store's monotonic record id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlIdGenerator {
    prefix: String,
}

impl ControlIdGenerator {
    /// A generator for this prefix (0 to [`MAX_PREFIX_LEN`] characters from `[A-Za-z0-9._-]`).
    pub fn new(prefix: &str) -> Result<Self, ControlIdError> {
        if !prefix.is_empty() {
            check(prefix, MAX_PREFIX_LEN)?;
        }
        Ok(ControlIdGenerator {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The control id for `counter`. Always at most 20 characters.
    pub fn generate(&self, counter: u64) -> ControlId {
        const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let width = MAX_CONTROL_ID_LEN - self.prefix.len();
        let mut buf = [b'0'; 13];
        let start = 13usize.saturating_sub(width);
        let mut v = counter;
        for slot in buf[start..].iter_mut().rev() {
            // `v % 36` < 36 indexes DIGITS.
            *slot = DIGITS[(v % 36) as usize];
            v /= 36;
        }
        let mut s = String::with_capacity(MAX_CONTROL_ID_LEN);
        s.push_str(&self.prefix);
        for &b in &buf[start..] {
            s.push(char::from(b));
        }
        // Invariant: prefix validated to <= MAX_PREFIX_LEN chars from the allowed set, counter
        // digits are alphanumeric, so `s` satisfies ControlId's rules.
        ControlId(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn validates_length_and_characters() {
        assert!(ControlId::new("abcdefghij0123456789").is_ok());
        assert!(matches!(
            ControlId::new("abcdefghij0123456789x"),
            Err(ControlIdError::TooLong {
                len: 21,
                max: 20,
                ..
            })
        ));
        assert_eq!(ControlId::new(""), Err(ControlIdError::Empty));
        assert!(matches!(
            ControlId::new("a|b"),
            Err(ControlIdError::InvalidCharacter { found: '|', .. })
        ));
        assert!(ControlId::new("é").is_err());
    }

    #[test]
    fn generator_bounds_and_format() {
        let g = ControlIdGenerator::new("lab1-pi").unwrap();
        assert_eq!(g.generate(0).as_str(), "lab1-pi0000000000000");
        assert_eq!(g.generate(36).as_str(), "lab1-pi0000000000010");
        assert_eq!(g.generate(u64::MAX).as_str(), "lab1-pi3W5E11264SGSF");
        assert_eq!(g.generate(u64::MAX).as_str().len(), 20);
        assert!(
            ControlIdGenerator::new("lab1-pi-10").is_ok(),
            "10 characters fit"
        );
        assert!(ControlIdGenerator::new("lab1-pi-100").is_err(), "11 do not");
        let ten = ControlIdGenerator::new("lab1-pi-10").unwrap();
        assert_eq!(ten.generate(35).as_str(), "lab1-pi-10000000000Z");
        assert_eq!(ten.generate(u64::MAX).as_str().len(), 20);
        assert!(ControlIdGenerator::new("a b").is_err());
        assert_eq!(
            ControlIdGenerator::new("")
                .unwrap()
                .generate(1)
                .as_str()
                .len(),
            13
        );
    }

    #[test]
    fn generator_is_unique() {
        let g = ControlIdGenerator::new("A1").unwrap();
        let mut seen = HashSet::new();
        for c in (0..50_000u64).chain((u64::MAX - 1000)..=u64::MAX) {
            assert!(seen.insert(g.generate(c)));
        }
    }

    proptest::proptest! {
        #[test]
        fn distinct_prefix_or_counter_gives_distinct_id(
            p1 in "[A-Za-z0-9._-]{0,7}", p2 in "[A-Za-z0-9._-]{0,7}",
            c1 in proptest::num::u64::ANY, c2 in proptest::num::u64::ANY,
        ) {
            let a = ControlIdGenerator::new(&p1).unwrap().generate(c1);
            let b = ControlIdGenerator::new(&p2).unwrap().generate(c2);
            proptest::prop_assert!(a.as_str().len() <= MAX_CONTROL_ID_LEN);
            proptest::prop_assert!(ControlId::new(a.as_str()).is_ok());
            proptest::prop_assert_eq!(a == b, p1 == p2 && c1 == c2);
        }
    }
}
