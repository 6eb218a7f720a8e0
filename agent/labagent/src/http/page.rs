//! `GET /`: the status page, for a lab technician to read in five seconds. Self-contained HTML
//! and CSS (no scripts, no external assets), refreshed by the browser every 5 s.
//!
//! Layout: a header with the agent id, version, uptime and the overall state; one card per
//! analyser (source) and one per destination (sink), each green, amber or red, with the state
//! also written in words (colour is never the only signal). Every string from outside (names,
//! endpoints, reasons) is HTML-escaped. No payload is ever read: parked messages are shown by id
//! and reason only.
//!
//! Hooks for tests and scripts: `data-source="NAME"` / `data-sink="NAME"` on the cards,
//! `class="card green|amber|red"`, `data-parked-id="ID"` on parked entries, `id="overall"`
//! with `data-state`.

use crate::health::{AgentStatus, SinkStatus, SourceStatus};
use labagent_store::Parked;
use std::fmt::Write;

/// A source with an error this recent and no connection is red.
const RED_ERROR_MS: i64 = 5 * 60 * 1000;
/// A problem this recent (NAK, untranslatable, refused) makes a source amber.
const AMBER_ERROR_MS: i64 = 15 * 60 * 1000;
/// A connected source silent this long is amber.
const QUIET_MS: i64 = 12 * 3600 * 1000;

/// The colour of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// All well.
    Green,
    /// Look at it when you can.
    Amber,
    /// Act now.
    Red,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Amber => "amber",
            Level::Red => "red",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Level::Green => "OK",
            Level::Amber => "Check",
            Level::Red => "Problem",
        }
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A span of time in words: "45 s", "3 min", "5 h", "2 days".
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 120 * 60 => format!("{} min", s / 60),
        s if s < 48 * 3600 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// "3 min ago", or `never` when there is no time.
fn ago(at_ms: Option<i64>, now_ms: i64, never: &str) -> String {
    match at_ms {
        Some(at) if now_ms - at < 5_000 => "just now".into(),
        Some(at) => format!("{} ago", span(now_ms - at)),
        None => never.into(),
    }
}

fn recent(at_ms: Option<i64>, now_ms: i64, within_ms: i64) -> bool {
    at_ms.is_some_and(|at| now_ms - at <= within_ms)
}

/// A source's colour and the reason in words.
pub fn source_level(s: &SourceStatus, uptime_s: u64, now_ms: i64) -> (Level, String) {
    let error_at = s.last_error.as_ref().map(|e| e.at_ms);
    // A parked message is safe in the store and shown on the sink cards; it says nothing about
    // the link. The pipeline words every such reason "not translatable: ..." (park_raw).
    let link_error_at = s
        .last_error
        .as_ref()
        .filter(|e| !e.reason.starts_with("not translatable"))
        .map(|e| e.at_ms);
    let connected = s.connections > 0;
    // Red: not connected and a link error in the last 5 minutes (connect or open failed, the
    // link broke, NAKs, store refusals).
    if !connected && recent(link_error_at, now_ms, RED_ERROR_MS) {
        return (Level::Red, "Not connected, and a recent error".into());
    }
    // Amber: connected but no result for 12 h (or none since a start 12 h ago), or a problem
    // (NAKed frame, untranslatable or refused message) in the last 15 minutes.
    if recent(error_at, now_ms, AMBER_ERROR_MS) {
        return (Level::Amber, "Recent problem (see below)".into());
    }
    let quiet = match s.last_result_ms {
        Some(at) => now_ms - at > QUIET_MS,
        None => i64::try_from(uptime_s).unwrap_or(i64::MAX) * 1000 > QUIET_MS,
    };
    if connected && quiet {
        return (
            Level::Amber,
            "Connected, but no result for a long time".into(),
        );
    }
    // Green otherwise (not connected with no recent error is normal for analysers that connect
    // only to send).
    if connected {
        (Level::Green, "Connected".into())
    } else {
        (Level::Green, "Waiting for the analyser".into())
    }
}

/// A sink's colour and the reason in words.
pub fn sink_level(s: &SinkStatus) -> (Level, String) {
    // Red: the destination is not reachable and messages are waiting.
    if !s.connected && s.queue_depth > 0 {
        return (Level::Red, "Not reachable, messages waiting".into());
    }
    // Amber: messages waiting (delivery in progress or slow), or parked messages that need an
    // operator.
    if s.parked > 0 {
        return (Level::Amber, "Parked messages need attention".into());
    }
    if s.queue_depth > 0 {
        return (Level::Amber, "Delivering, messages waiting".into());
    }
    // Green: the queue is empty and delivery works (or nothing was sent yet).
    if s.connected {
        (Level::Green, "Delivering, queue empty".into())
    } else {
        (Level::Green, "Idle, queue empty".into())
    }
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f5f7;color:#1d2430}\
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:1rem 1.5rem;background:#1d2430;color:#fff}\
header h1{margin:0;font-size:1.4rem}\
header .meta{opacity:.85}\
.pill{display:inline-block;padding:.25rem .8rem;border-radius:999px;font-weight:700;color:#fff}\
.pill.green{background:#1e8e3e}.pill.amber{background:#b06000}.pill.red{background:#c5221f}\
main{padding:1rem 1.5rem}\
h2{font-size:1.1rem;margin:1.2rem 0 .5rem;color:#4a5568;text-transform:uppercase;letter-spacing:.05em}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(20rem,1fr));gap:1rem}\
.card{background:#fff;border-radius:.5rem;border-left:.6rem solid;padding:.8rem 1rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}\
.card.green{border-color:#1e8e3e}.card.amber{border-color:#f29900;background:#fff8e6}.card.red{border-color:#c5221f;background:#fdecea}\
.card h3{margin:0;font-size:1.2rem;display:flex;justify-content:space-between;gap:.5rem}\
.card .state{font-weight:700}\
.card.green .state{color:#1e8e3e}.card.amber .state{color:#b06000}.card.red .state{color:#c5221f}\
.card .why{margin:.2rem 0 .6rem;font-weight:600}\
.card .kind{color:#5f6b7a;font-size:.9rem;word-break:break-all}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:0}\
dt{color:#5f6b7a}dd{margin:0;font-variant-numeric:tabular-nums}\
.problem{margin:.6rem 0 0;color:#8a1c1c;word-break:break-word}\
.parked{margin:.6rem 0 0;padding-left:1.2rem}\
.parked li{word-break:break-word}\
.banner{background:#fdecea;border:1px solid #c5221f;color:#8a1c1c;padding:.6rem 1rem;border-radius:.4rem;margin-bottom:1rem}\
footer{padding:0 1.5rem 1rem;color:#5f6b7a;font-size:.85rem}";

/// Renders the page. `parked` lists, per sink, the parked entries to show (already cut to a
/// page's worth); `store_error` replaces the queue figures with a banner when the store could
/// not be read.
pub fn render(
    status: &AgentStatus,
    parked: &[(String, Vec<Parked>)],
    store_error: Option<&str>,
    now_ms: i64,
) -> String {
    let sources: Vec<(Level, String)> = status
        .sources
        .iter()
        .map(|s| source_level(s, status.uptime_s, now_ms))
        .collect();
    let sinks: Vec<(Level, String)> = status.sinks.iter().map(sink_level).collect();
    let mut overall = sources
        .iter()
        .chain(&sinks)
        .map(|(l, _)| *l)
        .max()
        .unwrap_or(Level::Green);
    if store_error.is_some() {
        overall = Level::Red;
    }
    let overall_text = match (status.ready, overall) {
        (false, _) => "Starting",
        (true, Level::Green) => "All OK",
        (true, Level::Amber) => "Needs attention",
        (true, Level::Red) => "Problem",
    };
    let overall = if status.ready {
        overall
    } else {
        overall.max(Level::Amber)
    };

    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>labagent {id}: {overall_text}</title><style>{STYLE}</style></head><body>\
         <header><h1>labagent <span id=\"agent-id\">{id}</span></h1>\
         <span id=\"overall\" class=\"pill {class}\" data-state=\"{class}\">{overall_text}</span>\
         <span class=\"meta\">version {version} · up {uptime}</span></header><main>",
        id = escape(&status.agent_id),
        class = overall.class(),
        version = escape(status.version),
        uptime = span(
            i64::try_from(status.uptime_s)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000)
        ),
    );
    if let Some(e) = store_error {
        let _ = write!(
            h,
            "<div class=\"banner\" id=\"store-error\">The message store cannot be read: {}</div>",
            escape(e)
        );
    }

    let _ = write!(h, "<h2>Analysers</h2><div class=\"grid\" id=\"sources\">");
    for (s, (level, why)) in status.sources.iter().zip(&sources) {
        source_card(&mut h, s, *level, why, now_ms);
    }
    let _ = write!(
        h,
        "</div><h2>Destinations</h2><div class=\"grid\" id=\"sinks\">"
    );
    for (s, (level, why)) in status.sinks.iter().zip(&sinks) {
        let list = parked
            .iter()
            .find(|(n, _)| *n == s.name)
            .map_or(&[][..], |(_, l)| l.as_slice());
        sink_card(&mut h, s, *level, why, list, store_error.is_some(), now_ms);
    }
    let _ = writeln!(
        h,
        "</div></main><footer>Store: {} of {} used. This page refreshes every 5 seconds.</footer></body></html>",
        bytes(status.store_bytes),
        bytes(status.store_max_bytes)
    );
    h
}

fn bytes(n: u64) -> String {
    const K: u64 = 1024;
    match n {
        n if n < K => format!("{n} B"),
        n if n < K * K => format!("{:.1} KiB", n as f64 / K as f64),
        n if n < K * K * K => format!("{:.1} MiB", n as f64 / (K * K) as f64),
        n => format!("{:.1} GiB", n as f64 / (K * K * K) as f64),
    }
}

fn card_head(
    h: &mut String,
    attr: &str,
    name: &str,
    level: Level,
    why: &str,
    kind: &str,
    endpoint: &str,
) {
    let _ = write!(
        h,
        "<section class=\"card {class}\" {attr}=\"{name}\" data-state=\"{class}\">\
         <h3><span class=\"name\">{name}</span><span class=\"state\">{word}</span></h3>\
         <div class=\"kind\">{kind} · {endpoint}</div><p class=\"why\">{why}</p><dl>",
        class = level.class(),
        name = escape(name),
        word = level.word(),
        kind = escape(kind),
        endpoint = escape(endpoint),
        why = escape(why),
    );
}

fn row(h: &mut String, term: &str, value: &str) {
    let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(value));
}

fn source_card(h: &mut String, s: &SourceStatus, level: Level, why: &str, now_ms: i64) {
    card_head(h, "data-source", &s.name, level, why, s.kind, &s.endpoint);
    let connected = match s.connections {
        0 => "no".to_string(),
        1 => "yes".to_string(),
        n => format!("yes ({n} connections)"),
    };
    row(h, "Connected", &connected);
    row(
        h,
        "Last result",
        &ago(s.last_result_ms, now_ms, "none since start"),
    );
    row(
        h,
        "Last frame",
        &ago(s.last_frame_ms, now_ms, "none since start"),
    );
    row(h, "Results received", &s.messages.to_string());
    if s.frames_naked > 0 {
        row(h, "Frames rejected (NAK)", &s.frames_naked.to_string());
    }
    if s.parked > 0 {
        row(h, "Not translatable", &s.parked.to_string());
    }
    if s.refused > 0 {
        row(h, "Refused (store full)", &s.refused.to_string());
    }
    h.push_str("</dl>");
    if let Some(e) = &s.last_error {
        let _ = write!(
            h,
            "<p class=\"problem\">Last problem {}: {}</p>",
            escape(&ago(Some(e.at_ms), now_ms, "")),
            escape(&e.reason)
        );
    }
    h.push_str("</section>");
}

fn sink_card(
    h: &mut String,
    s: &SinkStatus,
    level: Level,
    why: &str,
    parked: &[Parked],
    store_unknown: bool,
    now_ms: i64,
) {
    card_head(h, "data-sink", &s.name, level, why, s.kind, &s.endpoint);
    row(
        h,
        "Reachable",
        if s.connected { "yes" } else { "not yet / no" },
    );
    if store_unknown {
        row(h, "Waiting", "unknown");
    } else {
        row(
            h,
            "Waiting",
            &format!("{} ({})", s.queue_depth, bytes(s.queue_bytes)),
        );
        let oldest = match s.oldest_pending_ms.filter(|_| s.queue_depth > 0) {
            Some(at) => span(now_ms - at),
            None => "-".into(),
        };
        row(h, "Oldest waiting", &oldest);
        row(h, "Parked", &s.parked.to_string());
    }
    row(h, "Delivered since start", &s.delivered.to_string());
    row(
        h,
        "Last delivery",
        &ago(s.last_delivery_ms, now_ms, "none since start"),
    );
    h.push_str("</dl>");
    if let Some(e) = &s.last_error {
        let _ = write!(
            h,
            "<p class=\"problem\">Last problem {}: {}</p>",
            escape(&ago(Some(e.at_ms), now_ms, "")),
            escape(&e.reason)
        );
    }
    if !parked.is_empty() {
        h.push_str("<ul class=\"parked\">");
        for p in parked {
            let _ = write!(
                h,
                "<li data-parked-id=\"{id}\">#{id}: {reason} <span class=\"kind\">(parked {ago})</span></li>",
                id = p.id.get(),
                reason = escape(&p.reason),
                ago = escape(&ago(Some(p.parked_at_ms), now_ms, "")),
            );
        }
        if (parked.len() as u64) < s.parked {
            let _ = write!(
                h,
                "<li>… and {} more (labagent queue list --parked)</li>",
                s.parked - parked.len() as u64
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::LastError;
    use labagent_store::RecordId;

    const NOW: i64 = 1_800_000_000_000;

    fn source(
        connections: u64,
        error_ago_ms: Option<i64>,
        result_ago_ms: Option<i64>,
    ) -> SourceStatus {
        SourceStatus {
            name: "an<1>".into(),
            kind: "astm-tcp",
            endpoint: "listen 127.0.0.1:1".into(),
            connections,
            frames: 0,
            frames_naked: 0,
            messages: 0,
            parked: 0,
            refused: 0,
            last_frame_ms: None,
            last_result_ms: result_ago_ms.map(|a| NOW - a),
            last_error: error_ago_ms.map(|a| LastError {
                at_ms: NOW - a,
                reason: "checksum".into(),
            }),
        }
    }

    fn sink(connected: bool, depth: u64, parked: u64) -> SinkStatus {
        SinkStatus {
            name: "files".into(),
            kind: "file",
            endpoint: "/out".into(),
            connected,
            delivered: 0,
            parked_total: 0,
            failures: 0,
            last_delivery_ms: None,
            last_error: None,
            queue_depth: depth,
            queue_bytes: 0,
            oldest_pending_ms: Some(NOW - 180_000),
            parked,
        }
    }

    #[test]
    fn source_rules() {
        let l = |s: SourceStatus| source_level(&s, 60, NOW).0;
        assert_eq!(l(source(0, Some(60_000), None)), Level::Red);
        assert_eq!(l(source(0, Some(10 * 60_000), None)), Level::Amber);
        assert_eq!(l(source(0, Some(3_600_000), None)), Level::Green);
        assert_eq!(l(source(1, Some(60_000), None)), Level::Amber);
        assert_eq!(l(source(1, None, Some(13 * 3_600_000))), Level::Amber);
        assert_eq!(l(source(1, None, Some(60_000))), Level::Green);
        assert_eq!(l(source(0, None, None)), Level::Green);
        let mut parked = source(0, Some(60_000), None);
        if let Some(e) = parked.last_error.as_mut() {
            e.reason = "not translatable: no results to translate (a host query)".into();
        }
        assert_eq!(l(parked), Level::Amber);
    }

    #[test]
    fn sink_rules() {
        assert_eq!(sink_level(&sink(false, 1, 0)).0, Level::Red);
        assert_eq!(sink_level(&sink(true, 1, 0)).0, Level::Amber);
        assert_eq!(sink_level(&sink(true, 0, 1)).0, Level::Amber);
        assert_eq!(sink_level(&sink(true, 0, 0)).0, Level::Green);
        assert_eq!(sink_level(&sink(false, 0, 0)).0, Level::Green);
    }

    #[test]
    fn page_escapes_and_marks_cards() {
        let status = AgentStatus {
            agent_id: "lab&1".into(),
            version: "0.1.0",
            uptime_s: 3700,
            ready: true,
            store_bytes: 2048,
            store_max_bytes: 1 << 30,
            sources: vec![source(1, None, Some(180_000))],
            sinks: vec![sink(true, 2, 1)],
            commit_latency: Default::default(),
        };
        let parked = vec![(
            "files".to_string(),
            vec![Parked {
                id: RecordId::new(7),
                reason: "bad <OBX>".into(),
                parked_at_ms: NOW - 1000,
                received_ms: NOW - 2000,
                bytes: 10,
            }],
        )];
        let html = render(&status, &parked, None, NOW);
        assert!(html.contains("data-source=\"an&lt;1&gt;\""), "{html}");
        assert!(html.contains("class=\"card green\" data-source"), "{html}");
        assert!(
            html.contains("class=\"card amber\" data-sink=\"files\""),
            "{html}"
        );
        assert!(html.contains("lab&amp;1"));
        assert!(html.contains("#7: bad &lt;OBX&gt;"));
        assert!(html.contains("3 min ago"));
        assert!(html.contains("data-state=\"amber\""));
        assert!(!html.contains("<OBX>"));
    }

    #[test]
    fn spans() {
        assert_eq!(span(59_000), "59 s");
        assert_eq!(span(180_000), "3 min");
        assert_eq!(span(5 * 3_600_000), "5 h");
        assert_eq!(span(3 * 86_400_000), "3 days");
    }
}
