//! On-disk encodings: segment header, record, sink state file. The byte layouts are tabulated
//! in the crate documentation; every integer is little-endian.

use std::collections::BTreeMap;

use crate::sink::{ParkRec, SinkState};
use crate::{Entry, Error, Kind, NewRecord, RecordId};

/// Segment file magic: "LBSTSEG" + format version 1.
pub(crate) const SEG_MAGIC: [u8; 8] = *b"LBSTSEG\x01";
/// Segment header: magic (8) | first id (8) | reserved (4) | crc32c of bytes 0..20 (4).
pub(crate) const SEG_HEADER_LEN: u64 = 0x18;
/// `len` (4) and `crc` (4) in front of every record body.
pub(crate) const PREFIX_LEN: u64 = 8;
/// Prefix plus the fixed part of the body: id (8) | received (8) | kind | cid_len | src_len | flags.
pub(crate) const HEADER_LEN: usize = 28;
/// Smallest valid body (`len` field): the fixed part with empty strings and payload.
pub(crate) const MIN_BODY_LEN: u32 = 20;
/// Largest body the format accepts (64 MiB). A `len` field above this is damage, not a record.
pub const MAX_RECORD_LEN: u32 = 64 << 20;
/// Longest control id or source name in bytes (one length byte each).
pub const MAX_FIELD_LEN: usize = 0xFF;

/// Sink state file magic: "LBSTSNK" + format version 1.
pub(crate) const SINK_MAGIC: [u8; 8] = *b"LBSTSNK\x01";
/// Longest dead-letter reason kept, in bytes (longer reasons are cut at a char boundary).
pub const MAX_REASON_LEN: usize = 0x0400;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The 24-byte header of a segment whose first record id is `first`.
pub(crate) fn segment_header(first: u64) -> [u8; SEG_HEADER_LEN as usize] {
    let mut h = [0u8; SEG_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEG_MAGIC);
    h[8..16].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns the first id it names.
pub(crate) fn parse_segment_header(h: &[u8]) -> Result<u64, &'static str> {
    if h.len() < SEG_HEADER_LEN as usize {
        return Err("short header");
    }
    if h[0..8] != SEG_MAGIC {
        return Err("bad magic");
    }
    if crc32c::crc32c(&h[0..20]) != u32_at(h, 20) {
        return Err("header checksum mismatch");
    }
    Ok(u64_at(h, 8))
}

/// Encodes `rec` with id 0 and no checksum; [`stamp`] fills both in once the id is known.
pub(crate) fn encode(rec: &NewRecord<'_>, max_body: u32) -> Result<Vec<u8>, Error> {
    let cid = rec.control_id.as_bytes();
    let src = rec.source.as_bytes();
    if cid.len() > MAX_FIELD_LEN {
        return Err(Error::FieldTooLong {
            field: "control_id",
            len: cid.len(),
            max: MAX_FIELD_LEN,
        });
    }
    if src.len() > MAX_FIELD_LEN {
        return Err(Error::FieldTooLong {
            field: "source",
            len: src.len(),
            max: MAX_FIELD_LEN,
        });
    }
    let body = MIN_BODY_LEN as u64 + cid.len() as u64 + src.len() as u64 + rec.payload.len() as u64;
    if body > u64::from(max_body) {
        return Err(Error::RecordTooLarge {
            len: body,
            max: u64::from(max_body),
        });
    }
    let mut b = Vec::with_capacity(PREFIX_LEN as usize + body as usize);
    // `body <= max_body <= MAX_RECORD_LEN` so it fits in u32.
    b.extend_from_slice(&(body as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // crc, set by `stamp`
    b.extend_from_slice(&0u64.to_le_bytes()); // id, set by `stamp`
    b.extend_from_slice(&rec.received_ms.to_le_bytes());
    // Field lengths were checked against MAX_FIELD_LEN (255) above.
    b.extend_from_slice(&[rec.kind as u8, cid.len() as u8, src.len() as u8, 0]);
    b.extend_from_slice(cid);
    b.extend_from_slice(src);
    b.extend_from_slice(rec.payload);
    Ok(b)
}

/// Writes `id` into an encoded record and computes its CRC-32C over `len` and the body.
pub(crate) fn stamp(rec: &mut [u8], id: u64) {
    rec[8..16].copy_from_slice(&id.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&rec[0..4]), &rec[8..]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The fixed 28-byte head of a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecHeader {
    pub(crate) len: u32,
    pub(crate) id: u64,
    pub(crate) received_ms: i64,
}

impl RecHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `b` (which must be that long) and checks that the
    /// lengths are plausible.
    pub(crate) fn parse(b: &[u8]) -> Result<RecHeader, &'static str> {
        if b.len() < HEADER_LEN {
            return Err("short record header");
        }
        let len = u32_at(b, 0);
        if !(MIN_BODY_LEN..=MAX_RECORD_LEN).contains(&len) {
            return Err("record length out of range");
        }
        if MIN_BODY_LEN + u32::from(b[25]) + u32::from(b[26]) > len {
            return Err("field lengths exceed record length");
        }
        Ok(RecHeader {
            len,
            id: u64_at(b, 8),
            received_ms: u64_at(b, 16) as i64,
        })
    }

    /// Bytes on disk: prefix plus body.
    pub(crate) fn total(&self) -> u64 {
        PREFIX_LEN + u64::from(self.len)
    }
}

/// Whether the CRC of a complete record (prefix and body) matches.
pub(crate) fn crc_ok(rec: &[u8]) -> bool {
    rec.len() >= HEADER_LEN
        && crc32c::crc32c_append(crc32c::crc32c(&rec[0..4]), &rec[8..]) == u32_at(rec, 4)
}

/// Verifies and decodes a complete record.
pub(crate) fn decode(rec: &[u8]) -> Result<Entry, &'static str> {
    let h = RecHeader::parse(rec)?;
    if rec.len() as u64 != h.total() {
        return Err("record length mismatch");
    }
    if !crc_ok(rec) {
        return Err("checksum mismatch");
    }
    let kind = Kind::from_u8(rec[24]).ok_or("unknown kind")?;
    let cid_end = HEADER_LEN + rec[25] as usize;
    let src_end = cid_end + rec[26] as usize;
    let control_id =
        std::str::from_utf8(&rec[HEADER_LEN..cid_end]).map_err(|_| "control id not UTF-8")?;
    let source = std::str::from_utf8(&rec[cid_end..src_end]).map_err(|_| "source not UTF-8")?;
    Ok(Entry {
        id: RecordId::new(h.id),
        control_id: control_id.to_string(),
        source: source.to_string(),
        received_ms: h.received_ms,
        kind,
        payload: rec[src_end..].to_vec(),
    })
}

/// Encodes a sink state file.
pub(crate) fn encode_sink(s: &SinkState) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + s.parked.len() * 48);
    b.extend_from_slice(&SINK_MAGIC);
    b.extend_from_slice(&s.cursor.to_le_bytes());
    b.extend_from_slice(&(s.parked.len() as u64).to_le_bytes());
    for (id, p) in &s.parked {
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&p.parked_at_ms.to_le_bytes());
        b.extend_from_slice(&p.received_ms.to_le_bytes());
        b.extend_from_slice(&p.bytes.to_le_bytes());
        b.push(u8::from(p.retrying));
        // Reasons are cut to MAX_REASON_LEN (< u16::MAX) when parked.
        b.extend_from_slice(&(p.reason.len() as u16).to_le_bytes());
        b.extend_from_slice(p.reason.as_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a sink state file.
pub(crate) fn decode_sink(b: &[u8]) -> Result<SinkState, &'static str> {
    if b.len() < 28 {
        return Err("file too short");
    }
    if b[0..8] != SINK_MAGIC {
        return Err("bad magic");
    }
    let body = &b[..b.len() - 4];
    if crc32c::crc32c(body) != u32_at(b, b.len() - 4) {
        return Err("checksum mismatch");
    }
    let cursor = u64_at(body, 8);
    let n = u64_at(body, 16);
    let mut at = 24usize;
    let mut parked = BTreeMap::new();
    for _ in 0..n {
        if at + 35 > body.len() {
            return Err("truncated entry");
        }
        let id = u64_at(body, at);
        let parked_at_ms = u64_at(body, at + 8) as i64;
        let received_ms = u64_at(body, at + 16) as i64;
        let bytes = u64_at(body, at + 24);
        let retrying = match body[at + 32] {
            0 => false,
            1 => true,
            _ => return Err("bad retrying flag"),
        };
        let rlen = usize::from(u16::from_le_bytes([body[at + 33], body[at + 34]]));
        at += 35;
        if at + rlen > body.len() {
            return Err("truncated reason");
        }
        let reason = std::str::from_utf8(&body[at..at + rlen]).map_err(|_| "reason not UTF-8")?;
        at += rlen;
        parked.insert(
            id,
            ParkRec {
                reason: reason.to_string(),
                parked_at_ms,
                received_ms,
                bytes,
                retrying,
            },
        );
    }
    if at != body.len() {
        return Err("trailing bytes");
    }
    Ok(SinkState { cursor, parked })
}

/// Cuts `reason` to at most [`MAX_REASON_LEN`] bytes at a char boundary.
pub(crate) fn cut_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_LEN {
        return reason.to_string();
    }
    let mut end = MAX_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}
