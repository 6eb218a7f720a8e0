//! From text to [`Config`], collecting every error on the way.
//!
//! Three passes, none of which stops at the first problem:
//!
//! 1. **Syntax**: `toml::de::DeTable::parse` keeps spans for every key and value. A syntax
//!    error is the one case that ends compilation (nothing after it can be trusted).
//! 2. **Structure (lenient serde)**: each section and each `[[source]]`, `[mapping.*]` and
//!    `[[sink]]` element is deserialized on its own into the `raw` structs. serde stops at the
//!    first unknown key or wrong type; the reader records that error (line from the span, dotted
//!    key from the spanned tree), removes the offending key from the tree, marks the key
//!    "poisoned" (so the typed pass does not also call it missing) and tries again, until the
//!    element deserializes. serde stays the single source of truth for which keys exist.
//! 3. **Meaning**: the raw structs are compiled into the typed model: values parsed, per-kind
//!    required and inapplicable keys, defaults, files checked, names resolved, and resource
//!    conflicts (names, serial devices, listen addresses, output directories) refused.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU32, NonZeroU64};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use labagent_astm::charset::Charset;
use labagent_astm::record::{FieldPath, RecordType};
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::error::{ConfigError, ConfigErrorKind as K, ConfigErrors};
use super::model::*;
use super::raw::*;
use super::units::{format_duration, parse_duration, parse_size};

type Span = Range<usize>;

/// Compiles `text` (from `origin`, relative paths against `base_dir`) into a [`Config`].
pub(crate) fn compile(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    let mut ctx = Ctx::new(text, origin, base_dir);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let line = e.span().map(|s| ctx.line(s.start));
            let message = e.message().trim().replace('\n', "; ");
            ctx.errors.push(ConfigError {
                origin: origin.to_owned(),
                line,
                key: String::new(),
                kind: K::Syntax,
                message: format!("TOML syntax error: {message}"),
            });
            return Err(ConfigErrors::new(ctx.errors));
        }
    };
    let doc = ctx.read_document(root);
    let config = ctx.compile_document(&doc);
    match config {
        Some(config) if ctx.errors.is_empty() => Ok(config),
        _ => {
            if ctx.errors.is_empty() {
                // Invariant: every `None` above is caused by a recorded error; this guards
                // against a missed one so that a bad config can never pass silently.
                ctx.errors.push(ConfigError {
                    origin: origin.to_owned(),
                    line: None,
                    key: String::new(),
                    kind: K::InvalidValue,
                    message: "invalid configuration".to_owned(),
                });
            }
            Err(ConfigErrors::new(ctx.errors))
        }
    }
}

/// The raw document as read leniently: elements keep their index in the file, so keys such as
/// `source[2]` stay right even when an element could not be read at all.
#[derive(Default)]
struct Document {
    agent: Option<Spanned<RawAgent>>,
    store: Option<Spanned<RawStore>>,
    http: Option<Spanned<RawHttp>>,
    sources: Vec<(usize, Spanned<RawSource>)>,
    mappings: Vec<(String, Spanned<RawMapping>)>,
    sinks: Vec<(usize, Spanned<RawSink>)>,
    /// Every source name written in the file (valid or not), to resolve sink references
    /// without cascading errors.
    source_names: BTreeSet<String>,
    /// Whether a `source` / `sink` key was present (even if malformed).
    has_source_key: bool,
    has_sink_key: bool,
}

struct Ctx {
    origin: String,
    line_starts: Vec<usize>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    poisoned: HashSet<String>,
}

/// One step of a dotted key.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render_path(base: &str, segs: &[Seg]) -> String {
    let mut out = base.to_owned();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&quote_key(k));
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A key as TOML would need it written: bare when possible, quoted otherwise.
fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

fn contains(outer: &Span, inner: &Span) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer != &(0..0)
}

/// The dotted path, below `value`, of the innermost key or element whose span holds `target`.
fn path_of(value: &DeValue<'_>, target: &Span, out: &mut Vec<Seg>) {
    match value {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                if contains(&k.span(), target) {
                    out.push(Seg::Key(k.get_ref().to_string()));
                    return;
                }
                if contains(&v.span(), target) {
                    out.push(Seg::Key(k.get_ref().to_string()));
                    path_of(v.get_ref(), target, out);
                    return;
                }
            }
        }
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                if contains(&v.span(), target) {
                    out.push(Seg::Index(i));
                    path_of(v.get_ref(), target, out);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// The value at `path` below `value`.
fn node_at<'v, 'i>(value: &'v DeValue<'i>, path: &[Seg]) -> Option<&'v DeValue<'i>> {
    let mut cur = value;
    for seg in path {
        cur = match (seg, cur) {
            (Seg::Key(k), DeValue::Table(t)) => t.get(k.as_str())?.get_ref(),
            (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?.get_ref(),
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the table entry named by the key prefix of `path` (up to the first array index):
/// the smallest part of the tree that takes the error with it. Returns whether anything was
/// removed.
fn remove_at(value: &mut DeValue<'_>, path: &[Seg]) -> bool {
    let keys: Vec<&str> = path
        .iter()
        .map_while(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
        .collect();
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut cur = value;
    for k in parents {
        match cur {
            DeValue::Table(t) => match t.get_mut(*k) {
                Some(v) => cur = v.get_mut(),
                None => return false,
            },
            _ => return false,
        }
    }
    match cur {
        DeValue::Table(t) => t.remove(*last).is_some(),
        _ => false,
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known name within edit distance 2 of `input` (closest first), if any.
fn suggest<'a>(input: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(input, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(input.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The names between backticks in a serde message, after its first `expected`.
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// Turns a serde/toml message into ours: `expected X, found Y` with TOML words.
fn friendly(message: &str) -> (K, String) {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let known = backticked(tail);
        let text = match suggest(name, known.iter().copied()) {
            Some(s) => format!("unknown key `{name}`; did you mean `{s}`?"),
            None if known.is_empty() => format!("unknown key `{name}`"),
            None => format!("unknown key `{name}` (known keys: {})", known.join(", ")),
        };
        return (K::UnknownKey, text);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let known = backticked(tail);
        let list = known
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text = match suggest(name, known.iter().copied()) {
            Some(s) => {
                format!("unknown value \"{name}\": expected one of {list}; did you mean \"{s}\"?")
            }
            None => format!("unknown value \"{name}\": expected one of {list}"),
        };
        return (K::InvalidValue, text);
    }
    for (prefix, kind) in [
        ("invalid type: ", K::WrongType),
        ("invalid value: ", K::InvalidValue),
    ] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            return (
                kind,
                format!(
                    "expected {}, found {}",
                    friendly_expected(expected),
                    friendly_found(found)
                ),
            );
        }
    }
    (K::InvalidValue, message.to_owned())
}

fn friendly_expected(e: &str) -> String {
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i64" | "i32" => "a positive integer".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        other => other.to_owned(),
    }
}

fn friendly_found(f: &str) -> String {
    if let Some(s) = f.strip_prefix("string ") {
        return s.to_owned();
    }
    for prefix in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = f.strip_prefix(prefix) {
            return v.trim_matches('`').to_owned();
        }
    }
    match f {
        "map" => "a table".to_owned(),
        "sequence" => "an array".to_owned(),
        other => other.to_owned(),
    }
}

/// Which kinds a source key applies to.
const SOURCE_KEYS_BY_KIND: &[(&str, &[RawSourceKind])] = {
    use RawSourceKind::*;
    &[
        ("device", &[AstmSerial]),
        ("baud", &[AstmSerial]),
        ("data_bits", &[AstmSerial]),
        ("parity", &[AstmSerial]),
        ("stop_bits", &[AstmSerial]),
        ("flow_control", &[AstmSerial]),
        ("listen", &[AstmTcp, Mllp]),
        ("connect", &[AstmTcp]),
        ("tls", &[AstmTcp, Mllp]),
        ("allow", &[AstmTcp, Mllp]),
        ("max_connections", &[AstmTcp, Mllp]),
        ("receive_timeout", &[AstmSerial, AstmTcp]),
        ("max_frame_len", &[AstmSerial, AstmTcp]),
        ("idle_timeout", &[AstmTcp, Mllp]),
    ]
};

/// Which kinds a sink key applies to.
const SINK_KEYS_BY_KIND: &[(&str, &[RawSinkKind])] = {
    use RawSinkKind::*;
    &[
        ("connect", &[Mllp]),
        ("tls", &[Mllp, Mqtt]),
        ("ack_timeout", &[Mllp, Mqtt]),
        ("connect_timeout", &[Mllp, Mqtt]),
        ("max_backoff", &[Mllp, Mqtt]),
        ("broker", &[Mqtt]),
        ("topic", &[Mqtt]),
        ("client_id", &[Mqtt]),
        ("username", &[Mqtt]),
        ("password_file", &[Mqtt]),
        ("keep_alive", &[Mqtt]),
        ("dir", &[File]),
    ]
};

/// A component kind as written in the file, for messages.
trait KindName: Copy + PartialEq {
    /// `source` or `sink`.
    const WHAT: &'static str;
    fn name(self) -> &'static str;
}

impl KindName for RawSourceKind {
    const WHAT: &'static str = "source";
    fn name(self) -> &'static str {
        match self {
            RawSourceKind::AstmSerial => "astm-serial",
            RawSourceKind::AstmTcp => "astm-tcp",
            RawSourceKind::Mllp => "mllp",
        }
    }
}

impl KindName for RawSinkKind {
    const WHAT: &'static str = "sink";
    fn name(self) -> &'static str {
        match self {
            RawSinkKind::Mllp => "mllp",
            RawSinkKind::Mqtt => "mqtt",
            RawSinkKind::File => "file",
        }
    }
}

fn kinds_list(names: &[&str]) -> String {
    match names {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
        [] => String::new(),
    }
}

/// A listen address claimed by a source or the HTTP server, for conflict checks.
struct Claim {
    addr: SocketAddr,
    line: usize,
    key: String,
    owner: String,
}

fn addrs_overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    match (a.ip(), b.ip()) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        (IpAddr::V6(x), IpAddr::V6(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        // Linux binds `[::]` dual-stack by default, so it also takes the IPv4 port.
        (IpAddr::V6(x), IpAddr::V4(_)) | (IpAddr::V4(_), IpAddr::V6(x)) => x.is_unspecified(),
    }
}

/// Area names of the IANA tz database (plus `Etc`), for a light shape check.
const TZ_AREAS: &[&str] = &[
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
    "Etc",
];

fn check_timezone(s: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{s:?} is not an IANA time zone name: expected \"UTC\" or Area/Location such as \"Europe/London\""
        )
    };
    if s == "UTC" {
        return Ok(());
    }
    let parts: Vec<&str> = s.split('/').collect();
    let [area, rest @ ..] = parts.as_slice() else {
        return Err(bad());
    };
    if rest.is_empty() || !TZ_AREAS.contains(area) {
        return Err(bad());
    }
    let part_ok = |p: &&str| {
        p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    };
    if rest.iter().all(part_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn valid_component_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_host(h: &str) -> bool {
    if h.parse::<IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
        })
}

/// Splits `host:port` / `[v6]:port`.
fn parse_host_port(s: &str) -> Result<HostPort, String> {
    let example = "expected HOST:PORT such as \"ehr.clinic.local:2575\" or \"10.0.0.7:5200\"";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else {
            return Err(format!("{s:?} is not a host and port: {example}"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{s:?}: {h:?} is not an IPv6 address"));
        }
        (h, p)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p),
            _ => return Err(format!("{s:?} has no port: {example}")),
        }
    };
    if !valid_host(host) {
        return Err(format!("{s:?}: {host:?} is not a host name or IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(HostPort {
            host: host.to_owned(),
            port: p,
        }),
        _ => Err(format!(
            "{s:?}: port {port:?} is not a number from 1 to 65535"
        )),
    }
}

fn parse_broker(s: &str) -> Result<MqttBroker, String> {
    let (tls, rest) = if let Some(r) = s.strip_prefix("mqtts://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("mqtt://") {
        (false, r)
    } else {
        return Err(format!(
            "{s:?} is not a broker URL: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        ));
    };
    if rest.contains('@') {
        return Err(
            "credentials do not belong in the broker URL: use `username` and `password_file`"
                .to_owned(),
        );
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(format!("{s:?}: a broker URL has no path or query"));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let has_port = if rest.starts_with('[') {
        rest.contains("]:")
    } else {
        rest.contains(':')
    };
    let hp = if has_port {
        parse_host_port(rest)?
    } else {
        let host = rest.trim_start_matches('[').trim_end_matches(']');
        if !valid_host(host) {
            return Err(format!("{s:?}: {host:?} is not a host name or IP address"));
        }
        HostPort {
            host: host.to_owned(),
            port: default_port,
        }
    };
    Ok(MqttBroker {
        tls,
        host: hp.host,
        port: hp.port,
    })
}

/// Checks `{placeholder}`s against `allowed`, and MQTT wildcards.
fn check_template(s: &str, allowed: &[&str], what: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("empty {what}"));
    }
    if what == "topic" && (s.contains('+') || s.contains('#')) {
        return Err(format!(
            "{s:?}: `+` and `#` are subscription wildcards, not allowed when publishing"
        ));
    }
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!("{s:?}: unclosed `{{`"));
        };
        let name = &after[..close];
        if !allowed.contains(&name) {
            let hint = allowed
                .iter()
                .map(|a| format!("{{{a}}}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "{s:?}: unknown placeholder {{{name}}} (available: {hint})"
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("{s:?}: `}}` without `{{`"));
    }
    Ok(())
}

fn check_hl7_text(s: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| matches!(c, '|' | '~' | '\\' | '&')) {
        return Err(format!(
            "{s:?} contains `{c}`, an HL7 delimiter, which cannot appear in an MSH field"
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    Ok(())
}

/// At least one PEM certificate, and nothing unreadable.
fn check_pem_certs(path: &Path) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut count = 0;
    for cert in iter {
        cert.map_err(|e| format!("{shown}: bad PEM certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(())
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
fn check_pem_key(path: &Path) -> Result<(), String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path)
        .map(drop)
        .map_err(|e| format!("{} holds no usable PEM private key: {e}", path.display()))
}

/// Whether `path` is a readable regular file; the error says what is wrong, with the path.
fn check_readable(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("file not found: {shown}"));
        }
        Err(e) => return Err(format!("cannot access {shown}: {e}")),
        Ok(m) if m.is_dir() => return Err(format!("{shown} is a directory, not a file")),
        Ok(_) => {}
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

impl Ctx {
    fn new(text: &str, origin: &str, base_dir: &Path) -> Ctx {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Ctx {
            origin: origin.to_owned(),
            line_starts,
            base_dir: base_dir.to_owned(),
            errors: Vec::new(),
            poisoned: HashSet::new(),
        }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset)
    }

    fn err(&mut self, span: &Span, key: impl Into<String>, kind: K, message: impl Into<String>) {
        let line = Some(self.line(span.start));
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            line,
            key: key.into(),
            kind,
            message: message.into(),
        });
    }

    fn err_file_wide(&mut self, key: &str, kind: K, message: impl Into<String>) {
        self.errors.push(ConfigError {
            origin: self.origin.clone(),
            line: None,
            key: key.to_owned(),
            kind,
            message: message.into(),
        });
    }

    // ---- pass 2: lenient structure -------------------------------------------------------

    fn read_document(&mut self, root: Spanned<DeTable<'_>>) -> Document {
        let mut doc = Document::default();
        for (key, value) in root.get_ref().iter() {
            let name = key.get_ref().as_ref();
            match name {
                "agent" => doc.agent = self.lenient(value.clone(), "agent"),
                "store" => doc.store = self.lenient(value.clone(), "store"),
                "http" => doc.http = self.lenient(value.clone(), "http"),
                "source" | "sink" => {
                    let is_source = name == "source";
                    if is_source {
                        doc.has_source_key = true;
                    } else {
                        doc.has_sink_key = true;
                    }
                    let DeValue::Array(items) = value.get_ref() else {
                        self.err(
                            &value.span(),
                            name,
                            K::WrongType,
                            format!(
                                "expected an array of tables (write [[{name}]]), found {}",
                                type_name(value.get_ref())
                            ),
                        );
                        continue;
                    };
                    for (i, item) in items.iter().enumerate() {
                        let base = format!("{name}[{i}]");
                        if is_source {
                            if let DeValue::Table(t) = item.get_ref()
                                && let Some(n) = t.get("name")
                                && let DeValue::String(n) = n.get_ref()
                            {
                                doc.source_names.insert(n.to_string());
                            }
                            if let Some(s) = self.lenient(item.clone(), &base) {
                                doc.sources.push((i, s));
                            }
                        } else if let Some(s) = self.lenient(item.clone(), &base) {
                            doc.sinks.push((i, s));
                        }
                    }
                }
                "mapping" => {
                    let DeValue::Table(t) = value.get_ref() else {
                        self.err(
                            &value.span(),
                            "mapping",
                            K::WrongType,
                            format!(
                                "expected a table of [mapping.NAME] tables, found {}",
                                type_name(value.get_ref())
                            ),
                        );
                        continue;
                    };
                    for (mname, mvalue) in t.iter() {
                        let mname = mname.get_ref().to_string();
                        let base = render_path("mapping", &[Seg::Key(mname.clone())]);
                        if let Some(m) = self.lenient(mvalue.clone(), &base) {
                            doc.mappings.push((mname, m));
                        }
                    }
                }
                other => {
                    let message = match suggest(other, TOP_LEVEL_KEYS.iter().copied()) {
                        Some(s) => format!("unknown section `{other}`; did you mean `{s}`?"),
                        None => format!(
                            "unknown section `{other}` (known: {})",
                            TOP_LEVEL_KEYS.join(", ")
                        ),
                    };
                    self.err(&key.span(), quote_key(other), K::UnknownKey, message);
                }
            }
        }
        doc
    }

    /// Deserializes `value` into `T`, reporting and removing one bad key per serde error
    /// until it succeeds (see the module doc).
    fn lenient<T: DeserializeOwned>(
        &mut self,
        mut value: Spanned<DeValue<'_>>,
        base: &str,
    ) -> Option<Spanned<T>> {
        let span = value.span();
        // Each round removes one key, so the loop ends; the bound is belt and braces.
        for _ in 0..1024 {
            let attempt = T::deserialize(ValueDeserializer::from(value.clone()));
            let e = match attempt {
                Ok(t) => return Some(Spanned::new(span, t)),
                Err(e) => e,
            };
            let (kind, mut message) = friendly(e.message());
            let espan = e.span().unwrap_or_else(|| span.clone());
            let mut path = Vec::new();
            path_of(value.get_ref(), &espan, &mut path);
            let key = render_path(base, &path);
            // serde sees a TOML datetime as a table; say what the user actually wrote.
            if kind == K::WrongType
                && let Some(DeValue::Datetime(dt)) = node_at(value.get_ref(), &path)
                && let Some((expected, _)) = message.rsplit_once(", found ")
            {
                message = format!("{expected}, found a date/time ({dt}); quote it if it is text");
            }
            self.err(&espan, key.clone(), kind, message);
            let removable: Vec<Seg> = path
                .iter()
                .take_while(|s| matches!(s, Seg::Key(_)))
                .cloned()
                .collect();
            self.poisoned.insert(render_path(base, &removable));
            if !remove_at(value.get_mut(), &path) {
                return None;
            }
        }
        None
    }

    // ---- pass 3: meaning -----------------------------------------------------------------

    fn compile_document(&mut self, doc: &Document) -> Option<Config> {
        let agent = self.compile_agent(doc.agent.as_ref());
        let store = self.compile_store(doc.store.as_ref());
        let http = self.compile_http(doc.http.as_ref());
        let mappings = self.compile_mappings(&doc.mappings);

        let mut claims: Vec<Claim> = Vec::new();
        if let Some(http) = &http
            && let Some(raw) = doc.http.as_ref().and_then(|h| h.get_ref().listen.as_ref())
        {
            claims.push(Claim {
                addr: http.listen,
                line: self.line(raw.span().start),
                key: "http.listen".into(),
                owner: "[http] listen".into(),
            });
        }

        if doc.sources.is_empty() && !doc.has_source_key {
            self.err_file_wide(
                "source",
                K::Missing,
                "no [[source]] defined: the agent would have nothing to read",
            );
        }
        if doc.sinks.is_empty() && !doc.has_sink_key {
            self.err_file_wide(
                "sink",
                K::Missing,
                "no [[sink]] defined: results would never leave the store",
            );
        }

        let mut sources = Vec::new();
        let mut all_ok = true;
        let mut seen_names: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen_devices: BTreeMap<PathBuf, (usize, String)> = BTreeMap::new();
        for (i, raw) in &doc.sources {
            let base = format!("source[{i}]");
            let compiled = self.compile_source(raw, &base, &mappings);
            // Conflicts are checked on what could be read, even if the source has other errors.
            if let Some(name) = &raw.get_ref().name {
                let line = self.line(name.span().start);
                if let Some(first) = seen_names.get(name.get_ref()) {
                    self.err(
                        &name.span(),
                        format!("{base}.name"),
                        K::Conflict,
                        format!(
                            "duplicate source name {:?} (first defined on line {first})",
                            name.get_ref()
                        ),
                    );
                } else {
                    seen_names.insert(name.get_ref().clone(), line);
                }
            }
            let owner = raw
                .get_ref()
                .name
                .as_ref()
                .map(|n| format!("source {:?}", n.get_ref()))
                .unwrap_or_else(|| base.clone());
            if let Some(dev) = &raw.get_ref().device
                && !dev.get_ref().is_empty()
                && matches!(
                    raw.get_ref().kind.as_ref().map(|k| *k.get_ref()),
                    Some(RawSourceKind::AstmSerial)
                )
            {
                let path = self.resolve(dev.get_ref());
                if let Some((line, first)) = seen_devices.get(&path) {
                    self.err(
                        &dev.span(),
                        format!("{base}.device"),
                        K::Conflict,
                        format!(
                            "serial device {} is already used by {first} (line {line})",
                            path.display()
                        ),
                    );
                } else {
                    let line = self.line(dev.span().start);
                    seen_devices.insert(path, (line, owner.clone()));
                }
            }
            if let Some(listen) = &raw.get_ref().listen
                && let Ok(addr) = listen.get_ref().trim().parse::<SocketAddr>()
                && raw.get_ref().kind.is_some()
            {
                let line = self.line(listen.span().start);
                let key = format!("{base}.listen");
                if let Some(other) = claims.iter().find(|c| addrs_overlap(&c.addr, &addr)) {
                    let message = format!(
                        "listen address {addr} is already used by {} ({}:{} {})",
                        other.owner, self.origin, other.line, other.key
                    );
                    self.err(&listen.span(), key, K::Conflict, message);
                } else {
                    claims.push(Claim {
                        addr,
                        line,
                        key,
                        owner,
                    });
                }
            }
            match compiled {
                Some(s) => sources.push(s),
                None => all_ok = false,
            }
        }

        let mut sinks = Vec::new();
        let mut seen_sinks: BTreeMap<String, usize> = BTreeMap::new();
        let mut seen_dirs: BTreeMap<PathBuf, (usize, String)> = BTreeMap::new();
        let all_sources: Vec<SourceName> = sources.iter().map(|s| s.name.clone()).collect();
        for (i, raw) in &doc.sinks {
            let base = format!("sink[{i}]");
            let compiled = self.compile_sink(raw, &base, &doc.source_names, &all_sources);
            if let Some(name) = &raw.get_ref().name {
                let line = self.line(name.span().start);
                if let Some(first) = seen_sinks.get(name.get_ref()) {
                    self.err(
                        &name.span(),
                        format!("{base}.name"),
                        K::Conflict,
                        format!(
                            "duplicate sink name {:?} (first defined on line {first})",
                            name.get_ref()
                        ),
                    );
                } else {
                    seen_sinks.insert(name.get_ref().clone(), line);
                }
            }
            if let Some(dir) = &raw.get_ref().dir
                && !dir.get_ref().is_empty()
            {
                let path = self.resolve(dir.get_ref());
                let owner = raw
                    .get_ref()
                    .name
                    .as_ref()
                    .map(|n| format!("sink {:?}", n.get_ref()))
                    .unwrap_or_else(|| base.clone());
                if let Some((line, first)) = seen_dirs.get(&path) {
                    self.err(
                        &dir.span(),
                        format!("{base}.dir"),
                        K::Conflict,
                        format!(
                            "directory {} is already written by {first} (line {line})",
                            path.display()
                        ),
                    );
                } else {
                    let line = self.line(dir.span().start);
                    seen_dirs.insert(path, (line, owner));
                }
            }
            match compiled {
                Some(s) => sinks.push(s),
                None => all_ok = false,
            }
        }

        if !all_ok || !self.errors.is_empty() {
            return None;
        }
        Some(Config {
            origin: self.origin.clone(),
            agent: agent?,
            store: store?,
            http: http?,
            sources,
            sinks,
        })
    }

    /// A path from the file, resolved against the config's directory; `.` parts dropped.
    fn resolve(&self, s: &str) -> PathBuf {
        let p = Path::new(s);
        let joined = if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        };
        joined
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    }

    fn path_value(&mut self, v: &Spanned<String>, key: &str) -> Option<PathBuf> {
        if v.get_ref().trim().is_empty() {
            self.err(&v.span(), key, K::InvalidValue, "empty path");
            return None;
        }
        Some(self.resolve(v.get_ref()))
    }

    /// A path that must name a readable file now (TLS material, token, password). TLS
    /// certificates and keys are parsed too, so `check-config` refuses what `run` would.
    fn file_value(&mut self, v: &Spanned<String>, key: &str) -> Option<PathBuf> {
        let path = self.path_value(v, key)?;
        let pem = if key.ends_with(".key") {
            check_pem_key
        } else if [".cert", ".ca", ".client_ca"]
            .iter()
            .any(|s| key.ends_with(s))
        {
            check_pem_certs
        } else {
            |_: &Path| Ok(())
        };
        match check_readable(&path).and_then(|()| pem(&path)) {
            Ok(()) => Some(path),
            Err(message) => {
                self.err(&v.span(), key, K::File, message);
                None
            }
        }
    }

    fn missing(&mut self, span: &Span, key: &str, message: impl Into<String>) {
        if !self.poisoned.contains(key) {
            self.err(span, key, K::Missing, message);
        }
    }

    fn duration(
        &mut self,
        v: Option<&Spanned<RawDuration>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        let Some(v) = v else { return Some(default) };
        match v.get_ref() {
            RawDuration::Number(n) => {
                self.err(
                    &v.span(),
                    key,
                    K::InvalidValue,
                    format!("a duration needs a unit: write e.g. \"{n}s\" or \"{n}ms\""),
                );
                None
            }
            RawDuration::Text(t) => match parse_duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(&v.span(), key, K::InvalidValue, e.to_string());
                    None
                }
            },
        }
    }

    fn positive_duration(
        &mut self,
        v: Option<&Spanned<RawDuration>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        let d = self.duration(v, key, default)?;
        if d.is_zero() {
            if let Some(v) = v {
                self.err(&v.span(), key, K::InvalidValue, "must be longer than 0s");
            }
            return None;
        }
        Some(d)
    }

    fn size(
        &mut self,
        v: Option<&Spanned<RawSize>>,
        key: &str,
        default: u64,
        min: u64,
    ) -> Option<NonZeroU64> {
        let bytes = match v.map(|v| (v.get_ref(), v.span())) {
            None => default,
            Some((RawSize::Bytes(n), span)) => match u64::try_from(*n) {
                Ok(n) => n,
                Err(_) => {
                    self.err(
                        &span,
                        key,
                        K::InvalidValue,
                        format!("a size cannot be negative, found {n}"),
                    );
                    return None;
                }
            },
            Some((RawSize::Text(t), span)) => match parse_size(t) {
                Ok(n) => n,
                Err(e) => {
                    self.err(&span, key, K::InvalidValue, e.to_string());
                    return None;
                }
            },
        };
        if bytes < min {
            if let Some(v) = v {
                self.err(
                    &v.span(),
                    key,
                    K::InvalidValue,
                    format!(
                        "{bytes} bytes is too small: at least {}",
                        super::units::format_size(min)
                    ),
                );
            }
            return None;
        }
        NonZeroU64::new(bytes)
    }

    fn socket_addr(&mut self, v: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match v.get_ref().trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if v.get_ref().contains(':') && !v.get_ref().starts_with('[') {
                    " (listen addresses are IP literals, not host names; IPv6 as \"[::1]:2575\")"
                } else {
                    ""
                };
                self.err(
                    &v.span(),
                    key,
                    K::InvalidValue,
                    format!(
                        "{:?} is not a socket address: expected IP:PORT such as \"0.0.0.0:5200\"{hint}",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn compile_agent(&mut self, raw: Option<&Spanned<RawAgent>>) -> Option<AgentConfig> {
        let Some(raw) = raw else {
            if !self.poisoned.contains("agent") {
                self.err_file_wide(
                    "agent",
                    K::Missing,
                    "missing [agent] section (it needs at least state_dir)",
                );
            }
            return None;
        };
        let span = raw.span();
        let raw = raw.get_ref();
        let id = match &raw.id {
            None => Some(AgentId::new_unchecked("labagent")),
            Some(v) => {
                let s = v.get_ref();
                let ok = (1..=10).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if ok {
                    Some(AgentId::new_unchecked(s.as_str()))
                } else {
                    self.err(
                        &v.span(),
                        "agent.id",
                        K::InvalidValue,
                        format!("{s:?} cannot prefix MSH-10: use 1 to 10 characters from A-Z a-z 0-9 - _"),
                    );
                    None
                }
            }
        };
        let state_dir = match &raw.state_dir {
            Some(v) => self.path_value(v, "agent.state_dir"),
            None => {
                self.missing(
                    &span,
                    "agent.state_dir",
                    "missing: [agent] needs state_dir (store, cursors, parked messages)",
                );
                None
            }
        };
        let timezone = match &raw.timezone {
            None => Some(TimeZoneName::new_unchecked("UTC")),
            Some(v) => match check_timezone(v.get_ref()) {
                Ok(()) => Some(TimeZoneName::new_unchecked(v.get_ref().as_str())),
                Err(m) => {
                    self.err(&v.span(), "agent.timezone", K::InvalidValue, m);
                    None
                }
            },
        };
        Some(AgentConfig {
            id: id?,
            state_dir: state_dir?,
            timezone: timezone?,
        })
    }

    fn compile_store(&mut self, raw: Option<&Spanned<RawStore>>) -> Option<StoreConfig> {
        let max = raw.and_then(|r| r.get_ref().max_bytes.as_ref());
        let max_bytes = self.size(max, "store.max_bytes", 1 << 30, 1 << 20)?;
        Some(StoreConfig {
            max_bytes,
            sync: SyncPolicy::Always,
        })
    }

    fn compile_http(&mut self, raw: Option<&Spanned<RawHttp>>) -> Option<HttpConfig> {
        let default_listen = SocketAddr::from(([127, 0, 0, 1], 9898));
        let Some(raw) = raw else {
            return Some(HttpConfig {
                listen: default_listen,
                token_file: None,
            });
        };
        let raw = raw.get_ref();
        let listen = match &raw.listen {
            None => Some(default_listen),
            Some(v) => self.socket_addr(v, "http.listen"),
        };
        let token_file = match &raw.token_file {
            None => Some(None),
            Some(v) => self
                .file_value(v, "http.token_file")
                .map(|p| Some(SecretPath::new(p))),
        };
        if let (Some(addr), Some(None)) = (listen, &token_file)
            && !addr.ip().is_loopback()
            && !self.poisoned.contains("http.token_file")
        {
            let span = raw.listen.as_ref().map(|v| v.span()).unwrap_or(0..0);
            self.err(
                &span,
                "http.listen",
                K::InvalidValue,
                format!("{addr} is not a loopback address: set [http] token_file so that requests need a bearer token"),
            );
            return None;
        }
        Some(HttpConfig {
            listen: listen?,
            token_file: token_file?,
        })
    }

    fn compile_mappings(
        &mut self,
        raws: &[(String, Spanned<RawMapping>)],
    ) -> BTreeMap<String, Option<MappingTemplate>> {
        let mut out = BTreeMap::new();
        for (name, raw) in raws {
            let base = render_path("mapping", &[Seg::Key(name.clone())]);
            let t = self.compile_mapping(raw.get_ref(), &base);
            out.insert(name.clone(), t);
        }
        out
    }

    fn hl7_field(&mut self, v: Option<&Spanned<String>>, key: &str) -> Option<Option<String>> {
        let Some(v) = v else { return Some(None) };
        match check_hl7_text(v.get_ref()) {
            Ok(()) => Some(Some(v.get_ref().clone())),
            Err(m) => {
                self.err(&v.span(), key, K::InvalidValue, m);
                None
            }
        }
    }

    fn selectors(
        &mut self,
        v: Option<&Spanned<RawSelectors>>,
        key: &str,
        records: &[RecordType],
        default: Vec<FieldPath>,
    ) -> Option<Vec<FieldPath>> {
        let Some(v) = v else { return Some(default) };
        let items: Vec<(String, Span, String)> = match v.get_ref() {
            RawSelectors::One(s) => vec![(s.clone(), v.span(), key.to_owned())],
            RawSelectors::Many(list) => list
                .iter()
                .enumerate()
                .map(|(i, s)| (s.get_ref().clone(), s.span(), format!("{key}[{i}]")))
                .collect(),
        };
        if items.is_empty() {
            self.err(
                &v.span(),
                key,
                K::InvalidValue,
                "empty list: give at least one field path, or omit the key for the default",
            );
            return None;
        }
        let letters: Vec<String> = records.iter().map(ToString::to_string).collect();
        let mut out = Vec::new();
        let mut ok = true;
        for (s, span, k) in items {
            match FieldPath::from_str(&s) {
                Ok(p) if records.contains(&p.record()) => out.push(p),
                Ok(p) => {
                    ok = false;
                    self.err(
                        &span,
                        k,
                        K::InvalidValue,
                        format!(
                            "{p} is in the {} record; expected a field of the {} record",
                            p.record(),
                            letters.join(" or ")
                        ),
                    );
                }
                Err(e) => {
                    ok = false;
                    self.err(&span, k, K::InvalidValue, e.to_string());
                }
            }
        }
        ok.then_some(out)
    }

    fn compile_mapping(&mut self, raw: &RawMapping, base: &str) -> Option<MappingTemplate> {
        let sending_application = self.hl7_field(
            raw.sending_application.as_ref(),
            &format!("{base}.sending_application"),
        );
        let sending_facility = self.hl7_field(
            raw.sending_facility.as_ref(),
            &format!("{base}.sending_facility"),
        );
        let receiving_application = self.hl7_field(
            raw.receiving_application.as_ref(),
            &format!("{base}.receiving_application"),
        );
        let receiving_facility = self.hl7_field(
            raw.receiving_facility.as_ref(),
            &format!("{base}.receiving_facility"),
        );
        let specimen_id = self.selectors(
            raw.specimen_id.as_ref(),
            &format!("{base}.specimen_id"),
            &[RecordType::Order, RecordType::Patient],
            default_specimen_id(),
        );
        let test_code = self.selectors(
            raw.test_code.as_ref(),
            &format!("{base}.test_code"),
            &[RecordType::Result],
            default_test_code(),
        );
        let specimen_type = self.specimen_type(raw.specimen_type.as_ref(), base);
        let mut tests = Some(BTreeMap::new());
        if let Some(raw_tests) = &raw.tests {
            for (local, entry) in raw_tests.get_ref() {
                let key = render_path(base, &[Seg::Key("tests".into()), Seg::Key(local.clone())]);
                let e = entry.get_ref();
                let code = match &e.code {
                    Some(c) if !c.get_ref().trim().is_empty() => Some(c.get_ref().clone()),
                    Some(c) => {
                        self.err(
                            &c.span(),
                            format!("{key}.code"),
                            K::InvalidValue,
                            "empty code",
                        );
                        None
                    }
                    None => {
                        self.missing(
                            &entry.span(),
                            &format!("{key}.code"),
                            "missing: each test needs a code (OBX-3.1)",
                        );
                        None
                    }
                };
                if local.trim().is_empty() {
                    self.err(
                        &entry.span(),
                        key.clone(),
                        K::InvalidValue,
                        "empty local test code",
                    );
                    tests = None;
                }
                let mut units = BTreeMap::new();
                for (sent, ucum) in e
                    .units
                    .as_ref()
                    .map(|u| u.get_ref().iter())
                    .into_iter()
                    .flatten()
                {
                    let at = render_path(&key, &[Seg::Key("units".into()), Seg::Key(sent.clone())]);
                    let problem = if sent.trim().is_empty() {
                        Some("empty: name what the analyser sends in R.5".to_string())
                    } else if sent.chars().any(|c| "|^&~\\".contains(c)) {
                        Some(format!(
                            "{sent:?}: R.5's first component is matched, so a key never holds an ASTM or HL7 delimiter"
                        ))
                    } else if let Some(c) = ucum
                        .get_ref()
                        .chars()
                        .find(|c| !c.is_ascii_graphic() || "|^&~\\".contains(*c))
                    {
                        Some(format!(
                            "{c:?} in {:?}: a UCUM unit is printable ASCII without spaces or HL7 delimiters (write \"10*3/uL\", \"g/dL\", \"%\", \"umol/L\")",
                            ucum.get_ref()
                        ))
                    } else if ucum.get_ref().is_empty() {
                        Some("empty UCUM unit".to_string())
                    } else {
                        None
                    };
                    match problem {
                        Some(p) => {
                            self.err(&ucum.span(), at, K::InvalidValue, &p);
                            tests = None;
                        }
                        None => {
                            if units
                                .insert(sent.trim().to_string(), ucum.get_ref().clone())
                                .is_some()
                            {
                                self.err(
                                    &ucum.span(),
                                    at,
                                    K::InvalidValue,
                                    "listed twice (keys are compared without surrounding spaces)",
                                );
                                tests = None;
                            }
                        }
                    }
                }
                match (code, tests.as_mut()) {
                    (Some(code), Some(map)) => {
                        map.insert(
                            local.clone(),
                            TestCode {
                                code,
                                text: e
                                    .text
                                    .as_ref()
                                    .map(|t| t.get_ref().clone())
                                    .unwrap_or_default(),
                                system: e
                                    .system
                                    .as_ref()
                                    .map(|t| t.get_ref().clone())
                                    .unwrap_or_else(|| "LN".to_owned()),
                                units,
                            },
                        );
                    }
                    _ => tests = None,
                }
            }
        }
        Some(MappingTemplate {
            sending_application: sending_application?,
            sending_facility: sending_facility?,
            receiving_application: receiving_application?,
            receiving_facility: receiving_facility?,
            specimen_id: specimen_id?,
            test_code: test_code?,
            tests: tests?,
            specimen_type: specimen_type?,
        })
    }

    /// `specimen_type`: an HL7 table 0487 code (1-10 upper-case letters or digits).
    fn specimen_type(
        &mut self,
        v: Option<&Spanned<String>>,
        base: &str,
    ) -> Option<(String, String)> {
        let Some(v) = v else {
            return Some(default_specimen_type());
        };
        let code = v.get_ref().trim();
        let ok = (1..=10).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            self.err(
                &v.span(),
                format!("{base}.specimen_type"),
                K::InvalidValue,
                format!(
                    "{code:?} is not an HL7 table 0487 code (1-10 upper-case letters or digits, e.g. \"SER\", \"BLD\", \"UR\")"
                ),
            );
            return None;
        }
        let text = SPECIMEN_TYPES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("", |(_, t)| *t);
        Some((code.to_owned(), text.to_owned()))
    }

    fn check_applicable<Kd: KindName>(
        &mut self,
        present: &[(&str, Option<Span>)],
        table: &[(&str, &[Kd])],
        kind: Kd,
        base: &str,
    ) -> bool {
        let kind_name = kind.name();
        let what = Kd::WHAT;
        let mut ok = true;
        for (key, span) in present {
            let Some(span) = span else { continue };
            let Some((_, kinds)) = table.iter().find(|(k, _)| k == key) else {
                continue;
            };
            if !kinds.contains(&kind) {
                ok = false;
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                self.err(
                    span,
                    format!("{base}.{key}"),
                    K::NotApplicable,
                    format!(
                        "`{key}` applies only to {} {what}s (this one is {kind_name})",
                        kinds_list(&names)
                    ),
                );
            }
        }
        ok
    }

    fn compile_source(
        &mut self,
        raw: &Spanned<RawSource>,
        base: &str,
        mappings: &BTreeMap<String, Option<MappingTemplate>>,
    ) -> Option<SourceConfig> {
        let span = raw.span();
        let r = raw.get_ref();
        let k = |f: &str| format!("{base}.{f}");

        let name = match &r.name {
            None => {
                self.missing(
                    &span,
                    &k("name"),
                    "missing: every source needs a unique name",
                );
                None
            }
            Some(n) if valid_component_name(n.get_ref()) => {
                Some(SourceName::new_unchecked(n.get_ref().as_str()))
            }
            Some(n) => {
                self.err(
                    &n.span(),
                    k("name"),
                    K::InvalidValue,
                    format!(
                        "{:?} is not a usable name: use 1 to 64 characters from A-Z a-z 0-9 - _ .",
                        n.get_ref()
                    ),
                );
                None
            }
        };
        let kind = match &r.kind {
            None => {
                self.missing(
                    &span,
                    &k("kind"),
                    "missing: kind = \"astm-serial\", \"astm-tcp\" or \"mllp\"",
                );
                None
            }
            Some(v) => Some(*v.get_ref()),
        };
        let encoding = match &r.encoding {
            None => Some(Charset::Latin1),
            Some(v) => match v.get_ref().parse::<Charset>() {
                Ok(c) => Some(c),
                Err(e) => {
                    self.err(&v.span(), k("encoding"), K::InvalidValue, e.to_string());
                    None
                }
            },
        };
        let max_message_bytes = self.size(
            r.max_message_bytes.as_ref(),
            &k("max_message_bytes"),
            1 << 20,
            1024,
        );

        // The mapping reference.
        let mapping_name = r.mapping.as_ref().map(|m| m.get_ref().clone());
        let template = match &r.mapping {
            None => Some(None),
            Some(m) => match mappings.get(m.get_ref()) {
                Some(Some(t)) => Some(Some(t.clone())),
                Some(None) => None, // errors already reported in the mapping table
                None => {
                    let known: Vec<&str> = mappings.keys().map(String::as_str).collect();
                    let message = match suggest(m.get_ref(), known.iter().copied()) {
                        Some(s) => format!(
                            "no [mapping.{}] table; did you mean {s:?}?",
                            quote_key(m.get_ref())
                        ),
                        None if known.is_empty() => format!(
                            "no [mapping.{}] table (the file defines no mappings)",
                            quote_key(m.get_ref())
                        ),
                        None => format!(
                            "no [mapping.{}] table (defined: {})",
                            quote_key(m.get_ref()),
                            known.join(", ")
                        ),
                    };
                    self.err(&m.span(), k("mapping"), K::UnknownReference, message);
                    None
                }
            },
        };

        let kind = kind?;
        let present: Vec<(&str, Option<Span>)> = vec![
            ("device", r.device.as_ref().map(Spanned::span)),
            ("baud", r.baud.as_ref().map(Spanned::span)),
            ("data_bits", r.data_bits.as_ref().map(Spanned::span)),
            ("parity", r.parity.as_ref().map(Spanned::span)),
            ("stop_bits", r.stop_bits.as_ref().map(Spanned::span)),
            ("flow_control", r.flow_control.as_ref().map(Spanned::span)),
            ("listen", r.listen.as_ref().map(Spanned::span)),
            ("connect", r.connect.as_ref().map(Spanned::span)),
            ("tls", r.tls.as_ref().map(Spanned::span)),
            ("allow", r.allow.as_ref().map(Spanned::span)),
            (
                "max_connections",
                r.max_connections.as_ref().map(Spanned::span),
            ),
            (
                "receive_timeout",
                r.receive_timeout.as_ref().map(Spanned::span),
            ),
            ("max_frame_len", r.max_frame_len.as_ref().map(Spanned::span)),
            ("idle_timeout", r.idle_timeout.as_ref().map(Spanned::span)),
        ];
        let applicable = self.check_applicable(&present, SOURCE_KEYS_BY_KIND, kind, base);

        let link = match kind {
            RawSourceKind::AstmSerial | RawSourceKind::AstmTcp => {
                let receive_timeout = self.positive_duration(
                    r.receive_timeout.as_ref(),
                    &k("receive_timeout"),
                    AstmLinkSettings::default().receive_timeout,
                );
                let max_frame_len = self
                    .size(
                        r.max_frame_len.as_ref(),
                        &k("max_frame_len"),
                        64 * 1024,
                        247,
                    )
                    .and_then(|n| {
                        let v = u32::try_from(n.get()).ok().and_then(NonZeroU32::new);
                        if v.is_none()
                            && let Some(raw) = &r.max_frame_len
                        {
                            self.err(
                                &raw.span(),
                                k("max_frame_len"),
                                K::InvalidValue,
                                "too large: at most 4GiB",
                            );
                        }
                        v
                    });
                match (receive_timeout, max_frame_len) {
                    (Some(receive_timeout), Some(max_frame_len)) => Some(AstmLinkSettings {
                        receive_timeout,
                        max_frame_len,
                    }),
                    _ => None,
                }
            }
            RawSourceKind::Mllp => Some(AstmLinkSettings::default()),
        };
        let idle_timeout = match &r.idle_timeout {
            None => Some(None),
            Some(v) => self
                .positive_duration(Some(v), &k("idle_timeout"), Duration::ZERO)
                .map(Some),
        };

        let transport = match kind {
            RawSourceKind::AstmSerial => {
                let device = match &r.device {
                    Some(d) => self.path_value(d, &k("device")),
                    None => {
                        self.missing(
                            &span,
                            &k("device"),
                            "missing: astm-serial sources need device, e.g. \"/dev/ttyUSB0\"",
                        );
                        None
                    }
                };
                let serial = self.serial_settings(r, base);
                match (device, serial, link) {
                    (Some(device), Some(serial), Some(link)) => {
                        Some(SourceTransport::AstmSerial(AstmSerialSource {
                            device,
                            serial,
                            link,
                        }))
                    }
                    _ => None,
                }
            }
            RawSourceKind::AstmTcp => {
                let role = match (&r.listen, &r.connect) {
                    (Some(_), Some(c)) => {
                        self.err(
                            &c.span(),
                            k("connect"),
                            K::InvalidValue,
                            "set either listen (the analyser dials us) or connect (we dial the analyser), not both",
                        );
                        None
                    }
                    (None, None) => {
                        if !self.poisoned.contains(&k("listen"))
                            && !self.poisoned.contains(&k("connect"))
                        {
                            self.err(
                                &span,
                                k("listen"),
                                K::Missing,
                                "missing: astm-tcp sources need listen (the analyser dials us) or connect (we dial the analyser)",
                            );
                        }
                        None
                    }
                    (Some(_), None) => self.listener(r, base).map(TcpRole::Listen),
                    (None, Some(c)) => {
                        for (key, present) in [
                            ("tls", r.tls.as_ref().map(Spanned::span)),
                            ("allow", r.allow.as_ref().map(Spanned::span)),
                            (
                                "max_connections",
                                r.max_connections.as_ref().map(Spanned::span),
                            ),
                        ] {
                            if let Some(s) = present {
                                self.err(
                                    &s,
                                    k(key),
                                    K::NotApplicable,
                                    format!("`{key}` applies only to listening sources (this one uses connect)"),
                                );
                            }
                        }
                        match parse_host_port(c.get_ref().trim()) {
                            Ok(hp) => Some(TcpRole::Connect(hp)),
                            Err(m) => {
                                self.err(&c.span(), k("connect"), K::InvalidValue, m);
                                None
                            }
                        }
                    }
                };
                match (role, link, idle_timeout) {
                    (Some(role), Some(link), Some(idle_timeout)) => {
                        Some(SourceTransport::AstmTcp(AstmTcpSource {
                            role,
                            link,
                            idle_timeout,
                        }))
                    }
                    _ => None,
                }
            }
            RawSourceKind::Mllp => {
                let listener = if r.listen.is_some() {
                    self.listener(r, base)
                } else {
                    self.missing(
                        &span,
                        &k("listen"),
                        "missing: mllp sources need listen, e.g. \"0.0.0.0:2575\"",
                    );
                    None
                };
                match (listener, idle_timeout) {
                    (Some(listener), Some(idle_timeout)) => {
                        Some(SourceTransport::Mllp(MllpSource {
                            listener,
                            idle_timeout,
                        }))
                    }
                    _ => None,
                }
            }
        };

        if !applicable {
            return None;
        }
        let name = name?;
        let mapping = match template? {
            None => Mapping::defaults_for(&name),
            Some(t) => t.resolve_for(&name),
        };
        Some(SourceConfig {
            name,
            transport: transport?,
            encoding: encoding?,
            mapping_name: mapping_name.map(MappingName::new_unchecked),
            mapping,
            max_message_bytes: max_message_bytes?,
        })
    }

    fn serial_settings(&mut self, r: &RawSource, base: &str) -> Option<SerialSettings> {
        let d = SerialSettings::default();
        let baud = match &r.baud {
            None => Some(d.baud),
            Some(b) => NonZeroU32::new(*b.get_ref()).or_else(|| {
                self.err(
                    &b.span(),
                    format!("{base}.baud"),
                    K::InvalidValue,
                    "expected a positive integer, found 0",
                );
                None
            }),
        };
        let data_bits = match r.data_bits.as_ref().map(|v| (*v.get_ref(), v.span())) {
            None => Some(d.data_bits),
            Some((5, _)) => Some(DataBits::Five),
            Some((6, _)) => Some(DataBits::Six),
            Some((7, _)) => Some(DataBits::Seven),
            Some((8, _)) => Some(DataBits::Eight),
            Some((n, span)) => {
                self.err(
                    &span,
                    format!("{base}.data_bits"),
                    K::InvalidValue,
                    format!("expected 5, 6, 7 or 8, found {n}"),
                );
                None
            }
        };
        let stop_bits = match r.stop_bits.as_ref().map(|v| (*v.get_ref(), v.span())) {
            None => Some(d.stop_bits),
            Some((1, _)) => Some(StopBits::One),
            Some((2, _)) => Some(StopBits::Two),
            Some((n, span)) => {
                self.err(
                    &span,
                    format!("{base}.stop_bits"),
                    K::InvalidValue,
                    format!("expected 1 or 2, found {n}"),
                );
                None
            }
        };
        Some(SerialSettings {
            baud: baud?,
            data_bits: data_bits?,
            parity: r.parity.as_ref().map(|p| *p.get_ref()).unwrap_or(d.parity),
            stop_bits: stop_bits?,
            flow_control: r
                .flow_control
                .as_ref()
                .map(|p| *p.get_ref())
                .unwrap_or(d.flow_control),
        })
    }

    fn listener(&mut self, r: &RawSource, base: &str) -> Option<Listener> {
        let addr = r
            .listen
            .as_ref()
            .and_then(|l| self.socket_addr(l, &format!("{base}.listen")));
        let mut allow = Some(Vec::new());
        if let Some(list) = &r.allow {
            if list.get_ref().is_empty() {
                self.err(
                    &list.span(),
                    format!("{base}.allow"),
                    K::InvalidValue,
                    "empty list would refuse every peer: omit allow to accept any peer",
                );
                allow = None;
            }
            for (i, item) in list.get_ref().iter().enumerate() {
                let s = item.get_ref().trim();
                let net = s
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from));
                match (net, allow.as_mut()) {
                    (Some(net), Some(v)) => v.push(net),
                    (Some(_), None) => {}
                    (None, _) => {
                        self.err(
                            &item.span(),
                            format!("{base}.allow[{i}]"),
                            K::InvalidValue,
                            format!(
                                "{s:?} is not an IP address or CIDR network such as \"10.0.0.0/24\""
                            ),
                        );
                        allow = None;
                    }
                }
            }
        }
        let tls = match &r.tls {
            None => Some(None),
            Some(t) => self.server_tls(t, &format!("{base}.tls")).map(Some),
        };
        let max_connections = match &r.max_connections {
            None => NonZeroU32::new(8),
            Some(v) => NonZeroU32::new(*v.get_ref()).or_else(|| {
                self.err(
                    &v.span(),
                    format!("{base}.max_connections"),
                    K::InvalidValue,
                    "expected a positive integer, found 0",
                );
                None
            }),
        };
        Some(Listener {
            addr: addr?,
            allow: allow?,
            tls: tls?,
            max_connections: max_connections?,
        })
    }

    fn server_tls(&mut self, t: &Spanned<RawServerTls>, base: &str) -> Option<ServerTls> {
        let span = t.span();
        let r = t.get_ref();
        let need = |ctx: &mut Self, v: &Option<Spanned<String>>, f: &str| match v {
            Some(v) => ctx.file_value(v, &format!("{base}.{f}")),
            None => {
                ctx.missing(
                    &span,
                    &format!("{base}.{f}"),
                    format!("missing: a TLS listener needs {f} (PEM)"),
                );
                None
            }
        };
        let cert = need(self, &r.cert, "cert");
        let key = need(self, &r.key, "key");
        let client_ca = match &r.client_ca {
            None => Some(None),
            Some(v) => self.file_value(v, &format!("{base}.client_ca")).map(Some),
        };
        Some(ServerTls {
            cert: cert?,
            key: key?,
            client_ca: client_ca?,
        })
    }

    fn client_tls(&mut self, t: &Spanned<RawClientTls>, base: &str) -> Option<ClientTls> {
        let r = t.get_ref();
        let file = |ctx: &mut Self, v: &Option<Spanned<String>>, f: &str| match v {
            None => Some(None),
            Some(v) => ctx.file_value(v, &format!("{base}.{f}")).map(Some),
        };
        let ca = file(self, &r.ca, "ca");
        let cert = file(self, &r.cert, "cert");
        let key = file(self, &r.key, "key");
        let identity = match (&r.cert, &r.key) {
            (Some(_), None) | (None, Some(_)) => {
                let (have, lack) = if r.cert.is_some() {
                    ("cert", "key")
                } else {
                    ("key", "cert")
                };
                if !self.poisoned.contains(&format!("{base}.{lack}")) {
                    self.err(
                        &t.span(),
                        format!("{base}.{lack}"),
                        K::Missing,
                        format!("missing: {have} is set, so {lack} is needed too (client certificate for mTLS)"),
                    );
                }
                None
            }
            _ => match (cert?, key?) {
                (Some(cert), Some(key)) => Some(Some(ClientIdentity { cert, key })),
                _ => Some(None),
            },
        };
        let server_name = match &r.server_name {
            None => Some(None),
            Some(v) if valid_host(v.get_ref()) => Some(Some(v.get_ref().clone())),
            Some(v) => {
                self.err(
                    &v.span(),
                    format!("{base}.server_name"),
                    K::InvalidValue,
                    format!("{:?} is not a DNS name or IP address", v.get_ref()),
                );
                None
            }
        };
        Some(ClientTls {
            ca: ca?,
            identity: identity?,
            server_name: server_name?,
        })
    }

    fn compile_sink(
        &mut self,
        raw: &Spanned<RawSink>,
        base: &str,
        known_sources: &BTreeSet<String>,
        all_sources: &[SourceName],
    ) -> Option<SinkConfig> {
        let span = raw.span();
        let r = raw.get_ref();
        let k = |f: &str| format!("{base}.{f}");
        let name = match &r.name {
            None => {
                self.missing(&span, &k("name"), "missing: every sink needs a unique name");
                None
            }
            Some(n) if valid_component_name(n.get_ref()) => {
                Some(SinkName::new_unchecked(n.get_ref().as_str()))
            }
            Some(n) => {
                self.err(
                    &n.span(),
                    k("name"),
                    K::InvalidValue,
                    format!(
                        "{:?} is not a usable name: use 1 to 64 characters from A-Z a-z 0-9 - _ .",
                        n.get_ref()
                    ),
                );
                None
            }
        };
        let sources = match &r.sources {
            None => Some(all_sources.to_vec()),
            Some(list) => {
                let mut ok = true;
                let mut out = Vec::new();
                if list.get_ref().is_empty() {
                    self.err(
                        &list.span(),
                        k("sources"),
                        K::InvalidValue,
                        "empty list would deliver nothing: omit sources to deliver every source",
                    );
                    ok = false;
                }
                let mut seen = BTreeSet::new();
                for (i, s) in list.get_ref().iter().enumerate() {
                    let n = s.get_ref();
                    if !known_sources.contains(n) {
                        ok = false;
                        let message = match suggest(n, known_sources.iter().map(String::as_str)) {
                            Some(g) => format!("no source named {n:?}; did you mean {g:?}?"),
                            None => format!(
                                "no source named {n:?} (sources: {})",
                                known_sources.iter().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        };
                        self.err(
                            &s.span(),
                            format!("{base}.sources[{i}]"),
                            K::UnknownReference,
                            message,
                        );
                    } else if !seen.insert(n.clone()) {
                        ok = false;
                        self.err(
                            &s.span(),
                            format!("{base}.sources[{i}]"),
                            K::Conflict,
                            format!("source {n:?} is listed twice"),
                        );
                    } else {
                        out.push(SourceName::new_unchecked(n.as_str()));
                    }
                }
                ok.then_some(out)
            }
        };
        let Some(kind) = r.kind.as_ref().map(|k| *k.get_ref()) else {
            self.missing(
                &span,
                &k("kind"),
                "missing: kind = \"mllp\", \"mqtt\" or \"file\"",
            );
            return None;
        };
        let present: Vec<(&str, Option<Span>)> = vec![
            ("connect", r.connect.as_ref().map(Spanned::span)),
            ("tls", r.tls.as_ref().map(Spanned::span)),
            ("ack_timeout", r.ack_timeout.as_ref().map(Spanned::span)),
            (
                "connect_timeout",
                r.connect_timeout.as_ref().map(Spanned::span),
            ),
            ("max_backoff", r.max_backoff.as_ref().map(Spanned::span)),
            ("broker", r.broker.as_ref().map(Spanned::span)),
            ("topic", r.topic.as_ref().map(Spanned::span)),
            ("client_id", r.client_id.as_ref().map(Spanned::span)),
            ("username", r.username.as_ref().map(Spanned::span)),
            ("password_file", r.password_file.as_ref().map(Spanned::span)),
            ("keep_alive", r.keep_alive.as_ref().map(Spanned::span)),
            ("dir", r.dir.as_ref().map(Spanned::span)),
        ];
        let applicable = self.check_applicable(&present, SINK_KEYS_BY_KIND, kind, base);

        let delivery = if matches!(kind, RawSinkKind::File) {
            Some(Delivery::default())
        } else {
            let d = Delivery::default();
            let ack =
                self.positive_duration(r.ack_timeout.as_ref(), &k("ack_timeout"), d.ack_timeout);
            let conn = self.positive_duration(
                r.connect_timeout.as_ref(),
                &k("connect_timeout"),
                d.connect_timeout,
            );
            let back =
                self.positive_duration(r.max_backoff.as_ref(), &k("max_backoff"), d.max_backoff);
            match (ack, conn, back) {
                (Some(ack_timeout), Some(connect_timeout), Some(max_backoff)) => Some(Delivery {
                    ack_timeout,
                    connect_timeout,
                    max_backoff,
                }),
                _ => None,
            }
        };
        let tls = match &r.tls {
            None => Some(None),
            Some(t) => self.client_tls(t, &k("tls")).map(Some),
        };

        let sink_kind = match kind {
            RawSinkKind::Mllp => {
                let connect = match &r.connect {
                    None => {
                        self.missing(
                            &span,
                            &k("connect"),
                            "missing: mllp sinks need connect, e.g. \"ehr.clinic.local:2575\"",
                        );
                        None
                    }
                    Some(c) => match parse_host_port(c.get_ref().trim()) {
                        Ok(hp) => Some(hp),
                        Err(m) => {
                            self.err(&c.span(), k("connect"), K::InvalidValue, m);
                            None
                        }
                    },
                };
                match (connect, tls, delivery) {
                    (Some(connect), Some(tls), Some(delivery)) => Some(SinkKind::Mllp(MllpSink {
                        connect,
                        tls,
                        delivery,
                    })),
                    _ => None,
                }
            }
            RawSinkKind::Mqtt => {
                let broker = match &r.broker {
                    None => {
                        self.missing(
                            &span,
                            &k("broker"),
                            "missing: mqtt sinks need broker, e.g. \"mqtts://broker.example:8883\"",
                        );
                        None
                    }
                    Some(b) => match parse_broker(b.get_ref().trim()) {
                        Ok(b) => Some(b),
                        Err(m) => {
                            self.err(&b.span(), k("broker"), K::InvalidValue, m);
                            None
                        }
                    },
                };
                if let (Some(b), Some(Some(_)), Some(t)) = (&broker, &tls, &r.tls)
                    && !b.tls
                {
                    self.err(
                        &t.span(),
                        k("tls"),
                        K::InvalidValue,
                        "tls is set but the broker URL is mqtt:// (plain TCP): use mqtts://",
                    );
                }
                let topic = match &r.topic {
                    None => {
                        self.missing(&span, &k("topic"), "missing: mqtt sinks need topic, e.g. \"labagent/{agent_id}/results/{source}\"");
                        None
                    }
                    Some(t) => {
                        match check_template(t.get_ref(), &["agent_id", "source", "sink"], "topic")
                        {
                            Ok(()) => Some(t.get_ref().clone()),
                            Err(m) => {
                                self.err(&t.span(), k("topic"), K::InvalidValue, m);
                                None
                            }
                        }
                    }
                };
                let client_id = match &r.client_id {
                    None => Some("{agent_id}".to_owned()),
                    Some(c) => match check_template(c.get_ref(), &["agent_id"], "client_id") {
                        Ok(()) => Some(c.get_ref().clone()),
                        Err(m) => {
                            self.err(&c.span(), k("client_id"), K::InvalidValue, m);
                            None
                        }
                    },
                };
                let username = match &r.username {
                    Some(u) if u.get_ref().is_empty() => {
                        self.err(
                            &u.span(),
                            k("username"),
                            K::InvalidValue,
                            "empty username: omit the key instead",
                        );
                        None
                    }
                    other => Some(other.as_ref().map(|u| u.get_ref().clone())),
                };
                let password_file = match &r.password_file {
                    None => Some(None),
                    Some(p) => {
                        if r.username.is_none() && !self.poisoned.contains(&k("username")) {
                            self.err(&p.span(), k("password_file"), K::Missing, "password_file needs username (MQTT sends no password without a user name)");
                        }
                        self.file_value(p, &k("password_file"))
                            .map(|p| Some(SecretPath::new(p)))
                    }
                };
                let keep_alive = self.positive_duration(
                    r.keep_alive.as_ref(),
                    &k("keep_alive"),
                    Duration::from_secs(30),
                );
                if let Some(ka) = keep_alive
                    && ka > Duration::from_secs(u64::from(u16::MAX))
                    && let Some(v) = &r.keep_alive
                {
                    self.err(
                        &v.span(),
                        k("keep_alive"),
                        K::InvalidValue,
                        format!(
                            "{} is longer than MQTT allows (18h12m15s)",
                            format_duration(ka)
                        ),
                    );
                }
                Some(SinkKind::Mqtt(MqttSink {
                    broker: broker?,
                    topic: topic?,
                    client_id: client_id?,
                    username: username?,
                    password_file: password_file?,
                    tls: tls?,
                    keep_alive: keep_alive?,
                    delivery: delivery?,
                }))
            }
            RawSinkKind::File => match &r.dir {
                None => {
                    self.missing(
                        &span,
                        &k("dir"),
                        "missing: file sinks need dir, the output directory",
                    );
                    None
                }
                Some(d) => self
                    .path_value(d, &k("dir"))
                    .map(|dir| SinkKind::File(FileSink { dir })),
            },
        };
        if !applicable {
            return None;
        }
        Some(SinkConfig {
            name: name?,
            sources: sources?,
            kind: sink_kind?,
        })
    }
}

/// A compiled `[mapping.NAME]` before a source's defaults are filled in.
#[derive(Debug, Clone)]
struct MappingTemplate {
    sending_application: Option<String>,
    sending_facility: Option<String>,
    receiving_application: Option<String>,
    receiving_facility: Option<String>,
    specimen_id: Vec<FieldPath>,
    test_code: Vec<FieldPath>,
    tests: BTreeMap<String, TestCode>,
    specimen_type: (String, String),
}

impl MappingTemplate {
    fn resolve_for(self, source: &SourceName) -> Mapping {
        Mapping {
            sending_application: self
                .sending_application
                .unwrap_or_else(|| source.as_str().to_owned()),
            sending_facility: self.sending_facility.unwrap_or_default(),
            receiving_application: self.receiving_application.unwrap_or_default(),
            receiving_facility: self.receiving_facility.unwrap_or_default(),
            specimen_id: self.specimen_id,
            test_code: self.test_code,
            tests: self.tests,
            specimen_type: self.specimen_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendly_messages() {
        assert_eq!(
            friendly("invalid type: string \"fast\", expected u32"),
            (
                K::WrongType,
                "expected a positive integer, found \"fast\"".to_owned()
            )
        );
        assert_eq!(
            friendly("invalid value: integer `-3`, expected u32"),
            (
                K::InvalidValue,
                "expected a positive integer, found -3".to_owned()
            )
        );
        assert_eq!(
            friendly("unknown field `buad`, expected one of `name`, `baud`, `tls`"),
            (
                K::UnknownKey,
                "unknown key `buad`; did you mean `baud`?".to_owned()
            )
        );
        assert_eq!(
            friendly("unknown field `zzzzzz`, expected `cert`"),
            (
                K::UnknownKey,
                "unknown key `zzzzzz` (known keys: cert)".to_owned()
            )
        );
        assert_eq!(
            friendly("unknown variant `mlp`, expected `astm-serial` or `mllp`").1,
            "unknown value \"mlp\": expected one of \"astm-serial\", \"mllp\"; did you mean \"mllp\"?"
        );
        assert_eq!(
            friendly("invalid type: integer `5`, expected a table").1,
            "expected a table, found 5"
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("buad", "baud"), 2);
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(suggest("lisen", ["listen", "connect"]), Some("listen"));
        assert_eq!(suggest("xyz", ["listen", "connect"]), None);
    }

    #[test]
    fn timezones() {
        for ok in [
            "UTC",
            "Europe/London",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
            "America/Port-au-Prince",
        ] {
            assert_eq!(check_timezone(ok), Ok(()), "{ok}");
        }
        for bad in [
            "London",
            "utc",
            "Europe/",
            "Mars/Olympus",
            "Europe/london",
            "",
        ] {
            assert!(check_timezone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_ports() {
        assert_eq!(
            parse_host_port("ehr.clinic.local:2575"),
            Ok(HostPort {
                host: "ehr.clinic.local".into(),
                port: 2575
            })
        );
        assert_eq!(
            parse_host_port("[::1]:80"),
            Ok(HostPort {
                host: "::1".into(),
                port: 80
            })
        );
        for bad in ["ehr", "ehr:0", "ehr:x", "::1:80", "bad host:1", ":80"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn brokers() {
        let b = parse_broker("mqtts://broker.example:8883").unwrap();
        assert!(b.tls);
        assert_eq!(b.port, 8883);
        assert_eq!(parse_broker("mqtt://localhost").unwrap().port, 1883);
        assert_eq!(parse_broker("mqtts://localhost/").unwrap().port, 8883);
        assert_eq!(b.to_string(), "mqtts://broker.example:8883");
        for bad in [
            "tcp://x:1",
            "mqtt://user:pw@x:1",
            "mqtt://x/topic",
            "mqtt://",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates() {
        assert!(
            check_template(
                "labagent/{agent_id}/results/{source}",
                &["agent_id", "source"],
                "topic"
            )
            .is_ok()
        );
        assert!(check_template("a/{nope}", &["agent_id"], "topic").is_err());
        assert!(check_template("a/+/b", &["agent_id"], "topic").is_err());
        assert!(check_template("a/{agent_id", &["agent_id"], "topic").is_err());
    }

    #[test]
    fn overlap() {
        let a: SocketAddr = "0.0.0.0:5200".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5200".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:5201".parse().unwrap();
        let d: SocketAddr = "[::]:5200".parse().unwrap();
        let z: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(addrs_overlap(&a, &b));
        assert!(!addrs_overlap(&b, &c));
        assert!(addrs_overlap(&d, &b));
        assert!(!addrs_overlap(&z, &z));
    }
}
