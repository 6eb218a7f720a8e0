//! One parsed E1394 record: its raw bytes plus fields → repeats → components.
//!
//! Field numbering follows E1394 (PROTOCOLS §2.1): field 1 is the record type, so field `n` is
//! the `n-1`th piece between field delimiters. H.2 is the delimiter definition (`\^&`) and is
//! kept whole, never split by the delimiters it defines (E1394 §7.1.2); in every other record
//! field 2 is the sequence number. Every value is escape-resolved on bytes first
//! ([`unescape`]) and then decoded with the analyser's [`Charset`].
//!
//! The raw bytes are kept alongside, so vendor-specific content survives any parsing choice.

use super::delimiters::{Delimiters, header_definition};
use super::escape::unescape;
use super::kind::RecordType;
use super::path::FieldPath;
use crate::charset::Charset;

/// One parsed field: the whole field for display and its repeats of components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    /// The field as on the wire (its own delimiters kept) with escape sequences resolved.
    display: String,
    /// Repeats, each a list of components; never empty (an empty field is one repeat holding
    /// one empty component).
    repeats: Vec<Vec<String>>,
}

/// A parsed E1394 record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    raw: Vec<u8>,
    kind: RecordType,
    fields: Vec<Field>,
}

/// One repeat of a field: its components, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat<'a> {
    components: &'a [String],
}

impl<'a> Repeat<'a> {
    /// Component `n` (1-based) with escapes resolved, or `""` when absent.
    pub fn component(&self, n: usize) -> &'a str {
        n.checked_sub(1)
            .and_then(|i| self.components.get(i))
            .map_or("", String::as_str)
    }

    /// All components in order.
    pub fn components(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.components.iter().map(String::as_str)
    }

    /// The number of components (at least 1).
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// Whether the repeat holds no components (never true for a parsed record).
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }
}

impl Record {
    /// Parses one record (no terminator, no frame number) with the message's delimiters.
    ///
    /// Never fails: any bytes make some record. For an H record, field 1 is split off at the
    /// byte after `H` and H.2 is kept whole; pass the delimiters read from that same record
    /// ([`Delimiters::from_header`]). An empty `raw` gives a record of type `Other(0x00)` with
    /// no fields (record splitting never produces one).
    pub fn parse(raw: &[u8], delimiters: &Delimiters, charset: Charset) -> Record {
        let kind = raw
            .first()
            .map_or(RecordType::Other(0x00), |&b| RecordType::from_byte(b));
        let mut fields = Vec::new();
        if !raw.is_empty() {
            let mut rest = raw;
            if kind == RecordType::Header && raw.len() >= 2 {
                // H.1 is everything before the first field delimiter, i.e. "H"; H.2 follows
                // unsplit; H.3 onwards are ordinary fields.
                let definition = header_definition(raw, delimiters.field);
                fields.push(plain_field(raw.get(..1).unwrap_or_default(), charset));
                fields.push(plain_field(definition, charset));
                let consumed = 2 + definition.len();
                rest = match raw.get(consumed..) {
                    // Skip the field delimiter that ends H.2, if there is one.
                    Some([_, tail @ ..]) => tail,
                    _ => {
                        return Record {
                            raw: raw.to_vec(),
                            kind,
                            fields,
                        };
                    }
                };
            }
            fields.extend(
                rest.split(|&b| b == delimiters.field)
                    .map(|field| parse_field(field, delimiters, charset)),
            );
        }
        Record {
            raw: raw.to_vec(),
            kind,
            fields,
        }
    }

    /// The record type (from the first byte).
    pub fn kind(&self) -> RecordType {
        self.kind
    }

    /// The exact bytes received, without terminator.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The number of fields, counting field 1 (the type) and trailing empty fields.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Field `n` (1-based) as on the wire, its repeat and component delimiters kept and its
    /// escape sequences resolved; `""` when absent. Because escapes are resolved, a value that
    /// held an escaped delimiter is no longer distinguishable from structure here: use
    /// [`Record::component`] or [`Record::repeats`] for structured access.
    pub fn field(&self, n: usize) -> &str {
        self.field_at(n).map_or("", |f| f.display.as_str())
    }

    /// Component `comp` (1-based) of the first repeat of field `field`; `""` when absent.
    pub fn component(&self, field: usize, comp: usize) -> &str {
        self.repeats(field)
            .next()
            .map_or("", |repeat| repeat.component(comp))
    }

    /// The repeats of field `n` (1-based), each giving its components; empty when the field
    /// is absent. H.1, H.2 and field 1 of any record are a single repeat of one component.
    pub fn repeats(&self, n: usize) -> impl Iterator<Item = Repeat<'_>> + '_ {
        self.field_at(n)
            .into_iter()
            .flat_map(|f| f.repeats.iter())
            .map(|components| Repeat { components })
    }

    /// Every field as on the wire in the message's own delimiters, with escape sequences
    /// resolved: field 1 is the type (`"R"`), H.2 is the delimiter definition as sent. This is
    /// what `labagent decode` prints as JSON.
    pub fn fields_display(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.display.clone()).collect()
    }

    /// The value a [`FieldPath`] points at: the whole field, or one component of its first
    /// repeat. `""` when this record is of another type than the path's, or the field or
    /// component is absent. Nothing is trimmed.
    pub fn select(&self, path: &FieldPath) -> &str {
        if path.record() != self.kind {
            return "";
        }
        match path.component() {
            Some(comp) => self.component(path.field().get(), comp.get()),
            None => self.field(path.field().get()),
        }
    }

    fn field_at(&self, n: usize) -> Option<&Field> {
        n.checked_sub(1).and_then(|i| self.fields.get(i))
    }
}

/// A field that is not split (record type, H.2): one repeat, one component, no unescaping.
fn plain_field(bytes: &[u8], charset: Charset) -> Field {
    let text = charset.decode(bytes).into_owned();
    Field {
        display: text.clone(),
        repeats: vec![vec![text]],
    }
}

/// Splits one field into repeats and components, unescaping and decoding each component. The
/// display form joins the unescaped components with the raw delimiter bytes and decodes the
/// result, so it reads exactly like the wire minus the escape sequences.
fn parse_field(bytes: &[u8], delimiters: &Delimiters, charset: Charset) -> Field {
    let mut display = Vec::with_capacity(bytes.len());
    let mut repeats = Vec::new();
    for (r, repeat) in bytes.split(|&b| b == delimiters.repeat).enumerate() {
        if r > 0 {
            display.push(delimiters.repeat);
        }
        let mut components = Vec::new();
        for (c, component) in repeat.split(|&b| b == delimiters.component).enumerate() {
            if c > 0 {
                display.push(delimiters.component);
            }
            let value = unescape(component, delimiters);
            display.extend_from_slice(&value);
            components.push(charset.decode(&value).into_owned());
        }
        repeats.push(components);
    }
    Field {
        display: charset.decode(&display).into_owned(),
        repeats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(raw: &[u8]) -> Record {
        Record::parse(raw, &Delimiters::default(), Charset::Latin1)
    }

    #[test]
    fn result_record_fields_display() {
        let r = rec(b"R|1|^^^WBC^^1|6.2|10*3/uL|4.0-10.0|N||F||ADMIN^ADMIN||20250613101844|XN1");
        assert_eq!(r.kind(), RecordType::Result);
        assert_eq!(
            r.fields_display(),
            vec![
                "R",
                "1",
                "^^^WBC^^1",
                "6.2",
                "10*3/uL",
                "4.0-10.0",
                "N",
                "",
                "F",
                "",
                "ADMIN^ADMIN",
                "",
                "20250613101844",
                "XN1"
            ]
        );
        assert_eq!(r.field(1), "R");
        assert_eq!(r.field(2), "1");
        assert_eq!(r.field(4), "6.2");
        assert_eq!(r.component(3, 4), "WBC");
        assert_eq!(r.component(3, 6), "1");
        assert_eq!(r.component(3, 7), "");
        assert_eq!(r.field(0), "");
        assert_eq!(r.field(99), "");
        assert_eq!(r.component(0, 1), "");
        assert_eq!(r.component(3, 0), "");
        assert_eq!(r.field_count(), 14);
    }

    #[test]
    fn trailing_empty_fields_are_kept() {
        // euroimmun: a trailing '|' after R.5.
        let r = rec(b"R|1|^^^SARSCOV2IGA|7,41|Ratio|");
        assert_eq!(r.field_count(), 6);
        assert_eq!(r.fields_display().last().map(String::as_str), Some(""));
    }

    #[test]
    fn header_field_2_is_not_split() {
        let h = rec(b"H|\\^&|||ARCHITECT^9.45^F3452430028|||||||P|1|20250613131519");
        assert_eq!(h.kind(), RecordType::Header);
        assert_eq!(h.field(1), "H");
        assert_eq!(h.field(2), "\\^&");
        assert_eq!(h.repeats(2).count(), 1);
        assert_eq!(h.component(2, 1), "\\^&");
        assert_eq!(h.component(5, 1), "ARCHITECT");
        assert_eq!(h.component(5, 3), "F3452430028");
        assert_eq!(h.field(12), "P");
        assert_eq!(h.field(14), "20250613131519");
        assert_eq!(&h.fields_display()[..3], ["H", "\\^&", ""]);
    }

    #[test]
    fn minimal_headers() {
        let h = rec(b"H|\\^&");
        assert_eq!(h.fields_display(), vec!["H", "\\^&"]);
        let h = rec(b"H|\\^&|");
        assert_eq!(h.fields_display(), vec!["H", "\\^&", ""]);
        let h = rec(b"H");
        assert_eq!(h.fields_display(), vec!["H"]);
    }

    #[test]
    fn repeats_and_components() {
        // hologic_panther_1.astm: R.9 is `F\R`.
        let r = rec(b"R|1|^^^HPV^ICRLU^^1|181107|||||F\\R||||20230222192433|");
        let statuses: Vec<_> = r.repeats(9).map(|rep| rep.component(1)).collect();
        assert_eq!(statuses, vec!["F", "R"]);
        assert_eq!(r.field(9), "F\\R");
        // ortho_vitros3600_1.astm: R.7 repeats of components.
        let r = rec(b"R|1|^^^1.0000+002+1.0|5.0|mg/dL||^0^FRMN\\^0^NR|N|V");
        let reps: Vec<Vec<&str>> = r.repeats(7).map(|rep| rep.components().collect()).collect();
        assert_eq!(reps, vec![vec!["", "0", "FRMN"], vec!["", "0", "NR"]]);
        let first = r.repeats(7).next();
        assert_eq!(first.map(|rep| rep.len()), Some(3));
        assert_eq!(first.map(|rep| rep.is_empty()), Some(false));
        assert_eq!(r.repeats(99).count(), 0);
    }

    #[test]
    fn escapes_resolved_in_components_and_display() {
        // abbott_m2000_2.astm: literal '&' in a specimen id.
        let o = rec(b"O|1|DB&E&23-33E22|DB&E&23-33E22^WS23-11684^D2|^^^HIV1mlDBS");
        assert_eq!(o.field(3), "DB&23-33E22");
        assert_eq!(o.component(4, 1), "DB&23-33E22");
        assert_eq!(o.component(4, 2), "WS23-11684");
        // An escaped component delimiter stays inside its component.
        let c = rec(b"C|1|I|a&S&b^c&F&d&R&e|G");
        assert_eq!(c.component(4, 1), "a^b");
        assert_eq!(c.component(4, 2), "c|d\\e");
        assert_eq!(c.field(4), "a^b^c|d\\e");
        assert_eq!(c.repeats(4).count(), 1);
    }

    #[test]
    fn genexpert_delimiters() {
        let d = Delimiters {
            field: b'|',
            repeat: b'@',
            component: b'^',
            escape: b'\\',
        };
        let h = Record::parse(
            b"H|@^\\|URM-8lT4abZA-06||x^GeneXpert^4.8",
            &d,
            Charset::Latin1,
        );
        assert_eq!(h.field(2), "@^\\");
        assert_eq!(h.field(3), "URM-8lT4abZA-06");
        let r = Record::parse(b"R|1|a@b^c|x\\S\\y", &d, Charset::Latin1);
        let reps: Vec<Vec<&str>> = r.repeats(3).map(|rep| rep.components().collect()).collect();
        assert_eq!(reps, vec![vec!["a"], vec!["b", "c"]]);
        assert_eq!(r.field(4), "x^y");
    }

    #[test]
    fn erba_backtick_repeat() {
        let d = Delimiters {
            repeat: b'`',
            ..Delimiters::default()
        };
        let q = Record::parse(b"Q|1|^0000000406`00001001||ALL", &d, Charset::Latin1);
        let ids: Vec<&str> = q.repeats(3).map(|rep| rep.component(2)).collect();
        assert_eq!(ids, vec!["0000000406", ""]);
        assert_eq!(
            q.repeats(3).nth(1).map(|rep| rep.component(1)),
            Some("00001001")
        );
        assert_eq!(q.field(3), "^0000000406`00001001");
    }

    #[test]
    fn charset_applies_to_values() {
        let raw = b"C|1|I|\x80 5\xE4|G";
        let latin = Record::parse(raw, &Delimiters::default(), Charset::Latin1);
        let cp = Record::parse(raw, &Delimiters::default(), Charset::Windows1252);
        let utf = Record::parse(raw, &Delimiters::default(), Charset::Utf8);
        assert_eq!(latin.field(4), "\u{80} 5ä");
        assert_eq!(cp.field(4), "€ 5ä");
        assert_eq!(utf.field(4), "\u{FFFD} 5\u{FFFD}");
        // Hex escapes produce bytes in the analyser's set, decoded afterwards.
        let hex = Record::parse(
            b"C|1|I|&X80&|G",
            &Delimiters::default(),
            Charset::Windows1252,
        );
        assert_eq!(hex.field(4), "€");
        let utf8 = Record::parse(b"C|1|I|&XC3A4&|G", &Delimiters::default(), Charset::Utf8);
        assert_eq!(utf8.field(4), "ä");
    }

    #[test]
    fn unknown_and_frame_prefixed_records_keep_their_bytes() {
        let r = rec(b"1H|\\^&|||PSM");
        assert_eq!(r.kind(), RecordType::Other(b'1'));
        assert_eq!(r.field(1), "1H");
        assert_eq!(r.raw(), b"1H|\\^&|||PSM");
        let z = rec(b"Z|1|vendor^data");
        assert_eq!(z.kind(), RecordType::Other(b'Z'));
        assert_eq!(z.component(3, 2), "data");
        let empty = rec(b"");
        assert_eq!(empty.kind(), RecordType::Other(0));
        assert_eq!(empty.field_count(), 0);
    }

    #[test]
    fn select_by_path() {
        let o = rec(b"O|1|SID1|276056250158121^U265^1|^^^580");
        let path = |s: &str| s.parse::<FieldPath>().unwrap();
        assert_eq!(o.select(&path("O.3")), "SID1");
        assert_eq!(o.select(&path("O.4")), "276056250158121^U265^1");
        assert_eq!(o.select(&path("O.4.2")), "U265");
        assert_eq!(o.select(&path("O.4.9")), "");
        assert_eq!(o.select(&path("O.40")), "");
        assert_eq!(o.select(&path("P.3")), "", "other record type");
    }
}
