//! The command line (INTERFACE.md "Command line"). Exit codes: 0 ok, 1 runtime failure or bad
//! input, 2 bad config or usage.

use crate::commands;
use crate::telemetry::{self, LogFormat};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// labagent: laboratory analyser results to the EHR, durably.
#[derive(Debug, Parser)]
#[command(name = "labagent", version, about, propagate_version = true)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (foreground, logs to stderr).
    Run(commands::run::ConfigArg),
    /// Self-contained round trip for a newcomer: agent, simulated analyser, ORU and receipt.
    Demo,
    /// Validate the configuration and print a summary; exit 2 with every error.
    CheckConfig(commands::run::ConfigArg),
    /// Decode captures (E1381 frames, bare E1394 records, or MLLP/ER7) into JSON lines, one per
    /// message.
    Decode(commands::decode::Args),
    /// Inspect and operate the store: status, list, show, retry.
    Queue(commands::queue::Args),
    /// Decode ASTM captures and print the ORU^R01 messages the agent would send.
    Translate(commands::translate::Args),
    /// Act as an analyser: send the built-in CBC session or captures as E1381 frames.
    Simulate(commands::simulate::Args),
}

/// Runs the CLI and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Run(args) => commands::run::run(&args),
        Command::Demo => commands::demo::run(),
        Command::CheckConfig(args) => commands::run::check(&args),
        Command::Decode(args) => commands::decode::run(&args),
        Command::Simulate(args) => commands::simulate::run(&args),
        Command::Translate(args) => commands::translate::run(&args),
        Command::Queue(args) => commands::queue::run(&args),
    }
}

/// Reads a file for a command, naming it in the error.
pub fn read_input(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}
