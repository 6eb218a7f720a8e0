//! A deliberately small ER7 reader for assertions, sharing no code with the agent: segments
//! split on CR, fields on `|`, components on `^`. HL7 numbering: for MSH, field 1 is the field
//! separator itself, so MSH-n is the (n-1)-th `|`-separated piece; for other segments SEG-n is
//! the n-th piece after the segment id.

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Er7 {
    /// Segments in order: each is its `|`-separated pieces (piece 0 is the id).
    pub segments: Vec<Vec<String>>,
}

impl Er7 {
    /// Parses `bytes` (lossy UTF-8; CR or LF separate segments).
    pub fn parse(bytes: &[u8]) -> Er7 {
        let text = String::from_utf8_lossy(bytes);
        let segments = text
            .split(['\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(|s| s.split('|').map(String::from).collect())
            .collect();
        Er7 { segments }
    }

    /// Every segment with this id.
    pub fn all<'a>(&'a self, id: &'a str) -> impl Iterator<Item = Seg<'a>> + 'a {
        self.segments
            .iter()
            .filter(move |s| s.first().is_some_and(|x| x == id))
            .map(|s| Seg(s))
    }

    /// The first segment with this id.
    pub fn seg(&self, id: &str) -> Option<Seg<'_>> {
        self.segments
            .iter()
            .find(|s| s.first().is_some_and(|x| x == id))
            .map(|s| Seg(s))
    }

    /// Field `n` (HL7 numbering) of the first segment `id`; empty when absent.
    pub fn field(&self, id: &str, n: usize) -> String {
        self.seg(id)
            .map(|s| s.field(n).to_string())
            .unwrap_or_default()
    }

    /// MSH-10.
    pub fn control_id(&self) -> String {
        self.field("MSH", 10)
    }

    /// The segment ids in order.
    pub fn ids(&self) -> Vec<String> {
        self.segments
            .iter()
            .map(|s| s.first().cloned().unwrap_or_default())
            .collect()
    }
}

/// One segment.
#[derive(Debug, Clone, Copy)]
pub struct Seg<'a>(&'a [String]);

impl<'a> Seg<'a> {
    /// Field `n`, HL7 numbering; `""` when absent.
    pub fn field(&self, n: usize) -> &'a str {
        let idx = if self.0.first().is_some_and(|x| x == "MSH") {
            if n == 1 {
                return "|";
            }
            n - 1
        } else {
            n
        };
        self.0.get(idx).map_or("", String::as_str)
    }

    /// Component `c` (1-based) of field `n`.
    pub fn component(&self, n: usize, c: usize) -> &'a str {
        self.field(n).split('^').nth(c - 1).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msh_and_other_segments_are_numbered_as_in_hl7() {
        let m = Er7::parse(b"MSH|^~\\&|APP|FAC|||20260101||ORU^R01^ORU_R01|ID7|P|2.5.1\rOBX|1|NM|6690-2^WBC^LN||6.4\r");
        assert_eq!(m.field("MSH", 1), "|");
        assert_eq!(m.field("MSH", 2), "^~\\&");
        assert_eq!(m.field("MSH", 3), "APP");
        assert_eq!(m.control_id(), "ID7");
        let obx = m.seg("OBX").expect("OBX");
        assert_eq!(obx.field(5), "6.4");
        assert_eq!(obx.component(3, 3), "LN");
        assert_eq!(m.ids(), ["MSH", "OBX"]);
    }
}
