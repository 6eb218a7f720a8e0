//! The one-screen summary `labagent check-config` prints. Shows what the agent will do, never
//! a secret (token and password paths are only said to be set).

use std::fmt::Write as _;

use super::model::*;
use super::units::{format_duration, format_size};

/// A human summary of `config`: agent, store, HTTP, each source and each sink, one line each.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    // `write!` into a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "config   {}", config.origin);
    let a = &config.agent;
    let _ = writeln!(
        out,
        "agent    id {}, state {}, timezone {}",
        a.id,
        a.state_dir.display(),
        a.timezone
    );
    let _ = writeln!(
        out,
        "store    at most {}, fsync before every upstream ACK",
        format_size(config.store.max_bytes.get())
    );
    let auth = if config.http.token_file.is_some() {
        "bearer token required"
    } else {
        "loopback, no token"
    };
    let _ = writeln!(out, "http     {} ({auth})", config.http.listen);

    let width = config
        .sources
        .iter()
        .map(|s| s.name.as_str().len())
        .chain(config.sinks.iter().map(|s| s.name.as_str().len()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "sources  {}", config.sources.len());
    for s in &config.sources {
        let _ = writeln!(
            out,
            "  {:width$}  {:11}  {}",
            s.name.as_str(),
            s.kind_name(),
            source_line(s)
        );
    }
    let _ = writeln!(out, "sinks    {}", config.sinks.len());
    for s in &config.sinks {
        let _ = writeln!(
            out,
            "  {:width$}  {:11}  {}",
            s.name.as_str(),
            s.kind_name(),
            sink_line(s, config.sources.len())
        );
    }
    out
}

fn listener_text(l: &Listener) -> String {
    let mut t = format!("listen {}", l.addr);
    if let Some(tls) = &l.tls {
        t.push_str(if tls.client_ca.is_some() {
            " tls+client-cert"
        } else {
            " tls"
        });
    }
    if !l.allow.is_empty() {
        let nets: Vec<String> = l.allow.iter().map(ToString::to_string).collect();
        let _ = write!(t, " allow {}", nets.join(","));
    }
    t
}

fn source_line(s: &SourceConfig) -> String {
    let endpoint = match &s.transport {
        SourceTransport::AstmSerial(a) => {
            let ser = &a.serial;
            let parity = match ser.parity {
                Parity::None => 'N',
                Parity::Even => 'E',
                Parity::Odd => 'O',
            };
            let stop = match ser.stop_bits {
                StopBits::One => 1,
                StopBits::Two => 2,
            };
            let flow = match ser.flow_control {
                FlowControl::None => "",
                FlowControl::Software => " xon/xoff",
                FlowControl::Hardware => " rts/cts",
            };
            format!(
                "{} {} {}{parity}{stop}{flow}",
                a.device.display(),
                ser.baud,
                ser.data_bits.get()
            )
        }
        SourceTransport::AstmTcp(t) => match &t.role {
            TcpRole::Listen(l) => listener_text(l),
            TcpRole::Connect(hp) => format!("connect {hp}"),
        },
        SourceTransport::Mllp(m) => listener_text(&m.listener),
    };
    let mapping = match (&s.mapping_name, &s.transport) {
        (None, SourceTransport::Mllp(_)) => "forwarded unchanged".to_owned(),
        (None, _) => format!("default mapping (MSH-3 {})", s.mapping.sending_application),
        (Some(name), _) => format!(
            "mapping {name} (MSH-3 {}, {} test codes)",
            s.mapping.sending_application,
            s.mapping.tests.len()
        ),
    };
    format!("{endpoint}, {}, {mapping}", s.encoding)
}

fn sink_line(s: &SinkConfig, source_count: usize) -> String {
    let endpoint = match &s.kind {
        SinkKind::Mllp(m) => format!(
            "{}{}, ack timeout {}",
            m.connect,
            if m.tls.is_some() { " tls" } else { "" },
            format_duration(m.delivery.ack_timeout)
        ),
        SinkKind::Mqtt(m) => {
            let auth = if m.password_file.is_some() {
                ", user + password"
            } else if m.username.is_some() {
                ", user"
            } else {
                ""
            };
            format!("{} topic {}{auth}", m.broker, m.topic)
        }
        SinkKind::File(f) => f.dir.display().to_string(),
    };
    let sources = if s.sources.len() == source_count {
        "every source".to_owned()
    } else {
        let names: Vec<&str> = s.sources.iter().map(SourceName::as_str).collect();
        names.join(", ")
    };
    format!("{endpoint}; from {sources}")
}
