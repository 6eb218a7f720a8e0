//! [`Er7Writer`]: appends segments to one `String`, escaping values and trimming trailing
//! delimiters (§2.5.3: trailing empty fields and components may be omitted), with CR after
//! every segment (§2.5.1).

use crate::escape::Delimiters;

/// Writes ER7 text segment by segment into one buffer.
///
/// Usage: [`Er7Writer::msh`] or [`Er7Writer::segment`], then for every field [`Er7Writer::field`]
/// followed by any mix of [`Er7Writer::text`], [`Er7Writer::component`],
/// [`Er7Writer::subcomponent`], [`Er7Writer::repetition`]; [`Er7Writer::finish`] closes the last
/// segment. Values given to `text` are escaped; delimiters only ever come from the structural
/// calls, so trailing delimiters can be trimmed safely.
#[derive(Debug, Clone)]
pub struct Er7Writer {
    out: String,
    d: Delimiters,
    /// Shortest length the current segment may be trimmed to (past the id, or MSH-2).
    seg_min: usize,
    /// Start of the current field's content.
    field_start: usize,
    /// Start of the current repetition's content.
    rep_start: usize,
    open: bool,
}

impl Er7Writer {
    /// A writer that appends to `out` with the given delimiters.
    pub fn new(out: String, d: Delimiters) -> Self {
        Er7Writer {
            out,
            d,
            seg_min: 0,
            field_start: 0,
            rep_start: 0,
            open: false,
        }
    }

    /// The delimiters in use.
    pub fn delimiters(&self) -> &Delimiters {
        &self.d
    }

    /// Starts an MSH segment and writes MSH-1 and MSH-2 (§2.14.9.1–2).
    pub fn msh(&mut self) -> &mut Self {
        self.close_segment();
        self.out.push_str("MSH");
        self.out.push(self.d.field());
        for c in self.d.encoding_characters() {
            self.out.push(c);
        }
        self.open = true;
        self.seg_min = self.out.len();
        self.field_start = self.out.len();
        self.rep_start = self.out.len();
        self
    }

    /// Starts a segment with the given id (three characters, `[A-Z][A-Z0-9]{2}`; not checked).
    pub fn segment(&mut self, id: &str) -> &mut Self {
        self.close_segment();
        self.out.push_str(id);
        self.open = true;
        self.seg_min = self.out.len();
        self.field_start = self.out.len();
        self.rep_start = self.out.len();
        self
    }

    /// Starts the next field.
    pub fn field(&mut self) -> &mut Self {
        self.trim_field();
        self.out.push(self.d.field());
        self.field_start = self.out.len();
        self.rep_start = self.field_start;
        self
    }

    /// Skips `n` fields (writes `n` field separators, then the caller continues with `field`).
    pub fn skip(&mut self, n: usize) -> &mut Self {
        if n > 0 {
            self.trim_field();
            for _ in 0..n {
                self.out.push(self.d.field());
            }
            self.field_start = self.out.len();
            self.rep_start = self.field_start;
        }
        self
    }

    /// Starts the next field holding `value` (escaped).
    pub fn field_text(&mut self, value: &str) -> &mut Self {
        self.field().text(value)
    }

    /// Appends `value` to the current position, escaped (§2.7).
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.d.escape_into(&mut self.out, value);
        self
    }

    /// Appends `value` verbatim. The caller guarantees it holds no delimiter that should have
    /// been escaped (used for validated timestamps and codes).
    pub fn raw(&mut self, value: &str) -> &mut Self {
        self.out.push_str(value);
        self
    }

    /// Writes a component separator.
    pub fn component(&mut self) -> &mut Self {
        self.out.push(self.d.component());
        self
    }

    /// Writes a subcomponent separator.
    pub fn subcomponent(&mut self) -> &mut Self {
        self.out.push(self.d.subcomponent());
        self
    }

    /// Writes a repetition separator (trailing empty components of the repetition it closes
    /// are trimmed first).
    pub fn repetition(&mut self) -> &mut Self {
        let (c, s) = (self.d.component_byte(), self.d.subcomponent_byte());
        let b = self.out.as_bytes();
        let mut end = b.len();
        while end > self.rep_start && matches!(b[end - 1], x if x == c || x == s) {
            end -= 1;
        }
        self.out.truncate(end);
        self.out.push(self.d.repetition());
        self.rep_start = self.out.len();
        self
    }

    /// Writes the components `values` (each escaped) into the current field.
    pub fn components(&mut self, values: &[&str]) -> &mut Self {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.component();
            }
            self.text(v);
        }
        self
    }

    /// Closes the last segment and returns the buffer.
    pub fn finish(mut self) -> String {
        self.close_segment();
        self.out
    }

    fn trim_field(&mut self) {
        let (c, r, s) = (
            self.d.component_byte(),
            self.d.repetition_byte(),
            self.d.subcomponent_byte(),
        );
        let b = self.out.as_bytes();
        let mut end = b.len();
        while end > self.field_start && matches!(b[end - 1], x if x == c || x == r || x == s) {
            end -= 1;
        }
        self.out.truncate(end);
    }

    fn close_segment(&mut self) {
        if !self.open {
            return;
        }
        self.trim_field();
        let f = self.d.field_byte();
        let b = self.out.as_bytes();
        let mut end = b.len();
        while end > self.seg_min && b[end - 1] == f {
            end -= 1;
        }
        self.out.truncate(end);
        self.out.push('\r');
        self.open = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_trailing_delimiters_and_escapes() {
        let mut w = Er7Writer::new(String::new(), Delimiters::STANDARD);
        w.msh().field_text("A").skip(3).field();
        w.segment("OBX")
            .field_text("1")
            .field()
            .components(&["a|b", "", "", ""]);
        w.field()
            .text("x")
            .component()
            .component()
            .repetition()
            .text("y^");
        w.component().repetition().field().field();
        w.segment("NTE");
        assert_eq!(w.finish(), "MSH|^~\\&|A\rOBX|1|a\\F\\b|x~y\\S\\\rNTE\r");
    }
}
