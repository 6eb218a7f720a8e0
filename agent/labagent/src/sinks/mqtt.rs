//! The `mqtt` sink: publishes each stored message (the ER7 bytes as stored, unchanged) with
//! QoS 1 to a topic expanded from the configured template, one message in flight, in order.
//!
//! # Delivery contract
//! `AsyncClient::publish` returns as soon as rumqttc has queued the request, long before the
//! broker has the message. [`MqttSink::deliver`] therefore waits for the PUBACK that carries the
//! packet id rumqttc gave *this* publish (reported as `Outgoing::Publish(pkid)`), within
//! `ack_timeout`. Only then does the runner advance the sink's cursor.
//!
//! # Connections
//! Each connection is a fresh rumqttc `EventLoop` with a clean session and `inflight = 1`,
//! polled by a small driver task (so that keep-alive pings flow while the sink is idle, and so
//! that nothing cancels `poll()` half-way). The driver forwards only what the sink needs
//! (CONNACK, the packet id of each publish, PUBACKs, and the first error) and stops at the first
//! error: rumqttc never reconnects on its own and never resends from its memory. On a lost
//! connection, a missing PUBACK or a refused CONNECT the sink drops the connection and reports
//! a transient failure; the runner backs off and calls `deliver` again with the same entry,
//! read from our store, over a new connection. A message may thus arrive twice (same MSH-10);
//! it is never lost.
//!
//! A connection that died while the sink was idle (broker restart, keep-alive expiry) is
//! replaced at the next delivery without counting as a failure.
//!
//! # Fleet heartbeat
//! The retained status heartbeat (`labagent/{agent_id}/status`, last will `{"state":"offline"}`)
//! uses its own connection (client id `{client_id}-hb`), built from the same
//! [`MqttConnect`] settings: see [`crate::heartbeat`]. Keeping it apart means a heartbeat can
//! never wait behind (or be mistaken for) a result's PUBACK in the one-message window, and the
//! sink's reconnects never fire the agent's last will.

use super::{Deliver, DeliveryError};
use crate::config;
use crate::tls;
use labagent_store::Entry;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    NetworkOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The largest MQTT packet body (remaining length) the protocol can express.
const MQTT_MAX_REMAINING: usize = 268_435_455;
/// Incoming packets are only acknowledgements: keep the limit small.
const MAX_INCOMING: usize = 64 * 1024;

/// Everything needed to open a connection to one broker: address, TLS, credentials,
/// keep-alive, timeouts. Shared by the sink and the heartbeat.
#[derive(Clone)]
pub struct MqttConnect {
    broker: String,
    host: String,
    port: u16,
    client_id: String,
    username: Option<String>,
    password_file: Option<PathBuf>,
    tls: Option<Arc<rustls::ClientConfig>>,
    keep_alive: Duration,
    connect_timeout: Duration,
    last_will: Option<LastWill>,
}

impl std::fmt::Debug for MqttConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConnect")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field(
                "password_file",
                &self.password_file.as_ref().map(|_| "****"),
            )
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl MqttConnect {
    /// Settings from a configured mqtt sink; `{agent_id}` in `client_id` is expanded. Loads the
    /// TLS files now (errors name the file); the password file is read at each connect, so an
    /// operator can fix it without a restart.
    pub fn from_config(
        sink: &config::MqttSink,
        agent_id: &str,
    ) -> Result<MqttConnect, tls::TlsError> {
        let tls = if sink.broker.tls {
            let t = sink.tls.clone().unwrap_or(config::ClientTls {
                ca: None,
                identity: None,
                server_name: None,
            });
            Some(client_tls(&t, &sink.broker.host)?)
        } else {
            None
        };
        Ok(MqttConnect {
            broker: sink.broker.to_string(),
            host: if sink.broker.host.contains(':') && !sink.broker.tls {
                // rumqttc joins host and port with a colon: bracket IPv6 literals.
                format!("[{}]", sink.broker.host)
            } else {
                sink.broker.host.clone()
            },
            port: sink.broker.port,
            client_id: sink.client_id.replace("{agent_id}", agent_id),
            username: sink.username.clone(),
            password_file: sink
                .password_file
                .as_ref()
                .map(|p| p.expose().to_path_buf()),
            tls,
            keep_alive: sink.keep_alive,
            connect_timeout: sink.delivery.connect_timeout,
            last_will: None,
        })
    }

    /// The broker URL, for logs and status.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    /// The MQTT client id used on the wire.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The same settings with `suffix` appended to the client id (the broker allows one
    /// connection per client id).
    pub fn with_client_id_suffix(mut self, suffix: &str) -> MqttConnect {
        self.client_id.push_str(suffix);
        self
    }

    /// The same settings with a last will, published by the broker when the connection ends
    /// without a DISCONNECT.
    pub fn with_last_will(mut self, will: LastWill) -> MqttConnect {
        self.last_will = Some(will);
        self
    }

    /// rumqttc options for one connection: clean session, at most `inflight` unacknowledged
    /// publishes, credentials read now.
    fn options(&self, inflight: u16) -> Result<MqttOptions, String> {
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        let keep_alive = self.keep_alive.max(Duration::from_secs(1));
        o.set_keep_alive(Duration::from_secs(keep_alive.as_secs()))
            .set_clean_session(true)
            .set_inflight(inflight.max(1))
            .set_max_packet_size(MAX_INCOMING, MQTT_MAX_REMAINING)
            .set_request_channel_capacity(16);
        if let Some(user) = &self.username {
            let password = match &self.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the MQTT password_file: {}", e.kind()))?
                    .trim()
                    .to_string(),
                None => String::new(),
            };
            o.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.clone(),
            )));
        }
        if let Some(will) = &self.last_will {
            o.set_last_will(will.clone());
        }
        Ok(o)
    }

    /// Opens a connection and waits for the broker's CONNACK, at most `connect_timeout`.
    pub(crate) async fn open(&self, inflight: u16) -> Result<Connection, String> {
        let options = self.options(inflight)?;
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        let mut network = NetworkOptions::new();
        network.set_connection_timeout(self.connect_timeout.as_secs().max(1));
        eventloop.set_network_options(network);
        let (tx, events) = mpsc::unbounded_channel();
        let broker = self.broker.clone();
        let driver = tokio::spawn(drive(eventloop, tx, broker));
        let mut conn = Connection {
            client,
            events,
            driver,
        };
        let wait = async {
            loop {
                match conn.events.recv().await {
                    Some(Note::Connected) => return Ok(()),
                    Some(Note::Lost(reason)) => return Err(reason),
                    None => return Err("the MQTT connection task ended".to_string()),
                    Some(_) => {}
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout + Duration::from_secs(1), wait).await {
            Ok(Ok(())) => Ok(conn),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!(
                "connecting to {} timed out after {:?}",
                self.broker, self.connect_timeout
            )),
        }
    }
}

/// What the driver task reports from the event loop.
#[derive(Debug)]
pub(crate) enum Note {
    /// CONNACK with success.
    Connected,
    /// A publish went out with this packet id.
    Sent(u16),
    /// The broker acknowledged this packet id.
    Acked(u16),
    /// Our DISCONNECT went out.
    Closed,
    /// The connection failed; the driver has stopped.
    Lost(String),
}

/// One live connection: the client handle and the driver's reports. Dropping it stops the
/// driver, which drops the event loop and closes the socket.
pub(crate) struct Connection {
    pub(crate) client: AsyncClient,
    pub(crate) events: mpsc::UnboundedReceiver<Note>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Takes queued reports without waiting; false when the connection has died.
    fn is_alive(&mut self) -> bool {
        loop {
            match self.events.try_recv() {
                Ok(Note::Lost(_) | Note::Closed) => return false,
                Ok(_) => {}
                Err(mpsc::error::TryRecvError::Empty) => return !self.driver.is_finished(),
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// Polls the event loop until the first error (or until our DISCONNECT went out), forwarding
/// what matters. It never reconnects: the owner opens a new connection instead.
async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Note>, broker: String) {
    loop {
        let note = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => Note::Connected,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Note::Sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => Note::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(Note::Closed);
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Note::Lost(describe(&e, &broker)));
                return;
            }
        };
        if tx.send(note).is_err() {
            return;
        }
    }
}

/// An operator-readable reason for a connection error (never a password).
fn describe(e: &ConnectionError, broker: &str) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let hint = match code {
                ConnectReturnCode::BadUserNamePassword => {
                    ": bad user name or password (check username and password_file)"
                }
                ConnectReturnCode::NotAuthorized => {
                    ": not authorised (check username, password_file and the broker's ACL)"
                }
                ConnectReturnCode::BadClientId => ": client id rejected (check client_id)",
                ConnectReturnCode::ServiceUnavailable => ": service unavailable",
                ConnectReturnCode::RefusedProtocolVersion => ": MQTT 3.1.1 not supported",
                ConnectReturnCode::Success => "",
            };
            format!("the broker {broker} refused the connection ({code:?}){hint}")
        }
        ConnectionError::NetworkTimeout => format!("connecting to {broker} timed out"),
        ConnectionError::FlushTimeout => format!("writing to {broker} timed out"),
        ConnectionError::Tls(e) => format!("TLS with {broker} failed: {e}"),
        ConnectionError::Io(e) => format!("connection to {broker}: {e}"),
        ConnectionError::NotConnAck(p) => {
            format!("{broker} answered CONNECT with {p:?} instead of CONNACK")
        }
        ConnectionError::MqttState(e) => format!("MQTT session with {broker}: {e}"),
        ConnectionError::RequestsDone => "the MQTT client was closed".to_string(),
    }
}

/// Delivers to an MQTT broker.
pub struct MqttSink {
    connect: MqttConnect,
    /// The topic with `{agent_id}` and `{sink}` expanded; `{source}` is per entry.
    topic: String,
    ack_timeout: Duration,
    max_backoff: Duration,
    conn: Option<Connection>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("connect", &self.connect)
            .field("topic", &self.topic)
            .finish()
    }
}

impl MqttSink {
    /// A sink for the configured `[[sink]]` named `sink` of agent `agent_id`; it connects when
    /// first needed.
    pub fn new(
        config: &config::MqttSink,
        agent_id: &str,
        sink: &str,
    ) -> Result<MqttSink, tls::TlsError> {
        Ok(MqttSink {
            connect: MqttConnect::from_config(config, agent_id)?,
            topic: config
                .topic
                .replace("{agent_id}", agent_id)
                .replace("{sink}", sink),
            ack_timeout: config.delivery.ack_timeout,
            max_backoff: config.delivery.max_backoff,
            conn: None,
        })
    }

    /// The connection settings (for the heartbeat's own connection).
    pub fn connect_settings(&self) -> &MqttConnect {
        &self.connect
    }

    /// The topic for a message from `source`.
    pub fn topic_for(&self, source: &str) -> String {
        self.topic.replace("{source}", source)
    }

    /// Publishes one message and waits for its PUBACK.
    async fn exchange(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        if let Some(conn) = self.conn.as_mut()
            && !conn.is_alive()
        {
            tracing::debug!(broker = %self.connect.broker, "MQTT connection lost while idle; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connect.open(1).await?);
            tracing::info!(broker = %self.connect.broker, client_id = %self.connect.client_id, "connected to the MQTT broker");
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        conn.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| format!("cannot queue the publish: {e}"))?;
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        let mut pkid = None;
        loop {
            match tokio::time::timeout_at(deadline, conn.events.recv()).await {
                Err(_) => return Err(format!("no PUBACK within {:?}", self.ack_timeout)),
                Ok(None) => return Err("the MQTT connection task ended".into()),
                Ok(Some(Note::Lost(reason))) => return Err(reason),
                Ok(Some(Note::Closed)) => return Err("the MQTT connection was closed".into()),
                Ok(Some(Note::Sent(id))) if pkid.is_none() => pkid = Some(id),
                Ok(Some(Note::Acked(id))) if pkid == Some(id) => return Ok(()),
                // A stray acknowledgement (or report) that is not ours: keep waiting.
                Ok(Some(other)) => {
                    tracing::debug!(broker = %self.connect.broker, ?other, ?pkid, "ignoring MQTT event");
                }
            }
        }
    }
}

impl Deliver for MqttSink {
    fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    async fn deliver(&mut self, entry: &Entry) -> Result<(), DeliveryError> {
        let topic = self.topic_for(&entry.source);
        if topic.contains(['+', '#', '\0']) {
            return Err(DeliveryError::Permanent(format!(
                "topic {topic:?} contains an MQTT wildcard or NUL"
            )));
        }
        if topic.len() > usize::from(u16::MAX) {
            return Err(DeliveryError::Permanent(format!(
                "topic is {} bytes, more than MQTT allows",
                topic.len()
            )));
        }
        // Fixed: topic length (2) + topic + packet id (2) + payload.
        if entry.payload.len() + topic.len() + 4 > MQTT_MAX_REMAINING {
            return Err(DeliveryError::Permanent(format!(
                "message of {} bytes is larger than an MQTT packet can carry",
                entry.payload.len()
            )));
        }
        match self.exchange(&topic, entry.payload.clone()).await {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.conn = None;
                Err(DeliveryError::Transient(reason))
            }
        }
    }
}

/// The rustls client configuration for `mqtts://`: the CA file (required), optional client
/// identity, and, when `server_name` differs from the broker host, a verifier that checks the
/// certificate against `server_name` (rumqttc always verifies against the host it dials).
fn client_tls(
    t: &config::ClientTls,
    host: &str,
) -> Result<Arc<rustls::ClientConfig>, tls::TlsError> {
    let spec = tls::ClientTls {
        ca: t.ca.clone(),
        cert: t.identity.as_ref().map(|i| i.cert.clone()),
        key: t.identity.as_ref().map(|i| i.key.clone()),
        server_name: t.server_name.clone(),
    };
    let config = tls::client_config(&spec)?;
    let Some(name) = t.server_name.as_deref().filter(|n| *n != host) else {
        return Ok(config);
    };
    let expected = tls::server_name(&spec, host)?;
    let Some(ca) = &t.ca else {
        return Err(tls::TlsError::NoTrustAnchors);
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls::TlsError::BadPem {
        what: "CA",
        path: ca.clone(),
        reason: e.to_string(),
    })? {
        let cert = cert.map_err(|e| tls::TlsError::BadPem {
            what: "CA",
            path: ca.clone(),
            reason: e.to_string(),
        })?;
        roots
            .add(cert)
            .map_err(|e| tls::TlsError::BadCaCertificate {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| tls::TlsError::BadCaCertificate {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
    tracing::debug!(
        server_name = name,
        "MQTT TLS verifies a configured server name"
    );
    let mut config = (*config).clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(NamedVerifier { inner, expected }));
    Ok(Arc::new(config))
}

/// Verifies the server certificate against a fixed name instead of the dialled host.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    expected: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            &self.expected,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink_config(topic: &str) -> config::MqttSink {
        config::MqttSink {
            broker: config::MqttBroker {
                tls: false,
                host: "127.0.0.1".into(),
                port: 1883,
            },
            topic: topic.into(),
            client_id: "{agent_id}".into(),
            username: None,
            password_file: None,
            tls: None,
            keep_alive: Duration::from_secs(30),
            delivery: config::Delivery::default(),
        }
    }

    #[test]
    fn topic_template_expands_every_placeholder() {
        let sink = MqttSink::new(
            &sink_config("labagent/{agent_id}/results/{source}/{sink}"),
            "lab1-pi",
            "cloud",
        )
        .unwrap();
        assert_eq!(
            sink.topic_for("xn550"),
            "labagent/lab1-pi/results/xn550/cloud"
        );
        assert_eq!(sink.connect_settings().client_id(), "lab1-pi");
        assert_eq!(sink.connect_settings().broker(), "mqtt://127.0.0.1:1883");
    }

    #[test]
    fn options_carry_session_window_and_will() {
        let connect = MqttConnect::from_config(&sink_config("t/{source}"), "a1")
            .unwrap()
            .with_client_id_suffix("-hb")
            .with_last_will(LastWill::new("s", "x", QoS::AtLeastOnce, true));
        let o = connect.options(1).unwrap();
        assert_eq!(o.client_id(), "a1-hb");
        assert!(o.clean_session());
        assert_eq!(o.inflight(), 1);
        assert!(o.last_will().is_some_and(|w| w.retain));
        assert!(o.credentials().is_none());
        assert_eq!(o.keep_alive(), Duration::from_secs(30));
    }

    #[test]
    fn ipv6_literals_are_bracketed_for_plain_tcp() {
        let mut c = sink_config("t");
        c.broker.host = "::1".into();
        let connect = MqttConnect::from_config(&c, "a").unwrap();
        assert_eq!(connect.options(1).unwrap().broker_address().0, "[::1]");
    }

    #[test]
    fn password_is_read_trimmed_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "s3cret\n").unwrap();
        let path_text = path.display().to_string();
        let mut connect = MqttConnect::from_config(&sink_config("t"), "a").unwrap();
        connect.username = Some("agent".into());
        connect.password_file = Some(path);
        let login = connect.options(1).unwrap().credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("agent", "s3cret")
        );
        let shown = format!("{connect:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains(&*path_text),
            "{shown}"
        );
        connect.password_file = Some(dir.path().join("missing"));
        let err = connect.options(1).unwrap_err();
        assert!(!err.contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn oversized_and_wildcard_topics_are_refused_for_good() {
        let mut sink = MqttSink::new(&sink_config("r/{source}"), "a", "s").unwrap();
        let entry = |source: &str| Entry {
            id: labagent_store::RecordId::new(1),
            control_id: "a1".into(),
            source: source.into(),
            received_ms: 0,
            kind: labagent_store::Kind::Oru,
            payload: b"MSH|^~\\&|".to_vec(),
        };
        assert!(matches!(
            sink.deliver(&entry("bad+name")).await,
            Err(DeliveryError::Permanent(_))
        ));
    }
}
