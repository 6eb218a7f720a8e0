//! The raw layer: serde structs that mirror the TOML of INTERFACE.md key for key.
//!
//! Every struct denies unknown fields and every field is optional and [`Spanned`], so that
//! (1) serde only ever fails on structure (unknown keys, wrong TOML types), which the lenient
//! reader in `compile` turns into one error per key and then carries on, and (2) whether a key
//! is required depends on the component's `kind`, which is checked in the typed layer with a
//! line number for each value. Values that need parsing (durations, sizes, addresses, paths,
//! selectors) stay strings here.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_spanned::Spanned;

use super::model::{FlowControl, Parity};

/// The whole file. Top-level keys: `agent`, `store`, `http`, `source`, `mapping`, `sink`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawConfig {
    /// `[agent]`.
    pub agent: Option<Spanned<RawAgent>>,
    /// `[store]`.
    pub store: Option<Spanned<RawStore>>,
    /// `[http]`.
    pub http: Option<Spanned<RawHttp>>,
    /// `[[source]]`, in file order.
    #[serde(default)]
    pub source: Vec<Spanned<RawSource>>,
    /// `[mapping.NAME]`.
    #[serde(default)]
    pub mapping: BTreeMap<String, Spanned<RawMapping>>,
    /// `[[sink]]`, in file order.
    #[serde(default)]
    pub sink: Vec<Spanned<RawSink>>,
}

/// The top-level keys of [`RawConfig`], for unknown-key suggestions.
pub const TOP_LEVEL_KEYS: &[&str] = &["agent", "store", "http", "source", "mapping", "sink"];

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawAgent {
    /// Fleet identity.
    pub id: Option<Spanned<String>>,
    /// Store, cursors, parked messages.
    pub state_dir: Option<Spanned<String>>,
    /// IANA name for ASTM timestamps.
    pub timezone: Option<Spanned<String>>,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawStore {
    /// `"1GiB"` or bytes.
    pub max_bytes: Option<Spanned<RawSize>>,
    /// Only `"always"`.
    pub sync: Option<Spanned<RawSync>>,
}

/// `[store] sync`: the only accepted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawSync {
    /// fsync before every upstream ACK.
    Always,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawHttp {
    /// Socket address.
    pub listen: Option<Spanned<String>>,
    /// Path of the bearer token file.
    pub token_file: Option<Spanned<String>>,
}

/// `[[source]] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawSourceKind {
    /// `astm-serial`.
    AstmSerial,
    /// `astm-tcp`.
    AstmTcp,
    /// `mllp`.
    Mllp,
}

/// `[[source]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawSource {
    /// Unique name.
    pub name: Option<Spanned<String>>,
    /// Transport.
    pub kind: Option<Spanned<RawSourceKind>>,
    /// astm-serial: device path.
    pub device: Option<Spanned<String>>,
    /// astm-serial: baud rate.
    pub baud: Option<Spanned<u32>>,
    /// astm-serial: 5..=8.
    pub data_bits: Option<Spanned<u8>>,
    /// astm-serial.
    pub parity: Option<Spanned<Parity>>,
    /// astm-serial: 1 or 2.
    pub stop_bits: Option<Spanned<u8>>,
    /// astm-serial.
    pub flow_control: Option<Spanned<FlowControl>>,
    /// astm-tcp, mllp: socket address to accept on.
    pub listen: Option<Spanned<String>>,
    /// astm-tcp: `host:port` to dial.
    pub connect: Option<Spanned<String>>,
    /// Listener TLS.
    pub tls: Option<Spanned<RawServerTls>>,
    /// Listener peer allow list (CIDR or IP).
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    /// Character set name.
    pub encoding: Option<Spanned<String>>,
    /// Name of a `[mapping.*]` table.
    pub mapping: Option<Spanned<String>>,
    /// astm kinds: E1381 receiver timeout.
    pub receive_timeout: Option<Spanned<RawDuration>>,
    /// astm kinds: longest accepted frame.
    pub max_frame_len: Option<Spanned<RawSize>>,
    /// Largest accepted message.
    pub max_message_bytes: Option<Spanned<RawSize>>,
    /// astm-tcp, mllp: close silent connections after this long.
    pub idle_timeout: Option<Spanned<RawDuration>>,
    /// Listeners: concurrent connection limit.
    pub max_connections: Option<Spanned<u32>>,
}

/// `tls = { cert, key, client_ca }` on a listening source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawServerTls {
    /// PEM certificate chain.
    pub cert: Option<Spanned<String>>,
    /// PEM private key.
    pub key: Option<Spanned<String>>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    pub client_ca: Option<Spanned<String>>,
}

/// `[mapping.NAME]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawMapping {
    /// MSH-3.
    pub sending_application: Option<Spanned<String>>,
    /// MSH-4.
    pub sending_facility: Option<Spanned<String>>,
    /// MSH-5.
    pub receiving_application: Option<Spanned<String>>,
    /// MSH-6.
    pub receiving_facility: Option<Spanned<String>>,
    /// Field path(s) of the specimen id.
    pub specimen_id: Option<Spanned<RawSelectors>>,
    /// Field path(s) of the local test code.
    pub test_code: Option<Spanned<RawSelectors>>,
    /// SPM-4 specimen type, an HL7 table 0487 code.
    pub specimen_type: Option<Spanned<String>>,
    /// Local code → OBX-3.
    pub tests: Option<Spanned<BTreeMap<String, Spanned<RawTest>>>>,
}

/// One `[mapping.NAME.tests]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawTest {
    /// OBX-3.1 identifier, e.g. a LOINC code.
    pub code: Option<Spanned<String>>,
    /// OBX-3.2 text.
    pub text: Option<Spanned<String>>,
    /// OBX-3.3 coding system.
    pub system: Option<Spanned<String>>,
    /// What the analyser sends in R.5 -> the UCUM unit for OBX-6.
    pub units: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
}

/// `[[sink]] kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RawSinkKind {
    /// `mllp`.
    Mllp,
    /// `mqtt`.
    Mqtt,
    /// `file`.
    File,
}

/// `[[sink]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawSink {
    /// Unique name.
    pub name: Option<Spanned<String>>,
    /// Transport.
    pub kind: Option<Spanned<RawSinkKind>>,
    /// mllp: `host:port`.
    pub connect: Option<Spanned<String>>,
    /// Client TLS.
    pub tls: Option<Spanned<RawClientTls>>,
    /// mllp, mqtt: how long to wait for the acknowledgement.
    pub ack_timeout: Option<Spanned<RawDuration>>,
    /// mllp, mqtt: TCP (and TLS) connect timeout.
    pub connect_timeout: Option<Spanned<RawDuration>>,
    /// mllp, mqtt: retry backoff cap.
    pub max_backoff: Option<Spanned<RawDuration>>,
    /// Source names this sink delivers.
    pub sources: Option<Spanned<Vec<Spanned<String>>>>,
    /// mqtt: `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub broker: Option<Spanned<String>>,
    /// mqtt: topic template.
    pub topic: Option<Spanned<String>>,
    /// mqtt: client id template.
    pub client_id: Option<Spanned<String>>,
    /// mqtt: user name.
    pub username: Option<Spanned<String>>,
    /// mqtt: password file path.
    pub password_file: Option<Spanned<String>>,
    /// mqtt: keep-alive interval.
    pub keep_alive: Option<Spanned<RawDuration>>,
    /// file: output directory.
    pub dir: Option<Spanned<String>>,
}

/// `tls = { ca, cert, key, server_name }` on a sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RawClientTls {
    /// PEM CA bundle that signs the server certificate.
    pub ca: Option<Spanned<String>>,
    /// PEM client certificate chain (mTLS).
    pub cert: Option<Spanned<String>>,
    /// PEM client private key (mTLS).
    pub key: Option<Spanned<String>>,
    /// Name to verify in the server certificate.
    pub server_name: Option<Spanned<String>>,
}

/// A size as written: a string with a unit or a plain integer of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    /// `max_bytes = 1048576`.
    Bytes(i64),
    /// `max_bytes = "1MiB"`.
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512KiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as written: a string with a unit, or (always an error, reported with a hint)
/// a bare integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawDuration {
    /// `ack_timeout = 30`: refused, the unit is ambiguous.
    Number(i64),
    /// `ack_timeout = "30s"`.
    Text(String),
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"500ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One field path (`"O.3"`) or a first-non-empty list (`["O.3", "O.4.3"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSelectors {
    /// A single selector.
    One(String),
    /// Tried in order; the first non-empty value wins.
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawSelectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawSelectors;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field path such as \"O.3\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSelectors, E> {
                Ok(RawSelectors::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawSelectors, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    out.push(item);
                }
                Ok(RawSelectors::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}
