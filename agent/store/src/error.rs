//! The store's error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::RecordId;

/// Everything that can go wrong in the store. Each variant carries enough context (path, offset,
/// sink, id) to act on without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system call failed. `op` is the operation (`"write"`, `"fdatasync"`, `"rename"`,
    /// ...), `path` the file or directory. For an append this means nothing was acknowledged: the
    /// partial bytes have been truncated away (or the segment sealed in front of them) and the
    /// store stays usable.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another writer (another process, or another `Store` in this process) holds the store's
    /// lock file. Use [`crate::Store::open_read_only`] to look at the store meanwhile.
    #[error("store is locked by another writer: {} (holder: {})", path.display(), holder.as_deref().unwrap_or("unknown"))]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote into the lock file (its pid), if readable.
        holder: Option<String>,
    },
    /// Back-pressure: appending would take the segment files past `max_bytes`. Nothing was
    /// written and nothing was evicted; answer the analyser with NAK / AE and retry later.
    #[error("store full: {used} bytes used + {needed} needed > max_bytes {max}")]
    Full {
        /// Bytes of segment files in use.
        used: u64,
        /// Bytes the refused append needed.
        needed: u64,
        /// The configured limit.
        max: u64,
    },
    /// The encoded record is larger than `max_record_bytes`.
    #[error("record too large: {len} bytes > max {max}")]
    RecordTooLarge {
        /// Encoded body length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A metadata field (control id or source name) is longer than the format allows.
    #[error("{field} too long: {len} bytes > max {max}")]
    FieldTooLong {
        /// `"control_id"` or `"source"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record failed verification when read (CRC, length, id or encoding).
    #[error("corrupt record in {} at offset {offset}: {reason}", segment.display())]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the record in the segment.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A segment file cannot be used: bad header, overlapping id ranges, or a name that does not
    /// match its header.
    #[error("corrupt segment {}: {reason}", path.display())]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A sink state file (cursor and dead letters) failed its checksum or could not be parsed.
    /// The store refuses to guess a cursor: an operator must restore or remove the file.
    #[error("corrupt sink state {}: {reason}", path.display())]
    CorruptSinkState {
        /// The sink state file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The sink was not registered when the store was opened.
    #[error("unknown sink {sink:?}")]
    UnknownSink {
        /// The name given.
        sink: String,
    },
    /// A sink name must be 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
    #[error("invalid sink name {name:?}: use 1-64 characters of A-Z a-z 0-9 _ - .")]
    InvalidSinkName {
        /// The name given.
        name: String,
    },
    /// `ack` of an entry that is not the sink's next entry in delivery order.
    #[error("sink {sink}: {id} is not the next entry to deliver (next is {})", expected.map_or_else(|| "none".to_string(), |e| e.to_string()))]
    NotNext {
        /// The sink.
        sink: String,
        /// The id given.
        id: RecordId,
        /// The sink's next entry, if any.
        expected: Option<RecordId>,
    },
    /// `park` of an entry that is not pending for the sink (already acknowledged, already parked,
    /// or not yet appended).
    #[error("sink {sink}: {id} is not pending")]
    NotPending {
        /// The sink.
        sink: String,
        /// The id given.
        id: RecordId,
    },
    /// `retry` of an entry that is not parked for the sink.
    #[error("sink {sink}: {id} is not parked")]
    NotParked {
        /// The sink.
        sink: String,
        /// The id given.
        id: RecordId,
    },
    /// No record with this id is stored (never appended, or its segment was deleted).
    #[error("record {id} not found")]
    NotFound {
        /// The id given.
        id: RecordId,
    },
    /// The store was opened with [`crate::Store::open_read_only`].
    #[error("store opened read-only: {op} refused")]
    ReadOnly {
        /// The refused operation.
        op: &'static str,
    },
    /// The [`crate::Options`] are inconsistent.
    #[error("invalid store options: {reason}")]
    InvalidOptions {
        /// What was wrong.
        reason: String,
    },
    /// The thread leading a group commit panicked; the appends in its batch are in an unknown
    /// state (treat as not acknowledged).
    #[error("group commit leader panicked; append not acknowledged")]
    LeaderPanicked,
}

impl Error {
    /// A copy of this error for each follower of a failed group commit. `io::Error` is not
    /// `Clone`; the copy keeps the OS error code (or kind) and message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Locked { path, holder } => Error::Locked {
                path: path.clone(),
                holder: holder.clone(),
            },
            Error::Full { used, needed, max } => Error::Full {
                used: *used,
                needed: *needed,
                max: *max,
            },
            Error::RecordTooLarge { len, max } => Error::RecordTooLarge {
                len: *len,
                max: *max,
            },
            Error::FieldTooLong { field, len, max } => Error::FieldTooLong {
                field,
                len: *len,
                max: *max,
            },
            Error::Corrupt {
                segment,
                offset,
                reason,
            } => Error::Corrupt {
                segment: segment.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::CorruptSegment { path, reason } => Error::CorruptSegment {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::CorruptSinkState { path, reason } => Error::CorruptSinkState {
                path: path.clone(),
                reason: reason.clone(),
            },
            Error::UnknownSink { sink } => Error::UnknownSink { sink: sink.clone() },
            Error::InvalidSinkName { name } => Error::InvalidSinkName { name: name.clone() },
            Error::NotNext { sink, id, expected } => Error::NotNext {
                sink: sink.clone(),
                id: *id,
                expected: *expected,
            },
            Error::NotPending { sink, id } => Error::NotPending {
                sink: sink.clone(),
                id: *id,
            },
            Error::NotParked { sink, id } => Error::NotParked {
                sink: sink.clone(),
                id: *id,
            },
            Error::NotFound { id } => Error::NotFound { id: *id },
            Error::ReadOnly { op } => Error::ReadOnly { op },
            Error::InvalidOptions { reason } => Error::InvalidOptions {
                reason: reason.clone(),
            },
            Error::LeaderPanicked => Error::LeaderPanicked,
        }
    }
}

/// `map_err` helper: wraps an `io::Error` with the operation and path.
pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
