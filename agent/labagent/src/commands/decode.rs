//! `labagent decode`: turn captures into JSON lines, one per message, so a technician can see
//! exactly what an analyser sent (INTERFACE.md). Exit 1 when any input is damaged, naming the
//! file and byte offset.

use crate::cli::read_input;
use labagent_astm::capture::{self, CapturedMessage};
use labagent_astm::charset::Charset;
use labagent_astm::frame::DEFAULT_MAX_TEXT;
use labagent_astm::record::parse_message;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// E1381 frames or bare E1394 records.
    Astm,
    /// MLLP-framed or plain ER7.
    Hl7,
    /// Decide per file: ER7 when it starts with MSH (after an optional MLLP start block).
    #[default]
    Auto,
}

/// Arguments of `labagent decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input format.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Character set of ASTM captures: latin1, utf-8 or windows-1252.
    #[arg(long, default_value = "latin1")]
    pub encoding: Charset,
    /// Capture files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Entry point.
pub fn run(args: &Args) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut bad = false;
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match read_input(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("labagent decode: {e}");
                bad = true;
                continue;
            }
        };
        let format = match args.format {
            Format::Auto if looks_like_hl7(&bytes) => Format::Hl7,
            Format::Auto => Format::Astm,
            f => f,
        };
        let (lines, problems) = match format {
            Format::Hl7 => decode_hl7(&name, &bytes),
            _ => decode_astm(&name, &bytes, args.encoding),
        };
        for line in lines {
            if writeln!(out, "{line}").is_err() {
                return ExitCode::from(1);
            }
        }
        for p in &problems {
            eprintln!("labagent decode: {name}: {p}");
        }
        bad |= !problems.is_empty();
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// True when the bytes start (after whitespace and an MLLP VT) with an MSH segment.
pub fn looks_like_hl7(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|&b| !matches!(b, 0x0B | b'\r' | b'\n' | b' ' | b'\t'))
        .unwrap_or(bytes.len());
    bytes[start..].starts_with(b"MSH")
}

/// Decodes an ASTM capture into one JSON value per message and a list of problems, each naming
/// a byte offset or a message number.
pub fn decode_astm(file: &str, bytes: &[u8], charset: Charset) -> (Vec<Value>, Vec<String>) {
    let decoded = capture::decode(bytes, DEFAULT_MAX_TEXT);
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (index, message) in decoded.messages.iter().enumerate() {
        for e in &message.errors {
            problems.push(format!("byte {}: {}", e.offset, e.error));
        }
        match message_json(file, message, charset) {
            Ok(v) => lines.push(v),
            Err(e) => problems.push(format!("message {}: {e}", index + 1)),
        }
    }
    for e in &decoded.stray_errors {
        problems.push(format!("byte {}: {}", e.offset, e.error));
    }
    if decoded.messages.is_empty() && problems.is_empty() {
        problems.push("no ASTM message found".into());
    }
    (lines, problems)
}

fn message_json(
    file: &str,
    message: &CapturedMessage,
    charset: Charset,
) -> Result<Value, labagent_astm::record::RecordError> {
    let parsed = parse_message(&message.text, charset)?;
    let records: Vec<Value> = parsed
        .records()
        .iter()
        .map(|r| {
            json!({
                "type": char::from(r.kind().byte()).to_string(),
                "fields": r.fields_display(),
            })
        })
        .collect();
    Ok(json!({
        "file": file,
        "frames": message.frames,
        "checksum_errors": message.errors.iter().filter(|e| matches!(e.error, labagent_astm::frame::FrameError::Checksum { .. })).count(),
        "records": records,
    }))
}

/// Decodes ER7 (optionally MLLP-framed, several messages per file): one JSON value per message,
/// fields numbered as HL7 does (MSH-1 is the field separator), escapes resolved.
pub fn decode_hl7(file: &str, bytes: &[u8]) -> (Vec<Value>, Vec<String>) {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for (index, chunk) in split_hl7_messages(bytes).into_iter().enumerate() {
        match labagent_hl7::Message::parse(chunk) {
            Ok(message) => {
                let segments: Vec<Value> = message
                    .segments()
                    .map(|seg| {
                        let mut fields = vec![seg.id().to_string()];
                        fields.extend(seg.fields().map(|f| f.text().into_owned()));
                        json!({"id": seg.id(), "fields": fields})
                    })
                    .collect();
                lines.push(json!({"file": file, "segments": segments}));
            }
            Err(e) => problems.push(format!("message {}: {e}", index + 1)),
        }
    }
    if lines.is_empty() && problems.is_empty() {
        problems.push("no HL7 message found".into());
    }
    (lines, problems)
}

/// Cuts a capture into messages: at MLLP start blocks when present, else before every line
/// that starts with `MSH`. MLLP control bytes are removed.
fn split_hl7_messages(bytes: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut line_start = true;
    for (i, &b) in bytes.iter().enumerate() {
        if line_start && bytes[i..].starts_with(b"MSH") {
            starts.push(i);
        }
        line_start = matches!(b, b'\r' | b'\n' | 0x0B | 0x1C);
    }
    let mut out = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(bytes.len());
        let chunk = &bytes[start..end];
        let trimmed_end = chunk
            .iter()
            .rposition(|&b| !matches!(b, b'\r' | b'\n' | 0x0B | 0x1C))
            .map_or(0, |p| p + 1);
        out.push(&chunk[..trimmed_end]);
    }
    out
}
