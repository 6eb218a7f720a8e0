//! The `file` sink: one file per message, `<MSH-10>.hl7`, written atomically (temp name, fsync,
//! rename, fsync of the directory) so a reader never sees half a message and a power cut never
//! leaves one claimed as delivered.

use super::{Deliver, DeliveryError};
use labagent_store::Entry;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes messages into a directory.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing into `dir` (created when missing).
    pub fn new(dir: impl Into<PathBuf>) -> FileSink {
        FileSink { dir: dir.into() }
    }

    /// The file name for a control id: characters outside `[A-Za-z0-9._-]` become `_`, so an
    /// inbound MSH-10 can never escape the directory.
    pub fn file_name(control_id: &str) -> String {
        let safe: String = control_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe.trim_start_matches('.');
        format!("{}.hl7", if safe.is_empty() { "message" } else { safe })
    }

    fn write(&self, entry: &Entry) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        let mut name = Self::file_name(&entry.control_id);
        let mut path = self.dir.join(&name);
        // Never replace a different message: two senders may both number from 1, and names
        // can collide once sanitised. The same bytes again (a redelivery) may overwrite.
        if let Ok(existing) = fs::read(&path)
            && existing != entry.payload
        {
            name = format!("{}.{}.hl7", name.trim_end_matches(".hl7"), entry.id.get());
            path = self.dir.join(&name);
        }
        let tmp = self.dir.join(format!(".{}.tmp", name));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&entry.payload)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        Ok(path)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Deliver for FileSink {
    async fn deliver(&mut self, entry: &Entry) -> Result<(), DeliveryError> {
        let this = self.clone();
        let entry = entry.clone();
        crate::blocking::run(move || this.write(&entry))
            .await
            .map_err(|e| DeliveryError::Transient(format!("file task failed: {e}")))?
            .map(|_| ())
            .map_err(|e| DeliveryError::Transient(format!("write failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_message_with_the_same_control_id_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::new(dir.path());
        let entry = |id: u64, payload: &[u8]| Entry {
            id: labagent_store::RecordId::new(id),
            control_id: "1".into(),
            source: "a".into(),
            received_ms: 0,
            kind: labagent_store::Kind::RawHl7,
            payload: payload.to_vec(),
        };
        let first = sink.write(&entry(1, b"first")).expect("write");
        let again = sink.write(&entry(1, b"first")).expect("redelivery");
        assert_eq!(first, again, "a redelivery overwrites with the same bytes");
        let second = sink.write(&entry(2, b"second")).expect("write");
        assert_ne!(first, second);
        assert_eq!(fs::read(&first).expect("read"), b"first");
        assert_eq!(fs::read(&second).expect("read"), b"second");
        assert_eq!(second.file_name().and_then(|n| n.to_str()), Some("1.2.hl7"));
    }

    #[test]
    fn file_names_cannot_escape() {
        assert_eq!(FileSink::file_name("lab1000001"), "lab1000001.hl7");
        assert_eq!(
            FileSink::file_name("../../etc/passwd"),
            "_.._etc_passwd.hl7"
        );
        assert_eq!(FileSink::file_name(""), "message.hl7");
        assert_eq!(FileSink::file_name("a/b"), "a_b.hl7");
    }
}
