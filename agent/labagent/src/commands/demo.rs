//! `labagent demo`: the whole round trip on one machine for a newcomer. Starts the agent on the
//! embedded default configuration in a temporary directory (ephemeral ports), plays the built-in
//! CBC session into it as an analyser would over TCP, waits for the file sink to deliver, then
//! prints the ORU^R01 produced and the delivery receipt.

use crate::commands::simulate::simulate;
use crate::config;
use crate::runtime::start;
use crate::sample::CBC_SESSION;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Entry point.
pub fn run() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("labagent demo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(demo()) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("labagent demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn demo() -> Result<String, String> {
    let dir = tempfile::Builder::new()
        .prefix("labagent-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let mut config = config::embedded_default_in(dir.path());
    // Ephemeral ports, so the demo runs beside a real agent.
    config.http.listen.set_port(0);
    for source in &mut config.sources {
        match &mut source.transport {
            config::SourceTransport::AstmTcp(t) => {
                if let config::TcpRole::Listen(l) = &mut t.role {
                    l.addr.set_port(0);
                }
            }
            config::SourceTransport::Mllp(m) => m.listener.addr.set_port(0),
            config::SourceTransport::AstmSerial(_) => {}
        }
    }
    let outbox: PathBuf = config
        .sinks
        .iter()
        .find_map(|s| match &s.kind {
            config::SinkKind::File(f) => Some(f.dir.clone()),
            _ => None,
        })
        .ok_or("the embedded configuration has no file sink")?;
    let shutdown = CancellationToken::new();
    let agent = start(&config, shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    let addr = agent
        .listener("analyser")
        .ok_or("the embedded configuration has no astm-tcp source named analyser")?;

    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the agent at {addr}: {e}"))?;
    let report = simulate(&mut stream, &[CBC_SESSION.as_bytes().to_vec()], 1, 0).await?;
    if !report.failed.is_empty() || report.sent != 1 {
        return Err(format!("the analyser session failed: {:?}", report.failed));
    }
    drop(stream);

    // The analyser's last frame was ACKed only after the fsync; now wait for delivery.
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        let found = std::fs::read_dir(&outbox).ok().and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "hl7"))
        });
        if let Some(f) = found {
            break f;
        }
        if Instant::now() > deadline {
            return Err("the file sink did not deliver within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let oru = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    // The file exists once renamed; the cursor moves just after. Wait for it, so the receipt
    // shows the queue as it really ends.
    let sink = loop {
        let status = agent.pipeline.store().status().map_err(|e| e.to_string())?;
        let sink = status
            .sinks
            .into_iter()
            .find(|s| s.name == "outbox")
            .ok_or("no outbox sink in the store")?;
        if sink.pending == 0 || Instant::now() > deadline {
            break sink;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let control_id = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    agent.stop(Duration::from_secs(5)).await;

    let mut out = String::new();
    out.push_str("labagent demo: a CBC from a simulated analyser, end to end\n\n");
    out.push_str("ORU^R01 produced (segments shown one per line; on the wire they end in CR):\n\n");
    for segment in oru.split('\r').filter(|s| !s.is_empty()) {
        out.push_str(segment);
        out.push('\n');
    }
    out.push_str("\nDelivery receipt:\n");
    out.push_str(&format!(
        "  analyser session   1 message over E1381/TCP to {addr}; the final frame was ACKed after the store fsync\n"
    ));
    out.push_str(&format!("  MSH-10             {control_id}\n"));
    out.push_str(&format!(
        "  delivered to       sink \"outbox\" (file) as {}\n",
        file.display()
    ));
    out.push_str(&format!(
        "  queue afterwards   {} pending, {} parked\n",
        sink.pending, sink.parked
    ));
    out.push_str(&format!(
        "  state directory    {} (removed on exit)\n",
        dir.path().display()
    ));
    Ok(out)
}
