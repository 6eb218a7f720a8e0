//! HL7 timestamps (TS/DTM, HL7 v2.5.1 §2.A.79 and §2.A.22) and the conversion of ASTM local
//! times (E1394 §6.6.2: `YYYYMMDD[HHMM[SS]]`, no offset) into them.
//!
//! ASTM analysers send wall-clock time without an offset. The agent knows the site's time zone
//! (config `agent.timezone`, default [`DEFAULT_TIME_ZONE`]) and converts with jiff's tz database,
//! so a result measured at 01:30 on the night the clocks change gets the right offset:
//!
//! * **Spring gap** (e.g. Europe/London 2026-03-29 01:00–02:00 does not exist): the time is
//!   shifted forward by the length of the gap, `01:30` → `02:30+0100`. A real clock cannot show
//!   that time, so the analyser's clock was not yet switched; shifting keeps the instant it meant.
//! * **Autumn fold** (2026-10-25 01:00–02:00 happens twice): the **earlier** instant is chosen,
//!   `01:30` → `01:30+0100` (BST). Results are reported shortly after they are measured, and the
//!   earlier choice never places a result after the message that reports it.
//!
//! This is jiff's `compatible` disambiguation (the RFC 5545 / Temporal default). No function
//! here reads the clock: instants come in as arguments.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Time zone used for ASTM local times when the configuration names none.
pub const DEFAULT_TIME_ZONE: &str = "Europe/London";

/// Why a timestamp could not be read, converted or formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Not an HL7 TS value (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`, §2.A.22).
    #[error("{value:?} is not an HL7 timestamp: {reason}")]
    InvalidHl7 {
        /// The text refused.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Not an ASTM date/time (`YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`).
    #[error("{value:?} is not an ASTM date/time: {reason}")]
    InvalidAstm {
        /// The text refused.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone name is not in the tz database.
    #[error("unknown time zone {name:?}: {reason}")]
    UnknownTimeZone {
        /// The name looked up.
        name: String,
        /// jiff's explanation.
        reason: String,
    },
    /// The local time could not be placed in the time zone (out of jiff's range).
    #[error("{value:?} cannot be placed in the time zone: {reason}")]
    Unrepresentable {
        /// The local time.
        value: String,
        /// jiff's explanation.
        reason: String,
    },
    /// HL7 TS holds years 0000–9999 only.
    #[error("year {year} cannot be written as an HL7 timestamp")]
    YearOutOfRange {
        /// The year.
        year: i16,
    },
}

/// A validated HL7 v2.5.1 TS/DTM value, e.g. `20260329023000+0100` or `19800101`.
///
/// Invariant: matches `YYYY[MM[DD[HH[MM[SS[.S{1,4}]]]]]][(+|-)HHMM]` (§2.A.22), so it holds no
/// delimiter and is written without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hl7Ts(String);

impl Hl7Ts {
    /// Validates an already formatted TS value.
    pub fn parse(value: &str) -> Result<Hl7Ts, TimeError> {
        let bad = |reason| TimeError::InvalidHl7 {
            value: value.to_owned(),
            reason,
        };
        let b = value.as_bytes();
        let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
        if !matches!(digits, 4 | 6 | 8 | 10 | 12 | 14) {
            return Err(bad("expected 4, 6, 8, 10, 12 or 14 leading digits"));
        }
        let mut rest = &b[digits..];
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits != 14 || !(1..=4).contains(&n) {
                return Err(bad("fraction needs seconds and 1 to 4 digits"));
            }
            rest = &frac[n..];
        }
        if !rest.is_empty() {
            let ok = rest.len() == 5
                && matches!(rest[0], b'+' | b'-')
                && rest[1..].iter().all(u8::is_ascii_digit);
            if !ok {
                return Err(bad("offset must be +HHMM or -HHMM"));
            }
        }
        let num = |r: std::ops::Range<usize>| -> u32 {
            b.get(r)
                .map(|s| s.iter().fold(0u32, |a, &c| a * 10 + u32::from(c - b'0')))
                .unwrap_or(0)
        };
        if digits >= 6 && !(1..=12).contains(&num(4..6)) {
            return Err(bad("month out of range"));
        }
        if digits >= 8 && !(1..=31).contains(&num(6..8)) {
            return Err(bad("day out of range"));
        }
        if digits >= 10 && num(8..10) > 23 {
            return Err(bad("hour out of range"));
        }
        if digits >= 12 && num(10..12) > 59 {
            return Err(bad("minute out of range"));
        }
        if digits >= 14 && num(12..14) > 59 {
            return Err(bad("second out of range"));
        }
        Ok(Hl7Ts(value.to_owned()))
    }

    /// Formats a zoned time to the second with its UTC offset: `YYYYMMDDHHMMSS+ZZZZ`.
    pub fn from_zoned(z: &Zoned) -> Result<Hl7Ts, TimeError> {
        let mut s = String::with_capacity(19);
        push_datetime(&mut s, z.datetime(), 14)?;
        push_offset(&mut s, z.offset().seconds());
        Ok(Hl7Ts(s))
    }

    /// Formats an instant in UTC: `YYYYMMDDHHMMSS+0000`.
    pub fn from_timestamp(t: Timestamp) -> Result<Hl7Ts, TimeError> {
        Self::from_zoned(&t.to_zoned(TimeZone::UTC))
    }

    /// The TS text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Hl7Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&Zoned> for Hl7Ts {
    type Error = TimeError;
    fn try_from(z: &Zoned) -> Result<Self, Self::Error> {
        Hl7Ts::from_zoned(z)
    }
}

fn push_num(s: &mut String, v: u32, width: usize) {
    let mut buf = [b'0'; 4];
    let mut v = v;
    for slot in buf[..width].iter_mut().rev() {
        // `v % 10` is a single decimal digit.
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    for &c in &buf[..width] {
        s.push(char::from(c));
    }
}

/// Writes the first `digits` digits of `YYYYMMDDHHMMSS`.
fn push_datetime(s: &mut String, dt: DateTime, digits: usize) -> Result<(), TimeError> {
    let year = dt.year();
    if !(0..=9999).contains(&year) {
        return Err(TimeError::YearOutOfRange { year });
    }
    // Each conversion is from a jiff value already range-checked (month 1-12, etc.).
    let parts = [
        (year as u32, 4),
        (dt.month() as u32, 2),
        (dt.day() as u32, 2),
        (dt.hour() as u32, 2),
        (dt.minute() as u32, 2),
        (dt.second() as u32, 2),
    ];
    let mut written = 0;
    for (v, w) in parts {
        if written >= digits {
            break;
        }
        push_num(s, v, w);
        written += w;
    }
    Ok(())
}

fn push_offset(s: &mut String, seconds: i32) {
    s.push(if seconds < 0 { '-' } else { '+' });
    // Offsets with seconds (pre-1900 LMT) are truncated to minutes; HL7 has no seconds there.
    let m = seconds.unsigned_abs() / 60;
    push_num(s, (m / 60).min(99), 2);
    push_num(s, m % 60, 2);
}

/// Looks up a time zone by IANA name in the system tz database.
pub fn time_zone(name: &str) -> Result<TimeZone, TimeError> {
    TimeZone::get(name).map_err(|e| TimeError::UnknownTimeZone {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Precision of an ASTM date/time, by its number of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AstmPrecision {
    Day = 8,
    Minute = 12,
    Second = 14,
}

fn read_astm(value: &str) -> Result<(DateTime, AstmPrecision), TimeError> {
    let bad = |reason: String| TimeError::InvalidAstm {
        value: value.to_owned(),
        reason,
    };
    let v = value.trim();
    let b = v.as_bytes();
    if !b.iter().all(u8::is_ascii_digit) {
        return Err(bad("only digits are allowed".into()));
    }
    let precision = match b.len() {
        8 => AstmPrecision::Day,
        12 => AstmPrecision::Minute,
        14 => AstmPrecision::Second,
        n => return Err(bad(format!("{n} digits; expected 8, 12 or 14"))),
    };
    let num = |r: std::ops::Range<usize>| -> i32 {
        b.get(r)
            .map(|s| s.iter().fold(0i32, |a, &c| a * 10 + i32::from(c - b'0')))
            .unwrap_or(0)
    };
    let narrow = |x: i32| i8::try_from(x).map_err(|_| bad("field out of range".into()));
    let year = i16::try_from(num(0..4)).map_err(|_| bad("year out of range".into()))?;
    let dt = DateTime::new(
        year,
        narrow(num(4..6))?,
        narrow(num(6..8))?,
        narrow(num(8..10))?,
        narrow(num(10..12))?,
        narrow(num(12..14))?,
        0,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok((dt, precision))
}

/// Places an ASTM local date/time in `tz` (gap: shifted forward; fold: earlier offset — see the
/// module docs). A date-only value means local midnight.
pub fn astm_local_to_zoned(value: &str, tz: &TimeZone) -> Result<Zoned, TimeError> {
    let (dt, _) = read_astm(value)?;
    tz.to_ambiguous_zoned(dt)
        .compatible()
        .map_err(|e| TimeError::Unrepresentable {
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// Converts an ASTM local date/time to an HL7 TS in `tz`, keeping its precision:
/// `YYYYMMDD` stays a date (no offset: a calendar date has none), `YYYYMMDDHHMM` becomes
/// `YYYYMMDDHHMM+ZZZZ`, `YYYYMMDDHHMMSS` becomes `YYYYMMDDHHMMSS+ZZZZ`. Gaps and folds are
/// resolved as described in the module docs (a gap may move the minute and hour).
pub fn astm_local_to_hl7(value: &str, tz: &TimeZone) -> Result<Hl7Ts, TimeError> {
    let (dt, precision) = read_astm(value)?;
    let mut s = String::with_capacity(19);
    if precision == AstmPrecision::Day {
        push_datetime(&mut s, dt, 8)?;
        return Ok(Hl7Ts(s));
    }
    let z = astm_local_to_zoned(value, tz)?;
    push_datetime(&mut s, z.datetime(), precision as usize)?;
    push_offset(&mut s, z.offset().seconds());
    Ok(Hl7Ts(s))
}

/// [`astm_local_to_hl7`] with a time zone named by IANA id, [`DEFAULT_TIME_ZONE`] when `None`.
pub fn astm_local_to_hl7_in(value: &str, tz_name: Option<&str>) -> Result<Hl7Ts, TimeError> {
    let tz = time_zone(tz_name.unwrap_or(DEFAULT_TIME_ZONE))?;
    astm_local_to_hl7(value, &tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london() -> TimeZone {
        time_zone("Europe/London").unwrap()
    }

    #[test]
    fn gmt_and_bst() {
        assert_eq!(
            astm_local_to_hl7("20260115093000", &london())
                .unwrap()
                .as_str(),
            "20260115093000+0000"
        );
        assert_eq!(
            astm_local_to_hl7("20260715093000", &london())
                .unwrap()
                .as_str(),
            "20260715093000+0100"
        );
        assert_eq!(
            astm_local_to_hl7("202607150930", &london())
                .unwrap()
                .as_str(),
            "202607150930+0100"
        );
        assert_eq!(
            astm_local_to_hl7(" 20260715 ", &london()).unwrap().as_str(),
            "20260715"
        );
    }

    #[test]
    fn spring_gap_shifts_forward() {
        // 2026-03-29 01:30 does not exist in London (clocks go 01:00 GMT -> 02:00 BST).
        assert_eq!(
            astm_local_to_hl7("20260329013000", &london())
                .unwrap()
                .as_str(),
            "20260329023000+0100"
        );
        assert_eq!(
            astm_local_to_hl7("20260329005959", &london())
                .unwrap()
                .as_str(),
            "20260329005959+0000"
        );
        assert_eq!(
            astm_local_to_hl7("20260329020000", &london())
                .unwrap()
                .as_str(),
            "20260329020000+0100"
        );
        let z = astm_local_to_zoned("20260329013000", &london()).unwrap();
        assert_eq!(z.timestamp().to_string(), "2026-03-29T01:30:00Z");
    }

    #[test]
    fn autumn_fold_takes_earlier_offset() {
        // 2026-10-25 01:30 happens twice; the first (BST, +0100) is chosen.
        assert_eq!(
            astm_local_to_hl7("20261025013000", &london())
                .unwrap()
                .as_str(),
            "20261025013000+0100"
        );
        assert_eq!(
            astm_local_to_hl7("20261025020000", &london())
                .unwrap()
                .as_str(),
            "20261025020000+0000"
        );
        assert_eq!(
            astm_local_to_hl7("20261025005959", &london())
                .unwrap()
                .as_str(),
            "20261025005959+0100"
        );
        let z = astm_local_to_zoned("20261025013000", &london()).unwrap();
        assert_eq!(z.timestamp().to_string(), "2026-10-25T00:30:00Z");
    }

    #[test]
    fn named_zone_and_default() {
        assert_eq!(
            astm_local_to_hl7_in("20260715093000", None)
                .unwrap()
                .as_str(),
            "20260715093000+0100"
        );
        assert_eq!(
            astm_local_to_hl7_in("20260715093000", Some("Asia/Kolkata"))
                .unwrap()
                .as_str(),
            "20260715093000+0530"
        );
        assert!(matches!(
            astm_local_to_hl7_in("20260715093000", Some("Mars/Olympus")),
            Err(TimeError::UnknownTimeZone { .. })
        ));
    }

    #[test]
    fn astm_errors() {
        for bad in [
            "",
            "2026",
            "2026011509",
            "20261315093000",
            "2026011509300x",
            "20260230",
        ] {
            assert!(
                matches!(
                    astm_local_to_hl7(bad, &london()),
                    Err(TimeError::InvalidAstm { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn formats_zoned_and_timestamp() {
        let z: Zoned = "2026-07-15T09:30:05+01:00[Europe/London]".parse().unwrap();
        assert_eq!(
            Hl7Ts::from_zoned(&z).unwrap().as_str(),
            "20260715093005+0100"
        );
        let t: Timestamp = "2026-07-15T08:30:05Z".parse().unwrap();
        assert_eq!(
            Hl7Ts::from_timestamp(t).unwrap().as_str(),
            "20260715083005+0000"
        );
        let z: Zoned = "2026-07-15T09:30:05-02:30[America/St_Johns]"
            .parse()
            .unwrap();
        assert_eq!(Hl7Ts::try_from(&z).unwrap().as_str(), "20260715093005-0230");
    }

    #[test]
    fn validates_hl7_ts() {
        for ok in [
            "2026",
            "202607",
            "20260715",
            "20260715093005.1234+0100",
            "202607150930-0500",
        ] {
            assert!(Hl7Ts::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "20260",
            "20261315",
            "20260715093005+01",
            "2026071509300.1",
            "2026^07",
            "20260715 0930",
        ] {
            assert!(Hl7Ts::parse(bad).is_err(), "{bad}");
        }
    }
}
