//! Durations (`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`) and sizes (`"512KiB"`, `"1 GiB"`,
//! or a plain number of bytes) as written in the config file.
//!
//! Both parsers are strict: a duration always needs a unit (a bare `30` could mean seconds or
//! milliseconds, and guessing wrong turns a 30 s ACK timeout into 30 ms), and a size unit is one
//! of the listed ones, never a bare `K`/`M`/`G` whose base (1000 or 1024) is ambiguous.

use std::fmt;
use std::time::Duration;

/// Why a string is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but whitespace.
    #[error("empty duration: expected e.g. \"30s\" or \"500ms\"")]
    Empty,
    /// A number with no unit after it, e.g. `"30"`.
    #[error("{input:?} has no unit: write e.g. \"{number}s\" (units: ms, s, m, h, d)")]
    MissingUnit {
        /// The whole input.
        input: String,
        /// The number that lacks a unit.
        number: String,
    },
    /// A unit other than ms, s, m, h, d.
    #[error("{input:?}: unknown unit {unit:?} (units: ms, s, m, h, d)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The offending unit.
        unit: String,
    },
    /// Something other than `<digits><unit>` groups, e.g. `"-5s"` or `"1.5s"`.
    #[error("{input:?} is not a duration: expected e.g. \"30s\", \"500ms\", \"5m\" or \"1h30m\"")]
    Malformed {
        /// The whole input.
        input: String,
    },
    /// The value does not fit in a [`Duration`].
    #[error("{input:?} is too long a duration")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Why a string is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Nothing but whitespace.
    #[error("empty size: expected e.g. \"512KiB\" or \"1GiB\"")]
    Empty,
    /// Not `<digits>[ ]<unit>`.
    #[error(
        "{input:?} is not a size: expected e.g. \"512KiB\", \"1MiB\", \"1GiB\" or a number of bytes"
    )]
    Malformed {
        /// The whole input.
        input: String,
    },
    /// A unit that is not one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB.
    #[error("{input:?}: unknown unit {unit:?} (units: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The offending unit.
        unit: String,
    },
    /// The value does not fit in a `u64`.
    #[error("{input:?} is too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Parses a duration: one or more `<digits><unit>` groups with units `ms`, `s`, `m`, `h`, `d`,
/// e.g. `"500ms"`, `"30s"`, `"1h30m"`. Surrounding whitespace is ignored; `"0s"` is accepted
/// (callers that need a positive duration check for zero themselves).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let malformed = || DurationError::Malformed {
        input: input.to_owned(),
    };
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits_len == 0 {
            return Err(malformed());
        }
        let (digits, after) = rest.split_at(digits_len);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(if after.is_empty() {
                DurationError::MissingUnit {
                    input: input.to_owned(),
                    number: digits.to_owned(),
                }
            } else {
                malformed()
            });
        }
        let number: u64 = digits.parse().map_err(|_| overflow())?;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        let millis = number.checked_mul(millis_per_unit).ok_or_else(overflow)?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(overflow)?;
        rest = after;
    }
    Ok(total)
}

/// Writes a duration the way [`parse_duration`] reads it back, largest units first:
/// `90s` → `"1m30s"`, `0` → `"0s"`. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let mut millis = d.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        let n = millis / size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
            millis %= size;
        }
    }
    out
}

/// Parses a size: `<digits>[ ]<unit>` with units `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024) or `kB`, `MB`, `GB`, `TB` (powers of 1000), case-insensitive; plain digits are bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_len = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits_len == 0 {
        return Err(SizeError::Malformed {
            input: input.to_owned(),
        });
    }
    let (digits, unit) = s.split_at(digits_len);
    let unit = unit.trim_start();
    if !unit.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(SizeError::Malformed {
            input: input.to_owned(),
        });
    }
    let overflow = || SizeError::Overflow {
        input: input.to_owned(),
    };
    let number: u64 = digits.parse().map_err(|_| overflow())?;
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(SizeError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    number.checked_mul(multiplier).ok_or_else(overflow)
}

/// Writes a size in the largest binary unit that divides it exactly (`1073741824` →
/// `"1GiB"`, `1000` → `"1000B"`), which [`parse_size`] reads back.
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("TiB", 40u32), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        let size = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

/// A size that prints in the units of the config file (see [`format_size`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DisplaySize(pub u64);

impl fmt::Display for DisplaySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn duration_errors_are_specific() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("30"),
            Err(DurationError::MissingUnit { number, .. }) if number == "30"
        ));
        assert!(matches!(
            parse_duration("30sec"),
            Err(DurationError::UnknownUnit { unit, .. }) if unit == "sec"
        ));
        for bad in ["-5s", "1.5s", "s", "5 s", "fast"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow { .. })
        ));
        let msg = parse_duration("30").unwrap_err().to_string();
        assert!(msg.contains("\"30s\""), "{msg}");
    }

    #[test]
    fn durations_format() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1 gib"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("1kB"), Ok(1_000));
    }

    #[test]
    fn size_errors_are_specific() {
        assert_eq!(parse_size(" "), Err(SizeError::Empty));
        assert!(
            matches!(parse_size("1G"), Err(SizeError::UnknownUnit { unit, .. }) if unit == "G")
        );
        for bad in ["GiB", "-1GiB", "1.5GiB", "big"] {
            assert!(
                matches!(parse_size(bad), Err(SizeError::Malformed { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_size("99999999TiB"),
            Err(SizeError::Overflow { .. })
        ));
    }

    #[test]
    fn sizes_format() {
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(format_size(512 * 1024), "512KiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
        assert_eq!(DisplaySize(3 << 20).to_string(), "3MiB");
    }

    proptest! {
        #[test]
        fn size_round_trips(bytes in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        #[test]
        fn size_with_unit_round_trips(n in 0u64..(1 << 20), unit in 0usize..4) {
            let (name, shift) = [("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)][unit];
            let text = format!("{n}{name}");
            prop_assert_eq!(parse_size(&text), Ok(n << shift));
            prop_assert_eq!(parse_size(&format_size(n << shift)), Ok(n << shift));
        }

        #[test]
        fn duration_round_trips(millis in 0u64..(1 << 45)) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
