//! The E1394 record hierarchy `H { P { O { R { C }* | C }* }* | Q }* L` as a typed view.
//!
//! Built from the *order* of records, never from their sequence numbers (field 2): devices get
//! those wrong (Hologic Panther sends P.2=5 for the first patient, PROTOCOLS §7 quirk 14;
//! EUROIMMUN sends O.2=1 under every P). The rules:
//!
//! - P opens a patient group.
//! - O opens an order group under the current patient. An O before any P gets an implicit
//!   patient group whose `record` is `None`, so its results still reach the translator.
//! - R opens a result group under the current patient's latest order. An R with no order in the
//!   current patient is an orphan.
//! - C and M attach to the nearest preceding R, else O, else P, else H (M and C are interleaved
//!   between R records, PROTOCOLS §7 quirk 15: ortho_vitros3600_1.astm). After an orphan,
//!   they are orphans too.
//! - Q attaches to the message; L is the terminator; S, unknown types and anything the rules
//!   have no place for go to `orphans`.
//!
//! Every record of the message is reachable exactly once ([`Tree::record_count`]).

use super::kind::RecordType;
use super::record::Record;

/// The hierarchy of one message. Built by [`crate::record::Message::tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree<'a> {
    /// The H record.
    pub header: &'a Record,
    /// C records that came before any P, O or R.
    pub comments: Vec<&'a Record>,
    /// M records that came before any P, O or R.
    pub manufacturer: Vec<&'a Record>,
    /// Patient groups in order.
    pub patients: Vec<PatientGroup<'a>>,
    /// Q (request information) records, in order.
    pub queries: Vec<&'a Record>,
    /// The L record, when the message had one.
    pub terminator: Option<&'a Record>,
    /// Records the hierarchy has no place for (R before any O, the C/M records following such
    /// an R, S records, unknown record types), in order. Kept, never dropped.
    pub orphans: Vec<&'a Record>,
}

/// A P record with what follows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatientGroup<'a> {
    /// The P record; `None` for the implicit group holding orders sent before any P.
    pub record: Option<&'a Record>,
    /// C records directly after the P (before its first O).
    pub comments: Vec<&'a Record>,
    /// M records directly after the P (before its first O).
    pub manufacturer: Vec<&'a Record>,
    /// Orders in order.
    pub orders: Vec<OrderGroup<'a>>,
}

/// An O record with what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderGroup<'a> {
    /// The O record.
    pub record: &'a Record,
    /// C records directly after the O (before its first R).
    pub comments: Vec<&'a Record>,
    /// M records directly after the O (before its first R).
    pub manufacturer: Vec<&'a Record>,
    /// Results in order.
    pub results: Vec<ResultGroup<'a>>,
}

/// An R record with the C and M records that follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultGroup<'a> {
    /// The R record.
    pub record: &'a Record,
    /// C records after this R.
    pub comments: Vec<&'a Record>,
    /// M records after this R (reagent lots, curves, images).
    pub manufacturer: Vec<&'a Record>,
}

/// Where the next C or M record attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Header,
    Patient,
    Order,
    Result,
    Orphan,
}

impl<'a> Tree<'a> {
    /// Builds the tree from the H record and the records after it, in order.
    pub fn build(header: &'a Record, rest: &'a [Record]) -> Tree<'a> {
        let mut tree = Tree {
            header,
            comments: Vec::new(),
            manufacturer: Vec::new(),
            patients: Vec::new(),
            queries: Vec::new(),
            terminator: None,
            orphans: Vec::new(),
        };
        let mut level = Level::Header;
        for record in rest {
            level = tree.place(record, level);
        }
        tree
    }

    /// Puts one record in its place and returns where the next C/M attaches.
    fn place(&mut self, record: &'a Record, level: Level) -> Level {
        match record.kind() {
            RecordType::Patient => {
                self.patients.push(PatientGroup {
                    record: Some(record),
                    ..PatientGroup::default()
                });
                Level::Patient
            }
            RecordType::Order => {
                if self.patients.is_empty() {
                    self.patients.push(PatientGroup::default());
                }
                let order = OrderGroup {
                    record,
                    comments: Vec::new(),
                    manufacturer: Vec::new(),
                    results: Vec::new(),
                };
                match self.patients.last_mut() {
                    Some(patient) => {
                        patient.orders.push(order);
                        Level::Order
                    }
                    // Unreachable: a patient group was pushed just above.
                    None => self.orphan(record),
                }
            }
            RecordType::Result => {
                let result = ResultGroup {
                    record,
                    comments: Vec::new(),
                    manufacturer: Vec::new(),
                };
                match self.current_order() {
                    Some(order) => {
                        order.results.push(result);
                        Level::Result
                    }
                    None => self.orphan(record),
                }
            }
            RecordType::Comment | RecordType::Manufacturer => {
                let manufacturer = record.kind() == RecordType::Manufacturer;
                let lists = match level {
                    Level::Header => Some((&mut self.comments, &mut self.manufacturer)),
                    Level::Patient => self
                        .patients
                        .last_mut()
                        .map(|p| (&mut p.comments, &mut p.manufacturer)),
                    Level::Order => self
                        .current_order()
                        .map(|o| (&mut o.comments, &mut o.manufacturer)),
                    Level::Result => self
                        .current_order()
                        .and_then(|o| o.results.last_mut())
                        .map(|r| (&mut r.comments, &mut r.manufacturer)),
                    Level::Orphan => None,
                };
                match lists {
                    Some((_, m)) if manufacturer => m.push(record),
                    Some((c, _)) => c.push(record),
                    None => {
                        self.orphans.push(record);
                    }
                }
                level
            }
            RecordType::Query => {
                self.queries.push(record);
                level
            }
            RecordType::Terminator if self.terminator.is_none() => {
                self.terminator = Some(record);
                level
            }
            // S, unknown types, a second L or a stray H: kept, with the level unchanged so a
            // following C/M still finds its R.
            _ => {
                self.orphans.push(record);
                level
            }
        }
    }

    fn orphan(&mut self, record: &'a Record) -> Level {
        self.orphans.push(record);
        Level::Orphan
    }

    /// The latest order of the latest patient, where an R or C/M after O attaches.
    fn current_order(&mut self) -> Option<&mut OrderGroup<'a>> {
        self.patients.last_mut().and_then(|p| p.orders.last_mut())
    }

    /// How many records the tree holds, counting the header. Equals the message's record count:
    /// nothing is dropped.
    pub fn record_count(&self) -> usize {
        let patients: usize = self
            .patients
            .iter()
            .map(|p| {
                usize::from(p.record.is_some())
                    + p.comments.len()
                    + p.manufacturer.len()
                    + p.orders
                        .iter()
                        .map(|o| {
                            1 + o.comments.len()
                                + o.manufacturer.len()
                                + o.results
                                    .iter()
                                    .map(|r| 1 + r.comments.len() + r.manufacturer.len())
                                    .sum::<usize>()
                        })
                        .sum::<usize>()
            })
            .sum();
        1 + self.comments.len()
            + self.manufacturer.len()
            + patients
            + self.queries.len()
            + usize::from(self.terminator.is_some())
            + self.orphans.len()
    }

    /// Every result group in order, with its order and patient group.
    pub fn results(
        &self,
    ) -> impl Iterator<Item = (&PatientGroup<'a>, &OrderGroup<'a>, &ResultGroup<'a>)> + '_ {
        self.patients.iter().flat_map(|p| {
            p.orders
                .iter()
                .flat_map(move |o| o.results.iter().map(move |r| (p, o, r)))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::charset::Charset;
    use crate::record::{Message, Record, RecordType, parse_message};

    fn msg(text: &str) -> Message {
        parse_message(text.as_bytes(), Charset::Latin1).unwrap()
    }

    fn raws(records: &[&Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| String::from_utf8_lossy(r.raw()).into_owned())
            .collect()
    }

    #[test]
    fn builds_hierarchy_from_order_not_sequence_numbers() {
        // Panther P.2=5; EUROIMMUN O.2=1 under each P.
        let m = msg("H|\\^&\rP|5\rO|1|A\rR|1|^^^X|1\rP|2\rO|1|B\rR|1|^^^X|2\rR|1|^^^Y|3\rL|1|N");
        let t = m.tree();
        assert_eq!(t.patients.len(), 2);
        assert_eq!(t.patients[0].record.map(|p| p.field(2)), Some("5"));
        assert_eq!(t.patients[1].orders[0].record.field(3), "B");
        assert_eq!(t.patients[1].orders[0].results.len(), 2);
        assert_eq!(t.terminator.map(|l| l.field(3)), Some("N"));
        assert!(t.orphans.is_empty());
        let values: Vec<_> = t
            .results()
            .map(|(_, o, r)| (o.record.field(3), r.record.field(4)))
            .collect();
        assert_eq!(values, [("A", "1"), ("B", "2"), ("B", "3")]);
        assert_eq!(t.record_count(), m.records().len());
    }

    #[test]
    fn comments_and_manufacturer_attach_to_nearest() {
        let m = msg(
            "H|\\^&\rC|1|I|hdr\rM|1|hdr\rP|1\rC|1|I|pat\rO|1|S\rM|1|ord\rC|1|I|ord\r\
             R|1|^^^A|1\rM|1|lotA\rC|1|I|flagA\rR|2|^^^B|2\rM|1|lotB\rM|2|curveB\rL|1|N",
        );
        let t = m.tree();
        assert_eq!(raws(&t.comments), ["C|1|I|hdr"]);
        assert_eq!(raws(&t.manufacturer), ["M|1|hdr"]);
        let p = &t.patients[0];
        assert_eq!(raws(&p.comments), ["C|1|I|pat"]);
        let o = &p.orders[0];
        assert_eq!(raws(&o.comments), ["C|1|I|ord"]);
        assert_eq!(raws(&o.manufacturer), ["M|1|ord"]);
        assert_eq!(raws(&o.results[0].manufacturer), ["M|1|lotA"]);
        assert_eq!(raws(&o.results[0].comments), ["C|1|I|flagA"]);
        assert_eq!(raws(&o.results[1].manufacturer), ["M|1|lotB", "M|2|curveB"]);
        assert!(o.results[1].comments.is_empty());
        assert_eq!(t.record_count(), m.records().len());
    }

    #[test]
    fn orphans_are_kept() {
        let m = msg(
            "H|\\^&\rR|1|^^^A|1\rC|1|I|after orphan\rP|1\rR|1|^^^B|2\rS|1|sci\rZ|1|vendor\rL|1",
        );
        let t = m.tree();
        assert_eq!(
            raws(&t.orphans),
            [
                "R|1|^^^A|1",
                "C|1|I|after orphan",
                "R|1|^^^B|2",
                "S|1|sci",
                "Z|1|vendor"
            ]
        );
        assert_eq!(t.patients.len(), 1);
        assert!(t.patients[0].orders.is_empty());
        assert_eq!(t.record_count(), m.records().len());
        assert!(
            t.orphans
                .iter()
                .any(|r| r.kind() == RecordType::Other(b'Z'))
        );
    }

    #[test]
    fn order_before_patient_gets_implicit_patient() {
        let m = msg("H|\\^&\rO|1|QC1\rR|1|^^^A|1\rL|1|N");
        let t = m.tree();
        assert_eq!(t.patients.len(), 1);
        assert!(t.patients[0].record.is_none());
        assert_eq!(t.patients[0].orders[0].results.len(), 1);
        assert_eq!(t.record_count(), m.records().len());
    }

    #[test]
    fn queries_attach_to_message() {
        // ortho_vitros3600_3.astm.
        let m = msg("H|\\^&\rQ|1|^1068687||ALL||||||||O\rL|1|N");
        let t = m.tree();
        assert_eq!(raws(&t.queries), ["Q|1|^1068687||ALL||||||||O"]);
        assert_eq!(t.queries[0].component(3, 2), "1068687");
        assert!(t.patients.is_empty());
        assert_eq!(t.record_count(), 3);
    }

    #[test]
    fn unknown_record_between_results_keeps_comment_attachment() {
        let m = msg("H|\\^&\rP|1\rO|1\rR|1|^^^A\rZ|1\rC|1|I|for A\rL|1");
        let t = m.tree();
        assert_eq!(
            raws(&t.patients[0].orders[0].results[0].comments),
            ["C|1|I|for A"]
        );
        assert_eq!(raws(&t.orphans), ["Z|1"]);
    }
}
