//! The store: open/recovery, group commit, reads, sink operations, deletion.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result, io_err};
use crate::format::{
    self, HEADER_LEN, MAX_RECORD_LEN, PREFIX_LEN, RecHeader, SEG_HEADER_LEN, segment_header,
};
use crate::fs::{ChunkReader, Fs, FsFile, OpenMode, RealFs, read_all, read_exact_at, write_all_at};
use crate::sink::{ParkRec, SinkState, Universe};
use crate::{Entry, NewRecord, RecordId};

/// Name of the lock file in the store directory.
pub const LOCK_FILE: &str = "LOCK";

/// Store configuration. Build with [`Options::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sinks (delivery destinations), each with its own cursor. Names are 1-64 characters of
    /// `A-Z a-z 0-9 _ - .`. A sink that has no state file yet starts at the next appended record.
    /// Ignored by [`Store::open_read_only`], which shows every sink that has a state file.
    pub sinks: Vec<String>,
    /// A new segment is started when the active one would grow past this. Default 32 MiB.
    /// A single append (or [`Store::append_batch`]) is never split, so a segment can exceed this
    /// by one append. At least 64 bytes.
    pub segment_bytes: u64,
    /// Upper bound on the bytes of all segment files; an append that would pass it fails with
    /// [`Error::Full`]. Default 1 GiB.
    pub max_bytes: u64,
    /// Largest record body (metadata plus payload) accepted. Default 16 MiB, at most
    /// [`MAX_RECORD_LEN`].
    pub max_record_bytes: u32,
    /// The active segment is zero-filled this far ahead of its last record (in steps of this
    /// size, never past `segment_bytes` nor `max_bytes`), so that most commits overwrite blocks
    /// the file already has and their `fdatasync` need not also commit a new file size. Default
    /// 1 MiB; 0 turns it off.
    pub preallocate_bytes: u64,
    /// The file system. Default [`RealFs`].
    pub fs: Arc<dyn Fs>,
}

impl Options {
    /// Default options with these sinks.
    pub fn new<I, S>(sinks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Options {
            sinks: sinks.into_iter().map(Into::into).collect(),
            segment_bytes: 32 << 20,
            max_bytes: 1 << 30,
            max_record_bytes: 16 << 20,
            preallocate_bytes: 1 << 20,
            fs: Arc::new(RealFs),
        }
    }
}

/// How the tail segment ended, when it did not end on a record boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DamageKind {
    /// The last record (or its header) extends past the end of the file: a write torn by a
    /// crash. Expected after power loss; the record was never acknowledged.
    TornRecord,
    /// The rest of the file is zero bytes, more of them than the store preallocates: the file
    /// size reached the disk but the data did not (never acknowledged), or data was lost.
    ZeroFill,
    /// A record's length field is out of range.
    BadLength,
    /// A record's CRC-32C does not match.
    BadChecksum,
    /// A record's id is not the next in sequence.
    BadId,
}

/// Damage found at the end of the tail segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment.
    pub segment: PathBuf,
    /// Offset of the first byte that is not part of a valid record.
    pub offset: u64,
    /// What was found there.
    pub kind: DamageKind,
    /// Bytes from `offset` to the end of the file, truncated away (writer) or ignored
    /// (read-only).
    pub bytes: u64,
    /// CRC-valid records found *after* the damage by a resynchronising scan. Non-zero means
    /// media corruption rather than a torn write: those bytes were copied to `quarantined`
    /// before truncation.
    pub valid_records_after: u64,
    /// Where the truncated bytes were copied, if they held valid-looking records.
    pub quarantined: Option<PathBuf>,
}

/// What [`Store::open`] found and did. Nothing is hidden: check [`RecoveryReport::is_clean`] and
/// log the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files in use after recovery.
    pub segments: usize,
    /// Records found in the tail segment (the only one CRC-scanned at open).
    pub tail_records: u64,
    /// Bytes CRC-scanned.
    pub scanned_bytes: u64,
    /// Damage at the end of the tail segment.
    pub damage: Option<Damage>,
    /// A tail segment whose header failed its checksum and was rewritten from its file name.
    pub header_repaired: Option<PathBuf>,
    /// Files removed: stale temporary sink files, a tail segment torn while being created.
    pub removed: Vec<PathBuf>,
    /// Segments sealed at open because a rotation was interrupted (new name).
    pub sealed: Vec<PathBuf>,
    /// Ids `[start, end)` that cursors or dead letters refer to but no segment holds (lost to
    /// damage). The next id is moved past them so no id is ever reused.
    pub lost_ids: Option<(RecordId, RecordId)>,
    /// Sinks that had no state file and start at the next appended record.
    pub new_sinks: Vec<String>,
    /// Sink state files for sinks not in [`Options::sinks`] (left untouched, not honoured for
    /// deletion).
    pub orphan_sinks: Vec<String>,
    /// Each sink's cursor after recovery.
    pub cursors: Vec<(String, RecordId)>,
    /// Segments deleted at open (all sinks were past them).
    pub deleted_segments: usize,
    /// The id the next append will get.
    pub next_id: RecordId,
}

impl RecoveryReport {
    /// True if nothing was damaged, repaired or lost (a clean shutdown or a crash between
    /// records).
    pub fn is_clean(&self) -> bool {
        self.damage.is_none() && self.header_repaired.is_none() && self.lost_ids.is_none()
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} segments, next id {}, tail {} records ({} bytes scanned)",
            self.segments, self.next_id, self.tail_records, self.scanned_bytes
        )?;
        if let Some(d) = &self.damage {
            write!(
                f,
                "; damage {:?} in {} at offset {}: {} bytes cut, {} valid records after",
                d.kind,
                d.segment.display(),
                d.offset,
                d.bytes,
                d.valid_records_after
            )?;
            if let Some(q) = &d.quarantined {
                write!(f, " (copied to {})", q.display())?;
            }
        }
        if let Some(p) = &self.header_repaired {
            write!(f, "; header of {} repaired", p.display())?;
        }
        if let Some((a, b)) = self.lost_ids {
            write!(f, "; ids {a}..{b} lost")?;
        }
        Ok(())
    }
}

/// A dead letter as listed by [`Store::parked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// The record.
    pub id: RecordId,
    /// Why the sink refused it.
    pub reason: String,
    /// When it was parked (unix ms, as given to [`Store::park`]).
    pub parked_at_ms: i64,
    /// The record's received time.
    pub received_ms: i64,
    /// The record's size on disk.
    pub bytes: u64,
}

/// Per-sink part of [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    /// The sink.
    pub name: String,
    /// Its cursor: every id below is acknowledged or parked.
    pub cursor: RecordId,
    /// Entries waiting for delivery (including retried dead letters).
    pub pending: u64,
    /// Their bytes on disk.
    pub pending_bytes: u64,
    /// Smallest received time among the retried entries and the next main-stream entry (received
    /// times come from the caller and are not assumed monotonic).
    pub oldest_pending_received_ms: Option<i64>,
    /// Dead letters.
    pub parked: u64,
    /// Their bytes on disk.
    pub parked_bytes: u64,
}

/// A snapshot of the store's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// One entry per sink, by name.
    pub sinks: Vec<SinkStatus>,
    /// Bytes of all segment files.
    pub total_bytes: u64,
    /// The configured limit.
    pub max_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// The id the next append will get.
    pub next_id: RecordId,
    /// The last failure to delete a segment file, if any (the segment is retried at next open).
    pub deletion_error: Option<String>,
}

/// One segment file as known in memory.
#[derive(Debug)]
struct Segment {
    first: u64,
    /// One past the last id (== `first` if empty).
    end: u64,
    /// Bytes of the file that belong to the journal (header and records).
    len: u64,
    sealed: bool,
    path: PathBuf,
    file: Arc<dyn FsFile>,
    /// Offset of each record, plus the end offset; built on first use for sealed segments.
    offsets: Option<Vec<u64>>,
}

/// Everything readers and sink operations share.
#[derive(Debug)]
struct State {
    segments: BTreeMap<u64, Segment>,
    next_id: u64,
    /// Bytes of all segments' journal content ([`Segment::len`]).
    total_bytes: u64,
    /// Zero-filled bytes after the active segment's last record.
    preallocated: u64,
    sinks: BTreeMap<String, SinkState>,
    deletion_error: Option<String>,
}

impl Universe for State {
    fn next_existing(&self, id: u64) -> Option<u64> {
        if let Some((_, s)) = self.segments.range(..=id).next_back()
            && id < s.end
        {
            return Some(id);
        }
        self.segments
            .range(id.saturating_add(1)..)
            .find(|(_, s)| s.first < s.end)
            .map(|(f, _)| *f)
    }
    fn next_id(&self) -> u64 {
        self.next_id
    }
}

/// Where a record is.
struct Loc {
    file: Arc<dyn FsFile>,
    path: PathBuf,
    offset: u64,
    len: u64,
}

impl State {
    fn seg_first_for(&self, id: u64) -> Option<u64> {
        self.segments
            .range(..=id)
            .next_back()
            .filter(|(_, s)| id < s.end)
            .map(|(f, _)| *f)
    }

    fn ensure_index(&mut self, first: u64) -> Result<&Vec<u64>> {
        let seg = self.segments.get_mut(&first).ok_or(Error::NotFound {
            id: RecordId(first),
        })?;
        if seg.offsets.is_none() {
            seg.offsets = Some(walk(&*seg.file, &seg.path, seg.first, seg.end)?);
        }
        // Set just above when it was missing.
        Ok(seg.offsets.get_or_insert_with(Vec::new))
    }

    fn locate(&mut self, id: u64) -> Result<Loc> {
        let first = self
            .seg_first_for(id)
            .ok_or(Error::NotFound { id: RecordId(id) })?;
        let offsets = self.ensure_index(first)?;
        let i = (id - first) as usize;
        let (offset, len) = (offsets[i], offsets[i + 1] - offsets[i]);
        let seg = &self.segments[&first];
        Ok(Loc {
            file: seg.file.clone(),
            path: seg.path.clone(),
            offset,
            len,
        })
    }

    /// Removes every segment that no sink needs any more (see the deletion rule in the crate
    /// docs) and returns their paths for unlinking.
    fn collect_deletable(&mut self) -> Vec<PathBuf> {
        let last = self.segments.keys().next_back().copied();
        let doomed: Vec<u64> = self
            .segments
            .values()
            .filter(|s| {
                Some(s.first) != last
                    && s.sealed
                    && self.sinks.values().all(|k| {
                        k.cursor >= s.end && k.parked.range(s.first..s.end).next().is_none()
                    })
            })
            .map(|s| s.first)
            .collect();
        let mut paths = Vec::with_capacity(doomed.len());
        for f in doomed {
            if let Some(s) = self.segments.remove(&f) {
                self.total_bytes -= s.len;
                paths.push(s.path);
            }
        }
        paths
    }

    /// Records with id `>= c`: (count, bytes).
    fn count_from(&mut self, c: u64) -> Result<(u64, u64)> {
        let mut count = 0;
        let mut bytes = 0;
        let partial: Vec<u64> = self
            .segments
            .values()
            .filter(|s| s.first < c && c < s.end)
            .map(|s| s.first)
            .collect();
        for s in self.segments.values() {
            if s.end <= c || s.first < c {
                continue;
            }
            count += s.end - s.first;
            bytes += s.len - SEG_HEADER_LEN;
        }
        for f in partial {
            let offsets = self.ensure_index(f)?;
            let i = (c - f) as usize;
            let end_off = offsets[offsets.len() - 1];
            bytes += end_off - offsets[i];
            count += (offsets.len() - 1 - i) as u64;
        }
        Ok((count, bytes))
    }
}

/// Walks a sealed segment's record headers (no CRC) to build its offset table.
fn walk(file: &dyn FsFile, path: &Path, first: u64, end: u64) -> Result<Vec<u64>> {
    let file_len = file.size().map_err(io_err("stat", path))?;
    let mut r = ChunkReader::new(file, file_len);
    let corrupt = |offset: u64, reason: &str| Error::Corrupt {
        segment: path.to_path_buf(),
        offset,
        reason: reason.to_string(),
    };
    let h = r
        .get(0, SEG_HEADER_LEN as usize)
        .map_err(io_err("read", path))?
        .ok_or_else(|| corrupt(0, "segment shorter than its header"))?;
    match format::parse_segment_header(h) {
        Ok(f) if f == first => {}
        Ok(_) => return Err(corrupt(0, "segment header names another first id")),
        Err(e) => return Err(corrupt(0, e)),
    }
    let mut offsets = Vec::with_capacity((end - first + 1) as usize);
    let mut off = SEG_HEADER_LEN;
    for id in first..end {
        let b = r
            .get(off, HEADER_LEN)
            .map_err(io_err("read", path))?
            .ok_or_else(|| corrupt(off, "segment ends before its last record"))?;
        let h = RecHeader::parse(b).map_err(|e| corrupt(off, e))?;
        if h.id != id {
            return Err(corrupt(off, "record id out of sequence"));
        }
        offsets.push(off);
        off += h.total();
        if off > file_len {
            return Err(corrupt(off, "segment ends inside a record"));
        }
    }
    offsets.push(off);
    Ok(offsets)
}

/// Result of CRC-scanning the tail segment.
struct TailScan {
    offsets: Vec<u64>,
    damage: Option<(u64, DamageKind)>,
}

/// `max_zeros`: how many zero bytes after the last record are preallocated space, not damage.
fn scan_tail(
    file: &dyn FsFile,
    path: &Path,
    first: u64,
    file_len: u64,
    max_zeros: u64,
) -> Result<TailScan> {
    let mut r = ChunkReader::new(file, file_len);
    let mut offsets = Vec::new();
    let mut off = SEG_HEADER_LEN;
    let mut id = first;
    let damage = loop {
        if off == file_len {
            break None;
        }
        let Some(b) = r.get(off, HEADER_LEN).map_err(io_err("read", path))? else {
            break Some(DamageKind::TornRecord);
        };
        let h = match RecHeader::parse(b) {
            Ok(h) => h,
            Err(_) => break Some(DamageKind::BadLength),
        };
        let total = h.total();
        // `total <= 8 + MAX_RECORD_LEN` fits in usize.
        let Some(rec) = r.get(off, total as usize).map_err(io_err("read", path))? else {
            break Some(DamageKind::TornRecord);
        };
        if !format::crc_ok(rec) {
            break Some(DamageKind::BadChecksum);
        }
        if h.id != id {
            break Some(DamageKind::BadId);
        }
        offsets.push(off);
        off += total;
        id += 1;
    };
    offsets.push(off);
    let damage = match damage {
        None => None,
        Some(kind) => {
            let zeros = all_zero(&mut r, off, file_len).map_err(io_err("read", path))?;
            match zeros {
                // Space preallocated after the last record.
                true if file_len - off <= max_zeros => None,
                true => Some((off, DamageKind::ZeroFill)),
                false => Some((off, kind)),
            }
        }
    };
    Ok(TailScan { offsets, damage })
}

fn all_zero(r: &mut ChunkReader<'_>, mut off: u64, end: u64) -> std::io::Result<bool> {
    while off < end {
        let n = (end - off).min(1 << 16) as usize;
        let Some(b) = r.get(off, n)? else {
            return Ok(false);
        };
        if b.iter().any(|&x| x != 0) {
            return Ok(false);
        }
        off += n as u64;
    }
    Ok(true)
}

/// Counts CRC-valid records with ids above `last_id` anywhere after `from` (byte-by-byte resync).
fn count_valid_after(file: &dyn FsFile, from: u64, file_len: u64, last_id: u64) -> u64 {
    let mut r = ChunkReader::new(file, file_len);
    let mut count = 0;
    let mut p = from + 1;
    // An id more than this far above `last_id` cannot belong to the segment.
    let max_id = last_id.saturating_add(file_len / HEADER_LEN as u64 + 1);
    while p + HEADER_LEN as u64 <= file_len {
        let Ok(Some(b)) = r.get(p, HEADER_LEN) else {
            break;
        };
        let ok = match RecHeader::parse(b) {
            Ok(h) if h.id > last_id && h.id <= max_id && p + h.total() <= file_len => {
                match r.get(p, h.total() as usize) {
                    Ok(Some(rec)) if format::crc_ok(rec) => Some(h.total()),
                    _ => None,
                }
            }
            _ => None,
        };
        match ok {
            Some(total) => {
                count += 1;
                p += total;
            }
            None => p += 1,
        }
    }
    count
}

/// Parses `seg-<first:020>.log` (active) or `seg-<first:020>-<end:020>.log` (sealed).
fn parse_seg_name(name: &str) -> Option<(u64, Option<u64>)> {
    let core = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    let num = |s: &str| {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    match core.split_once('-') {
        None => Some((num(core)?, None)),
        Some((a, b)) => Some((num(a)?, Some(num(b)?))),
    }
}

fn seg_name(first: u64, end: Option<u64>) -> String {
    match end {
        None => format!("seg-{first:020}.log"),
        Some(e) => format!("seg-{first:020}-{e:020}.log"),
    }
}

fn sink_file(name: &str) -> String {
    format!("sink-{name}.state")
}

fn valid_sink_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves the guarded data consistent: every critical section
    // either completes its update or performs none (updates are computed first, then assigned).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer side: only the group-commit leader (or `rotate`) touches it.
#[derive(Debug)]
struct Writer {
    active: Option<Active>,
    /// Next id to assign (== `State::next_id` outside a commit).
    next_id: u64,
    /// An fdatasync failed (or a rollback could not truncate): the active segment must be
    /// sealed before anything else is written, so unsynced bytes are never trusted again.
    must_rotate: bool,
}

#[derive(Debug)]
struct Active {
    first: u64,
    file: Arc<dyn FsFile>,
    /// Committed length (header and synced records).
    len: u64,
    /// File size: `len` plus zero-filled space (see [`Options::preallocate_bytes`]).
    allocated: u64,
    /// A zero-fill failed (no room on the disk): this segment grows without preallocating.
    no_prealloc: bool,
}

/// One queued append (a single record or a batch).
struct Unit {
    ticket: u64,
    records: Vec<Vec<u8>>,
    len: u64,
}

type UnitResult = Result<Vec<RecordId>>;

#[derive(Default)]
struct Queue {
    pending: Vec<Unit>,
    leader: bool,
    done: HashMap<u64, UnitResult>,
    next_ticket: u64,
}

/// Records staged for one write + fdatasync into the active segment.
#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    /// (ticket, first id, count)
    units: Vec<(u64, u64, u64)>,
    /// Offsets (relative to the group start) of each record.
    offsets: Vec<u64>,
}

/// The durable store-and-forward journal. See the crate documentation for the design.
///
/// `Store` is `Send + Sync`: share it as `&Store` or `Arc<Store>`; concurrent appends are
/// group-committed.
pub struct Store {
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    segment_bytes: u64,
    max_bytes: u64,
    max_record_bytes: u32,
    preallocate_bytes: u64,
    read_only: bool,
    _lock: Option<File>,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    writer: Mutex<Writer>,
    state: Mutex<State>,
    sink_ops: BTreeMap<String, Mutex<()>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

fn validate(opts: &Options, read_only: bool) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidOptions { reason });
    if opts.segment_bytes < 64 {
        return bad(format!("segment_bytes {} < 64", opts.segment_bytes));
    }
    if opts.max_record_bytes > MAX_RECORD_LEN || opts.max_record_bytes < format::MIN_BODY_LEN {
        return bad(format!(
            "max_record_bytes {} not in {}..={MAX_RECORD_LEN}",
            opts.max_record_bytes,
            format::MIN_BODY_LEN
        ));
    }
    if opts.max_bytes < opts.segment_bytes {
        return bad(format!(
            "max_bytes {} < segment_bytes {}",
            opts.max_bytes, opts.segment_bytes
        ));
    }
    if !read_only {
        if opts.sinks.is_empty() {
            return bad("no sinks".to_string());
        }
        let mut seen = BTreeSet::new();
        for s in &opts.sinks {
            if !valid_sink_name(s) {
                return Err(Error::InvalidSinkName { name: s.clone() });
            }
            if !seen.insert(s) {
                return bad(format!("sink {s:?} listed twice"));
            }
        }
    }
    Ok(())
}

fn acquire_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open", &path))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut s = String::new();
            let holder = f.read_to_string(&mut s).ok().map(|_| s.trim().to_string());
            return Err(Error::Locked {
                path,
                holder: holder.filter(|h| !h.is_empty()),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err("flock", &path)(e)),
    }
    // Informational only: who holds the lock.
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "pid {}", std::process::id());
    Ok(f)
}

impl Store {
    /// Opens (creating if needed) the store in `dir` for writing, recovering from any crash. Takes
    /// an exclusive `flock` on `dir/LOCK`; a second writer gets [`Error::Locked`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Store, RecoveryReport)> {
        Self::open_impl(dir.as_ref(), options, false)
    }

    /// Opens the store for reading while a writer may be running (for the CLI). Takes no lock and
    /// changes nothing on disk: a torn tail is ignored, not truncated. The view is a snapshot as of
    /// open (open again to refresh); every mutating call returns [`Error::ReadOnly`].
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Store, RecoveryReport)> {
        Self::open_impl(dir.as_ref(), options, true)
    }

    #[allow(clippy::too_many_lines)]
    fn open_impl(dir: &Path, opts: Options, ro: bool) -> Result<(Store, RecoveryReport)> {
        validate(&opts, ro)?;
        let fs = opts.fs.clone();
        let mut report = RecoveryReport::default();
        let mut dir_dirty = false;
        let lock_file = if ro {
            None
        } else {
            fs.create_dir_all(dir).map_err(io_err("mkdir", dir))?;
            Some(acquire_lock(dir)?)
        };

        // 1. Directory listing.
        let mut segs: Vec<(u64, Option<u64>, String)> = Vec::new();
        let mut sink_files = BTreeSet::new();
        for name in fs.read_dir(dir).map_err(io_err("read_dir", dir))? {
            if let Some((first, end)) = parse_seg_name(&name) {
                segs.push((first, end, name));
            } else if name.starts_with("sink-") && name.ends_with(".state.tmp") {
                if !ro {
                    let p = dir.join(&name);
                    fs.remove_file(&p).map_err(io_err("unlink", &p))?;
                    report.removed.push(p);
                    dir_dirty = true;
                }
            } else if let Some(s) = name
                .strip_prefix("sink-")
                .and_then(|s| s.strip_suffix(".state"))
            {
                sink_files.insert(s.to_string());
            }
        }
        segs.sort();
        // Empty sealed segments (`first == end`) are left by a rotation of an empty active
        // segment; they only vouch that ids below `end` were used.
        let mut empty_sealed = Vec::new();
        let mut empty_end = 1;
        segs.retain(|(first, end, name)| match end {
            Some(e) if e == first => {
                empty_sealed.push(dir.join(name));
                empty_end = empty_end.max(*e);
                false
            }
            _ => true,
        });

        // 2. Segments: sealed ones are taken from their names (not read); an unsealed one that is
        // not last is an interrupted rotation and gets sealed; the last unsealed one is the tail.
        let mut segments: BTreeMap<u64, Segment> = BTreeMap::new();
        let mut tail: Option<(u64, PathBuf)> = None;
        let n = segs.len();
        for i in 0..n {
            let (first, end, ref name) = segs[i];
            let mut path = dir.join(name);
            let next_first = segs.get(i + 1).map(|s| s.0);
            if let Some(prev) = segments.values().next_back()
                && prev.end > first
            {
                return Err(Error::CorruptSegment {
                    path,
                    reason: format!("overlaps the previous segment (ends at {})", prev.end),
                });
            }
            let end = match end {
                Some(e) => {
                    if e < first || next_first.is_some_and(|nf| e > nf) {
                        return Err(Error::CorruptSegment {
                            path,
                            reason: "id range overlaps the next segment".to_string(),
                        });
                    }
                    e
                }
                None => match next_first {
                    None => {
                        tail = Some((first, path));
                        continue;
                    }
                    Some(nf) if nf == first => {
                        return Err(Error::CorruptSegment {
                            path,
                            reason: "two segments start at the same id".to_string(),
                        });
                    }
                    Some(nf) => {
                        if !ro {
                            let to = dir.join(seg_name(first, Some(nf)));
                            fs.rename(&path, &to).map_err(io_err("rename", &path))?;
                            report.sealed.push(to.clone());
                            path = to;
                            dir_dirty = true;
                        }
                        nf
                    }
                },
            };
            let file = fs
                .open(&path, OpenMode::Read)
                .map_err(io_err("open", &path))?;
            let len = file.size().map_err(io_err("stat", &path))?;
            segments.insert(
                first,
                Segment {
                    first,
                    end,
                    len,
                    sealed: true,
                    path,
                    file,
                    offsets: None,
                },
            );
        }

        // 3. Tail: CRC-scan, truncate damage.
        let mut next_id = segments.values().next_back().map_or(1, |s| s.end);
        let mut active = None;
        if let Some((first, path)) = tail {
            if first < next_id {
                return Err(Error::CorruptSegment {
                    path,
                    reason: format!(
                        "starts at {first}, before the previous segment ends ({next_id})"
                    ),
                });
            }
            let mode = if ro {
                OpenMode::Read
            } else {
                OpenMode::ReadWrite
            };
            let file = fs.open(&path, mode).map_err(io_err("open", &path))?;
            let file_len = file.size().map_err(io_err("stat", &path))?;
            if file_len < SEG_HEADER_LEN {
                // Torn while being created: it never held a record.
                if !ro {
                    fs.remove_file(&path).map_err(io_err("unlink", &path))?;
                    report.removed.push(path);
                    dir_dirty = true;
                }
            } else {
                let mut h = [0u8; SEG_HEADER_LEN as usize];
                read_exact_at(&*file, &mut h, 0).map_err(io_err("read", &path))?;
                match format::parse_segment_header(&h) {
                    Ok(f) if f == first => {}
                    Ok(f) => {
                        return Err(Error::CorruptSegment {
                            path,
                            reason: format!("header names first id {f}, file name {first}"),
                        });
                    }
                    Err(_) => {
                        if !ro {
                            write_all_at(&*file, &segment_header(first), 0)
                                .map_err(io_err("write", &path))?;
                            file.sync_data().map_err(io_err("fdatasync", &path))?;
                        }
                        report.header_repaired = Some(path.clone());
                    }
                }
                let scan = scan_tail(&*file, &path, first, file_len, opts.preallocate_bytes)?;
                let valid_end = *scan.offsets.last().unwrap_or(&SEG_HEADER_LEN);
                let count = (scan.offsets.len() - 1) as u64;
                report.tail_records = count;
                report.scanned_bytes = file_len;
                if let Some((offset, kind)) = scan.damage {
                    let after = count_valid_after(&*file, offset, file_len, first + count - 1);
                    let mut quarantined = None;
                    if !ro {
                        if after > 0 {
                            let q = dir.join(format!(
                                "{}.damaged-{offset}",
                                path.file_name().and_then(|s| s.to_str()).unwrap_or("seg")
                            ));
                            copy_range(&*fs, &*file, &path, offset, file_len, &q)?;
                            fs.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
                            quarantined = Some(q);
                        }
                        file.set_len(valid_end).map_err(io_err("truncate", &path))?;
                        file.sync_data().map_err(io_err("fdatasync", &path))?;
                    }
                    report.damage = Some(Damage {
                        segment: path.clone(),
                        offset,
                        kind,
                        bytes: file_len - offset,
                        valid_records_after: after,
                        quarantined,
                    });
                }
                next_id = first + count;
                if !ro {
                    active = Some(Active {
                        first,
                        file: file.clone(),
                        len: valid_end,
                        allocated: if report.damage.is_some() {
                            valid_end
                        } else {
                            file_len
                        },
                        no_prealloc: false,
                    });
                }
                segments.insert(
                    first,
                    Segment {
                        first,
                        end: next_id,
                        len: valid_end,
                        sealed: false,
                        path,
                        file,
                        offsets: Some(scan.offsets),
                    },
                );
            }
        }
        next_id = next_id
            .max(segments.values().next_back().map_or(1, |s| s.end))
            .max(empty_end);

        // 4. Sinks.
        let names: Vec<String> = if ro {
            sink_files.iter().cloned().collect()
        } else {
            opts.sinks.clone()
        };
        let mut sinks = BTreeMap::new();
        let mut new_sinks = Vec::new();
        for name in &names {
            if sink_files.contains(name) {
                let p = dir.join(sink_file(name));
                let f = fs.open(&p, OpenMode::Read).map_err(io_err("open", &p))?;
                let bytes = read_all(&*f).map_err(io_err("read", &p))?;
                let st = format::decode_sink(&bytes).map_err(|e| Error::CorruptSinkState {
                    path: p.clone(),
                    reason: e.to_string(),
                })?;
                sinks.insert(name.clone(), st);
            } else {
                new_sinks.push(name.clone());
            }
        }
        report.orphan_sinks = sink_files
            .iter()
            .filter(|s| !names.contains(s))
            .cloned()
            .collect();

        // 5. Ids that sinks refer to but no segment holds: never reuse them.
        let needed = sinks
            .values()
            .map(|s| {
                s.cursor
                    .max(s.parked.keys().next_back().map_or(0, |p| p + 1))
            })
            .max()
            .unwrap_or(0);
        if needed > next_id {
            report.lost_ids = Some((RecordId(next_id), RecordId(needed)));
            if let Some(a) = active.take() {
                // Seal the tail at its real end; a new segment starts at `needed`.
                let from = dir.join(seg_name(a.first, None));
                if a.allocated > a.len {
                    a.file.set_len(a.len).map_err(io_err("truncate", &from))?;
                    a.file.sync_data().map_err(io_err("fdatasync", &from))?;
                }
                let to = dir.join(seg_name(a.first, Some(next_id)));
                fs.rename(&from, &to).map_err(io_err("rename", &from))?;
                dir_dirty = true;
                if let Some(s) = segments.get_mut(&a.first) {
                    s.sealed = true;
                    s.path = to.clone();
                }
                report.sealed.push(to);
            }
            next_id = needed;
        }
        for name in &new_sinks {
            sinks.insert(
                name.clone(),
                SinkState {
                    cursor: next_id,
                    parked: BTreeMap::new(),
                },
            );
        }
        report.new_sinks = new_sinks.clone();

        let total_bytes = segments.values().map(|s| s.len).sum();
        let preallocated = active.as_ref().map_or(0, |a| a.allocated - a.len);
        let mut state = State {
            segments,
            next_id,
            total_bytes,
            preallocated,
            sinks,
            deletion_error: None,
        };
        let mut writer = Writer {
            active,
            next_id,
            must_rotate: false,
        };

        let store = Store {
            dir: dir.to_path_buf(),
            fs,
            segment_bytes: opts.segment_bytes,
            max_bytes: opts.max_bytes,
            max_record_bytes: opts.max_record_bytes,
            preallocate_bytes: opts.preallocate_bytes,
            read_only: ro,
            _lock: lock_file,
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            writer: Mutex::new(Writer {
                active: None,
                next_id,
                must_rotate: false,
            }),
            state: Mutex::new(State {
                segments: BTreeMap::new(),
                next_id,
                total_bytes: 0,
                preallocated: 0,
                sinks: BTreeMap::new(),
                deletion_error: None,
            }),
            sink_ops: names.iter().map(|n| (n.clone(), Mutex::new(()))).collect(),
        };

        // 6. Normalise cursors (over parked and lost ids).
        let keys: Vec<String> = state.sinks.keys().cloned().collect();
        for k in &keys {
            let mut s = state.sinks[k].clone();
            s.normalize(&state);
            state.sinks.insert(k.clone(), s);
        }

        if !ro {
            for name in &new_sinks {
                store.persist_sink(name, &state.sinks[name])?;
            }
            let doomed = state.collect_deletable();
            report.deleted_segments = doomed.len();
            for p in doomed.into_iter().chain(empty_sealed) {
                store.fs.remove_file(&p).map_err(io_err("unlink", &p))?;
                dir_dirty = true;
            }
            if dir_dirty {
                store.fs.sync_dir(dir).map_err(io_err("fsync dir", dir))?;
            }
        }
        report.cursors = state
            .sinks
            .iter()
            .map(|(k, s)| (k.clone(), RecordId(s.cursor)))
            .collect();
        *lock(&store.state) = state;
        if !ro && writer.active.is_none() {
            // No unsealed tail: start one (creates and fsyncs the file and the directory).
            store.rotate_locked(&mut writer)?;
        }
        let st = lock(&store.state);
        report.segments = st.segments.len();
        report.next_id = RecordId(st.next_id);
        drop(st);
        *lock(&store.writer) = writer;
        Ok((store, report))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this handle was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Appends one record and returns its id once its bytes are on disk (fdatasync; directory
    /// fsync too if a segment was created). Safe to call from many threads: concurrent appends
    /// share one fdatasync (group commit). On error nothing was acknowledged and the store stays
    /// usable.
    pub fn append(&self, rec: &NewRecord<'_>) -> Result<RecordId> {
        let ids = self.append_batch(std::slice::from_ref(rec))?;
        ids.first().copied().ok_or(Error::LeaderPanicked)
    }

    /// Appends several records atomically (one segment, one write, one fdatasync): either all
    /// get consecutive ids or none is stored.
    pub fn append_batch(&self, recs: &[NewRecord<'_>]) -> Result<Vec<RecordId>> {
        self.append_units(&[recs])
            .pop()
            .unwrap_or(Err(Error::LeaderPanicked))
    }

    /// Appends several independent units, each as [`Store::append_batch`] would (atomic, in
    /// order), and returns one result per unit once all are settled. They are queued together,
    /// so a caller that gathers appends itself (one thread serving many connections) gets them
    /// into one group commit without a thread per waiting append. One unit failing (too large,
    /// [`Error::Full`]) does not fail the others.
    pub fn append_units(&self, units: &[&[NewRecord<'_>]]) -> Vec<Result<Vec<RecordId>>> {
        let mut results: Vec<Option<UnitResult>> = units.iter().map(|_| None).collect();
        let mut encoded = Vec::with_capacity(units.len());
        for (i, recs) in units.iter().enumerate() {
            if self.read_only {
                results[i] = Some(Err(Error::ReadOnly { op: "append" }));
            } else if recs.is_empty() {
                results[i] = Some(Ok(Vec::new()));
            } else {
                match recs
                    .iter()
                    .map(|r| format::encode(r, self.max_record_bytes))
                    .collect::<Result<Vec<_>>>()
                {
                    Ok(records) => encoded.push((i, records)),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
        }
        if !encoded.is_empty() {
            self.commit_units(encoded, &mut results);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::LeaderPanicked)))
            .collect()
    }

    /// Queues encoded units and waits until each has its result (as a follower, or as the
    /// leader committing whatever is queued).
    fn commit_units(
        &self,
        encoded: Vec<(usize, Vec<Vec<u8>>)>,
        results: &mut [Option<UnitResult>],
    ) {
        let mut q = lock(&self.queue);
        let mut waiting = Vec::with_capacity(encoded.len());
        for (i, records) in encoded {
            let ticket = q.next_ticket;
            q.next_ticket += 1;
            let len = records.iter().map(|r| r.len() as u64).sum();
            q.pending.push(Unit {
                ticket,
                records,
                len,
            });
            waiting.push((i, ticket));
        }
        loop {
            waiting.retain(|&(i, ticket)| match q.done.remove(&ticket) {
                Some(r) => {
                    results[i] = Some(r);
                    false
                }
                None => true,
            });
            if waiting.is_empty() {
                return;
            }
            if !q.leader {
                q.leader = true;
                let batch = std::mem::take(&mut q.pending);
                drop(q);
                let mut guard = LeaderGuard {
                    store: self,
                    tickets: batch.iter().map(|u| u.ticket).collect(),
                    armed: true,
                };
                let results = self.commit_batch(batch);
                guard.armed = false;
                drop(guard);
                q = lock(&self.queue);
                q.leader = false;
                q.done.extend(results);
                self.queue_cv.notify_all();
                continue;
            }
            q = self
                .queue_cv
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Writes a batch of units. Runs on the leader thread with the writer lock.
    fn commit_batch(&self, batch: Vec<Unit>) -> Vec<(u64, UnitResult)> {
        let mut w = lock(&self.writer);
        let mut out = Vec::with_capacity(batch.len());
        let mut g = Group::default();
        let mut failed: Option<Error> = None;
        for mut unit in batch {
            if let Some(e) = &failed {
                out.push((unit.ticket, Err(e.duplicate())));
                continue;
            }
            let mut need_rotate = self.needs_rotate(&w, &g, unit.len);
            let needed = unit.len + if need_rotate { SEG_HEADER_LEN } else { 0 };
            if self.used(&g) + needed > self.max_bytes {
                // Full: commit what is staged, then try to free the active segment if every
                // sink is past it (it cannot be deleted while it is active).
                if let Err(e) = self.flush(&mut w, &mut g, &mut out) {
                    out.push((unit.ticket, Err(e.duplicate())));
                    failed = Some(e);
                    continue;
                }
                if let Err(e) = self.try_reclaim(&mut w) {
                    out.push((unit.ticket, Err(e.duplicate())));
                    failed = Some(e);
                    continue;
                }
                need_rotate = self.needs_rotate(&w, &g, unit.len);
                let needed = unit.len + if need_rotate { SEG_HEADER_LEN } else { 0 };
                let used = self.used(&g);
                if used + needed > self.max_bytes {
                    out.push((
                        unit.ticket,
                        Err(Error::Full {
                            used,
                            needed,
                            max: self.max_bytes,
                        }),
                    ));
                    continue;
                }
            }
            if need_rotate {
                let r = self
                    .flush(&mut w, &mut g, &mut out)
                    .and_then(|()| self.rotate_locked(&mut w));
                if let Err(e) = r {
                    out.push((unit.ticket, Err(e.duplicate())));
                    failed = Some(e);
                    continue;
                }
            }
            let count = unit.records.len() as u64;
            let first = w.next_id + g.units.iter().map(|u| u.2).sum::<u64>();
            for (i, rec) in unit.records.iter_mut().enumerate() {
                format::stamp(rec, first + i as u64);
                g.offsets.push(g.buf.len() as u64);
                g.buf.extend_from_slice(rec);
            }
            g.units.push((unit.ticket, first, count));
        }
        if failed.is_none() {
            let _ = self.flush(&mut w, &mut g, &mut out);
        }
        out
    }

    fn needs_rotate(&self, w: &Writer, g: &Group, len: u64) -> bool {
        w.must_rotate
            || match &w.active {
                None => true,
                Some(a) => {
                    let cur = a.len + g.buf.len() as u64;
                    cur > SEG_HEADER_LEN && cur + len > self.segment_bytes
                }
            }
    }

    /// The file size the active segment should have once records up to `end` are written: its
    /// current size, or when `end` passes it, `end` plus one preallocation step (none after a
    /// failed zero-fill), capped by the segment size and by what `max_bytes` leaves.
    fn extend_to(&self, a: &Active, end: u64) -> u64 {
        if end <= a.allocated {
            return a.allocated;
        }
        if self.preallocate_bytes == 0 || a.no_prealloc {
            return end;
        }
        let others = lock(&self.state).total_bytes - a.len;
        let budget = self.max_bytes.saturating_sub(others);
        end.max(
            end.saturating_add(self.preallocate_bytes)
                .min(self.segment_bytes)
                .min(budget),
        )
    }

    fn used(&self, g: &Group) -> u64 {
        lock(&self.state).total_bytes + g.buf.len() as u64
    }

    /// Writes and fdatasyncs the staged group, then publishes it to readers. On failure the
    /// partial bytes are truncated away and every unit in the group gets the error.
    fn flush(&self, w: &mut Writer, g: &mut Group, out: &mut Vec<(u64, UnitResult)>) -> Result<()> {
        if g.units.is_empty() {
            return Ok(());
        }
        let group = std::mem::take(g);
        let Some(a) = w.active.as_mut() else {
            // Records are staged only after `needs_rotate` made sure there is an active segment.
            let e = Error::LeaderPanicked;
            for (t, _, _) in &group.units {
                out.push((*t, Err(e.duplicate())));
            }
            return Err(e);
        };
        let path = self.dir.join(seg_name(a.first, None));
        let end = a.len + group.buf.len() as u64;
        let mut allocated = self.extend_to(a, end);
        let mut r = write_all_at(&*a.file, &group.buf, a.len).map_err(io_err("write", &path));
        let from = end.max(a.allocated);
        if r.is_ok() && allocated > from {
            // One zero-fill per `preallocate_bytes`, synced with these records. Best effort:
            // when the disk has no room for it (ENOSPC below `max_bytes`) the zeros are cut
            // again and the records commit anyway, and this segment stops preallocating.
            let zeros = vec![0u8; usize::try_from(allocated - from).unwrap_or(0)];
            if write_all_at(&*a.file, &zeros, from).is_err() {
                r = a.file.set_len(from).map_err(io_err("truncate", &path));
                allocated = from;
                a.no_prealloc = true;
            }
        }
        let r = r.and_then(|()| a.file.sync_data().map_err(io_err("fdatasync", &path)));
        if let Err(e) = r {
            // Roll back: cut the partial bytes so the next write lands on a record boundary.
            // After a failed fdatasync the kernel may have dropped the dirty pages, so the
            // segment is also sealed before the next write (never trust it again).
            let sync_failed = matches!(
                e,
                Error::Io {
                    op: "fdatasync",
                    ..
                }
            );
            let cut = a.file.set_len(a.len).is_ok();
            if !cut || sync_failed {
                w.must_rotate = true;
            }
            // If the cut failed the file may still hold the zeros: sealing cuts again.
            a.allocated = if cut {
                a.len
            } else {
                a.allocated.max(allocated)
            };
            lock(&self.state).preallocated = a.allocated - a.len;
            for (t, _, _) in &group.units {
                out.push((*t, Err(e.duplicate())));
            }
            return Err(e);
        }
        let count: u64 = group.units.iter().map(|u| u.2).sum();
        let base = a.len;
        a.len = end;
        a.allocated = allocated;
        w.next_id += count;
        {
            let mut st = lock(&self.state);
            if let Some(seg) = st.segments.get_mut(&a.first) {
                if let Some(offs) = seg.offsets.as_mut() {
                    offs.pop();
                    offs.extend(group.offsets.iter().map(|o| base + o));
                    offs.push(a.len);
                }
                seg.len = a.len;
                seg.end = w.next_id;
            }
            st.next_id = w.next_id;
            st.total_bytes += group.buf.len() as u64;
            st.preallocated = a.allocated - a.len;
        }
        for (t, first, n) in group.units {
            out.push((t, Ok((first..first + n).map(RecordId).collect())));
        }
        Ok(())
    }

    /// Seals the active segment (rename to `seg-<first>-<end>.log`) and creates a new one at
    /// `next_id` (header, fdatasync, directory fsync). Caller holds the writer lock.
    fn rotate_locked(&self, w: &mut Writer) -> Result<()> {
        let mut empty_leftover = None;
        if let Some(mut a) = w.active.take() {
            let end = w.next_id;
            let from = self.dir.join(seg_name(a.first, None));
            let to = self.dir.join(seg_name(a.first, Some(end)));
            if a.allocated > a.len {
                // A sealed segment ends at its last record.
                if let Err(e) = a.file.set_len(a.len) {
                    w.active = Some(a);
                    return Err(io_err("truncate", &from)(e));
                }
                a.allocated = a.len;
                lock(&self.state).preallocated = 0;
                if let Err(e) = a.file.sync_data() {
                    w.active = Some(a);
                    return Err(io_err("fdatasync", &from)(e));
                }
            }
            if let Err(e) = self.fs.rename(&from, &to) {
                w.active = Some(a);
                return Err(io_err("rename", &from)(e));
            }
            let mut st = lock(&self.state);
            if a.first == end {
                // Empty: it goes once the new segment (same first id) exists.
                if st.segments.remove(&a.first).is_some() {
                    st.total_bytes -= a.len;
                }
                empty_leftover = Some(to);
            } else if let Some(s) = st.segments.get_mut(&a.first) {
                s.sealed = true;
                s.path = to;
            }
        }
        w.must_rotate = false;
        let first = w.next_id;
        let path = self.dir.join(seg_name(first, None));
        let created = (|| {
            let file = self
                .fs
                .open(&path, OpenMode::CreateTruncate)
                .map_err(io_err("create", &path))?;
            write_all_at(&*file, &segment_header(first), 0).map_err(io_err("write", &path))?;
            file.sync_data().map_err(io_err("fdatasync", &path))?;
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_err("fsync dir", &self.dir))?;
            Ok::<_, Error>(file)
        })();
        let file = match created {
            Ok(f) => f,
            Err(e) => {
                // Best effort: a leftover is recreated (truncated) by the next attempt, or
                // removed / reused at open since it holds no record.
                let _ = self.fs.remove_file(&path);
                return Err(e);
            }
        };
        let mut st = lock(&self.state);
        st.segments.insert(
            first,
            Segment {
                first,
                end: first,
                len: SEG_HEADER_LEN,
                sealed: false,
                path,
                file: file.clone(),
                offsets: Some(vec![SEG_HEADER_LEN]),
            },
        );
        st.total_bytes += SEG_HEADER_LEN;
        drop(st);
        w.active = Some(Active {
            first,
            file,
            len: SEG_HEADER_LEN,
            allocated: SEG_HEADER_LEN,
            no_prealloc: false,
        });
        if let Some(p) = empty_leftover {
            // Best effort: a leftover is removed at the next open.
            let _ = self.fs.remove_file(&p);
        }
        // Sealing may free the old segment at once (every sink already acked all of it);
        // otherwise it would linger until the next acknowledgement.
        let doomed = lock(&self.state).collect_deletable();
        self.unlink(doomed);
        Ok(())
    }

    /// If every sink is past the (non-empty) active segment, rotate so it can be deleted.
    fn try_reclaim(&self, w: &mut Writer) -> Result<bool> {
        let Some(a) = &w.active else { return Ok(false) };
        let reclaimable = {
            let st = lock(&self.state);
            let end = w.next_id;
            a.first < end
                && st
                    .sinks
                    .values()
                    .all(|k| k.cursor >= end && k.parked.range(a.first..end).next().is_none())
        };
        if !reclaimable {
            return Ok(false);
        }
        self.rotate_locked(w)?;
        Ok(true)
    }

    /// Seals the active segment and starts a new one, if the active one holds any record.
    pub fn rotate(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { op: "rotate" });
        }
        let mut w = lock(&self.writer);
        let non_empty = w.active.as_ref().is_some_and(|a| a.len > SEG_HEADER_LEN);
        if non_empty || w.must_rotate || w.active.is_none() {
            self.rotate_locked(&mut w)?;
        }
        Ok(())
    }

    fn unlink(&self, paths: Vec<PathBuf>) {
        for p in paths {
            if let Err(e) = self.fs.remove_file(&p) {
                // The segment is already dropped from memory; it is behind every cursor, so the
                // next open deletes it again. Reported through `Status::deletion_error`.
                lock(&self.state).deletion_error = Some(format!("unlink {}: {e}", p.display()));
            }
        }
    }

    /// Reads one record.
    pub fn get(&self, id: RecordId) -> Result<Entry> {
        let loc = lock(&self.state).locate(id.0)?;
        read_entry(&loc, id.0)
    }

    /// The sink's next entry in delivery order, if any.
    pub fn next(&self, sink: &str) -> Result<Option<Entry>> {
        Ok(self.peek(sink, 1)?.into_iter().next())
    }

    /// Up to `max` entries the sink has not yet acknowledged, in delivery order: retried dead
    /// letters first (ascending id), then the rest in id order, parked entries skipped.
    pub fn peek(&self, sink: &str, max: usize) -> Result<Vec<Entry>> {
        self.peek_except(sink, max, &std::collections::HashSet::new())
    }

    /// Like [`Store::peek`], leaving out (unread) the entries in `except`, such as a sink's
    /// delivered but not yet settled ones: up to `max` entries that follow them.
    pub fn peek_except(
        &self,
        sink: &str,
        max: usize,
        except: &std::collections::HashSet<RecordId>,
    ) -> Result<Vec<Entry>> {
        let locs = {
            let mut st = lock(&self.state);
            let s = st.sinks.get(sink).ok_or_else(|| Error::UnknownSink {
                sink: sink.to_string(),
            })?;
            let ids = s.delivery(&*st, max.saturating_add(except.len()));
            ids.into_iter()
                .filter(|id| !except.contains(&RecordId(*id)))
                .take(max)
                .map(|id| Ok((id, st.locate(id)?)))
                .collect::<Result<Vec<_>>>()?
        };
        locs.iter().map(|(id, loc)| read_entry(loc, *id)).collect()
    }

    /// Records that the sink delivered `id` (its downstream acknowledged it). `id` must be the
    /// sink's next entry, the next entry of its main stream (behind retried dead letters), or a
    /// retried dead letter ([`Error::NotNext`] otherwise): deliveries made before an operator's
    /// retry stay valid. The new cursor is durable on return.
    pub fn ack(&self, sink: &str, id: RecordId) -> Result<()> {
        self.sink_op(sink, "ack", |s, st| {
            s.ack(id.0, st).map_err(|expected| Error::NotNext {
                sink: sink.to_string(),
                id,
                expected: expected.map(RecordId),
            })
        })
    }

    /// Moves a pending entry to the sink's dead letters with `reason` (cut to
    /// [`crate::MAX_REASON_LEN`] bytes) and `now_ms`, so it no longer blocks the entries behind
    /// it. Durable on return.
    pub fn park(&self, sink: &str, id: RecordId, reason: &str, now_ms: i64) -> Result<()> {
        self.sink_op(sink, "park", |s, st| {
            park_in(sink, s, st, id, reason, now_ms)
        })
    }

    /// Records several outcomes of one sink, in order, with a single durable write of the
    /// sink's state: a sink that delivers a backlog acknowledges it in batches instead of
    /// paying a file replacement (three syncs) per message. Each item obeys the rules of
    /// [`Store::ack`] and [`Store::park`] at its place in the sequence; on an error nothing of
    /// the batch is applied. A crash before the write returns means the batch is delivered
    /// again (at least once; the records keep their control ids).
    pub fn settle(&self, sink: &str, items: &[Settlement<'_>]) -> Result<()> {
        self.sink_op(sink, "settle", |s, st| {
            for item in items {
                match *item {
                    Settlement::Ack(id) => s.ack(id.0, st).map_err(|expected| Error::NotNext {
                        sink: sink.to_string(),
                        id,
                        expected: expected.map(RecordId),
                    })?,
                    Settlement::Park { id, reason, now_ms } => {
                        park_in(sink, s, st, id, reason, now_ms)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The sink's dead letters (not including ones re-queued by `retry`), by id.
    pub fn parked(&self, sink: &str) -> Result<Vec<Parked>> {
        let st = lock(&self.state);
        let s = st.sinks.get(sink).ok_or_else(|| Error::UnknownSink {
            sink: sink.to_string(),
        })?;
        Ok(s.parked
            .iter()
            .filter(|(_, p)| !p.retrying)
            .map(|(id, p)| Parked {
                id: RecordId(*id),
                reason: p.reason.clone(),
                parked_at_ms: p.parked_at_ms,
                received_ms: p.received_ms,
                bytes: p.bytes,
            })
            .collect())
    }

    /// Re-queues a dead letter. If it is older than the sink's cursor (the usual case) it is
    /// delivered *next*, before any newer entry (retried entries go in ascending id order);
    /// otherwise it simply takes its natural place again. Durable on return.
    pub fn retry(&self, sink: &str, id: RecordId) -> Result<()> {
        self.sink_op(sink, "retry", |s, _| {
            s.retry(id.0).map_err(|()| Error::NotParked {
                sink: sink.to_string(),
                id,
            })
        })
    }

    /// Re-queues every dead letter of the sink (see [`Store::retry`]); returns how many.
    pub fn retry_all(&self, sink: &str) -> Result<usize> {
        self.sink_op(sink, "retry_all", |s, _| Ok(s.retry_all()))
    }

    /// Runs a sink mutation: computes the new state, persists it (temp file, fdatasync, rename,
    /// directory fsync), installs it, then deletes segments no sink needs.
    fn sink_op<R>(
        &self,
        sink: &str,
        op: &'static str,
        f: impl FnOnce(&mut SinkState, &mut State) -> Result<R>,
    ) -> Result<R> {
        if self.read_only {
            return Err(Error::ReadOnly { op });
        }
        let ops = self.sink_ops.get(sink).ok_or_else(|| Error::UnknownSink {
            sink: sink.to_string(),
        })?;
        let _serial = lock(ops);
        let (new, r) = {
            let mut st = lock(&self.state);
            let mut s = st
                .sinks
                .get(sink)
                .cloned()
                .ok_or_else(|| Error::UnknownSink {
                    sink: sink.to_string(),
                })?;
            let r = f(&mut s, &mut st)?;
            if st.sinks.get(sink) == Some(&s) {
                return Ok(r);
            }
            (s, r)
        };
        self.persist_sink(sink, &new)?;
        let doomed = {
            let mut st = lock(&self.state);
            st.sinks.insert(sink.to_string(), new);
            st.collect_deletable()
        };
        self.unlink(doomed);
        Ok(r)
    }

    fn persist_sink(&self, sink: &str, s: &SinkState) -> Result<()> {
        let path = self.dir.join(sink_file(sink));
        let tmp = self.dir.join(format!("{}.tmp", sink_file(sink)));
        let bytes = format::encode_sink(s);
        let f = self
            .fs
            .open(&tmp, OpenMode::CreateTruncate)
            .map_err(io_err("create", &tmp))?;
        write_all_at(&*f, &bytes, 0).map_err(io_err("write", &tmp))?;
        f.sync_data().map_err(io_err("fdatasync", &tmp))?;
        drop(f);
        self.fs
            .rename(&tmp, &path)
            .map_err(io_err("rename", &tmp))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_err("fsync dir", &self.dir))
    }

    /// Depth per sink, totals.
    pub fn status(&self) -> Result<Status> {
        let mut st = lock(&self.state);
        let names: Vec<String> = st.sinks.keys().cloned().collect();
        let mut sinks = Vec::with_capacity(names.len());
        for name in names {
            let s = st.sinks[&name].clone();
            let (count, bytes) = st.count_from(s.cursor)?;
            let (mut pending, mut pending_bytes) = (count, bytes);
            let (mut parked, mut parked_bytes) = (0, 0);
            let mut oldest: Option<i64> = None;
            for (id, p) in &s.parked {
                if p.retrying {
                    pending += 1;
                    pending_bytes += p.bytes;
                    oldest = Some(oldest.map_or(p.received_ms, |o| o.min(p.received_ms)));
                } else {
                    parked += 1;
                    parked_bytes += p.bytes;
                    if *id >= s.cursor && st.exists(*id) {
                        pending -= 1;
                        pending_bytes -= p.bytes;
                    }
                }
            }
            if s.cursor < st.next_id && st.exists(s.cursor) {
                let loc = st.locate(s.cursor)?;
                let mut h = [0u8; HEADER_LEN];
                read_exact_at(&*loc.file, &mut h, loc.offset).map_err(io_err("read", &loc.path))?;
                let hdr = RecHeader::parse(&h).map_err(|e| Error::Corrupt {
                    segment: loc.path.clone(),
                    offset: loc.offset,
                    reason: e.to_string(),
                })?;
                oldest = Some(oldest.map_or(hdr.received_ms, |o| o.min(hdr.received_ms)));
            }
            sinks.push(SinkStatus {
                name,
                cursor: RecordId(s.cursor),
                pending,
                pending_bytes,
                oldest_pending_received_ms: oldest,
                parked,
                parked_bytes,
            });
        }
        Ok(Status {
            sinks,
            total_bytes: st.total_bytes + st.preallocated,
            max_bytes: self.max_bytes,
            segments: st.segments.len(),
            next_id: RecordId(st.next_id),
            deletion_error: st.deletion_error.clone(),
        })
    }
}

fn read_entry(loc: &Loc, id: u64) -> Result<Entry> {
    let corrupt = |reason: &str| Error::Corrupt {
        segment: loc.path.clone(),
        offset: loc.offset,
        reason: reason.to_string(),
    };
    if loc.len > PREFIX_LEN + u64::from(MAX_RECORD_LEN) {
        return Err(corrupt("record length out of range"));
    }
    let mut buf = vec![0u8; loc.len as usize];
    read_exact_at(&*loc.file, &mut buf, loc.offset).map_err(io_err("read", &loc.path))?;
    let e = format::decode(&buf).map_err(corrupt)?;
    if e.id.0 != id {
        return Err(corrupt("record id does not match its position"));
    }
    Ok(e)
}

fn copy_range(
    fs: &dyn Fs,
    src: &dyn FsFile,
    src_path: &Path,
    from: u64,
    to: u64,
    dst: &Path,
) -> Result<()> {
    let out = fs
        .open(dst, OpenMode::CreateTruncate)
        .map_err(io_err("create", dst))?;
    let mut off = from;
    let mut buf = vec![0u8; 1 << 20];
    while off < to {
        let n = ((to - off) as usize).min(buf.len());
        read_exact_at(src, &mut buf[..n], off).map_err(io_err("read", src_path))?;
        write_all_at(&*out, &buf[..n], off - from).map_err(io_err("write", dst))?;
        off += n as u64;
    }
    out.sync_data().map_err(io_err("fdatasync", dst))
}

/// Ensures followers never wait forever if the leader panics.
struct LeaderGuard<'a> {
    store: &'a Store,
    tickets: Vec<u64>,
    armed: bool,
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut q = lock(&self.store.queue);
            q.leader = false;
            for t in &self.tickets {
                q.done.insert(*t, Err(Error::LeaderPanicked));
            }
            self.store.queue_cv.notify_all();
        }
    }
}

/// One outcome for [`Store::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement<'a> {
    /// The downstream acknowledged the sink's next entry (as [`Store::ack`]).
    Ack(RecordId),
    /// The downstream refused it for good (as [`Store::park`]).
    Park {
        /// The entry.
        id: RecordId,
        /// Why.
        reason: &'a str,
        /// When, unix ms.
        now_ms: i64,
    },
}

/// Moves a pending entry of `s` to its dead letters (the body of [`Store::park`]).
fn park_in(
    sink: &str,
    s: &mut SinkState,
    st: &mut State,
    id: RecordId,
    reason: &str,
    now_ms: i64,
) -> Result<()> {
    if !s.is_pending(id.0, st) {
        return Err(Error::NotPending {
            sink: sink.to_string(),
            id,
        });
    }
    let loc = st.locate(id.0)?;
    let mut h = [0u8; HEADER_LEN];
    read_exact_at(&*loc.file, &mut h, loc.offset).map_err(io_err("read", &loc.path))?;
    let hdr = RecHeader::parse(&h).map_err(|e| Error::Corrupt {
        segment: loc.path.clone(),
        offset: loc.offset,
        reason: e.to_string(),
    })?;
    let rec = ParkRec {
        reason: format::cut_reason(reason),
        parked_at_ms: now_ms,
        received_ms: hdr.received_ms,
        bytes: loc.len,
        retrying: false,
    };
    s.park(id.0, rec, st).map_err(|()| Error::NotPending {
        sink: sink.to_string(),
        id,
    })
}
