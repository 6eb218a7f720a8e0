//! File-system seam: every byte the store reads or writes goes through [`Fs`] and [`FsFile`],
//! so tests can inject `ENOSPC`, `EIO` on `fdatasync` and short writes.
//!
//! [`RealFs`] maps each call onto one system call (`pread`, `pwrite`, `fdatasync`, `ftruncate`,
//! `rename`, `unlink`, `fsync` on a directory handle). The write lock file is the one exception:
//! it is taken with `flock(2)` on the real path (see [`crate::Store::open`]), because a lock that a
//! fake file system could hand out twice would prove nothing.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How [`Fs::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// Create the file (or truncate an existing one to zero length), read and write.
    CreateTruncate,
}

/// One open file. All offsets are absolute (positional I/O), so a handle can be shared by the
/// commit leader and concurrent readers without a seek position.
pub trait FsFile: Debug + Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset`; returns how many were written (a short write
    /// is not an error: the caller loops).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync(2)`: the file's data and the metadata needed to read it back are durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `ftruncate(2)`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn size(&self) -> io::Result<u64>;
}

/// The file-system operations the store needs.
pub trait Fs: Debug + Send + Sync {
    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>>;
    /// Names (not paths) of the entries of directory `path`; names that are not UTF-8 are skipped.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// `rename(2)`, atomic within one directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// `unlink(2)`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync(2)` of the directory itself, making creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real file system (Unix).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl Fs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn FsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateTruncate => o.read(true).write(true).create(true).truncate(true),
        };
        Ok(Arc::new(RealFile(o.open(path)?)))
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Writes all of `buf` at `offset`, looping over short writes; a write of zero bytes is
/// `WriteZero`, an interrupted one is retried.
pub(crate) fn write_all_at(f: &dyn FsFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` if the file is shorter).
pub(crate) fn read_exact_at(f: &dyn FsFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.read_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short read")),
            Ok(n) => {
                let n = n.min(buf.len());
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a whole (small) file.
pub(crate) fn read_all(f: &dyn FsFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(f.size()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = vec![0u8; len];
    read_exact_at(f, &mut buf, 0)?;
    Ok(buf)
}

/// Sequential reader over a file with a large buffer, for scanning segments.
pub(crate) struct ChunkReader<'a> {
    file: &'a dyn FsFile,
    file_len: u64,
    buf: Vec<u8>,
    start: u64,
}

const CHUNK: usize = 1 << 20;

impl<'a> ChunkReader<'a> {
    pub(crate) fn new(file: &'a dyn FsFile, file_len: u64) -> Self {
        Self {
            file,
            file_len,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// The bytes `[offset, offset + len)`, or `None` if they extend past the end of the file.
    pub(crate) fn get(&mut self, offset: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let Some(end) = offset.checked_add(len as u64) else {
            return Ok(None);
        };
        if end > self.file_len {
            return Ok(None);
        }
        let buf_end = self.start + self.buf.len() as u64;
        if offset < self.start || end > buf_end {
            // `end <= file_len` so the difference fits in usize whenever `len` does.
            let avail = usize::try_from(self.file_len - offset).unwrap_or(usize::MAX);
            let want = len.max(CHUNK).min(avail);
            self.buf.resize(want, 0);
            read_exact_at(self.file, &mut self.buf, offset)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(Some(&self.buf[from..from + len]))
    }
}
