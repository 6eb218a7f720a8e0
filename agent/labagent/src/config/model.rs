//! The typed layer: what the rest of the agent runs on. Every value here has been parsed and
//! checked (addresses are `SocketAddr`, durations `Duration`, paths resolved against the config
//! file's directory, names are newtypes), so components never re-validate.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use labagent_astm::charset::Charset;
use labagent_astm::record::FieldPath;
use serde::Deserialize;

/// A compiled, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from: the file path as given, or `<embedded default>`.
    pub origin: String,
    /// `[agent]`.
    pub agent: AgentConfig,
    /// `[store]`; defaults when the section is absent.
    pub store: StoreConfig,
    /// `[http]`; defaults when the section is absent.
    pub http: HttpConfig,
    /// `[[source]]` in file order; at least one.
    pub sources: Vec<SourceConfig>,
    /// `[[sink]]` in file order; at least one.
    pub sinks: Vec<SinkConfig>,
}

impl Config {
    /// The source with this name.
    pub fn source(&self, name: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.name.as_str() == name)
    }

    /// The sink with this name.
    pub fn sink(&self, name: &str) -> Option<&SinkConfig> {
        self.sinks.iter().find(|s| s.name.as_str() == name)
    }
}

macro_rules! name_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Wraps an already validated string (crate-internal: the compiler validates).
            pub(crate) fn new_unchecked(s: impl Into<String>) -> $name {
                $name(s.into())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_newtype!(
    /// The agent's fleet identity: 1 to 10 of `[A-Za-z0-9_-]`, so that it can prefix MSH-10
    /// (at most 20 characters in total) and appear in MQTT topics unescaped.
    AgentId
);
name_newtype!(
    /// A source name: 1 to 64 of `[A-Za-z0-9_.-]` (it appears in logs, metric labels and MQTT
    /// topics), unique among sources.
    SourceName
);
name_newtype!(
    /// A sink name: 1 to 64 of `[A-Za-z0-9_.-]`, unique among sinks.
    SinkName
);
name_newtype!(
    /// The name of a `[mapping.NAME]` table.
    MappingName
);
name_newtype!(
    /// An IANA time zone name (`UTC` or `Area/Location` such as `Europe/London`). Checked for
    /// shape here; the runtime resolves it against the tz database and fails at start if it
    /// is unknown there.
    TimeZoneName
);

/// A path to a file holding a secret (token, password). `Debug` masks it, so a config dump in
/// a log or a panic message does not point at the secret; read it with [`SecretPath::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPath(PathBuf);

impl SecretPath {
    pub(crate) fn new(path: PathBuf) -> SecretPath {
        SecretPath(path)
    }

    /// The real path, for the code that reads the secret.
    pub fn expose(&self) -> &Path {
        &self.0
    }
}

impl fmt::Debug for SecretPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretPath(\"****\")")
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// `id`; default `"labagent"`.
    pub id: AgentId,
    /// `state_dir`, required, resolved against the config file's directory (the embedded
    /// default uses `./labagent-data`, relative to the working directory).
    pub state_dir: PathBuf,
    /// `timezone` for ASTM timestamps, which carry no offset; default `UTC`.
    pub timezone: TimeZoneName,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `max_bytes`; default 1 GiB, at least 1 MiB. Full means back-pressure, never dropping.
    pub max_bytes: NonZeroU64,
    /// `sync`; default and only value: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
}

/// When the store fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Before every upstream ACK (group commit allowed). The only safe policy: analysers
    /// push and cannot resend what we acknowledged and then lost.
    Always,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// `listen`; default `127.0.0.1:9898`. Non-loopback addresses require `token_file`.
    pub listen: SocketAddr,
    /// `token_file`, resolved; default none. When set, requests need `Authorization: Bearer`.
    /// Checked to exist and be readable; not read here.
    pub token_file: Option<SecretPath>,
}

/// One `[[source]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// `name`, unique.
    pub name: SourceName,
    /// `kind` and its transport settings.
    pub transport: SourceTransport,
    /// `encoding`; default latin1.
    pub encoding: Charset,
    /// `mapping`, when given. An mllp source without one forwards messages unchanged.
    pub mapping_name: Option<MappingName>,
    /// The mapping resolved for this source (the named table with this source's defaults
    /// filled in, or the defaults alone).
    pub mapping: Mapping,
    /// `max_message_bytes`: largest accepted message (ASTM H..L or one MLLP frame); default
    /// 1 MiB. Larger input is refused (NAK / AE), never truncated.
    pub max_message_bytes: NonZeroU64,
}

impl SourceConfig {
    /// `astm-serial`, `astm-tcp` or `mllp`.
    pub fn kind_name(&self) -> &'static str {
        match self.transport {
            SourceTransport::AstmSerial(_) => "astm-serial",
            SourceTransport::AstmTcp(_) => "astm-tcp",
            SourceTransport::Mllp(_) => "mllp",
        }
    }
}

/// A source's transport (`kind`).
#[derive(Debug, Clone, PartialEq)]
pub enum SourceTransport {
    /// `astm-serial`: E1381 over RS-232.
    AstmSerial(AstmSerialSource),
    /// `astm-tcp`: E1381 over a TCP socket, either role.
    AstmTcp(AstmTcpSource),
    /// `mllp`: HL7 v2 over MLLP, as a listener.
    Mllp(MllpSource),
}

/// `kind = "astm-serial"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AstmSerialSource {
    /// `device`, required, e.g. `/dev/ttyUSB0`; unique among sources.
    pub device: PathBuf,
    /// Line settings.
    pub serial: SerialSettings,
    /// E1381 link settings.
    pub link: AstmLinkSettings,
}

/// RS-232 line settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialSettings {
    /// `baud`; default 9600.
    pub baud: NonZeroU32,
    /// `data_bits` 5..=8; default 8.
    pub data_bits: DataBits,
    /// `parity`; default none.
    pub parity: Parity,
    /// `stop_bits` 1 or 2; default 1.
    pub stop_bits: StopBits,
    /// `flow_control`; default none.
    pub flow_control: FlowControl,
}

impl Default for SerialSettings {
    fn default() -> Self {
        SerialSettings {
            baud: NonZeroU32::MIN.saturating_add(9599),
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }
}

/// Data bits per character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBits {
    /// 5.
    Five,
    /// 6.
    Six,
    /// 7.
    Seven,
    /// 8 (E1381 §: 8 data bits is the norm).
    Eight,
}

impl DataBits {
    /// The number of bits.
    pub fn get(self) -> u8 {
        match self {
            DataBits::Five => 5,
            DataBits::Six => 6,
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        }
    }
}

/// Parity bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Parity {
    /// `"none"`.
    None,
    /// `"even"`.
    Even,
    /// `"odd"`.
    Odd,
}

/// Stop bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBits {
    /// 1.
    One,
    /// 2.
    Two,
}

/// Flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowControl {
    /// `"none"`.
    None,
    /// `"software"`: XON/XOFF.
    Software,
    /// `"hardware"`: RTS/CTS.
    Hardware,
}

/// E1381 link-layer settings shared by the astm kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AstmLinkSettings {
    /// `receive_timeout`: how long the receiver waits for the next frame before giving up on
    /// the transfer; default 30 s (the E1381 receiver timer).
    pub receive_timeout: Duration,
    /// `max_frame_len`: longest frame accepted; default 64 KiB, at least 247 bytes. Frames
    /// longer than E1381's 247 bytes occur in practice (PROTOCOLS §7.1), so they are not NAKed.
    pub max_frame_len: NonZeroU32,
}

impl Default for AstmLinkSettings {
    fn default() -> Self {
        AstmLinkSettings {
            receive_timeout: Duration::from_secs(30),
            max_frame_len: NonZeroU32::MIN.saturating_add(64 * 1024 - 1),
        }
    }
}

/// `kind = "astm-tcp"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AstmTcpSource {
    /// `listen` or `connect` (exactly one).
    pub role: TcpRole,
    /// E1381 link settings.
    pub link: AstmLinkSettings,
    /// `idle_timeout`: close a connection silent this long; default none (analysers keep
    /// idle connections open for hours).
    pub idle_timeout: Option<Duration>,
}

/// Which side opens an astm-tcp connection.
#[derive(Debug, Clone, PartialEq)]
pub enum TcpRole {
    /// `listen`: the analyser dials us.
    Listen(Listener),
    /// `connect`: we dial the analyser.
    Connect(HostPort),
}

/// A listening socket with its admission rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// `listen`; unique among sources and the HTTP listener (port 0 excepted).
    pub addr: SocketAddr,
    /// `allow`: peers allowed to connect (a bare IP is a /32 or /128); default empty, which
    /// allows every peer.
    pub allow: Vec<IpNet>,
    /// `tls`; default none (plain TCP).
    pub tls: Option<ServerTls>,
    /// `max_connections`: concurrent connections; default 8.
    pub max_connections: NonZeroU32,
}

/// Server-side TLS material, paths resolved and checked readable.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    /// `cert`: PEM certificate chain, required.
    pub cert: PathBuf,
    /// `key`: PEM private key, required.
    pub key: PathBuf,
    /// `client_ca`: when set, clients must present a certificate signed by it (mTLS);
    /// default none.
    pub client_ca: Option<PathBuf>,
}

/// `kind = "mllp"` source.
#[derive(Debug, Clone, PartialEq)]
pub struct MllpSource {
    /// `listen` (required), `allow`, `tls`, `max_connections`.
    pub listener: Listener,
    /// `idle_timeout`; default none.
    pub idle_timeout: Option<Duration>,
}

/// A host name or IP address with a port, for connections we open (resolved at connect
/// time, so DNS changes are followed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port, never 0.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How one source's ASTM messages become ORU^R01 (PROTOCOLS §2.3).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    /// `sending_application` (MSH-3); default: the source name.
    pub sending_application: String,
    /// `sending_facility` (MSH-4); default empty.
    pub sending_facility: String,
    /// `receiving_application` (MSH-5); default empty.
    pub receiving_application: String,
    /// `receiving_facility` (MSH-6); default empty.
    pub receiving_facility: String,
    /// `specimen_id`: first non-empty (trimmed) of these goes to OBR-3 and SPM-2; default
    /// `O.3` then `O.4`. Selects an O or P record field.
    pub specimen_id: Vec<FieldPath>,
    /// `test_code`: first non-empty of these R-record paths is the local test code; default
    /// `R.3.4`, `R.3.5`, `R.3.1`.
    pub test_code: Vec<FieldPath>,
    /// `tests`: local code → OBX-3; default empty. Unmapped codes pass through as local codes.
    pub tests: BTreeMap<String, TestCode>,
    /// `specimen_type`: SPM-4 as (HL70487 code, text); default `ORH` "Other" (the analyser's
    /// ASTM output does not say reliably what the specimen is).
    pub specimen_type: (String, String),
}

impl Mapping {
    /// The mapping a source gets without a `mapping` key.
    pub fn defaults_for(source: &SourceName) -> Mapping {
        Mapping::default_for(source.as_str())
    }
}

fn path(s: &str) -> FieldPath {
    // Invariant: only called with the literal, valid paths below; the unit test
    // `defaults_parse` pins them. A failure would fall back to O.3 rather than panic.
    s.parse().unwrap_or_else(|_| {
        FieldPath::field_of(
            labagent_astm::record::RecordType::Order,
            std::num::NonZeroUsize::MIN.saturating_add(2),
        )
    })
}

impl Mapping {
    /// The defaults of INTERFACE.md for a source without a mapping: the source name as sending
    /// application, O.3 then O.4 for the specimen id, R.3.4, R.3.5, R.3.1 for the test code.
    pub fn default_for(source: &str) -> Mapping {
        Mapping {
            sending_application: source.to_string(),
            sending_facility: String::new(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            specimen_id: default_specimen_id(),
            test_code: default_test_code(),
            tests: BTreeMap::new(),
            specimen_type: default_specimen_type(),
        }
    }
}

/// `O.3`, then `O.4` (PROTOCOLS §2.3).
pub fn default_specimen_id() -> Vec<FieldPath> {
    vec![path("O.3"), path("O.4")]
}

/// `R.3.4` (E1394 manufacturer's local code), then `R.3.5` (Sysmex), then `R.3.1`.
pub fn default_test_code() -> Vec<FieldPath> {
    vec![path("R.3.4"), path("R.3.5"), path("R.3.1")]
}

/// One `tests` entry: the OBX-3 coded element for a local code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCode {
    /// `code` (OBX-3.1), required, e.g. LOINC `6690-2`.
    pub code: String,
    /// `text` (OBX-3.2); default empty.
    pub text: String,
    /// `system` (OBX-3.3); default `LN` (LOINC).
    pub system: String,
    /// `units`: what the analyser sends in R.5 -> the UCUM unit for OBX-6.1, for analysers
    /// whose R.5 is not a UCUM unit (the Pentra sends a unit-set index, `1`; others `K/uL`).
    /// R.5's first component is matched, so a key cannot hold the analyser's `^`.
    /// A match puts the UCUM unit first and keeps R.5 as OBX-6's alternate triplet; an R.5 the
    /// table does not name is sent as received, so a changed unit set on the analyser is never
    /// relabelled. Default: empty.
    pub units: BTreeMap<String, String>,
}

/// One `[[sink]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// `name`, unique.
    pub name: SinkName,
    /// `sources`: what this sink delivers; default every source, in file order.
    pub sources: Vec<SourceName>,
    /// `kind` and its settings.
    pub kind: SinkKind,
}

impl SinkConfig {
    /// `mllp`, `mqtt` or `file`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Mllp(_) => "mllp",
            SinkKind::Mqtt(_) => "mqtt",
            SinkKind::File(_) => "file",
        }
    }
}

/// A sink's transport.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// `mllp`: ORU^R01 over MLLP to an EHR, cursor advances on AA/CA.
    Mllp(MllpSink),
    /// `mqtt`: publish with QoS 1, cursor advances on PUBACK.
    Mqtt(MqttSink),
    /// `file`: one file per message, cursor advances on fsync.
    File(FileSink),
}

/// Retry and timeout settings of a network sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// `ack_timeout`: wait this long for the acknowledgement, then reconnect and resend;
    /// default 30 s.
    pub ack_timeout: Duration,
    /// `connect_timeout`: TCP + TLS handshake limit; default 10 s.
    pub connect_timeout: Duration,
    /// `max_backoff`: cap of the exponential retry backoff; default 60 s.
    pub max_backoff: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            ack_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// `kind = "mllp"` sink.
#[derive(Debug, Clone, PartialEq)]
pub struct MllpSink {
    /// `connect`, required: `host:port`.
    pub connect: HostPort,
    /// `tls`; default none (plain TCP).
    pub tls: Option<ClientTls>,
    /// Timeouts and backoff.
    pub delivery: Delivery,
}

/// Client-side TLS, paths resolved and checked readable.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTls {
    /// `ca`: CA bundle for the server certificate; default none, which means the runtime's
    /// built-in roots.
    pub ca: Option<PathBuf>,
    /// `cert` + `key`: client identity for mTLS; both or neither; default none.
    pub identity: Option<ClientIdentity>,
    /// `server_name`: name verified in the server certificate; default the connect host.
    pub server_name: Option<String>,
}

/// A client certificate and its key.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientIdentity {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `kind = "mqtt"` sink.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSink {
    /// `broker`, required.
    pub broker: MqttBroker,
    /// `topic`, required; may use `{agent_id}` and `{source}`; no wildcards.
    pub topic: String,
    /// `client_id`; may use `{agent_id}`; default `"{agent_id}"`.
    pub client_id: String,
    /// `username`; default none.
    pub username: Option<String>,
    /// `password_file`, resolved and checked readable (not read here); needs `username`.
    pub password_file: Option<SecretPath>,
    /// `tls` (only with `mqtts://`); default none, meaning the runtime's built-in roots.
    pub tls: Option<ClientTls>,
    /// `keep_alive`; default 30 s.
    pub keep_alive: Duration,
    /// Timeouts and backoff (`ack_timeout` is the PUBACK wait).
    pub delivery: Delivery,
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttBroker {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port; default 1883 (`mqtt://`) or 8883 (`mqtts://`).
    pub port: u16,
}

impl fmt::Display for MqttBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let hp = HostPort {
            host: self.host.clone(),
            port: self.port,
        };
        write!(f, "{scheme}://{hp}")
    }
}

/// `kind = "file"` sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    /// `dir`, required, resolved; created at start if missing; unique among file sinks.
    pub dir: PathBuf,
}

/// SPM-4 when a mapping does not name the specimen type.
pub fn default_specimen_type() -> (String, String) {
    ("ORH".to_owned(), "Other".to_owned())
}

/// Texts of the HL7 table 0487 codes a clinical analyser's specimens usually have; other codes
/// are accepted and sent without a text.
pub const SPECIMEN_TYPES: &[(&str, &str)] = &[
    ("BLD", "Whole blood"),
    ("BLDA", "Blood arterial"),
    ("BLDC", "Blood capillary"),
    ("BLDV", "Blood venous"),
    ("CSF", "Cerebral spinal fluid"),
    ("ORH", "Other"),
    ("PLAS", "Plasma"),
    ("PLB", "Plasma bag"),
    ("SAL", "Saliva"),
    ("SER", "Serum"),
    ("SPT", "Sputum"),
    ("STL", "Stool = Fecal"),
    ("UR", "Urine"),
    ("URNS", "Urine sediment"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let shown: Vec<String> = default_specimen_id()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["O.3", "O.4"]);
        let shown: Vec<String> = default_test_code()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["R.3.4", "R.3.5", "R.3.1"]);
        assert_eq!(SerialSettings::default().baud.get(), 9600);
        assert_eq!(AstmLinkSettings::default().max_frame_len.get(), 65536);
    }

    #[test]
    fn secret_path_is_masked() {
        let s = SecretPath::new(PathBuf::from("/etc/labagent/token"));
        assert_eq!(format!("{s:?}"), "SecretPath(\"****\")");
        assert_eq!(s.expose(), Path::new("/etc/labagent/token"));
    }

    #[test]
    fn host_port_display() {
        let hp = HostPort {
            host: "::1".into(),
            port: 2575,
        };
        assert_eq!(hp.to_string(), "[::1]:2575");
    }
}
