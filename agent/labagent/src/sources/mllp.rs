//! The `mllp` source: HL7 v2 senders (analysers, middleware) deliver over MLLP, optionally TLS
//! with client certificates. Each message is committed durably before its ACK: AA (or CA in
//! enhanced mode) once stored; AE/CE with an ERR segment when it cannot be parsed (it is parked
//! raw with the reason, so resending the same bytes would not help); AR/CR when the store is
//! full or failing (the sender keeps it and retries). Connections are bounded in number, idle
//! time and message size, and a misbehaving peer never disturbs the others.

use crate::health::SourceHealth;
use crate::ingest::{Inbound, Ingest, IngestError, Outcome, Payload};
use crate::mllp::{MllpDecoder, MllpItem, frame};
use crate::sources::astm::allowed;
use bytes::BytesMut;
use ipnet::IpNet;
use labagent_hl7::Message;
use labagent_hl7::ack::{
    AckClass, AckDefaults, AckParams, ErrorDetail, build_ack, build_ack_unparsed,
};
use labagent_hl7::control_id::ControlId;
use labagent_hl7::time::Hl7Ts;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Limits and options of one MLLP listener.
#[derive(Clone)]
pub struct MllpSourceOptions {
    /// Peers allowed to connect (empty: all).
    pub allow: Vec<IpNet>,
    /// TLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Largest message accepted.
    pub max_message: usize,
    /// A connection silent for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
}

impl std::fmt::Debug for MllpSourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpSourceOptions")
            .field("allow", &self.allow)
            .field("tls", &self.tls.is_some())
            .field("max_message", &self.max_message)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Accepts connections until shutdown.
pub async fn serve<I: Ingest>(
    listener: TcpListener,
    source: Arc<str>,
    options: MllpSourceOptions,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    // Connections are tracked so a stop waits for the messages they are committing.
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(source = %source, error = %e, "accept failed");
                continue;
            }
        };
        if !allowed(&options.allow, &peer) {
            tracing::warn!(source = %source, %peer, "connection refused: peer not in allow list");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(source = %source, %peer, limit = options.max_connections, "connection refused: too many connections");
            continue;
        };
        let (source, options, ingest, shutdown, acceptor, health) = (
            source.clone(),
            options.clone(),
            ingest.clone(),
            shutdown.clone(),
            acceptor.clone(),
            health.clone(),
        );
        connections.spawn(async move {
            let _permit = permit;
            health.connected();
            let result = match acceptor {
                Some(acceptor) => {
                    let limit = options.idle_timeout.min(super::HANDSHAKE_TIMEOUT);
                    let handshake = tokio::select! {
                        h = tokio::time::timeout(limit, acceptor.accept(stream)) => Some(h),
                        // Nothing was received yet: a stop need not wait for the handshake.
                        () = shutdown.cancelled() => None,
                    };
                    match handshake {
                        Some(Ok(Ok(tls))) => {
                            connection(tls, peer, &source, &options, &ingest, &health, &shutdown)
                                .await
                        }
                        Some(Ok(Err(e))) => Err(format!("TLS handshake failed: {e}")),
                        Some(Err(_)) => Err(format!("TLS handshake not done within {limit:?}")),
                        // Nothing was received: not an error of this connection.
                        None => Ok(()),
                    }
                }
                None => {
                    connection(stream, peer, &source, &options, &ingest, &health, &shutdown).await
                }
            };
            health.disconnected();
            match result {
                Ok(()) => tracing::info!(source = %source, %peer, "sender disconnected"),
                Err(reason) => {
                    health.error(&reason);
                    tracing::warn!(source = %source, %peer, %reason, "connection closed");
                }
            }
        });
    }
    drop(listener);
    super::wait_for(&source, connections).await;
}

/// Serves one connection: decode, commit, acknowledge, in order.
async fn connection<S, I>(
    mut stream: S,
    peer: SocketAddr,
    source: &Arc<str>,
    options: &MllpSourceOptions,
    ingest: &Arc<I>,
    health: &Arc<SourceHealth>,
    shutdown: &CancellationToken,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: Ingest,
{
    tracing::info!(source = %source, %peer, "sender connected");
    let mut decoder = MllpDecoder::new(options.max_message);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        while let Some(item) = decoder.decode(&mut buf).map_err(|e| e.to_string())? {
            match item {
                MllpItem::Message(bytes) => {
                    health.frame();
                    let (ack, committed) = handle_message(&bytes, source, ingest, health).await;
                    let framed = frame(ack.as_bytes()).map_err(|e| e.to_string())?;
                    stream
                        .write_all(&framed)
                        .await
                        .map_err(|e| format!("write failed: {e}"))?;
                    stream
                        .flush()
                        .await
                        .map_err(|e| format!("write failed: {e}"))?;
                    // Logged once the sender has its AA: the log write is not in its round trip.
                    if let Some(control_id) = committed {
                        tracing::info!(source = %source, %control_id, "message committed");
                    }
                }
                MllpItem::Junk { bytes } => {
                    tracing::warn!(source = %source, %peer, bytes, "bytes outside MLLP blocks skipped");
                }
                MllpItem::Discarded { reason, bytes } => {
                    tracing::warn!(source = %source, %peer, ?reason, bytes, "incomplete MLLP block discarded");
                }
                MllpItem::TooLarge { bytes } => {
                    return refuse_oversized(&mut stream, bytes, options.max_message).await;
                }
                MllpItem::CommitAck | MllpItem::CommitNak => {}
            }
        }
        if decoder.is_skipping() {
            // Over the limit and still arriving: refuse now rather than wait for an end block
            // that may never come (memory stays bounded either way).
            return refuse_oversized(&mut stream, options.max_message + 1, options.max_message)
                .await;
        }
        buf.reserve(4096);
        let read = tokio::select! {
            r = tokio::time::timeout(options.idle_timeout, stream.read_buf(&mut buf)) => r,
            () = shutdown.cancelled() => return Ok(()),
        };
        match read {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Err(_) => return Err(format!("idle for {:?}", options.idle_timeout)),
        }
    }
}

/// Answers an over-long message with AE (resending it unchanged cannot help) and closes the
/// connection, whose framing can no longer be trusted.
async fn refuse_oversized<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: usize,
    limit: usize,
) -> Result<(), String> {
    let now = Hl7Ts::from_timestamp(jiff::Timestamp::now()).unwrap_or_else(|_| fallback_ts());
    let control_id = ack_control_id();
    let text = format!("message longer than {limit} bytes refused");
    let ack = build_ack_unparsed(
        b"",
        AckClass::Error,
        &AckDefaults::default(),
        &AckParams {
            datetime: &now,
            control_id: &control_id,
            text: Some(&text),
            error: None,
        },
    );
    if let Ok(framed) = frame(ack.as_bytes()) {
        let _ = stream.write_all(&framed).await;
        let _ = stream.flush().await;
    }
    Err(format!(
        "message of at least {bytes} bytes exceeds the limit of {limit} bytes: answered AE and closed"
    ))
}

/// Commits one message and builds its ACK; also returns the control id of a committed message.
async fn handle_message<I: Ingest>(
    bytes: &[u8],
    source: &Arc<str>,
    ingest: &Arc<I>,
    health: &SourceHealth,
) -> (String, Option<String>) {
    let parsed = Message::parse(bytes);
    let inbound = Inbound {
        source: source.clone(),
        payload: Payload::Hl7 {
            bytes: bytes.to_vec(),
            control_id: parsed
                .as_ref()
                .map(|m| m.control_id().into_owned())
                .map_err(ToString::to_string),
        },
        received: SystemTime::now(),
    };
    let outcome = ingest.ingest(inbound).await;
    match &outcome {
        Ok(Outcome::Committed { .. }) => health.committed(),
        Ok(Outcome::Parked { reason }) => health.parked(reason),
        Err(e) => health.refused(&e.to_string()),
    }
    let now = Hl7Ts::from_timestamp(jiff::Timestamp::now()).unwrap_or_else(|_| fallback_ts());
    let control_id = ack_control_id();
    let committed = match (&parsed, &outcome) {
        (Ok(message), Ok(Outcome::Committed { .. })) => Some(message.control_id().into_owned()),
        _ => None,
    };
    let ack = match (&parsed, &outcome) {
        (Ok(message), Ok(Outcome::Committed { .. })) => build_ack(
            message,
            AckClass::Accepted,
            &AckParams {
                datetime: &now,
                control_id: &control_id,
                text: None,
                error: None,
            },
        ),
        (Ok(message), Ok(Outcome::Parked { reason })) => build_ack(
            message,
            AckClass::Error,
            &AckParams {
                datetime: &now,
                control_id: &control_id,
                text: Some(reason),
                error: None,
            },
        ),
        (Ok(message), Err(e)) => {
            tracing::warn!(source = %source, control_id = %message.control_id(), error = %e, "commit failed; answering reject");
            build_ack(
                message,
                AckClass::Reject,
                &AckParams {
                    datetime: &now,
                    control_id: &control_id,
                    text: Some(reject_text(e)),
                    error: None,
                },
            )
        }
        (Err(parse_error), outcome) => {
            let detail = ErrorDetail::from_parse_error(parse_error);
            let class = match outcome {
                Ok(_) => AckClass::Error,
                Err(_) => AckClass::Reject,
            };
            tracing::warn!(source = %source, error = %parse_error, "message cannot be parsed");
            build_ack_unparsed(
                bytes,
                class,
                &AckDefaults::default(),
                &AckParams {
                    datetime: &now,
                    control_id: &control_id,
                    text: None,
                    error: Some(&detail),
                },
            )
        }
    };
    (ack, committed)
}

fn reject_text(e: &IngestError) -> &'static str {
    match e {
        IngestError::Full => "store full, retry later",
        IngestError::Io(_) => "store unavailable, retry later",
    }
}

fn fallback_ts() -> Hl7Ts {
    // Invariant: a fixed, well-formed HL7 timestamp always parses.
    Hl7Ts::parse("19700101000000+0000").unwrap_or_else(|_| unreachable!())
}

/// MSH-10 of our ACKs: unique within the process, never confused with ORU ids (they start with
/// `ACK`).
fn ack_control_id() -> ControlId {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ms = crate::pipeline::unix_ms(SystemTime::now()) as u64;
    let id = format!("ACK{ms:x}{n:x}");
    let id = &id[..id.len().min(20)];
    ControlId::new(id).unwrap_or_else(|_| unreachable!("ACK, hex digits, at most 20 characters"))
}
