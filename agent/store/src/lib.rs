//! labagent-store: the durable store-and-forward journal between the analysers and the sinks.
//!
//! # Boundary
//!
//! The store owns one directory. Sources call [`Store::append`] and acknowledge upstream (ASTM
//! final-frame ACK, MLLP AA) only after it returned `Ok`; sinks read with [`Store::peek`] /
//! [`Store::next`] and call [`Store::ack`] on the downstream acknowledgement, [`Store::park`] when
//! the downstream refuses a message for good. The crate is synchronous (no async runtime): call it
//! from a blocking thread. It reads no clock: received and parked times come in as unix
//! milliseconds from the caller.
//!
//! # Invariants
//!
//! 1. **Durable before `Ok`.** `append` returns only after the record's bytes are `fdatasync`ed,
//!    and, if the append created a segment, after the segment's header and the directory are
//!    synced. An `Err` from `append` means nothing was acknowledged.
//! 2. **Ids** ([`RecordId`]) are `u64`, start at 1, increase by one per record, and are never
//!    reused, not even after damage (recovery moves the next id past every id a cursor or dead
//!    letter refers to). Within a segment the ids are contiguous from the segment's first id.
//! 3. **Per-sink order.** Each sink sees the records in id order, except that parked records are
//!    skipped and re-queued (retried) records come first (see *Delivery order*).
//! 4. **Nothing is evicted.** At `max_bytes` an append fails with [`Error::Full`]; segments go only
//!    when no sink needs them (see *Deletion*).
//! 5. **One writer.** An exclusive `flock` on `LOCK` guards the directory; readers use
//!    [`Store::open_read_only`], which never writes. The lock belongs to the open file
//!    description: a child forked by the process shares it until its `exec` (the descriptor is
//!    close-on-exec), so a reopen racing a `spawn` in another thread can briefly see
//!    [`Error::Locked`].
//!
//! # Directory layout
//!
//! | file | content |
//! |---|---|
//! | `LOCK` | `flock`ed by the writer; holds `pid <n>` for the error message of a second writer |
//! | `seg-<first:020>.log` | the active (tail) segment, first id in the name |
//! | `seg-<first:020>-<end:020>.log` | a sealed segment holding ids `first..end` |
//! | `sink-<name>.state` | a sink's cursor and dead letters, replaced atomically |
//! | `sink-<name>.state.tmp` | a replacement being written; removed at open |
//! | `seg-….log.damaged-<offset>` | bytes cut from a damaged tail that still held valid records |
//!
//! # On-disk format (all integers little-endian)
//!
//! Segment header, 24 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic `"LBSTSEG\x01"` (format version 1) |
//! | 0x08 | 8 | first record id (must equal the file name's) |
//! | 0x10 | 4 | reserved, 0 |
//! | 0x14 | 4 | CRC-32C of bytes 0x00..0x14 |
//!
//! Then records back to back:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 4 | `len`: bytes after this 8-byte prefix (20 ..= 64 MiB) |
//! | 0x04 | 4 | `crc`: CRC-32C (Castagnoli) of `len` followed by the `len` body bytes |
//! | 0x08 | 8 | `id` |
//! | 0x10 | 8 | received time, unix ms (i64) |
//! | 0x18 | 1 | kind: 0x01 ORU, 0x02 raw HL7, 0x03 raw ASTM ([`Kind`]) |
//! | 0x19 | 1 | `c`: control id length (MSH-10, ≤ 255 bytes UTF-8) |
//! | 0x1A | 1 | `s`: source name length (≤ 255 bytes UTF-8) |
//! | 0x1B | 1 | flags, 0 |
//! | 0x1C | c | control id |
//! | 0x1C+c | s | source name |
//! | 0x1C+c+s | len−20−c−s | payload |
//!
//! Sink state file `sink-<name>.state`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x00 | 8 | magic `"LBSTSNK\x01"` |
//! | 0x08 | 8 | cursor: every id below is acknowledged, parked or retrying |
//! | 0x10 | 8 | `n`: number of dead letters |
//! | 0x18 | … | `n` × { id u64, parked_at_ms i64, received_ms i64, bytes u64, retrying u8, reason_len u16, reason } |
//! | end−4 | 4 | CRC-32C of everything before |
//!
//! # Group commit
//!
//! `append` encodes the record on the caller's thread and queues it. If no thread is committing,
//! the caller becomes the *leader*: it takes everything queued, assigns ids, writes the batch with
//! one `pwrite` into the active segment, calls `fdatasync` once, publishes the new records to
//! readers and wakes the *followers* (condvar), each of which finds its result. Appends arriving
//! while the leader syncs queue up for the next leader, so N concurrent writers cost about one
//! `fdatasync` per round, not N. There is no timer: a lone writer pays exactly one write and one
//! `fdatasync` per record. [`Store::append_batch`] commits several records as one unit;
//! [`Store::append_units`] queues several independent units at once, for a caller that gathers
//! appends itself (the agent's commit thread) and wants them in one group without a thread per
//! waiting append.
//!
//! # Preallocation
//!
//! The active segment is kept zero-filled up to [`Options::preallocate_bytes`] (1 MiB) beyond
//! its last record: when a group passes the zero-filled end, the leader writes the next step of
//! zeros with it, under the same `fdatasync`. Most commits then overwrite blocks the file already
//! has, so their `fdatasync` flushes data only instead of also committing a new file size
//! through the file system's journal (PostgreSQL zero-fills its WAL segments for the same
//! reason); on ext4 this makes a lone writer's commit about a third cheaper. The zeros count in
//! [`Status::total_bytes`] and never take the store past `max_bytes` nor a segment past
//! `segment_bytes`. Sealing cuts them off, so sealed segments end at their last record.
//!
//! # Rotation
//!
//! Before a unit that would take the active segment past `segment_bytes` (and the segment already
//! holds a record), the leader seals it (truncates its zeros, `fdatasync`, renames it to
//! `seg-<first>-<end>.log`), creates
//! `seg-<end>.log` with its header, `fdatasync`s it and fsyncs the directory (one directory fsync
//! makes both the rename and the creation durable). A unit is never split across segments.
//!
//! # Sinks, cursors, dead letters
//!
//! Each sink named in [`Options::sinks`] has a state: a cursor and a set of dead letters. A sink
//! first seen at open starts at the next id to be appended (its state file is written at once, so
//! a crash before its first ack does not move it). Every change (`ack`, `park`, `retry`,
//! `retry_all`) writes `sink-<name>.state.tmp`, `fdatasync`s it, renames it over the old file and
//! fsyncs the directory before returning.
//!
//! *Delivery order*: first the retried dead letters that lie behind the cursor, in ascending id
//! order ("retried entries are delivered next"), then the records from the cursor upward,
//! skipping parked ones. `ack` must name exactly the entry `next` would return
//! ([`Error::NotNext`] otherwise), so a sink cannot skip an entry by mistake. `park` accepts any
//! pending entry. `retry` of a dead letter that is ahead of the cursor just makes it pending in its
//! natural place again.
//!
//! # Deletion
//!
//! A segment file is deleted when it is sealed, is not the newest segment, every registered sink's
//! cursor is at or past its end, and no sink has a dead letter (parked or retrying) in it. Deletion
//! runs after every sink change and at open; a failed `unlink` is reported in
//! [`Status::deletion_error`] and retried at the next open. A parked record pins only its own
//! segment, not the ones after it. The active segment is never deleted; when the store is full and
//! every sink is past the active segment, the leader rotates so it can be deleted. State files of
//! sinks no longer configured are left alone and listed in [`RecoveryReport::orphan_sinks`].
//!
//! # Recovery (at open)
//!
//! 1. Take the lock; remove `*.state.tmp` (an interrupted cursor update: the old file is intact).
//! 2. List segments. Sealed ones are trusted from their names: they are **not read** (only opened
//!    and sized). An unsealed segment that is not the newest is an interrupted rotation and is
//!    sealed with the next segment's first id as its end.
//! 3. CRC-scan the newest, unsealed segment (the tail) record by record. Zeros from the end of
//!    the last record to the end of the file are preallocated space, not damage, and are kept,
//!    as long as there are no more of them than the store preallocates; a longer zero run is
//!    reported as [`DamageKind::ZeroFill`].
//!    Otherwise, at the first record that
//!    is torn, out of range, fails its CRC or has an unexpected id, the rest is cut (`ftruncate`
//!    plus `fdatasync`) and described in [`RecoveryReport::damage`]. A resynchronising scan counts
//!    CRC-valid records after the damage; if there are any (media corruption rather than a torn
//!    write) the cut bytes are first copied to `…damaged-<offset>`. A tail shorter than its header
//!    (torn while being created) is removed; a tail whose header fails its CRC is rewritten from
//!    its file name and reported.
//! 4. Load sink states (a corrupt one is [`Error::CorruptSinkState`]: the store will not guess a
//!    cursor). If a cursor or dead letter refers to ids beyond the recovered end (acknowledged data
//!    lost to damage), the tail is sealed, the next id moves past them, and
//!    [`RecoveryReport::lost_ids`] says so.
//! 5. Delete segments no sink needs; create a new active segment if there is none.
//!
//! *Start-up cost trade-off*: open reads one directory, opens and sizes every segment, and
//! CRC-scans only the tail (at most `segment_bytes` plus one unit). It never reads segments behind
//! the cursors, so start time does not grow with the delivered history nor with the backlog beyond
//! the tail. The price: damage inside a sealed segment is found only when that segment is first
//! read (its record headers are walked once to build an offset table, and each record's CRC is
//! checked on every read), and is then returned as [`Error::Corrupt`] for the affected entry rather
//! than at open. Offset tables cost 8 bytes per record of each segment that has been read.
//!
//! # Failure semantics
//!
//! * A failed write (`ENOSPC`, `EIO`, short write followed by an error) fails every append of the
//!   group with [`Error::Io`]; the partial bytes are cut with `ftruncate` so the next write starts
//!   on a record boundary and the ids are assigned again. Appends after it succeed once the cause
//!   is gone.
//! * A failed `fdatasync` fails the group the same way, and the segment is also sealed before the
//!   next write (Linux may drop the dirty pages after a failed `fdatasync`; the store never trusts
//!   that file region again). If even the `ftruncate` fails, the segment is sealed at its last
//!   committed record, so the garbage behind it is never read.
//! * A record whose append failed may still surface after a crash if the kernel did persist it;
//!   it is then delivered like any record (at least once; MSH-10 makes the duplicate
//!   recognisable).
//! * A failed cursor update leaves the previous cursor file in place: the entry is redelivered.
//! * Crash at any instant: acknowledged appends survive; a torn tail is cut at open.
//!
//! # File system seam
//!
//! All file access goes through [`Fs`] / [`FsFile`] ([`RealFs`] in production) so tests inject
//! `ENOSPC`, `EIO` and short writes. The lock is the exception: it is always a real `flock`.

mod error;
mod format;
mod fs;
mod sink;
mod store;

pub use error::{Error, Result};
pub use format::{MAX_FIELD_LEN, MAX_REASON_LEN, MAX_RECORD_LEN};
pub use fs::{Fs, FsFile, OpenMode, RealFs};
pub use store::{
    Damage, DamageKind, LOCK_FILE, Options, Parked, RecoveryReport, Settlement, SinkStatus, Status,
    Store,
};

use std::fmt;

/// A record's id: assigned at commit, increasing, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RecordId(pub(crate) u64);

impl RecordId {
    /// Wraps a raw id (e.g. from the CLI).
    pub const fn new(id: u64) -> Self {
        RecordId(id)
    }
    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// An ORU^R01 v2.5.1 message translated from an analyser's output.
    Oru = 0x01,
    /// An HL7 v2 message as received over MLLP.
    RawHl7 = 0x02,
    /// An ASTM E1394 message as received.
    RawAstm = 0x03,
}

impl Kind {
    /// The kind for an on-disk byte.
    pub const fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0x01 => Some(Kind::Oru),
            0x02 => Some(Kind::RawHl7),
            0x03 => Some(Kind::RawAstm),
            _ => None,
        }
    }
}

/// A record to append.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    /// Message control id (MSH-10), assigned once and never changed on retransmission.
    pub control_id: &'a str,
    /// The source that received it (config name).
    pub source: &'a str,
    /// When it was received, unix ms (from the caller's clock).
    pub received_ms: i64,
    /// What the payload is.
    pub kind: Kind,
    /// The message bytes.
    pub payload: &'a [u8],
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: RecordId,
    /// Message control id (MSH-10).
    pub control_id: String,
    /// Source name.
    pub source: String,
    /// Received time, unix ms.
    pub received_ms: i64,
    /// Kind.
    pub kind: Kind,
    /// Payload.
    pub payload: Vec<u8>,
}
