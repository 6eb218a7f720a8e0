//! Result-value normalisation: each rule is a function with its own tests, because each is a
//! real analyser's habit (PROTOCOLS.md §7 quirk 10 and 11).

use labagent_hl7::oru::{Comparator, ObservationValue, ResultStatus, StructuredNumeric};

/// Markers analysers send instead of a value (Pentra `-----`, cITm `???`, cobas 6800
/// `ValueNotSet`); compared after trimming, case-insensitively.
const NO_RESULT: &[&str] = &["-----", "---", "???", "valuenotset", "n/a", "****"];

/// A normalised OBX-5 and what it implies for OBX-11.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// OBX-2/OBX-5.
    pub value: ObservationValue,
    /// True when the analyser said there is no result (OBX-11 must be `X`).
    pub no_result: bool,
    /// Extra components set aside (e.g. the interpretation of `-1^0.282`), for an NTE.
    pub aside: Vec<String>,
}

/// Normalises one R.4 given as its components (already escape-resolved).
///
/// Rules, in order: trim padding (XP-100 `  5.5`); a value of several components keeps its last
/// non-empty component as the value and sets the others aside (e411 `-1^0.282` is
/// interpretation^value; IH-1000 `40^^`); no-result markers give an empty value; comparators
/// with or without spaces become SN (`< 839` -> `<^839`); a decimal comma becomes a dot when the
/// result is then numeric (EUROIMMUN `7,41`); plain numbers become NM; anything else ST.
pub fn normalise(components: &[&str]) -> Normalised {
    let parts: Vec<&str> = components
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    let Some((&last, rest)) = parts.split_last() else {
        return Normalised {
            value: ObservationValue::None,
            no_result: false,
            aside: Vec::new(),
        };
    };
    let aside = rest.iter().map(|s| s.to_string()).collect();
    if NO_RESULT.iter().any(|m| last.eq_ignore_ascii_case(m)) {
        return Normalised {
            value: ObservationValue::None,
            no_result: true,
            aside,
        };
    }
    Normalised {
        value: scalar(last),
        no_result: false,
        aside,
    }
}

/// One trimmed, non-empty value to NM, SN or ST.
fn scalar(value: &str) -> ObservationValue {
    if let Some((comparator, rest)) = split_comparator(value)
        && let Some(number) = number(rest)
    {
        return ObservationValue::Structured(StructuredNumeric::compare(comparator, &number));
    }
    match number(value) {
        Some(n) => ObservationValue::Numeric(n),
        None => ObservationValue::String(value.to_string()),
    }
}

fn split_comparator(value: &str) -> Option<(Comparator, &str)> {
    const TABLE: &[(&str, Comparator)] = &[
        ("<=", Comparator::Le),
        (">=", Comparator::Ge),
        ("<>", Comparator::Ne),
        ("<", Comparator::Lt),
        (">", Comparator::Gt),
        ("=", Comparator::Eq),
    ];
    TABLE
        .iter()
        .find_map(|(p, c)| value.strip_prefix(p).map(|rest| (*c, rest.trim_start())))
}

/// The value as an HL7 NM string, if it is a number (decimal comma accepted).
pub fn number(value: &str) -> Option<String> {
    let v = value.trim();
    let candidate = if v.contains(',') && !v.contains('.') && v.matches(',').count() == 1 {
        v.replace(',', ".")
    } else {
        v.to_string()
    };
    labagent_hl7::oru::is_hl7_numeric(&candidate).then_some(candidate)
}

/// Normalises an R.6 reference range to `lo-hi` (OBX-7). Accepts `0.270^4.20`, `0.35 TO 4.94`,
/// `3.08 - 6.44`, `0.94-1.64^REFERENCE_RANGE`, `< 5`; returns `None` for placeholders such as
/// `^DEFAULT`.
pub fn reference_range(components: &[&str]) -> Option<String> {
    let parts: Vec<&str> = components
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    let numeric: Vec<String> = parts.iter().filter_map(|p| number(p)).collect();
    if parts.len() >= 2 && numeric.len() >= 2 && number(parts[0]).is_some() {
        return Some(format!("{}-{}", numeric[0], numeric[1]));
    }
    let first = *parts.first()?;
    let upper = first.to_ascii_uppercase();
    for sep in [" TO ", " - ", "-"] {
        if let Some(i) = upper.find(sep) {
            let (lo, hi) = (&first[..i], &first[i + sep.len()..]);
            if let (Some(lo), Some(hi)) = (number(lo), number(hi)) {
                return Some(format!("{lo}-{hi}"));
            }
        }
    }
    if let Some((c, rest)) = split_comparator(first)
        && let Some(n) = number(rest)
    {
        return Some(format!("{}{n}", c.as_str()));
    }
    // A free-text range is kept as sent; a lone word such as DEFAULT is a placeholder.
    if first.chars().any(|c| c.is_ascii_digit()) {
        Some(first.to_string())
    } else {
        None
    }
}

/// HL7 table 0078 (abnormal flags) codes passed to OBX-8; anything else is vendor-specific and
/// goes to an NTE instead, so the EHR never sees a code outside the table.
const TABLE_0078: &[&str] = &[
    "L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "MS", "VS",
    "NEG", "POS", "IND", "DET", "ND", "AC", "RR", "QCF", "TOX", "NR", "LU", "HU",
];

/// Splits R.7 flags into table 0078 codes and vendor flags. Each repeat contributes its
/// non-empty components (VITROS sends `^0^FRMN\^0^NR`); `N` alone is kept (normal).
pub fn flags<'a>(repeats: impl Iterator<Item = Vec<&'a str>>) -> (Vec<String>, Vec<String>) {
    let mut codes = Vec::new();
    let mut vendor = Vec::new();
    for components in repeats {
        for c in components
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
        {
            if TABLE_0078.contains(&c) {
                if !codes.iter().any(|x: &String| x == c) {
                    codes.push(c.to_string());
                }
            } else if !c.chars().all(|ch| ch.is_ascii_digit()) {
                vendor.push(c.to_string());
            }
        }
    }
    (codes, vendor)
}

/// Maps an R.9 result status to OBX-11 (PROTOCOLS.md §2.2). Vendor codes: `V` (operator
/// verified, VITROS) and `R` (previously transmitted) are final; `W` (warning, Yumizen) is final
/// with its warning noted; `M` (MIC) and `Q` (query response) and unknown codes are final;
/// empty (XP-100) is final. A repeat such as Panther's `F\R` uses its first repeat.
pub fn status(code: &str) -> ResultStatus {
    match code.trim() {
        "P" => ResultStatus::Preliminary,
        "C" => ResultStatus::Corrected,
        "X" => ResultStatus::CannotObtain,
        "I" => ResultStatus::Pending,
        "S" => ResultStatus::Partial,
        "N" => ResultStatus::Final,
        _ => ResultStatus::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> ObservationValue {
        normalise(&s.split('^').collect::<Vec<_>>()).value
    }

    #[test]
    fn padding_is_trimmed() {
        assert_eq!(value("  5.5"), ObservationValue::Numeric("5.5".into()));
    }

    #[test]
    fn decimal_comma_becomes_dot() {
        assert_eq!(value("7,41"), ObservationValue::Numeric("7.41".into()));
        // A comma that is not a decimal comma stays text.
        assert_eq!(value("1,234,5"), ObservationValue::String("1,234,5".into()));
    }

    #[test]
    fn comparators_become_sn() {
        for (input, c, n) in [
            ("< 839", Comparator::Lt, "839"),
            ("<3.00", Comparator::Lt, "3.00"),
            ("> 15000.00", Comparator::Gt, "15000.00"),
            (">8", Comparator::Gt, "8"),
            ("<=1.005", Comparator::Le, "1.005"),
        ] {
            assert_eq!(
                value(input),
                ObservationValue::Structured(StructuredNumeric::compare(c, n)),
                "{input}"
            );
        }
    }

    #[test]
    fn no_result_markers() {
        for m in ["-----", "???", "ValueNotSet"] {
            let n = normalise(&[m]);
            assert_eq!(n.value, ObservationValue::None, "{m}");
            assert!(n.no_result);
        }
        let empty = normalise(&["", ""]);
        assert_eq!(empty.value, ObservationValue::None);
        assert!(
            !empty.no_result,
            "empty is a flag-only result, not 'cannot be done'"
        );
    }

    #[test]
    fn interpretation_value_pairs() {
        let n = normalise(&["-1", "0.282"]);
        assert_eq!(n.value, ObservationValue::Numeric("0.282".into()));
        assert_eq!(n.aside, vec!["-1".to_string()]);
        assert_eq!(value("40^^"), ObservationValue::Numeric("40".into()));
    }

    #[test]
    fn text_values() {
        assert_eq!(
            value("Nonreactive"),
            ObservationValue::String("Nonreactive".into())
        );
        assert_eq!(
            value("NOT DETECTED^"),
            ObservationValue::String("NOT DETECTED".into())
        );
    }

    #[test]
    fn reference_ranges() {
        let r = |s: &str| reference_range(&s.split('^').collect::<Vec<_>>());
        assert_eq!(r("0.270^4.20").as_deref(), Some("0.270-4.20"));
        assert_eq!(r("0.35 TO 4.94").as_deref(), Some("0.35-4.94"));
        assert_eq!(r("3.08 - 6.44").as_deref(), Some("3.08-6.44"));
        assert_eq!(r("0.94-1.64^REFERENCE_RANGE").as_deref(), Some("0.94-1.64"));
        assert_eq!(
            r("0.00 - 0.15^REFERENCE_RANGE").as_deref(),
            Some("0.00-0.15")
        );
        assert_eq!(r("^DEFAULT"), None);
        assert_eq!(r(""), None);
        assert_eq!(r("< 5").as_deref(), Some("<5"));
    }

    #[test]
    fn flags_split_table_and_vendor() {
        let (codes, vendor) =
            flags(vec![vec!["", "0", "FRMN"], vec!["", "0", "NR"], vec!["H"]].into_iter());
        assert_eq!(codes, vec!["NR".to_string(), "H".to_string()]);
        assert_eq!(vendor, vec!["FRMN".to_string()]);
    }

    #[test]
    fn statuses() {
        assert_eq!(status("F"), ResultStatus::Final);
        assert_eq!(status("V"), ResultStatus::Final);
        assert_eq!(status("P"), ResultStatus::Preliminary);
        assert_eq!(status("C"), ResultStatus::Corrected);
        assert_eq!(status("X"), ResultStatus::CannotObtain);
        assert_eq!(status(""), ResultStatus::Final);
        assert_eq!(status("W"), ResultStatus::Final);
    }
}
