//! The ER7 model: [`Message`] → [`Segment`] → [`Field`] → [`Repetition`] → [`Component`] →
//! [`Subcomponent`] (HL7 v2.5.1 §2.5–§2.6).
//!
//! A parsed [`Message`] owns its text, normalised to CR segment terminators, plus an index of
//! segment and field spans. Every accessor is a cheap borrowed view; `raw()` gives the bytes as
//! on the wire (escapes intact) and `text()` resolves the escapes (§2.7). Nothing is dropped:
//! unknown segments (Z-segments, TCD, SID, SAC …) and fields beyond the standard (OBX-29) stay in
//! the text, so [`Message::encode`] returns the input bytes, with CR as the only segment
//! separator.

use std::borrow::Cow;

use crate::escape::{DelimiterError, Delimiters};

/// Vertical tab, the MLLP start block (HL7 v2.5.1 Appendix C, MLLP release 1).
pub const MLLP_START: u8 = 0x0B;
/// File separator, the MLLP end block, followed by [`MLLP_END_CR`].
pub const MLLP_END: u8 = 0x1C;
/// Carriage return after the MLLP end block; also the ER7 segment terminator (§2.5.1).
pub const MLLP_END_CR: u8 = 0x0D;

/// Bounds applied by [`Message::parse_with`]: input is refused before any work beyond them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Largest accepted input in bytes, MLLP framing included. Default 1 MiB; values above
    /// `u32::MAX` are treated as `u32::MAX` (spans are stored as `u32`).
    pub max_message_bytes: usize,
    /// Most segments accepted. Default 10,000.
    pub max_segments: usize,
    /// Most fields accepted in one segment (MSH-1 and MSH-2 count). Default 1,000.
    pub max_fields: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_message_bytes: 1 << 20,
            max_segments: 10_000,
            max_fields: 1_000,
        }
    }
}

/// Why bytes could not be parsed as an ER7 message. Offsets are byte offsets into the input as
/// passed to [`Message::parse`] (MLLP framing included); `segment_index` counts from 0 (MSH).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input holds nothing but framing and whitespace.
    #[error("message is empty")]
    Empty,
    /// The input is larger than [`ParseLimits::max_message_bytes`].
    #[error("message is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The first segment is not MSH (§2.5.1: a message starts with its header).
    // The found bytes are not in the message: they may be patient data, and this text reaches
    // logs and the status page.
    #[error("message does not start with MSH (byte {offset})")]
    MissingMsh {
        /// The first bytes found instead (lossy, at most 8).
        found: String,
        /// Where the first segment starts.
        offset: usize,
    },
    /// MSH-1 or MSH-2 is missing or refused (§2.5.4).
    #[error("MSH-{field} at byte {offset}: {reason}")]
    InvalidEncodingCharacters {
        /// 1 (field separator) or 2 (encoding characters).
        field: u8,
        /// Where the field starts.
        offset: usize,
        /// What is wrong with it.
        reason: DelimiterError,
    },
    /// A segment does not start with a three-character id (`[A-Z][A-Z0-9]{2}`) followed by the
    /// field separator or the end of the segment (§2.5.2).
    #[error("segment {segment_index} at byte {offset}: invalid segment id")]
    InvalidSegmentId {
        /// Position of the segment (MSH = 0).
        segment_index: usize,
        /// Where the segment starts.
        offset: usize,
        /// The first bytes of the segment (lossy, at most 8).
        found: String,
    },
    /// More segments than [`ParseLimits::max_segments`].
    #[error("more than {max} segments (segment {segment_index} at byte {offset})")]
    TooManySegments {
        /// The limit in force.
        max: usize,
        /// Position of the first segment over the limit.
        segment_index: usize,
        /// Where it starts.
        offset: usize,
    },
    /// A segment has more fields than [`ParseLimits::max_fields`].
    #[error("segment {segment_index} ({segment_id}) at byte {offset}: more than {max} fields")]
    TooManyFields {
        /// The limit in force.
        max: usize,
        /// Position of the segment.
        segment_index: usize,
        /// Its id.
        segment_id: String,
        /// Where the segment starts.
        offset: usize,
    },
    /// The bytes are not UTF-8. Decode other character sets (MSH-18) before parsing.
    #[error("invalid UTF-8 at byte {offset}, segment {segment_index} ({segment_id}) field {field}")]
    InvalidUtf8 {
        /// First invalid byte.
        offset: usize,
        /// Segment holding it.
        segment_index: usize,
        /// That segment's id (lossy).
        segment_id: String,
        /// Field number holding it (HL7 numbering; 0 = the segment id).
        field: usize,
    },
}

/// Removes the MLLP envelope (`<VT> … <FS><CR>`) and surrounding whitespace, if present.
///
/// Tolerates a missing start or end block (corpus captures keep only one of them), LF instead
/// of CR after FS, and repeated end blocks: with an end block, the whole trailing run of
/// whitespace and FS bytes is framing. Without one, only trailing CR/LF are removed, since
/// trailing spaces may belong to the last value.
pub fn strip_mllp(input: &[u8]) -> &[u8] {
    let (start, end) = mllp_bounds(input);
    &input[start..end]
}

fn mllp_bounds(input: &[u8]) -> (usize, usize) {
    let ws = |b: &u8| b.is_ascii_whitespace();
    let mut start = input.iter().position(|b| !ws(b)).unwrap_or(input.len());
    if input.get(start) == Some(&MLLP_START) {
        start += 1;
    }
    // The trailing run of whitespace and FS bytes: when it holds an FS (an end block), the
    // whole run is framing, so parse -> encode -> parse is stable whatever the sender put
    // around its end blocks (found by the hl7_parse fuzz target).
    let mut tail = input.len();
    while tail > start && (ws(&input[tail - 1]) || input[tail - 1] == MLLP_END) {
        tail -= 1;
    }
    let end = if input[tail..].contains(&MLLP_END) {
        tail
    } else {
        // No end block: only line ends are framing; trailing spaces may be data (a value).
        let mut end = input.len();
        while end > start && matches!(input[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        end
    };
    (start, end)
}

/// Wraps one message in an MLLP envelope (`<VT> message <FS><CR>`).
pub fn frame_mllp(message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(message.len() + 3);
    v.push(MLLP_START);
    v.extend_from_slice(message);
    v.push(MLLP_END);
    v.push(MLLP_END_CR);
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SegSpan {
    first_field: u32,
    field_count: u32,
}

/// A parsed HL7 v2 message in ER7 (pipe) encoding.
///
/// Invariants: the text starts with an MSH segment, every segment ends with exactly one CR, the
/// delimiters are those of MSH-1/MSH-2, and the span index matches the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    text: String,
    delimiters: Delimiters,
    segments: Vec<SegSpan>,
    /// Per segment: the id span (field 0) then one span per field.
    fields: Vec<Span>,
}

fn lossy_prefix(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(8)]).into_owned()
}

fn is_header_segment(id: &[u8]) -> bool {
    // MSH, BHS and FHS carry the field separator as their field 1 (§2.5.4, §2.10.2).
    matches!(id, b"MSH" | b"BHS" | b"FHS")
}

fn valid_segment_id(line: &[u8], fs: u8) -> bool {
    line.len() >= 3
        && line[0].is_ascii_uppercase()
        && line[1..3]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && (line.len() == 3 || line[3] == fs)
}

impl Message {
    /// Parses one message with [`ParseLimits::default`]. An MLLP envelope is stripped first;
    /// CR, LF or CRLF separate segments; blank lines are skipped. Never panics.
    pub fn parse(input: &[u8]) -> Result<Message, ParseError> {
        Self::parse_with(input, &ParseLimits::default())
    }

    /// Parses a message held in a `&str` (see [`Message::parse`]).
    pub fn parse_str(input: &str) -> Result<Message, ParseError> {
        Self::parse(input.as_bytes())
    }

    /// Parses one message within the given limits (see [`Message::parse`]).
    pub fn parse_with(input: &[u8], limits: &ParseLimits) -> Result<Message, ParseError> {
        let max = limits.max_message_bytes.min(u32::MAX as usize - 1);
        if input.len() > max {
            return Err(ParseError::TooLarge {
                len: input.len(),
                max,
            });
        }
        let (base, end) = mllp_bounds(input);
        let body = &input[base..end];
        if body.is_empty() {
            return Err(ParseError::Empty);
        }
        let text_in = match std::str::from_utf8(body) {
            Ok(s) => s,
            Err(e) => return Err(utf8_error(body, base, e.valid_up_to())),
        };
        let bytes = text_in.as_bytes();
        if !bytes.starts_with(b"MSH") {
            return Err(ParseError::MissingMsh {
                found: lossy_prefix(bytes),
                offset: base,
            });
        }
        let fs = match bytes.get(3) {
            Some(&b) if b != b'\r' && b != b'\n' => b,
            _ => {
                return Err(ParseError::InvalidEncodingCharacters {
                    field: 1,
                    offset: base + 3,
                    reason: DelimiterError::WrongCount { len: 0 },
                });
            }
        };
        let enc_end = bytes[4..]
            .iter()
            .position(|&b| b == fs || b == b'\r' || b == b'\n')
            .map_or(bytes.len(), |p| p + 4);
        let delimiters = Delimiters::from_bytes(fs, &bytes[4..enc_end]).map_err(|reason| {
            let field = match reason {
                DelimiterError::NotPunctuation { byte } if byte == fs => 1,
                _ => 2,
            };
            ParseError::InvalidEncodingCharacters {
                field,
                offset: base + if field == 1 { 3 } else { 4 },
                reason,
            }
        })?;

        let mut text = String::with_capacity(bytes.len() + 1);
        let mut segments = Vec::with_capacity(bytes.len() / 48 + 1);
        let mut fields = Vec::with_capacity(bytes.len() / 6 + 4);
        let mut pos = 0usize;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let line_len = rest
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(rest.len());
            let line = &rest[..line_len];
            let line_start = pos;
            pos += line_len + 1;
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let segment_index = segments.len();
            if segment_index >= limits.max_segments {
                return Err(ParseError::TooManySegments {
                    max: limits.max_segments,
                    segment_index,
                    offset: base + line_start,
                });
            }
            if !valid_segment_id(line, fs) {
                return Err(ParseError::InvalidSegmentId {
                    segment_index,
                    offset: base + line_start,
                    found: lossy_prefix(line),
                });
            }
            let t0 = text.len();
            // Line boundaries are ASCII CR/LF, so `line` is a char-boundary slice of `text_in`.
            text.push_str(&text_in[line_start..line_start + line_len]);
            text.push('\r');
            let first_field = fields.len();
            let at = |i: usize| (t0 + i) as u32;
            fields.push(Span {
                start: at(0),
                end: at(3),
            });
            if line.len() > 3 {
                let mut start = 4;
                if is_header_segment(&line[..3]) {
                    fields.push(Span {
                        start: at(3),
                        end: at(4),
                    });
                }
                for (i, &b) in line.iter().enumerate().skip(4) {
                    if b == fs {
                        fields.push(Span {
                            start: at(start),
                            end: at(i),
                        });
                        start = i + 1;
                    }
                }
                fields.push(Span {
                    start: at(start),
                    end: at(line.len()),
                });
            }
            let field_count = fields.len() - first_field;
            // `field_count` includes the id span (field 0).
            if field_count - 1 > limits.max_fields {
                return Err(ParseError::TooManyFields {
                    max: limits.max_fields,
                    segment_index,
                    segment_id: lossy_prefix(&line[..3]),
                    offset: base + line_start,
                });
            }
            segments.push(SegSpan {
                first_field: first_field as u32,
                field_count: field_count as u32,
            });
        }
        Ok(Message {
            text,
            delimiters,
            segments,
            fields,
        })
    }

    /// The delimiters declared in MSH-1/MSH-2.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// The message in ER7, every segment terminated by CR (§2.5.1): the input bytes with LF or
    /// CRLF separators turned into CR, blank lines and MLLP framing removed.
    pub fn encode(&self) -> &str {
        &self.text
    }

    /// Same as [`Message::encode`], as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Consumes the message and returns its ER7 text.
    pub fn into_string(self) -> String {
        self.text
    }

    /// Number of segments (at least 1: MSH).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// All segments in order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = Segment<'_>> + '_ {
        (0..self.segments.len()).map(move |index| Segment { msg: self, index })
    }

    /// The segment at `index` (MSH = 0).
    pub fn segment_at(&self, index: usize) -> Option<Segment<'_>> {
        (index < self.segments.len()).then_some(Segment { msg: self, index })
    }

    /// The first segment with this id.
    pub fn segment(&self, id: &str) -> Option<Segment<'_>> {
        self.segments().find(|s| s.id() == id)
    }

    /// Every segment with this id, in order.
    pub fn segments_with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = Segment<'a>> + 'a {
        self.segments().filter(move |s| s.id() == id)
    }

    /// The MSH segment (always present, index 0).
    pub fn msh(&self) -> Segment<'_> {
        Segment {
            msg: self,
            index: 0,
        }
    }

    /// MSH-9 message type (§2.14.9.9): code, trigger event, structure.
    pub fn message_type(&self) -> MessageType {
        let f = self.msh().field(9);
        MessageType {
            code: f.component(1).text().into_owned(),
            trigger: f.component(2).text().into_owned(),
            structure: f.component(3).text().into_owned(),
        }
    }

    /// MSH-10 message control id (§2.14.9.10), escapes resolved.
    pub fn control_id(&self) -> Cow<'_, str> {
        self.msh().field(10).text()
    }

    /// MSH-11.1 processing id (§2.14.9.11): `P`, `T` or `D`.
    pub fn processing_id(&self) -> Cow<'_, str> {
        self.msh().field(11).component(1).text()
    }

    /// MSH-12.1 version id (§2.14.9.12), e.g. `2.5.1`.
    pub fn version(&self) -> Cow<'_, str> {
        self.msh().field(12).component(1).text()
    }

    /// MSH-15 accept acknowledgment type (§2.14.9.15, table 0155), empty when not valued.
    pub fn accept_ack_type(&self) -> Cow<'_, str> {
        self.msh().field(15).text()
    }

    /// MSH-16 application acknowledgment type (§2.14.9.16, table 0155), empty when not valued.
    pub fn application_ack_type(&self) -> Cow<'_, str> {
        self.msh().field(16).text()
    }

    fn span_str(&self, s: Span) -> &str {
        // Spans are produced by the parser on char boundaries of `text` (delimiters are ASCII).
        self.text
            .get(s.start as usize..s.end as usize)
            .unwrap_or("")
    }
}

/// MSH-9 split into its components (§2.14.9.9, MSG data type).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageType {
    /// MSG.1 message code, e.g. `ORU`.
    pub code: String,
    /// MSG.2 trigger event, e.g. `R01`.
    pub trigger: String,
    /// MSG.3 message structure, e.g. `ORU_R01`.
    pub structure: String,
}

fn utf8_error(body: &[u8], base: usize, valid: usize) -> ParseError {
    let head = &body[..valid];
    let line_start = head
        .iter()
        .rposition(|&b| b == b'\r' || b == b'\n')
        .map_or(0, |p| p + 1);
    let segment_index = head[..line_start]
        .split(|&b| b == b'\r' || b == b'\n')
        .filter(|l| !l.iter().all(|b| b.is_ascii_whitespace()))
        .count();
    let line = &head[line_start..];
    let fs = body.get(3).copied().unwrap_or(b'|');
    let mut field = line.iter().filter(|&&b| b == fs).count();
    if line.len() >= 3 && is_header_segment(&line[..3]) && field > 0 {
        field += 1;
    }
    ParseError::InvalidUtf8 {
        offset: base + valid,
        segment_index,
        segment_id: lossy_prefix(&line[..line.len().min(3)]),
        field,
    }
}

/// A borrowed view of one segment.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'m> {
    msg: &'m Message,
    index: usize,
}

impl<'m> Segment<'m> {
    fn spans(&self) -> &'m [Span] {
        // Invariant: `index` < segment count (checked where views are made) and the parser
        // records at least the id span for every segment, inside `fields`.
        let s = self.msg.segments[self.index];
        let a = s.first_field as usize;
        &self.msg.fields[a..a + s.field_count as usize]
    }

    /// The segment id, e.g. `OBX`.
    pub fn id(&self) -> &'m str {
        self.msg.span_str(self.spans()[0])
    }

    /// Position in the message (MSH = 0).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of the last field present (HL7 numbering; trailing empty fields may be omitted on
    /// the wire, §2.5.3, so a higher field number is simply empty).
    pub fn field_count(&self) -> usize {
        self.spans().len() - 1
    }

    /// Field `n` in HL7 numbering (MSH-1 is the field separator itself, MSH-2 the encoding
    /// characters). Field 0 is the segment id. A field beyond the last one present is empty.
    pub fn field(&self, n: usize) -> Field<'m> {
        let raw = self.spans().get(n).map_or("", |&s| self.msg.span_str(s));
        let literal = n <= 2 && n > 0 && is_header_segment(self.id().as_bytes());
        Field {
            raw,
            d: &self.msg.delimiters,
            literal,
        }
    }

    /// The fields 1..=field_count in order.
    pub fn fields(&self) -> impl Iterator<Item = Field<'m>> + 'm {
        let this = *self;
        (1..=this.field_count()).map(move |n| this.field(n))
    }

    /// The segment as on the wire, without its terminator.
    pub fn raw(&self) -> &'m str {
        let sp = self.spans();
        let first = sp[0];
        let last = sp[sp.len() - 1];
        self.msg.span_str(Span {
            start: first.start,
            end: last.end,
        })
    }
}

fn nth_piece(raw: &str, sep: u8, n: usize) -> &str {
    if n == 0 {
        return "";
    }
    // `sep` is ASCII, so split boundaries are char boundaries.
    raw.split(char::from(sep)).nth(n - 1).unwrap_or("")
}

macro_rules! text_part {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'m> {
            raw: &'m str,
            d: &'m Delimiters,
            literal: bool,
        }

        impl<'m> $name<'m> {
            /// The text as on the wire, escape sequences intact.
            pub fn raw(&self) -> &'m str {
                self.raw
            }
            /// The text with escape sequences resolved (§2.7). Delimiters of lower levels are
            /// left in place: use the narrower accessors to split them.
            pub fn text(&self) -> Cow<'m, str> {
                if self.literal {
                    Cow::Borrowed(self.raw)
                } else {
                    self.d.unescape(self.raw)
                }
            }
            /// True when nothing is valued here.
            pub fn is_empty(&self) -> bool {
                self.raw.is_empty()
            }
            /// True for the explicit null `""` (§2.5.3: "delete the value").
            pub fn is_null(&self) -> bool {
                self.raw == "\"\""
            }
        }
    };
}

text_part!(
    /// One field of a segment: repetitions separated by the repetition character.
    Field
);
text_part!(
    /// One repetition of a field: components separated by the component character.
    Repetition
);
text_part!(
    /// One component: subcomponents separated by the subcomponent character.
    Component
);
text_part!(
    /// One subcomponent, the smallest ER7 unit.
    Subcomponent
);

impl<'m> Field<'m> {
    /// The repetitions in order (one, possibly empty, when the field is not repeated).
    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'m>> + 'm {
        let (d, literal) = (self.d, self.literal);
        let sep = if literal {
            // MSH-1/MSH-2 are never split.
            '\r'
        } else {
            self.d.repetition()
        };
        self.raw
            .split(sep)
            .map(move |raw| Repetition { raw, d, literal })
    }

    /// Repetition `n` (1-based); empty when absent.
    pub fn repetition(&self, n: usize) -> Repetition<'m> {
        let raw = if self.literal {
            if n == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.repetition_byte(), n)
        };
        Repetition {
            raw,
            d: self.d,
            literal: self.literal,
        }
    }

    /// Component `n` (1-based) of the first repetition.
    pub fn component(&self, n: usize) -> Component<'m> {
        self.repetition(1).component(n)
    }
}

impl<'m> Repetition<'m> {
    /// The components in order.
    pub fn components(&self) -> impl Iterator<Item = Component<'m>> + 'm {
        let (d, literal) = (self.d, self.literal);
        let sep = if literal { '\r' } else { self.d.component() };
        self.raw
            .split(sep)
            .map(move |raw| Component { raw, d, literal })
    }

    /// Component `n` (1-based); empty when absent.
    pub fn component(&self, n: usize) -> Component<'m> {
        let raw = if self.literal {
            if n == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.component_byte(), n)
        };
        Component {
            raw,
            d: self.d,
            literal: self.literal,
        }
    }
}

impl<'m> Component<'m> {
    /// The subcomponents in order.
    pub fn subcomponents(&self) -> impl Iterator<Item = Subcomponent<'m>> + 'm {
        let (d, literal) = (self.d, self.literal);
        let sep = if literal { '\r' } else { self.d.subcomponent() };
        self.raw
            .split(sep)
            .map(move |raw| Subcomponent { raw, d, literal })
    }

    /// Subcomponent `n` (1-based); empty when absent.
    pub fn subcomponent(&self, n: usize) -> Subcomponent<'m> {
        let raw = if self.literal {
            if n == 1 { self.raw } else { "" }
        } else {
            nth_piece(self.raw, self.d.subcomponent_byte(), n)
        };
        Subcomponent {
            raw,
            d: self.d,
            literal: self.literal,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_run_of_end_blocks_is_all_framing() {
        // Regression from the hl7_parse fuzz target: parse, encode, parse must be stable.
        let m = Message::parse(b"MSH|^~\\&|A\rOBX|1\x1c\x1c\r").unwrap();
        assert_eq!(m.encode(), "MSH|^~\\&|A\rOBX|1\r");
        let again = Message::parse(m.encode().as_bytes()).unwrap();
        assert_eq!(again.encode(), m.encode());
    }

    use super::*;

    const SAMPLE: &str = "MSH|^~\\&|XN|LAB|EHR|CLINIC|20260329013000+0000||ORU^R01^ORU_R01|C1|P|2.5.1\rPID|1||123^^^NHS^NH~456^^^LAB^MR||Smith^Ann\rOBX|1|ST|X^Y||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f|||A~B\rZRI|ASY\r";

    #[test]
    fn parses_fields_components_and_repetitions() {
        let m = Message::parse_str(SAMPLE).unwrap();
        assert_eq!(m.segment_count(), 4);
        let ids: Vec<_> = m.segments().map(|s| s.id()).collect();
        assert_eq!(ids, ["MSH", "PID", "OBX", "ZRI"]);
        let msh = m.msh();
        assert_eq!(msh.field(1).raw(), "|");
        assert_eq!(msh.field(2).raw(), "^~\\&");
        assert_eq!(msh.field(2).text(), "^~\\&");
        assert_eq!(msh.field(2).component(1).raw(), "^~\\&");
        assert_eq!(msh.field(3).text(), "XN");
        assert_eq!(m.control_id(), "C1");
        assert_eq!(
            m.message_type(),
            MessageType {
                code: "ORU".into(),
                trigger: "R01".into(),
                structure: "ORU_R01".into()
            }
        );
        assert_eq!(m.version(), "2.5.1");
        assert_eq!(m.processing_id(), "P");
        let pid = m.segment("PID").unwrap();
        assert_eq!(pid.field(3).repetitions().count(), 2);
        assert_eq!(pid.field(3).repetition(2).component(5).text(), "MR");
        assert_eq!(pid.field(5).component(2).text(), "Ann");
        assert_eq!(pid.field(99).raw(), "");
        let obx = m.segment("OBX").unwrap();
        assert_eq!(obx.field(5).text(), "a|b^c&d~e\\f");
        assert_eq!(obx.field(8).repetition(2).raw(), "B");
        assert_eq!(m.segment("ZRI").unwrap().field(1).raw(), "ASY");
        assert_eq!(m.encode(), SAMPLE);
    }

    #[test]
    fn lf_crlf_and_mllp_are_tolerated() {
        let lf = SAMPLE.replace('\r', "\n");
        let crlf = SAMPLE.replace('\r', "\r\n");
        let framed = frame_mllp(SAMPLE.as_bytes());
        for input in [lf.as_bytes(), crlf.as_bytes(), &framed[..]] {
            let m = Message::parse(input).unwrap();
            assert_eq!(m.encode(), SAMPLE);
        }
        // With an end block, the whole trailing run of whitespace and FS is framing.
        assert_eq!(strip_mllp(b"\x0bMSH|x\r\x1c\r"), b"MSH|x".as_slice());
        assert_eq!(strip_mllp(b"MSH|x\n\x1c\n"), b"MSH|x".as_slice());
        // Without one, only line ends are: trailing spaces may be part of a value.
        assert_eq!(strip_mllp(b"MSH|x  \r\n"), b"MSH|x  ".as_slice());
    }

    #[test]
    fn custom_delimiters() {
        let m = Message::parse_str("MSH#@*!$#A@B#\rOBX#1#x!F!y@z$w*r\r").unwrap();
        assert_eq!(m.delimiters().field(), '#');
        let obx = m.segment("OBX").unwrap();
        assert_eq!(obx.field(2).component(1).text(), "x#y");
        assert_eq!(obx.field(2).component(2).subcomponent(2).text(), "w");
        assert_eq!(obx.field(2).repetition(2).text(), "r");
        assert_eq!(m.msh().field(3).component(2).text(), "B");
    }

    #[test]
    fn errors_name_segment_and_field() {
        assert_eq!(Message::parse(b"\x0b\x1c\r"), Err(ParseError::Empty));
        assert!(matches!(
            Message::parse(b"PID|1\r"),
            Err(ParseError::MissingMsh { offset: 0, .. })
        ));
        assert!(matches!(
            Message::parse(b"MSH|^~\r"),
            Err(ParseError::InvalidEncodingCharacters { field: 2, .. })
        ));
        assert!(matches!(
            Message::parse(b"MSH"),
            Err(ParseError::InvalidEncodingCharacters { field: 1, .. })
        ));
        assert_eq!(
            Message::parse(b"MSH|^~\\&\rPID|1\rob|x\r"),
            Err(ParseError::InvalidSegmentId {
                segment_index: 2,
                offset: 15,
                found: "ob|x".into()
            })
        );
        assert_eq!(
            Message::parse(b"MSH|^~\\&|A\rOBX|1|\xff\r"),
            Err(ParseError::InvalidUtf8 {
                offset: 17,
                segment_index: 1,
                segment_id: "OBX".into(),
                field: 2
            })
        );
        let limits = ParseLimits {
            max_segments: 2,
            ..ParseLimits::default()
        };
        assert!(matches!(
            Message::parse_with(b"MSH|^~\\&\rPID\rOBX\r", &limits),
            Err(ParseError::TooManySegments {
                segment_index: 2,
                ..
            })
        ));
        let limits = ParseLimits {
            max_fields: 3,
            ..ParseLimits::default()
        };
        assert!(Message::parse_with(b"MSH|^~\\&\rPID|1|2|3\r", &limits).is_ok());
        assert!(matches!(
            Message::parse_with(b"MSH|^~\\&\rPID|1|2|3|4\r", &limits),
            Err(ParseError::TooManyFields { segment_index: 1, ref segment_id, .. }) if segment_id == "PID"
        ));
        let limits = ParseLimits {
            max_message_bytes: 4,
            ..ParseLimits::default()
        };
        assert!(matches!(
            Message::parse_with(b"MSH|^~\\&\r", &limits),
            Err(ParseError::TooLarge { len: 9, max: 4 })
        ));
    }

    #[test]
    fn null_and_empty() {
        let m = Message::parse_str("MSH|^~\\&\rOBR||\"\"\r").unwrap();
        let obr = m.segment("OBR").unwrap();
        assert!(obr.field(1).is_empty());
        assert!(obr.field(2).is_null());
        assert_eq!(obr.field_count(), 2);
        assert_eq!(obr.raw(), "OBR||\"\"");
    }
}
