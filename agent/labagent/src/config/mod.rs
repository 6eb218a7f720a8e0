//! Configuration: the TOML file of INTERFACE.md ("Config file"), compiled before anything
//! starts into a typed [`Config`], or refused with every problem listed at once.
//!
//! # Layers
//! - [`raw`]: serde structs that mirror the file key for key (`deny_unknown_fields`, every
//!   value [`serde_spanned::Spanned`] so each one has a line).
//! - [`model`]: the typed [`Config`] the agent runs on (`Duration`, `NonZeroU32`,
//!   `SocketAddr`, resolved `PathBuf`s, `FieldPath`, `Charset`, `IpNet`, name newtypes).
//!   Every default is documented on its field.
//! - `compile` (private): text → raw → typed, collecting every error (see its module doc for
//!   how all unknown keys and type errors are found in one run although serde stops at the
//!   first).
//!
//! # Errors
//! [`ConfigErrors`] lists each problem as `file:line: key: problem`, sorted by line, e.g.
//!
//! ```text
//! labagent.toml:14: source[1].baud: expected a positive integer, found "fast"
//! labagent.toml:15: source[1].buad: unknown key `buad`; did you mean `baud`?
//! labagent.toml:31: sink[0].sources[0]: no source named "xn55"; did you mean "xn550"?
//! ```
//!
//! Keys are dotted paths; `[[source]]` and `[[sink]]` elements are numbered from 0 in file
//! order. Besides syntax, unknown keys and wrong types, compilation refuses: missing keys per
//! kind, keys that do not apply to a kind, bad durations/sizes/addresses/CIDRs/selectors/
//! charsets/time zone names, duplicate source or sink names, two sources on one serial device
//! or overlapping listen addresses (the HTTP listener included), two file sinks on one
//! directory, unknown mapping or source references, an `agent.id` unusable in MSH-10, a
//! non-loopback HTTP listener without a token, and TLS/token/password files that are missing
//! or unreadable (paths are resolved against the config file's directory).
//!
//! # Secrets
//! `http.token_file` and `password_file` are [`SecretPath`]s: `Debug` prints `****`, and
//! [`summary`] only says whether they are set. Their contents are read by the components
//! that use them, not here.
//!
//! `check-config` and startup run the same [`load`].

pub mod error;
pub mod model;
pub mod raw;
pub mod units;

mod compile;
mod summary;

use std::path::Path;

pub use error::{ConfigError, ConfigErrorKind, ConfigErrors};
pub use model::*;
pub use summary::summary;

/// The embedded default configuration (INTERFACE.md "Command line"): agent `labagent`, state
/// in `./labagent-data`, an astm-tcp source on 127.0.0.1:5200, an mllp source on
/// 127.0.0.1:2575, a file sink into `./labagent-data/outbox`, HTTP on 127.0.0.1:9898, time
/// zone Europe/London.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The origin [`embedded_default`] reports in errors and summaries.
pub const EMBEDDED_ORIGIN: &str = "<embedded default>";

/// Reads and compiles the config file at `path`. Relative paths inside it are resolved
/// against the file's directory. Errors name the file as `path` was given.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::new(vec![ConfigError {
            origin: origin.clone(),
            line: None,
            key: String::new(),
            kind: ConfigErrorKind::Io,
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    from_str(&text, &origin, base_dir)
}

/// Compiles config `text`. `origin` names it in errors (a path, or `<embedded default>`);
/// relative paths are resolved against `base_dir` (an empty path keeps them relative to the
/// working directory).
pub fn from_str(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigErrors> {
    compile::compile(text, origin, base_dir)
}

/// The embedded default, relative paths kept relative to the working directory.
pub fn embedded_default() -> Config {
    embedded_default_in(Path::new(""))
}

/// The embedded default with its relative paths (state and outbox) under `base_dir`, e.g. a
/// temporary directory for `labagent demo`.
pub fn embedded_default_in(base_dir: &Path) -> Config {
    // Invariant: DEFAULT_TOML is a constant that compiles; the test `embedded_default_compiles`
    // proves it for every build, and it names no files that must exist.
    #[allow(clippy::expect_used)]
    from_str(DEFAULT_TOML, EMBEDDED_ORIGIN, base_dir).expect("embedded default config compiles")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::raw::RawConfig;
    use super::*;

    /// A self-signed certificate and its key in one PEM file: it serves wherever the
    /// compiler expects a certificate, a CA or a key (each parse takes its own section).
    fn pem_material() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// INTERFACE.md's example, with the TLS and password paths pointing into `dir`.
    fn interface_example(dir: &Path) -> String {
        let pem = pem_material();
        for f in ["ca.pem", "agent.pem", "agent.key"] {
            std::fs::write(dir.join(f), &pem).unwrap();
        }
        for f in ["mqtt.pass", "token"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        r#"[agent]
id = "lab1-pi"                      # fleet identity; used in MSH-10 prefix, MQTT topics, status
state_dir = "/var/lib/labagent"     # store, cursors, parked messages
timezone = "Europe/London"          # for ASTM timestamps, which carry no offset

[store]
max_bytes = "1GiB"                  # full => back-pressure upstream, never drop
# sync = "always"                   # the only safe default: fsync before every upstream ACK

[http]
listen = "127.0.0.1:9898"           # status page "/", /healthz, /readyz, /metrics, /api/status

[[source]]
name = "xn550"                      # unique; appears in logs, metrics, OBX-18/MSH-3 defaults
kind = "astm-serial"                # astm-serial | astm-tcp | mllp
device = "/dev/ttyUSB0"             # astm-serial
baud = 9600                         # astm-serial: baud, data_bits, parity ("none"|"even"|"odd"),
data_bits = 8                       #   stop_bits, flow_control ("none"|"software"|"hardware")
parity = "none"
stop_bits = 1
# listen = "0.0.0.0:5200"           # astm-tcp and mllp: accept connections
# connect = "10.0.0.7:5200"         # astm-tcp: dial the analyser instead
# tls = { cert = "...", key = "...", client_ca = "..." }   # mllp listener: TLS, optional mTLS
# allow = ["10.0.0.0/24"]           # mllp / astm-tcp: peers allowed to connect
encoding = "latin1"                 # latin1 | utf-8 | windows-1252
mapping = "sysmex-xn"               # name of a [mapping.*] table

[mapping.sysmex-xn]
sending_application = "XN-550"
sending_facility = "LAB1"
receiving_application = "EHR"
receiving_facility = "CLINIC"
specimen_id = "O.3"                 # which ASTM field (and component, e.g. "O.4.3") holds the specimen id
test_code = "R.3.4"                 # which component of R.3 holds the local test code (default: see below)
[mapping.sysmex-xn.tests]           # local code -> OBX-3; unmapped codes pass through as local codes
"WBC" = { code = "6690-2", text = "Leukocytes [#/volume] in Blood", system = "LN" }

[[sink]]
name = "ehr"
kind = "mllp"                       # mllp | mqtt | file
connect = "ehr.clinic.local:2575"
tls = { ca = "ca.pem", cert = "agent.pem", key = "agent.key", server_name = "ehr.clinic.local" }
ack_timeout = "30s"
# sources = ["xn550"]               # default: every source

[[sink]]
name = "cloud"
kind = "mqtt"
broker = "mqtts://broker.example:8883"   # mqtt:// or mqtts://
topic = "labagent/{agent_id}/results/{source}"
client_id = "{agent_id}"
tls = { ca = "ca.pem", cert = "agent.pem", key = "agent.key" }
username = "lab1"; password_file = "mqtt.pass"

[[sink]]
name = "archive"
kind = "file"
dir = "/var/lib/labagent/outbox"    # one file per message, <MSH-10>.hl7, written atomically
"#
        .replace("username = \"lab1\"; password_file", "username = \"lab1\"\npassword_file")
    }

    fn compile_err(text: &str) -> ConfigErrors {
        match from_str(text, "labagent.toml", Path::new("/nonexistent-base")) {
            Ok(c) => panic!("expected errors, got {c:#?}"),
            Err(e) => e,
        }
    }

    fn lines(e: &ConfigErrors) -> Vec<String> {
        e.errors().iter().map(ToString::to_string).collect()
    }

    const MINIMAL: &str = r#"[agent]
state_dir = "state"

[[source]]
name = "a"
kind = "astm-tcp"
listen = "127.0.0.1:5200"

[[sink]]
name = "out"
kind = "file"
dir = "out"
"#;

    #[test]
    fn embedded_default_compiles() {
        let c = embedded_default();
        assert_eq!(c.origin, EMBEDDED_ORIGIN);
        assert_eq!(c.agent.id.as_str(), "labagent");
        assert_eq!(c.agent.state_dir, PathBuf::from("labagent-data"));
        assert_eq!(c.agent.timezone.as_str(), "Europe/London");
        assert_eq!(c.store.max_bytes.get(), 1 << 30);
        assert_eq!(
            c.http.listen,
            "127.0.0.1:9898".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.sources.len(), 2);
        match &c.sources[0].transport {
            SourceTransport::AstmTcp(AstmTcpSource {
                role: TcpRole::Listen(l),
                ..
            }) => assert_eq!(l.addr, "127.0.0.1:5200".parse::<SocketAddr>().unwrap()),
            other => panic!("{other:?}"),
        }
        match &c.sources[1].transport {
            SourceTransport::Mllp(m) => {
                assert_eq!(
                    m.listener.addr,
                    "127.0.0.1:2575".parse::<SocketAddr>().unwrap()
                )
            }
            other => panic!("{other:?}"),
        }
        match &c.sinks[0].kind {
            SinkKind::File(f) => assert_eq!(f.dir, PathBuf::from("labagent-data/outbox")),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.sinks[0].sources.len(), 2);
        let in_tmp = embedded_default_in(Path::new("/tmp/demo"));
        assert_eq!(
            in_tmp.agent.state_dir,
            PathBuf::from("/tmp/demo/labagent-data")
        );
    }

    #[test]
    fn interface_example_compiles_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let text = interface_example(dir.path());
        let c = from_str(&text, "labagent.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.agent.id.as_str(), "lab1-pi");
        let xn = c.source("xn550").unwrap();
        assert_eq!(
            xn.mapping_name.as_ref().map(MappingName::as_str),
            Some("sysmex-xn")
        );
        assert_eq!(xn.mapping.sending_application, "XN-550");
        assert_eq!(xn.mapping.specimen_id.len(), 1);
        assert_eq!(xn.mapping.test_code[0].to_string(), "R.3.4");
        let wbc = &xn.mapping.tests["WBC"];
        assert_eq!(wbc.code, "6690-2");
        assert_eq!(wbc.system, "LN");
        match &xn.transport {
            SourceTransport::AstmSerial(s) => {
                assert_eq!(s.device, PathBuf::from("/dev/ttyUSB0"));
                assert_eq!(s.serial, SerialSettings::default());
                assert_eq!(s.link.receive_timeout, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        let ehr = c.sink("ehr").unwrap();
        assert_eq!(ehr.sources.len(), 1);
        match &ehr.kind {
            SinkKind::Mllp(m) => {
                assert_eq!(m.connect.to_string(), "ehr.clinic.local:2575");
                assert_eq!(m.delivery.ack_timeout, Duration::from_secs(30));
                let tls = m.tls.as_ref().unwrap();
                assert_eq!(tls.ca.as_deref(), Some(dir.path().join("ca.pem").as_path()));
                assert_eq!(tls.server_name.as_deref(), Some("ehr.clinic.local"));
            }
            other => panic!("{other:?}"),
        }
        match &c.sink("cloud").unwrap().kind {
            SinkKind::Mqtt(m) => {
                assert!(m.broker.tls);
                assert_eq!(m.client_id, "{agent_id}");
                assert_eq!(
                    m.password_file.as_ref().map(SecretPath::expose),
                    Some(dir.path().join("mqtt.pass").as_path())
                );
            }
            other => panic!("{other:?}"),
        }
        // The raw layer mirrors the file: the strict serde parse of the same text succeeds.
        let strict: RawConfig = toml::from_str(&text).unwrap();
        assert_eq!(strict.source.len(), 1);
        assert_eq!(strict.sink.len(), 3);
        let s = summary(&c);
        assert!(s.contains("xn550"), "{s}");
        assert!(s.contains("/dev/ttyUSB0 9600 8N1"), "{s}");
        assert!(s.contains("mqtts://broker.example:8883"), "{s}");
        assert!(!s.contains("mqtt.pass"), "{s}");
        assert!(s.lines().count() <= 24, "{s}");
    }

    #[test]
    fn defaults_for_minimal_config() {
        let c = from_str(MINIMAL, "m.toml", Path::new("/etc/labagent")).unwrap();
        assert_eq!(c.agent.id.as_str(), "labagent");
        assert_eq!(c.agent.timezone.as_str(), "UTC");
        assert_eq!(c.agent.state_dir, PathBuf::from("/etc/labagent/state"));
        assert_eq!(c.store.max_bytes.get(), 1 << 30);
        assert_eq!(c.store.sync, SyncPolicy::Always);
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9898");
        let a = &c.sources[0];
        assert_eq!(a.encoding, labagent_astm::charset::Charset::Latin1);
        assert_eq!(a.mapping, Mapping::defaults_for(&a.name));
        assert_eq!(a.mapping.sending_application, "a");
        let spec: Vec<String> = a
            .mapping
            .specimen_id
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(spec, ["O.3", "O.4"]);
        let codes: Vec<String> = a
            .mapping
            .test_code
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(codes, ["R.3.4", "R.3.5", "R.3.1"]);
        assert_eq!(a.max_message_bytes.get(), 1 << 20);
        match &a.transport {
            SourceTransport::AstmTcp(t) => {
                assert_eq!(t.idle_timeout, None);
                assert_eq!(t.link.max_frame_len.get(), 65536);
                match &t.role {
                    TcpRole::Listen(l) => {
                        assert!(l.allow.is_empty());
                        assert_eq!(l.max_connections.get(), 8);
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        match &c.sinks[0].kind {
            SinkKind::File(f) => assert_eq!(f.dir, PathBuf::from("/etc/labagent/out")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn many_mistakes_all_reported_with_lines_and_keys() {
        let text = r#"[agent]
id = "lab one pi too long"
state_dir = "/var/lib/labagent"
timezone = "London"

[store]
max_bytes = "1 gigabyte"

[htp]
listen = "0.0.0.0:9898"

[[source]]
name = "xn550"
kind = "astm-serial"
device = "/dev/ttyUSB0"
baud = "fast"
buad = 9600
parity = "noen"
stop_bits = 3
encoding = "ebcdic"
mapping = "sysmex"

[[source]]
name = "xn550"
kind = "astm-tcp"
listen = "0.0.0.0:5200"
connect = "10.0.0.7:5200"
receive_timeout = 30

[mapping.sysmex-xn]
specimen_id = "X.3"
test_code = ["R.3.4", "O.3"]
[mapping.sysmex-xn.tests]
"WBC" = { text = "Leukocytes" }

[[sink]]
name = "ehr"
kind = "mllp"
ack_timeout = "30 seconds"
sources = ["xn55"]
dir = "/tmp"
"#;
        let errors = compile_err(text);
        let got = lines(&errors);
        let expect = [
            r#"labagent.toml:2: agent.id: "lab one pi too long" cannot prefix MSH-10: use 1 to 10 characters from A-Z a-z 0-9 - _"#,
            r#"labagent.toml:4: agent.timezone: "London" is not an IANA time zone name: expected "UTC" or Area/Location such as "Europe/London""#,
            r#"labagent.toml:7: store.max_bytes: "1 gigabyte": unknown unit "gigabyte" (units: B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"#,
            "labagent.toml:9: htp: unknown section `htp`; did you mean `http`?",
            r#"labagent.toml:16: source[0].baud: expected a positive integer, found "fast""#,
            "labagent.toml:17: source[0].buad: unknown key `buad`; did you mean `baud`?",
            r#"labagent.toml:18: source[0].parity: unknown value "noen": expected one of "none", "even", "odd"; did you mean "none"?"#,
            "labagent.toml:19: source[0].stop_bits: expected 1 or 2, found 3",
            r#"labagent.toml:20: source[0].encoding: unknown character set "ebcdic": expected latin1, utf-8 or windows-1252"#,
            r#"labagent.toml:21: source[0].mapping: no [mapping.sysmex] table (defined: sysmex-xn)"#,
            r#"labagent.toml:24: source[1].name: duplicate source name "xn550" (first defined on line 13)"#,
            "labagent.toml:27: source[1].connect: set either listen (the analyser dials us) or connect (we dial the analyser), not both",
            r#"labagent.toml:28: source[1].receive_timeout: a duration needs a unit: write e.g. "30s" or "30ms""#,
            r#"labagent.toml:31: mapping.sysmex-xn.specimen_id: field path "X.3": "X" is not an E1394 record letter (H P O R C Q M S L)"#,
            "labagent.toml:32: mapping.sysmex-xn.test_code[1]: O.3 is in the O record; expected a field of the R record",
            "labagent.toml:34: mapping.sysmex-xn.tests.WBC.code: missing: each test needs a code (OBX-3.1)",
            r#"labagent.toml:36: sink[0].connect: missing: mllp sinks need connect, e.g. "ehr.clinic.local:2575""#,
            r#"labagent.toml:39: sink[0].ack_timeout: "30 seconds" is not a duration: expected e.g. "30s", "500ms", "5m" or "1h30m""#,
            r#"labagent.toml:40: sink[0].sources[0]: no source named "xn55"; did you mean "xn550"?"#,
            "labagent.toml:41: sink[0].dir: `dir` applies only to file sinks (this one is mllp)",
        ];
        for e in &expect {
            assert!(
                got.iter().any(|g| g == e),
                "missing:\n{e}\ngot:\n{}",
                got.join("\n")
            );
        }
        assert_eq!(got.len(), expect.len(), "got:\n{}", got.join("\n"));
        // Sorted by line.
        let ls: Vec<usize> = errors.errors().iter().filter_map(|e| e.line).collect();
        assert!(ls.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(errors.to_string().lines().count(), expect.len());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = compile_err("[agent]\nid = \"x\"\nstate_dir = \n");
        assert_eq!(e.len(), 1);
        let first = &e.errors()[0];
        assert_eq!(first.kind, ConfigErrorKind::Syntax);
        assert_eq!(first.line, Some(3));
        assert!(
            first
                .to_string()
                .starts_with("labagent.toml:3: TOML syntax error"),
            "{first}"
        );
    }

    #[test]
    fn wrong_section_types() {
        let e = compile_err(
            "agent = 5\n[source]\nname = \"a\"\n[[sink]]\nname = 7\nkind = \"file\"\ndir = \"x\"\n",
        );
        let got = lines(&e);
        assert!(
            got.contains(&"labagent.toml:1: agent: expected a table, found 5".to_owned()),
            "{got:#?}"
        );
        assert!(
            got.contains(&"labagent.toml:2: source: expected an array of tables (write [[source]]), found a table".to_owned()),
            "{got:#?}"
        );
        assert!(
            got.contains(&"labagent.toml:5: sink[0].name: expected a string, found 7".to_owned()),
            "{got:#?}"
        );
        let e = compile_err("[agent]\nstate_dir = 1979-05-27\n");
        assert!(
            lines(&e).contains(&"labagent.toml:2: agent.state_dir: expected a string, found a date/time (1979-05-27); quote it if it is text".to_owned()),
            "{e}"
        );
        // `agent` was present but malformed: not also reported as missing.
        assert!(
            !got.iter().any(|g| g.contains("missing [agent]")),
            "{got:#?}"
        );
        // A malformed name is not also reported as missing.
        assert!(
            !got.iter().any(|g| g.contains("sink[0].name: missing")),
            "{got:#?}"
        );
    }

    #[test]
    fn nested_unknown_keys_and_wrong_types() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"[agent]
state_dir = "s"
[[source]]
name = "lis"
kind = "mllp"
listen = "0.0.0.0:2575"
tls = { cret = "c.pem", key = "k.pem" }
allow = ["10.0.0.0/24", "10.0.0.300", 5]
[[sink]]
name = "f"
kind = "file"
dir = "o"
"#;
        let e = from_str(text, "labagent.toml", dir.path()).unwrap_err();
        let got = lines(&e);
        let expect = [
            "labagent.toml:7: source[0].tls.cret: unknown key `cret`; did you mean `cert`?",
            "labagent.toml:8: source[0].allow[2]: expected a string, found 5",
        ];
        for x in expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        // cert is poisoned (a typo), so it is not also "missing"; key does not exist on disk.
        assert!(
            got.iter()
                .any(|g| g.contains("source[0].tls.key: file not found:")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|g| g.starts_with("labagent.toml:7: source[0].tls.cert: missing")),
            "{got:#?}"
        );
    }

    #[test]
    fn missing_keys_per_kind() {
        let text = r#"[agent]
state_dir = "s"
[[source]]
name = "serial"
kind = "astm-serial"
[[source]]
name = "tcp"
kind = "astm-tcp"
[[source]]
name = "hl7"
kind = "mllp"
[[source]]
kind = "mllp"
listen = "127.0.0.1:1"
[[sink]]
name = "a"
kind = "mllp"
[[sink]]
name = "b"
kind = "mqtt"
[[sink]]
name = "c"
kind = "file"
[[sink]]
name = "d"
"#;
        let got = lines(&compile_err(text));
        let expect = [
            r#"labagent.toml:3: source[0].device: missing: astm-serial sources need device, e.g. "/dev/ttyUSB0""#,
            "labagent.toml:6: source[1].listen: missing: astm-tcp sources need listen (the analyser dials us) or connect (we dial the analyser)",
            r#"labagent.toml:9: source[2].listen: missing: mllp sources need listen, e.g. "0.0.0.0:2575""#,
            "labagent.toml:12: source[3].name: missing: every source needs a unique name",
            r#"labagent.toml:15: sink[0].connect: missing: mllp sinks need connect, e.g. "ehr.clinic.local:2575""#,
            r#"labagent.toml:18: sink[1].broker: missing: mqtt sinks need broker, e.g. "mqtts://broker.example:8883""#,
            r#"labagent.toml:18: sink[1].topic: missing: mqtt sinks need topic, e.g. "labagent/{agent_id}/results/{source}""#,
            "labagent.toml:21: sink[2].dir: missing: file sinks need dir, the output directory",
            r#"labagent.toml:24: sink[3].kind: missing: kind = "mllp", "mqtt" or "file""#,
        ];
        for x in expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn missing_everything() {
        let got = lines(&compile_err("# empty\n"));
        assert_eq!(
            got,
            [
                "labagent.toml: agent: missing [agent] section (it needs at least state_dir)",
                "labagent.toml: source: no [[source]] defined: the agent would have nothing to read",
                "labagent.toml: sink: no [[sink]] defined: results would never leave the store",
            ]
        );
    }

    #[test]
    fn conflicts() {
        let text = r#"[agent]
state_dir = "s"
[http]
listen = "127.0.0.1:5200"
[[source]]
name = "a"
kind = "astm-serial"
device = "/dev/ttyUSB0"
[[source]]
name = "b"
kind = "astm-serial"
device = "/dev/ttyUSB0"
[[source]]
name = "c"
kind = "astm-tcp"
listen = "0.0.0.0:5200"
[[source]]
name = "d"
kind = "mllp"
listen = "0.0.0.0:2575"
[[source]]
name = "e"
kind = "mllp"
listen = "10.1.1.1:2575"
[[source]]
name = "a"
kind = "mllp"
listen = "127.0.0.1:0"
[[source]]
name = "f"
kind = "mllp"
listen = "127.0.0.1:0"
[[sink]]
name = "x"
kind = "file"
dir = "/srv/out"
[[sink]]
name = "x"
kind = "file"
dir = "/srv/./out"
"#;
        let got = lines(&compile_err(text));
        let expect = [
            "labagent.toml:12: source[1].device: serial device /dev/ttyUSB0 is already used by source \"a\" (line 8)",
            "labagent.toml:16: source[2].listen: listen address 0.0.0.0:5200 is already used by [http] listen (labagent.toml:4 http.listen)",
            "labagent.toml:24: source[4].listen: listen address 10.1.1.1:2575 is already used by source \"d\" (labagent.toml:20 source[3].listen)",
            "labagent.toml:26: source[5].name: duplicate source name \"a\" (first defined on line 6)",
            "labagent.toml:38: sink[1].name: duplicate sink name \"x\" (first defined on line 34)",
            "labagent.toml:40: sink[1].dir: directory /srv/out is already written by sink \"x\" (line 36)",
        ];
        for x in expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        // Port 0 (ephemeral) never conflicts.
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn references_and_identity() {
        let text = r#"[agent]
id = "lab1-pi"
state_dir = "s"
[http]
listen = "0.0.0.0:9898"
[[source]]
name = "a"
kind = "astm-tcp"
connect = "10.0.0.7:5200"
mapping = "nope"
allow = ["10.0.0.0/24"]
[[sink]]
name = "m"
kind = "mqtt"
broker = "mqtt://broker:1883"
topic = "lab/{agent}/x"
password_file = "pw"
tls = { ca = "ca.pem" }
sources = []
"#;
        let got = lines(&compile_err(text));
        let expect = [
            "labagent.toml:5: http.listen: 0.0.0.0:9898 is not a loopback address: set [http] token_file so that requests need a bearer token",
            "labagent.toml:10: source[0].mapping: no [mapping.nope] table (the file defines no mappings)",
            "labagent.toml:11: source[0].allow: `allow` applies only to listening sources (this one uses connect)",
            r#"labagent.toml:16: sink[0].topic: "lab/{agent}/x": unknown placeholder {agent} (available: {agent_id}, {source}, {sink})"#,
            "labagent.toml:17: sink[0].password_file: password_file needs username (MQTT sends no password without a user name)",
            "labagent.toml:17: sink[0].password_file: file not found: /nonexistent-base/pw",
            "labagent.toml:18: sink[0].tls.ca: file not found: /nonexistent-base/ca.pem",
            "labagent.toml:19: sink[0].sources: empty list would deliver nothing: omit sources to deliver every source",
        ];
        for x in expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn tls_on_plain_mqtt_and_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), pem_material()).unwrap();
        std::fs::create_dir(dir.path().join("adir")).unwrap();
        let text = r#"[agent]
state_dir = "s"
[[source]]
name = "a"
kind = "mllp"
listen = "127.0.0.1:0"
tls = { cert = "adir", key = "ca.pem" }
[[sink]]
name = "m"
kind = "mqtt"
broker = "mqtt://broker"
topic = "t"
tls = { ca = "ca.pem", cert = "ca.pem" }
"#;
        let e = from_str(text, "labagent.toml", dir.path()).unwrap_err();
        let got = lines(&e);
        let adir = dir.path().join("adir");
        let expect = [
            format!("labagent.toml:7: source[0].tls.cert: {} is a directory, not a file", adir.display()),
            "labagent.toml:13: sink[0].tls.key: missing: cert is set, so key is needed too (client certificate for mTLS)".to_owned(),
        ];
        for x in &expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        assert_eq!(got.len(), 2, "{got:#?}");
        // With the key present, the remaining complaint is tls on plain mqtt://.
        let text = text
            .replace(
                "cert = \"ca.pem\" }",
                "cert = \"ca.pem\", key = \"ca.pem\" }",
            )
            .replace("\"adir\"", "\"ca.pem\"");
        let got = lines(&from_str(&text, "labagent.toml", dir.path()).unwrap_err());
        assert_eq!(
            got,
            [
                "labagent.toml:13: sink[0].tls: tls is set but the broker URL is mqtt:// (plain TCP): use mqtts://"
            ]
        );
    }

    #[test]
    fn tls_files_that_are_not_pem_are_refused_at_compile_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("garbage.pem"), "not a certificate").unwrap();
        std::fs::write(dir.path().join("good.pem"), pem_material()).unwrap();
        let text = r#"[agent]
state_dir = "s"
[[source]]
name = "a"
kind = "mllp"
listen = "127.0.0.1:0"
tls = { cert = "garbage.pem", key = "garbage.pem", client_ca = "good.pem" }
[[sink]]
name = "f"
kind = "file"
dir = "out"
"#;
        let got = lines(&from_str(text, "labagent.toml", dir.path()).unwrap_err());
        let g = dir.path().join("garbage.pem");
        assert_eq!(
            got,
            [
                format!(
                    "labagent.toml:7: source[0].tls.cert: {} holds no PEM certificate",
                    g.display()
                ),
                format!(
                    "labagent.toml:7: source[0].tls.key: {} holds no usable PEM private key: no items found",
                    g.display()
                ),
            ]
        );
    }

    #[test]
    fn wrong_kind_keys_and_values() {
        let text = r#"[agent]
state_dir = "s"
[store]
max_bytes = 1000
sync = "never"
[[source]]
name = "bad name!"
kind = "mllp"
listen = "localhost:2575"
baud = 9600
max_message_bytes = "10MiB"
[[source]]
name = "s"
kind = "astm-serial"
device = "/dev/ttyS0"
baud = 0
data_bits = 9
max_frame_len = "100B"
idle_timeout = "5m"
[[sink]]
name = "f"
kind = "fil"
"#;
        let got = lines(&compile_err(text));
        let expect = [
            "labagent.toml:4: store.max_bytes: 1000 bytes is too small: at least 1MiB",
            r#"labagent.toml:5: store.sync: unknown value "never": expected one of "always""#,
            r#"labagent.toml:7: source[0].name: "bad name!" is not a usable name: use 1 to 64 characters from A-Z a-z 0-9 - _ ."#,
            r#"labagent.toml:9: source[0].listen: "localhost:2575" is not a socket address: expected IP:PORT such as "0.0.0.0:5200" (listen addresses are IP literals, not host names; IPv6 as "[::1]:2575")"#,
            "labagent.toml:10: source[0].baud: `baud` applies only to astm-serial sources (this one is mllp)",
            "labagent.toml:16: source[1].baud: expected a positive integer, found 0",
            "labagent.toml:17: source[1].data_bits: expected 5, 6, 7 or 8, found 9",
            "labagent.toml:18: source[1].max_frame_len: 100 bytes is too small: at least 247B",
            "labagent.toml:19: source[1].idle_timeout: `idle_timeout` applies only to astm-tcp and mllp sources (this one is astm-serial)",
            r#"labagent.toml:22: sink[0].kind: unknown value "fil": expected one of "mllp", "mqtt", "file"; did you mean "file"?"#,
        ];
        for x in expect {
            assert!(got.iter().any(|g| g == x), "missing {x}\n{got:#?}");
        }
        assert_eq!(got.len(), expect.len(), "{got:#?}");
    }

    #[test]
    fn debug_masks_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("s3cret-token-file");
        let pass = dir.path().join("hunter2-password");
        std::fs::write(&token, "tok").unwrap();
        std::fs::write(&pass, "pw").unwrap();
        let text = format!(
            r#"[agent]
state_dir = "s"
[http]
listen = "0.0.0.0:9898"
token_file = "{}"
[[source]]
name = "a"
kind = "mllp"
listen = "127.0.0.1:2575"
[[sink]]
name = "m"
kind = "mqtt"
broker = "mqtts://broker.example"
topic = "t/{{source}}"
username = "lab"
password_file = "{}"
"#,
            token.display(),
            pass.display()
        );
        let c = from_str(&text, "labagent.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("s3cret-token-file"), "{debug}");
        assert!(!debug.contains("hunter2-password"), "{debug}");
        assert!(debug.contains("****"));
        let s = summary(&c);
        assert!(!s.contains("s3cret") && !s.contains("hunter2"), "{s}");
        assert!(s.contains("bearer token required"), "{s}");
        assert_eq!(
            c.http.token_file.as_ref().map(SecretPath::expose),
            Some(token.as_path())
        );
    }

    #[test]
    fn load_resolves_against_file_dir_and_reports_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labagent.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = load(&path).unwrap();
        assert_eq!(c.agent.state_dir, dir.path().join("state"));
        assert_eq!(c.origin, path.display().to_string());
        let missing = dir.path().join("nope.toml");
        let e = load(&missing).unwrap_err();
        assert_eq!(e.errors()[0].kind, ConfigErrorKind::Io);
        assert!(
            e.to_string()
                .starts_with(&format!("{}: cannot read config file", missing.display()))
        );
    }

    #[test]
    fn selectors_accept_lists() {
        let text = MINIMAL.replace(
            "[[sink]]",
            "mapping = \"m\"\n[mapping.m]\nspecimen_id = [\"O.4.3\", \"P.3\"]\ntest_code = \"R.3.5\"\n[[sink]]",
        );
        let c = from_str(&text, "x.toml", Path::new("")).unwrap_or_else(|e| panic!("{e}"));
        let m = &c.sources[0].mapping;
        let spec: Vec<String> = m.specimen_id.iter().map(ToString::to_string).collect();
        assert_eq!(spec, ["O.4.3", "P.3"]);
        assert_eq!(m.sending_application, "a");
    }

    /// Fuzz finding (agent/fuzz/regressions/config): a quoted key holding a newline split its
    /// "unknown section" error over two lines, the second without file and line.
    #[test]
    fn control_characters_in_keys_stay_on_one_error_line() {
        let input = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../fuzz/regressions/config/newline-in-quoted-key"),
        )
        .expect("regression input");
        let text = std::str::from_utf8(&input).expect("utf-8");
        let e = from_str(text, "x.toml", Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\\n"), "{e}");
        for line in e.lines() {
            assert!(line.starts_with("x.toml:"), "{line:?} in {e:?}");
        }
    }

    #[test]
    fn specimen_type_names_spm_4() {
        let text = MINIMAL.replace(
            "[[sink]]",
            "mapping = \"m\"\n[mapping.m]\nspecimen_type = \"SER\"\n[[sink]]",
        );
        let c = from_str(&text, "x.toml", Path::new("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.sources[0].mapping.specimen_type,
            ("SER".to_owned(), "Serum".to_owned())
        );
        // Without the key: ORH "Other".
        let c = from_str(MINIMAL, "x.toml", Path::new("")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.sources[0].mapping.specimen_type.0, "ORH");
        let bad = MINIMAL.replace(
            "[[sink]]",
            "mapping = \"m\"\n[mapping.m]\nspecimen_type = \"serum\"\n[[sink]]",
        );
        let e = from_str(&bad, "x.toml", Path::new(""))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mapping.m.specimen_type: \"serum\" is not an HL7 table 0487 code"),
            "{e}"
        );
    }

    #[test]
    fn test_units_are_kept_and_a_unit_that_is_not_ucum_text_refused() {
        let with = |units: &str| {
            MINIMAL.replace(
                "[[sink]]",
                &format!(
                    "mapping = \"m\"\n[mapping.m.tests]\n\"WBC\" = {{ code = \"6690-2\", units = {units} }}\n\"HGB\" = {{ code = \"718-7\" }}\n[[sink]]"
                ),
            )
        };
        let c = from_str(
            &with("{ \"1\" = \"10*3/uL\", \"K/uL\" = \"10*3/uL\" }"),
            "x.toml",
            Path::new(""),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let tests = &c.sources[0].mapping.tests;
        assert_eq!(
            tests["WBC"].units.get("1").map(String::as_str),
            Some("10*3/uL")
        );
        assert_eq!(
            tests["WBC"].units.get("K/uL").map(String::as_str),
            Some("10*3/uL")
        );
        assert!(tests["HGB"].units.is_empty());
        for (bad, why) in [
            ("{ \"1\" = \"\" }", "empty UCUM unit"),
            ("{ \"1\" = \"10^3/uL\" }", "'^' in \"10^3/uL\""),
            ("{ \"1\" = \"10*3 /uL\" }", "' ' in"),
            ("{ \"1\" = \"\u{b5}mol/L\" }", "'\u{b5}' in"),
            (
                "{ \" \" = \"g/dL\" }",
                "units.\" \": empty: name what the analyser sends",
            ),
            ("{ \"1\" = \"g/dL\", \" 1\" = \"g/L\" }", "listed twice"),
            (
                "{ \"10^3/uL\" = \"10*3/uL\" }",
                "never holds an ASTM or HL7 delimiter",
            ),
        ] {
            let e = from_str(&with(bad), "x.toml", Path::new(""))
                .unwrap_err()
                .to_string();
            assert!(e.contains("x.toml:"), "{e}");
            assert!(e.contains("mapping.m.tests.WBC.units."), "{e}");
            assert_eq!(e.lines().count(), 1, "one error: {e}");
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    /// Every sample config under the workspace's `configs/` compiles (rathole: check that the
    /// test visits more than zero files when there are any). `LABAGENT_CONFIGS_DIR` overrides
    /// the directory.
    #[test]
    fn sample_configs_compile() {
        let dir = std::env::var_os("LABAGENT_CONFIGS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs"));
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "toml") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&dir, &mut files);
        // The repository ships at least six analyser samples and three topologies: finding
        // fewer means the test is looking in the wrong place, which must not pass silently.
        assert!(
            files.len() >= 9,
            "only {} sample configs under {}",
            files.len(),
            dir.display()
        );
        let failures: Vec<String> = files
            .iter()
            .filter_map(|f| load(f).err().map(|e| e.to_string()))
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        eprintln!("sample configs: {} compiled", files.len());
    }
}
