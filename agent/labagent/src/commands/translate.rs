//! `labagent translate`: decode ASTM captures and print the ORU^R01 messages the agent would
//! send (INTERFACE.md): CR segment separators, one blank line between messages. Exit 1 when a
//! message cannot be translated, naming the file, the message and the reason.

use crate::cli::read_input;
use crate::translate::{Context, Mapping, translate};
use labagent_astm::capture;
use labagent_astm::charset::Charset;
use labagent_astm::frame::DEFAULT_MAX_TEXT;
use labagent_astm::record::parse_message;
use labagent_hl7::control_id::ControlIdGenerator;
use labagent_hl7::time::{Hl7Ts, time_zone};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `labagent translate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration whose mapping, character set and time zone apply (default: embedded).
    #[command(flatten)]
    pub config: crate::commands::run::ConfigArg,
    /// Source whose mapping applies (default: the configuration's first ASTM source).
    #[arg(long)]
    pub source: Option<String>,
    /// MSH-7 for every message (HL7 TS, e.g. 20261125120000+0000) instead of now: makes output
    /// reproducible.
    #[arg(long, value_name = "TS")]
    pub at: Option<String>,
    /// ASTM captures (framed or bare).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Entry point.
pub fn run(args: &Args) -> ExitCode {
    let config = match args.config.load() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = match &args.source {
        Some(name) => match config.source(name) {
            Some(s) => Some(s),
            None => {
                eprintln!(
                    "labagent translate: --source {name}: no such source in {}",
                    config.origin
                );
                return ExitCode::from(2);
            }
        },
        None => config
            .sources
            .iter()
            .find(|s| !matches!(s.transport, crate::config::SourceTransport::Mllp(_))),
    };
    let (mapping, encoding) = match source {
        Some(s) => (s.mapping.clone(), s.encoding),
        None => (Mapping::default_for("analyser"), Charset::Latin1),
    };
    let tz = match time_zone(config.agent.timezone.as_str()) {
        Ok(tz) => tz,
        Err(e) => {
            eprintln!("labagent translate: agent.timezone: {e}");
            return ExitCode::from(2);
        }
    };
    let now = match &args.at {
        Some(at) => Hl7Ts::parse(at),
        None => Hl7Ts::from_zoned(&jiff::Zoned::now().with_time_zone(tz.clone())),
    };
    let now = match now {
        Ok(n) => n,
        Err(e) => {
            eprintln!("labagent translate: --at: {e}");
            return ExitCode::from(2);
        }
    };
    let ctx = Context { tz: &tz, now };
    let ids = match ControlIdGenerator::new("T") {
        Ok(g) => g,
        Err(e) => {
            eprintln!("labagent translate: {e}");
            return ExitCode::from(1);
        }
    };
    let mut counter = 0u64;
    let mut bad = false;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.files {
        let bytes = match read_input(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("labagent translate: {e}");
                bad = true;
                continue;
            }
        };
        let (messages, problems) = translate_capture(&bytes, encoding, &mapping, &ctx, &mut || {
            counter += 1;
            ids.generate(counter)
        });
        for m in messages {
            if out.write_all(m.as_bytes()).is_err() || out.write_all(b"\n\n").is_err() {
                return ExitCode::from(1);
            }
        }
        for p in &problems {
            eprintln!("labagent translate: {}: {p}", path.display());
        }
        bad |= !problems.is_empty();
    }
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Translates every message of a capture; returns the encoded ORUs and the problems (damaged
/// frames by byte offset, untranslatable messages by number).
pub fn translate_capture(
    bytes: &[u8],
    charset: Charset,
    mapping: &Mapping,
    ctx: &Context<'_>,
    next_id: &mut dyn FnMut() -> labagent_hl7::control_id::ControlId,
) -> (Vec<String>, Vec<String>) {
    let decoded = capture::decode(bytes, DEFAULT_MAX_TEXT);
    let mut out = Vec::new();
    let mut problems: Vec<String> = decoded
        .errors()
        .map(|e| format!("byte {}: {}", e.offset, e.error))
        .collect();
    for (i, m) in decoded.messages.iter().enumerate() {
        let parsed = match parse_message(&m.text, charset) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("message {}: {e}", i + 1));
                continue;
            }
        };
        match translate(&parsed, mapping, ctx, next_id) {
            Ok(orus) => {
                for oru in orus {
                    match oru.encode() {
                        Ok(text) => out.push(text),
                        Err(e) => problems.push(format!("message {}: {e}", i + 1)),
                    }
                }
            }
            Err(e) => problems.push(format!("message {}: {e}", i + 1)),
        }
    }
    (out, problems)
}
