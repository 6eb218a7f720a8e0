//! MSH-10 counters that are never reused, across crashes and clock jumps.
//!
//! A Raspberry Pi has no real-time clock, so time-based ids can repeat after a reboot. Instead
//! the agent keeps a counter and reserves it in blocks: the file holds the first value not yet
//! reserved, written durably (temp file, fsync, rename, fsync directory) before any value of the
//! new block is used. A crash skips at most one block; no value is ever handed out twice.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How many counter values one durable write reserves.
pub const BLOCK: u64 = 1024;

/// The counter and its reservation file.
#[derive(Debug)]
pub struct Sequence {
    path: PathBuf,
    next: u64,
    reserved_until: u64,
}

impl Sequence {
    /// Opens (or creates) the sequence stored at `path`. Starts at 1.
    pub fn open(path: &Path) -> io::Result<Sequence> {
        let next = match fs::read_to_string(path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a counter: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e),
        };
        Ok(Sequence {
            path: path.to_path_buf(),
            next,
            reserved_until: next,
        })
    }

    /// The next value; reserves a new block durably when the current one is used up.
    pub fn take(&mut self) -> io::Result<u64> {
        if self.next >= self.reserved_until {
            let until = self.next + BLOCK;
            write_durably(&self.path, until)?;
            self.reserved_until = until;
        }
        let v = self.next;
        self.next += 1;
        Ok(v)
    }
}

fn write_durably(path: &Path, value: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        writeln!(f, "{value}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("msh10.seq");
        let mut s = Sequence::open(&path).expect("open");
        let first: Vec<u64> = (0..10).map(|_| s.take().expect("next")).collect();
        assert_eq!(first, (1..=10).collect::<Vec<_>>());
        drop(s); // as if the process died here
        let mut s = Sequence::open(&path).expect("reopen");
        let after = s.take().expect("next");
        assert!(after > 10, "{after} reused a value");
        assert_eq!(after, 1 + BLOCK);
        for _ in 0..(2 * BLOCK) {
            s.take().expect("next");
        }
        let mut s2 = Sequence::open(&path).expect("reopen");
        assert!(s2.take().expect("next") > 1 + 3 * BLOCK - 1);
    }

    #[test]
    fn garbage_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("msh10.seq");
        fs::write(&path, "not a number").expect("write");
        assert!(Sequence::open(&path).is_err());
    }
}
