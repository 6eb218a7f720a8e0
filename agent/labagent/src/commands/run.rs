//! `labagent run` and `labagent check-config`: both compile the configuration with the same
//! code, so a config that passes `check-config` is one `run` accepts.

use crate::config::{self, Config};
use std::path::PathBuf;
use std::process::ExitCode;

/// `--config FILE` (default: the embedded configuration).
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file; without it the embedded default is used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads and compiles the configuration, or prints every error (exit code 2).
    pub fn load(&self) -> Result<Config, ExitCode> {
        match &self.config {
            None => Ok(config::embedded_default()),
            Some(path) => config::load(path).map_err(|errors| {
                eprintln!("{errors}");
                eprintln!("labagent: {} error(s) in {}", errors.len(), path.display());
                ExitCode::from(2)
            }),
        }
    }
}

/// `labagent run`.
pub fn run(args: &ConfigArg) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("labagent: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(crate::runtime::run(config, args.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("labagent: {e}");
            ExitCode::from(1)
        }
    }
}

/// `labagent check-config`.
pub fn check(args: &ConfigArg) -> ExitCode {
    match args.load() {
        Ok(config) => {
            print!("{}", config::summary(&config));
            println!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
