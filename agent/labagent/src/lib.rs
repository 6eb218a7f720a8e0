//! labagent: reads results from laboratory analysers (ASTM E1381/E1394 over RS-232 or TCP) and
//! hands them on durably.
//!
//! # Boundary
//! This crate owns everything that touches the world: ports, sockets, files, clocks, the command
//! line. Protocol logic lives in `labagent-astm` (sans I/O); the [`sources::driver`] runs a
//! `Link` over any async byte stream and owns the clock.
//!
//! # Modules
//! - [`cli`]: argument parsing and exit codes (INTERFACE.md "Command line").
//! - [`commands`]: one module per subcommand.
//! - [`sources`]: the link driver and the analyser-facing transports.
//! - [`http`]: status page, probes, metrics and the queue API.
//! - [`sample`]: the built-in CBC session used by `simulate` and `demo`.
//! - [`telemetry`]: logging set-up.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blocking;
pub mod cli;
pub mod commands;
pub mod config;
pub mod health;
pub mod heartbeat;
pub mod http;
pub mod ingest;
pub mod mllp;
pub mod pipeline;
pub mod retry;
pub mod runtime;
pub mod sample;
pub mod sinks;
pub mod sources;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod translate;
