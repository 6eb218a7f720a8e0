//! `labagent simulate`: act as an analyser. An E1381 sender (ENQ/ACK/NAK/EOT, frame numbers,
//! checksums, retransmission) that plays the built-in CBC session or the messages found in
//! capture files, re-framed properly. Exit 0 only if every frame was acknowledged.

use crate::cli::read_input;
use crate::sample::CBC_SESSION;
use crate::sources::driver::{DriveEnd, LinkHandler, drive};
use crate::sources::serial::SerialSettings;
use labagent_astm::capture;
use labagent_astm::frame::DEFAULT_MAX_TEXT;
use labagent_astm::link::{Event, Link, LinkConfig, MessageId, ReceivedMessage, Role, SendFailure};
use labagent_astm::record::split_records;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

/// Arguments of `labagent simulate`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "serial"])))]
pub struct Args {
    /// Connect to an agent over TCP: `tcp://HOST:PORT`.
    #[arg(long, value_name = "tcp://HOST:PORT")]
    pub to: Option<String>,
    /// Write to a serial port (or pty) instead.
    #[arg(long, value_name = "PATH")]
    pub serial: Option<PathBuf>,
    /// Serial baud rate.
    #[arg(long, default_value_t = 9600)]
    pub baud: u32,
    /// Capture files whose messages are sent instead of the built-in CBC session.
    #[arg(long = "file", value_name = "TRACE")]
    pub files: Vec<PathBuf>,
    /// How many times to send the whole set of messages.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Pause between messages, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub interval: u64,
}

/// What a simulation achieved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Messages every frame of which was acknowledged.
    pub sent: usize,
    /// Messages that failed, with the reason.
    pub failed: Vec<String>,
}

/// Entry point.
pub fn run(args: &Args) -> ExitCode {
    let messages = match load_messages(&args.files) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("labagent simulate: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("labagent simulate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        if let Some(to) = &args.to {
            let addr = to.strip_prefix("tcp://").unwrap_or(to);
            let mut stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            simulate(&mut stream, &messages, args.count, args.interval).await
        } else if let Some(path) = &args.serial {
            let settings = SerialSettings {
                baud: args.baud,
                ..SerialSettings::new(path.to_string_lossy())
            };
            let mut port = settings
                .open()
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            simulate(&mut port, &messages, args.count, args.interval).await
        } else {
            Err("give --to or --serial".to_string())
        }
    });
    match result {
        Ok(report) if report.failed.is_empty() => {
            println!("sent {} message(s); every frame acknowledged", report.sent);
            ExitCode::SUCCESS
        }
        Ok(report) => {
            println!(
                "sent {} message(s); {} failed",
                report.sent,
                report.failed.len()
            );
            for f in &report.failed {
                eprintln!("labagent simulate: {f}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("labagent simulate: {e}");
            ExitCode::from(1)
        }
    }
}

/// The messages to send: the built-in session, or every message in the given captures with
/// records re-terminated by CR (captures often hold LF or CR LF).
pub fn load_messages(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    if files.is_empty() {
        return Ok(vec![CBC_SESSION.as_bytes().to_vec()]);
    }
    let mut messages = Vec::new();
    for path in files {
        let bytes = read_input(path)?;
        let decoded = capture::decode(&bytes, DEFAULT_MAX_TEXT);
        if let Some(e) = decoded.errors().next() {
            return Err(format!(
                "{}: damaged frame at byte {}: {}",
                path.display(),
                e.offset,
                e.error
            ));
        }
        for m in decoded.messages {
            let mut text = Vec::with_capacity(m.text.len());
            for record in split_records(&m.text) {
                text.extend_from_slice(record);
                text.push(b'\r');
            }
            messages.push(text);
        }
    }
    if messages.is_empty() {
        return Err("the captures hold no message".into());
    }
    Ok(messages)
}

/// Sends `messages` `count` times over `io`, one transmission (ENQ..EOT) per message.
pub async fn simulate<S>(
    io: &mut S,
    messages: &[Vec<u8>],
    count: u32,
    interval_ms: u64,
) -> Result<Report, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut link = Link::new(LinkConfig {
        role: Role::Instrument,
        ..LinkConfig::default()
    });
    let mut report = Report::default();
    for _ in 0..count {
        for text in messages {
            let id = link.send(text, Instant::now());
            let mut waiter = SendWaiter { id, outcome: None };
            let end = match drive(io, &mut link, &mut waiter).await {
                Ok(end) => end,
                // A peer that hangs up may show as a reset or broken pipe rather than EOF.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    DriveEnd::Eof
                }
                Err(e) => return Err(format!("link I/O error: {e}")),
            };
            match (end, waiter.outcome) {
                (_, Some(Ok(()))) => report.sent += 1,
                (_, Some(Err(reason))) => report.failed.push(format!("message {id}: {reason}")),
                (DriveEnd::Eof, None) => {
                    report
                        .failed
                        .push(format!("message {id}: the receiver closed the connection"));
                    return Ok(report);
                }
                (DriveEnd::Done | DriveEnd::Abandoned, None) => {}
            }
            if interval_ms > 0 {
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
        }
    }
    Ok(report)
}

struct SendWaiter {
    id: MessageId,
    outcome: Option<Result<(), SendFailure>>,
}

impl LinkHandler for SendWaiter {
    async fn on_message(&mut self, _message: ReceivedMessage) -> bool {
        // A host may answer (e.g. a query reply); the simulator accepts and ignores it.
        true
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Sent(id) if *id == self.id => self.outcome = Some(Ok(())),
            Event::SendFailed { id, reason } if *id == self.id => {
                self.outcome = Some(Err(*reason));
            }
            _ => {}
        }
    }

    fn done(&self, _link: &Link) -> bool {
        self.outcome.is_some()
    }
}
