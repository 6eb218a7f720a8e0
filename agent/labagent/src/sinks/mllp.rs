//! The `mllp` sink: one message in flight, in order, over TCP or TLS (optionally with a client
//! certificate). AA/CA whose MSA-2 equals the MSH-10 sent -> delivered; AE/CE -> parked with the
//! EHR's reason; AR/CR, an ACK for another message, no ACK within `ack_timeout`, or a dropped
//! connection -> reconnect and send the same bytes again (the runner backs off).

use super::{Deliver, DeliveryError};
use crate::mllp::{MllpDecoder, MllpItem, frame};
use bytes::BytesMut;
use labagent_hl7::ack::{AckClass, parse_ack};
use labagent_store::Entry;
use rustls_pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A byte stream to the EHR: plain TCP or TLS.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Conn for T {}

/// TLS settings resolved at start-up.
#[derive(Clone)]
pub struct MllpTls {
    /// The client configuration (CA, optional client certificate).
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry.
    pub server_name: ServerName<'static>,
}

/// Timeouts of one MLLP sink.
#[derive(Debug, Clone, Copy)]
pub struct MllpTimeouts {
    /// Time allowed for the TCP connect and TLS handshake.
    pub connect: Duration,
    /// Time allowed for the ACK after the message is written.
    pub ack: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

/// Delivers to an EHR over MLLP.
pub struct MllpSink {
    target: String,
    tls: Option<MllpTls>,
    timeouts: MllpTimeouts,
    max_ack: usize,
    conn: Option<Box<dyn Conn>>,
}

impl MllpSink {
    /// A sink that connects to `target` (`host:port`) when first needed.
    pub fn new(target: String, tls: Option<MllpTls>, timeouts: MllpTimeouts) -> MllpSink {
        MllpSink {
            target,
            tls,
            timeouts,
            max_ack: 1024 * 1024,
            conn: None,
        }
    }

    async fn connect(&self) -> Result<Box<dyn Conn>, String> {
        let tcp = TcpStream::connect(&self.target)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.target))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                let stream = connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {} failed: {e}", self.target))?;
                Ok(Box::new(stream))
            }
        }
    }

    /// Sends one message and waits for its ACK on the current connection.
    async fn exchange(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        if self.conn.is_none() {
            let conn = tokio::time::timeout(self.timeouts.connect, self.connect())
                .await
                .map_err(|_| format!("connecting to {} timed out", self.target))??;
            self.conn = Some(conn);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let framed = frame(payload).map_err(|e| e.to_string())?;
        conn.write_all(&framed)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        conn.flush()
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        let mut decoder = MllpDecoder::new(self.max_ack);
        let mut buf = BytesMut::with_capacity(1024);
        let deadline = tokio::time::Instant::now() + self.timeouts.ack;
        loop {
            if let Some(MllpItem::Message(ack)) =
                decoder.decode(&mut buf).map_err(|e| e.to_string())?
            {
                return Ok(ack.to_vec());
            }
            buf.reserve(1024);
            match tokio::time::timeout_at(deadline, conn.read_buf(&mut buf)).await {
                Err(_) => return Err(format!("no ACK within {:?}", self.timeouts.ack)),
                Ok(Ok(0)) => return Err("the EHR closed the connection before its ACK".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("read failed: {e}")),
            }
        }
    }
}

impl Deliver for MllpSink {
    fn max_backoff(&self) -> Duration {
        self.timeouts.max_backoff
    }

    async fn deliver(&mut self, entry: &Entry) -> Result<(), DeliveryError> {
        // A payload holding an MLLP block byte can never be sent: park it rather than retry
        // it forever and block every message behind it.
        if let Err(e) = frame(&entry.payload) {
            return Err(DeliveryError::Permanent(format!(
                "cannot be sent over MLLP: {e}"
            )));
        }
        let ack_bytes = match self.exchange(&entry.payload).await {
            Ok(a) => a,
            Err(reason) => {
                self.conn = None;
                return Err(DeliveryError::Transient(reason));
            }
        };
        let ack = match parse_ack(&ack_bytes) {
            Ok(a) => a,
            Err(e) => {
                self.conn = None;
                return Err(DeliveryError::Transient(format!("unreadable ACK: {e}")));
            }
        };
        if !ack.acknowledges(entry.control_id.as_str()) {
            // An ACK for another message: the exchange is out of step; start afresh.
            self.conn = None;
            return Err(DeliveryError::Transient(format!(
                "ACK for {:?}, expected {}",
                ack.control_id_acked, entry.control_id
            )));
        }
        let text = ack.text.clone().unwrap_or_default();
        match ack.class() {
            AckClass::Accepted => Ok(()),
            AckClass::Error => Err(DeliveryError::Permanent(format!(
                "{} from the EHR{}{}",
                ack.code.as_str(),
                if text.is_empty() { "" } else { ": " },
                text
            ))),
            AckClass::Reject => {
                self.conn = None;
                Err(DeliveryError::Transient(format!(
                    "{} from the EHR{}{}",
                    ack.code.as_str(),
                    if text.is_empty() { "" } else { ": " },
                    text
                )))
            }
        }
    }
}
