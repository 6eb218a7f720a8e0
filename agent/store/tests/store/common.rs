//! Shared test helpers: a fault-injecting file system and record builders.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use labagent_store::{Entry, Fs, FsFile, Kind, NewRecord, OpenMode, Options, RealFs};

/// A fault to inject into the next write or sync of a segment file.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The next `write_at` goes through untouched (aims the next fault at a later write).
    Pass,
    /// The next `write_at` writes only `n` bytes (and reports `n`).
    Short(usize),
    /// The next `write_at` writes nothing and fails with this errno.
    WriteErr(i32),
    /// The next `sync_data` fails with this errno (without syncing).
    SyncErr(i32),
    /// The next `set_len` fails with this errno.
    TruncateErr(i32),
}

pub const ENOSPC: i32 = 28;
pub const EIO: i32 = 5;

/// Counters and the fault plan, shared by every file of a [`FaultFs`].
#[derive(Debug, Default)]
pub struct Faults {
    pub seg_syncs: AtomicU64,
    pub seg_writes: AtomicU64,
    plan: Mutex<VecDeque<Fault>>,
}

impl Faults {
    pub fn push(&self, f: Fault) {
        self.plan.lock().unwrap().push_back(f);
    }
    pub fn pending(&self) -> usize {
        self.plan.lock().unwrap().len()
    }
    fn take(&self, pred: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut p = self.plan.lock().unwrap();
        if p.front().is_some_and(pred) {
            p.pop_front()
        } else {
            None
        }
    }
}

/// Wraps [`RealFs`]; faults apply to segment files (`seg-*`) only.
#[derive(Debug, Default)]
pub struct FaultFs {
    pub faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn FsFile>,
    faults: Arc<Faults>,
    seg: bool,
}

impl FsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.seg {
            self.faults.seg_writes.fetch_add(1, Ordering::Relaxed);
            match self
                .faults
                .take(|f| matches!(f, Fault::Pass | Fault::Short(_) | Fault::WriteErr(_)))
            {
                Some(Fault::Short(n)) => {
                    let n = n.min(buf.len());
                    return self.inner.write_at(&buf[..n], offset);
                }
                Some(Fault::WriteErr(e)) => return Err(io::Error::from_raw_os_error(e)),
                _ => {}
            }
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.seg {
            self.faults.seg_syncs.fetch_add(1, Ordering::Relaxed);
            if let Some(Fault::SyncErr(e)) = self.faults.take(|f| matches!(f, Fault::SyncErr(_))) {
                return Err(io::Error::from_raw_os_error(e));
            }
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.seg
            && let Some(Fault::TruncateErr(e)) =
                self.faults.take(|f| matches!(f, Fault::TruncateErr(_)))
        {
            return Err(io::Error::from_raw_os_error(e));
        }
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl Fs for FaultFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let seg = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seg-"));
        Ok(Arc::new(FaultFile {
            inner: RealFs.open(path, mode)?,
            faults: self.faults.clone(),
            seg,
        }))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.read_dir(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
}

/// Deterministic payload for a (stream, seq) pair, length 0..300.
pub fn payload(stream: u64, seq: u64) -> Vec<u8> {
    let mut x =
        stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seq.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ 1;
    let len = (x % 300) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn rec<'a>(cid: &'a str, payload: &'a [u8]) -> NewRecord<'a> {
    NewRecord {
        control_id: cid,
        source: "analyser-1",
        received_ms: 1_700_000_000_000,
        kind: Kind::Oru,
        payload,
    }
}

pub fn opts(sinks: &[&str]) -> Options {
    Options::new(sinks.iter().copied())
}

pub fn fault_opts(sinks: &[&str]) -> (Options, Arc<Faults>) {
    let fs = FaultFs::default();
    let faults = fs.faults.clone();
    let mut o = opts(sinks);
    o.fs = Arc::new(fs);
    (o, faults)
}

/// Segment files in `dir`, sorted.
pub fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("seg-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

/// Sum of segment file sizes.
pub fn seg_bytes(dir: &Path) -> u64 {
    seg_files(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

pub fn ids(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.id.get()).collect()
}

/// Small xorshift PRNG so the tests need no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
