//! `labagent queue`: inspect and operate the store (INTERFACE.md).
//!
//! `status`, `list` and `show` open the store read-only (no lock, nothing changed on disk), so
//! they work while the agent runs. `retry` changes the store: it needs the agent stopped (the
//! store's lock says whether it runs) and reports clearly when it is not.

use crate::commands::run::ConfigArg;
use labagent_store::{Entry, Error as StoreError, Options, RecordId, Store};
use std::process::ExitCode;
use std::time::SystemTime;

/// Arguments of `labagent queue`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration (for the state directory and the sink names).
    #[command(flatten)]
    pub config: ConfigArg,
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// Queue operations.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Per sink: pending messages and bytes, oldest undelivered age, parked count.
    Status,
    /// The pending (or parked) messages, oldest first.
    List {
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Show parked (dead-letter) messages with their reasons instead.
        #[arg(long)]
        parked: bool,
        /// At most this many per sink.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One message: its metadata and its bytes.
    Show {
        /// The record id (as printed by `list`, with or without `#`).
        id: String,
    },
    /// Put parked messages back in line for delivery (the agent must be stopped).
    Retry {
        /// The record id to retry.
        #[arg(conflicts_with = "all_parked", required_unless_present = "all_parked")]
        id: Option<String>,
        /// Retry every parked message.
        #[arg(long)]
        all_parked: bool,
        /// Only for this sink.
        #[arg(long)]
        sink: Option<String>,
    },
}

/// Entry point.
pub fn run(args: &Args) -> ExitCode {
    let config = match args.config.load() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = config.agent.state_dir.join("store");
    if !dir.is_dir() {
        eprintln!(
            "labagent queue: no store at {} (has the agent run with this configuration?)",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let sinks: Vec<String> = config
        .sinks
        .iter()
        .map(|s| s.name.as_str().to_string())
        .collect();
    let result = match &args.action {
        Action::Retry {
            id,
            all_parked,
            sink,
        } => retry(&dir, sinks, id.as_deref(), *all_parked, sink.as_deref()).or_else(|e| {
            if e != AGENT_RUNNING {
                return Err(e);
            }
            // The running agent holds the store: ask it through its HTTP interface.
            retry_over_http(&config, id.as_deref(), *all_parked, sink.as_deref())
        }),
        action => Store::open_read_only(&dir, Options::new(sinks))
            .map_err(|e| e.to_string())
            .and_then(|(store, _)| read(&store, action)),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labagent queue: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse_id(id: &str) -> Result<RecordId, String> {
    id.trim_start_matches('#')
        .parse::<u64>()
        .map(RecordId::new)
        .map_err(|_| format!("not a record id: {id:?} (expected a number such as 42 or #42)"))
}

fn age(received_ms: i64) -> String {
    let now = crate::pipeline::unix_ms(SystemTime::now());
    let secs = (now - received_ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn kind_name(e: &Entry) -> &'static str {
    match e.kind {
        labagent_store::Kind::Oru => "ORU",
        labagent_store::Kind::RawHl7 => "HL7",
        labagent_store::Kind::RawAstm => "ASTM",
    }
}

fn read(store: &Store, action: &Action) -> Result<String, String> {
    let mut out = String::new();
    match action {
        Action::Status => {
            let status = store.status().map_err(|e| e.to_string())?;
            out.push_str(&format!(
                "store: {} of {} bytes used, {} segment(s), next id #{}\n",
                status.total_bytes,
                status.max_bytes,
                status.segments,
                status.next_id.get()
            ));
            out.push_str(&format!(
                "{:<16} {:>8} {:>12} {:>8} {:>8}\n",
                "SINK", "PENDING", "BYTES", "OLDEST", "PARKED"
            ));
            for s in &status.sinks {
                out.push_str(&format!(
                    "{:<16} {:>8} {:>12} {:>8} {:>8}\n",
                    s.name,
                    s.pending,
                    s.pending_bytes,
                    s.oldest_pending_received_ms.map_or("-".into(), age),
                    s.parked
                ));
            }
        }
        Action::List {
            sink,
            parked,
            limit,
        } => {
            let status = store.status().map_err(|e| e.to_string())?;
            let names: Vec<&str> = status
                .sinks
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| sink.as_deref().is_none_or(|want| want == *n))
                .collect();
            if let Some(want) = sink
                && names.is_empty()
            {
                return Err(format!("no sink named {want:?} in the store"));
            }
            for name in names {
                if *parked {
                    for p in store
                        .parked(name)
                        .map_err(|e| e.to_string())?
                        .iter()
                        .take(*limit)
                    {
                        let e = store.get(p.id).map_err(|e| e.to_string())?;
                        out.push_str(&format!(
                            "#{:<8} {:<12} {:<20} {:<5} {:<12} parked {} ago: {}\n",
                            p.id.get(),
                            name,
                            e.control_id,
                            kind_name(&e),
                            e.source,
                            age(p.parked_at_ms),
                            p.reason
                        ));
                    }
                } else {
                    for e in store.peek(name, *limit).map_err(|e| e.to_string())? {
                        out.push_str(&format!(
                            "#{:<8} {:<12} {:<20} {:<5} {:<12} received {} ago, {} bytes\n",
                            e.id.get(),
                            name,
                            e.control_id,
                            kind_name(&e),
                            e.source,
                            age(e.received_ms),
                            e.payload.len()
                        ));
                    }
                }
            }
        }
        Action::Show { id } => {
            let e = store.get(parse_id(id)?).map_err(|e| e.to_string())?;
            out.push_str(&format!(
                "id: #{}\ncontrol id: {}\nkind: {}\nsource: {}\nreceived: {} ago\nbytes: {}\n\n",
                e.id.get(),
                e.control_id,
                kind_name(&e),
                e.source,
                age(e.received_ms),
                e.payload.len()
            ));
            let text = String::from_utf8_lossy(&e.payload);
            for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
                out.push_str(line);
                out.push('\n');
            }
        }
        Action::Retry { .. } => return Err("internal: retry is not a read".into()),
    }
    Ok(out)
}

const AGENT_RUNNING: &str = "the agent is running and holds the store";

/// `retry` against a running agent: `POST /api/queue/ID/retry` or
/// `/api/queue/retry-parked`, with the bearer token when one is configured.
fn retry_over_http(
    config: &crate::config::Config,
    id: Option<&str>,
    all: bool,
    sink: Option<&str>,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut addr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let query = sink.map(|s| format!("?sink={s}")).unwrap_or_default();
    let path = if all {
        format!("/api/queue/retry-parked{query}")
    } else {
        let rid = parse_id(id.unwrap_or_default())?;
        format!("/api/queue/{}/retry{query}", rid.get())
    };
    let token = match &config.http.token_file {
        Some(file) => Some(
            std::fs::read_to_string(file.expose())
                .map_err(|e| format!("cannot read the HTTP token file: {e}"))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let unreachable = |e: std::io::Error| {
        format!("{AGENT_RUNNING}, and its HTTP interface at {addr} did not answer: {e}")
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .map_err(unreachable)?;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(unreachable)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default();
    match status {
        200 => Ok(format!("retried through the running agent: {body}\n")),
        401 => Err("the agent refused the request: wrong or missing token".into()),
        404 => Err(format!("not parked, or no such record or sink: {body}")),
        code => Err(format!("the agent answered HTTP {code}: {body}")),
    }
}

fn retry(
    dir: &std::path::Path,
    sinks: Vec<String>,
    id: Option<&str>,
    all: bool,
    only: Option<&str>,
) -> Result<String, String> {
    let store = match Store::open(dir, Options::new(sinks.clone())) {
        Ok((s, _)) => s,
        Err(StoreError::Locked { .. }) => return Err(AGENT_RUNNING.into()),
        Err(e) => return Err(e.to_string()),
    };
    let targets: Vec<&String> = sinks
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.as_str()))
        .collect();
    if targets.is_empty() {
        return Err(format!("no sink named {:?}", only.unwrap_or_default()));
    }
    let mut out = String::new();
    let mut count = 0;
    for sink in targets {
        if all {
            let n = store.retry_all(sink).map_err(|e| e.to_string())?;
            count += n;
            out.push_str(&format!("{sink}: {n} parked message(s) queued again\n"));
        } else if let Some(id) = id {
            let rid = parse_id(id)?;
            let parked = store.parked(sink).map_err(|e| e.to_string())?;
            if parked.iter().any(|p| p.id == rid) {
                store.retry(sink, rid).map_err(|e| e.to_string())?;
                count += 1;
                out.push_str(&format!("{sink}: #{} queued again\n", rid.get()));
            }
        }
    }
    if count == 0 && !all {
        return Err(format!(
            "record {} is not parked for any sink",
            id.unwrap_or_default()
        ));
    }
    Ok(out)
}
