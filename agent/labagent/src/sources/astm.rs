//! ASTM sources: `astm-tcp` (listen or connect) and `astm-serial`, each running the E1381 link
//! through [`driver::drive`] and committing every complete message through [`Ingest`] before the
//! link releases the completing frame's ACK.

use super::STOP_GRACE;
use super::driver::{self, DriveEnd, LinkHandler};
use super::serial::SerialSettings;
use crate::health::SourceHealth;
use crate::ingest::{Inbound, Ingest, Outcome, Payload};
use crate::retry::{Backoff, jitter_seed};
use ipnet::IpNet;
use labagent_astm::link::{Event, Link, LinkConfig, MessageEnd, ReceivedMessage};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connects a link's completed messages to [`Ingest`].
struct Committer<I> {
    source: Arc<str>,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
}

impl<I: Ingest> LinkHandler for Committer<I> {
    async fn on_message(&mut self, message: ReceivedMessage) -> bool {
        let held = message.reply_held;
        let inbound = Inbound {
            source: self.source.clone(),
            payload: Payload::Astm {
                text: message.text,
                end: message.end,
            },
            received: SystemTime::now(),
        };
        // Once stopping, how long to keep trying to store a message ended by EOT.
        let mut give_up_at: Option<Instant> = None;
        loop {
            match self.ingest.ingest(inbound.clone()).await {
                Ok(outcome) => {
                    match &outcome {
                        Outcome::Committed { control_ids } => {
                            self.health.committed();
                            tracing::info!(source = %self.source, message = %message.id, ?control_ids, "message committed");
                        }
                        Outcome::Parked { reason } => self.health.parked(reason),
                    }
                    return true;
                }
                Err(e) if held => {
                    self.health.refused(&e.to_string());
                    // The analyser keeps the message: NAK and it retransmits the frame.
                    tracing::warn!(source = %self.source, message = %message.id, error = %e, "commit failed; answering NAK");
                    return false;
                }
                Err(e) => {
                    // Ended by EOT: its frames are already acknowledged and there is nothing
                    // to NAK, so keep trying: this message exists only in our memory.
                    tracing::error!(source = %self.source, message = %message.id, error = %e, "commit failed for a message ended by EOT; retrying");
                    if self.shutdown.is_cancelled() {
                        let by = *give_up_at.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                        if Instant::now() >= by {
                            tracing::error!(source = %self.source, message = %message.id, "stopping: a message ended by EOT could not be stored and is lost");
                            return false;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn stopping(&self) -> impl std::future::Future<Output = ()> + Send {
        self.shutdown.cancelled()
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::FrameAccepted { .. } | Event::DuplicateFrame { .. } => self.health.frame(),
            Event::FrameRejected { number, reason } => {
                self.health.frame_naked(&reason.to_string());
                tracing::warn!(source = %self.source, frame = ?number, %reason, "frame NAKed");
            }
            Event::Discarded { reason, bytes } => {
                tracing::warn!(source = %self.source, ?reason, bytes, "incomplete message discarded");
            }
            Event::RefusedBusy => tracing::warn!(source = %self.source, "ENQ refused: busy"),
            _ => tracing::debug!(source = %self.source, ?event, "link event"),
        }
    }
}

/// Runs one link over one byte stream until it ends or shutdown is requested.
async fn serve_link<S, I>(
    io: &mut S,
    source: &Arc<str>,
    link_config: &LinkConfig,
    ingest: &Arc<I>,
    health: &Arc<SourceHealth>,
    shutdown: &CancellationToken,
) -> std::io::Result<DriveEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: Ingest,
{
    let mut link = Link::new(link_config.clone());
    let mut handler = Committer {
        source: source.clone(),
        ingest: ingest.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
    };
    health.connected();
    // The driver stops at `shutdown` only between messages (see `LinkHandler::stopping`); past
    // its grace and a second more (a write held by flow control, a commit that never ends) the
    // link is dropped where it is.
    let hard_stop = async {
        shutdown.cancelled().await;
        tokio::time::sleep(STOP_GRACE + std::time::Duration::from_secs(1)).await;
    };
    let end = tokio::select! {
        end = driver::drive(io, &mut link, &mut handler) => end,
        () = hard_stop => Ok(DriveEnd::Abandoned),
    };
    if let Ok(DriveEnd::Abandoned) = end {
        let reason = "stopped with a message in progress: it may be lost, or stored twice if the analyser sends it again";
        health.error(reason);
        tracing::error!(source = %source, "{reason}");
    }
    health.disconnected();
    end
}

/// True when `peer` may connect: an empty list allows everyone.
pub fn allowed(allow: &[IpNet], peer: &SocketAddr) -> bool {
    allow.is_empty() || allow.iter().any(|net| net.contains(&peer.ip()))
}

/// An `astm-tcp` source in listen mode: each accepted connection is its own link.
pub async fn serve_tcp<I: Ingest>(
    listener: TcpListener,
    source: Arc<str>,
    allow: Vec<IpNet>,
    link_config: LinkConfig,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
) {
    // Links are tracked so a stop waits for the messages they are committing.
    let links = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.cancelled() => break,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(source = %source, error = %e, "accept failed");
                continue;
            }
        };
        if !allowed(&allow, &peer) {
            tracing::warn!(source = %source, %peer, "connection refused: peer not in allow list");
            continue;
        }
        tracing::info!(source = %source, %peer, "analyser connected");
        let (source, link_config, ingest, health, shutdown) = (
            source.clone(),
            link_config.clone(),
            ingest.clone(),
            health.clone(),
            shutdown.clone(),
        );
        links.spawn(async move {
            let end = serve_link(
                &mut stream,
                &source,
                &link_config,
                &ingest,
                &health,
                &shutdown,
            )
            .await;
            tracing::info!(source = %source, %peer, ?end, "analyser disconnected");
        });
    }
    drop(listener);
    super::wait_for(&source, links).await;
}

/// Opens a link's byte stream (a TCP dial, a serial port), runs the link over it, and opens it
/// again with capped backoff whenever it ends or cannot be opened, until shutdown. `what`
/// names the endpoint in logs and health; `words` are the (opened, ended) log messages.
#[allow(clippy::too_many_arguments)] // one loop for two transports; each argument is distinct
async fn reconnecting<S, I, F, Fut>(
    what: String,
    words: (&'static str, &'static str),
    mut open: F,
    source: Arc<str>,
    link_config: LinkConfig,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    I: Ingest,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<S>>,
{
    let mut backoff = Backoff::reconnect();
    while !shutdown.is_cancelled() {
        match open().await {
            Ok(mut io) => {
                backoff.reset();
                tracing::info!(source = %source, endpoint = %what, "{}", words.0);
                let end =
                    serve_link(&mut io, &source, &link_config, &ingest, &health, &shutdown).await;
                tracing::warn!(source = %source, endpoint = %what, ?end, "{}", words.1);
            }
            Err(e) => {
                health.error(&format!("cannot open {what}: {e}"));
                tracing::warn!(source = %source, endpoint = %what, error = %e, "cannot open the analyser link");
            }
        }
        let delay = backoff.next_delay(jitter_seed());
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// An `astm-tcp` source in connect mode: dial the analyser, redial with backoff when it drops.
pub async fn dial_tcp<I: Ingest>(
    target: String,
    source: Arc<str>,
    link_config: LinkConfig,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
) {
    let what = format!("tcp {target}");
    let open = move || TcpStream::connect(target.clone());
    let words = ("connected to analyser", "analyser connection ended");
    reconnecting(
        what,
        words,
        open,
        source,
        link_config,
        ingest,
        health,
        shutdown,
    )
    .await;
}

/// An `astm-serial` source: open the port (stale input flushed), run the link, and reopen with
/// backoff on unplug, hang-up (read of 0 bytes) or error.
pub async fn run_serial<I: Ingest>(
    settings: SerialSettings,
    source: Arc<str>,
    link_config: LinkConfig,
    ingest: Arc<I>,
    health: Arc<SourceHealth>,
    shutdown: CancellationToken,
) {
    let what = settings.device.clone();
    let open = move || std::future::ready(settings.open().map_err(std::io::Error::from));
    let words = ("serial port open", "serial port closed");
    reconnecting(
        what,
        words,
        open,
        source,
        link_config,
        ingest,
        health,
        shutdown,
    )
    .await;
}

/// Message end as a word for logs.
pub fn end_name(end: MessageEnd) -> &'static str {
    match end {
        MessageEnd::Terminator => "L record",
        MessageEnd::NextHeader => "next H record",
        MessageEnd::Eot => "EOT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::IngestError;
    use labagent_astm::chars::{ACK, ENQ, EOT};
    use labagent_astm::frame::{STANDARD_MAX_TEXT, frames_for_message};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// Fault injection: a commit that starts, says so, and finishes only when let go.
    struct SlowCommit {
        started: Notify,
        release: Notify,
    }

    impl Ingest for SlowCommit {
        async fn ingest(&self, _inbound: Inbound) -> Result<Outcome, IngestError> {
            self.started.notify_one();
            self.release.notified().await;
            Ok(Outcome::Committed {
                control_ids: vec!["C1".into()],
            })
        }
    }

    async fn read_byte(io: &mut tokio::io::DuplexStream) -> u8 {
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(5), io.read_exact(&mut b))
            .await
            .expect("an answer within 5 s")
            .expect("read");
        b[0]
    }

    /// A link served over an in-memory pipe: the analyser's end, the stop token, the task.
    fn start_link<I: Ingest>(
        ingest: &Arc<I>,
    ) -> (
        tokio::io::DuplexStream,
        CancellationToken,
        tokio::task::JoinHandle<std::io::Result<DriveEnd>>,
    ) {
        let (analyser, mut agent) = tokio::io::duplex(4096);
        let shutdown = CancellationToken::new();
        let health = SourceHealth::new("an", "astm-tcp", "test".into());
        let link = {
            let (ingest, shutdown) = (ingest.clone(), shutdown.clone());
            tokio::spawn(async move {
                let source: Arc<str> = Arc::from("an");
                serve_link(
                    &mut agent,
                    &source,
                    &LinkConfig::default(),
                    &ingest,
                    &health,
                    &shutdown,
                )
                .await
            })
        };
        (analyser, shutdown, link)
    }

    /// Fault injection: commits at once and remembers what it was given.
    #[derive(Default)]
    struct Remember {
        texts: std::sync::Mutex<Vec<Vec<u8>>>,
    }

    impl Ingest for Remember {
        async fn ingest(&self, inbound: Inbound) -> Result<Outcome, IngestError> {
            if let Payload::Astm { text, .. } = inbound.payload {
                self.texts.lock().expect("lock").push(text);
            }
            Ok(Outcome::Committed {
                control_ids: vec!["C1".into()],
            })
        }
    }

    /// A message with no L record is complete only at EOT, and its frames are acknowledged
    /// before that: a stop in between waits for the EOT instead of losing the message.
    #[tokio::test]
    async fn a_stop_inside_a_transmission_waits_for_its_end() {
        let ingest = Arc::new(Remember::default());
        let (mut analyser, shutdown, link) = start_link(&ingest);
        analyser.write_all(&[ENQ]).await.expect("write");
        assert_eq!(read_byte(&mut analyser).await, ACK);
        let text = b"H|\\^&\rP|1\rO|1|S9\rR|1|^^^HIV|< 839|cp/mL\r";
        for f in frames_for_message(text, 1, STANDARD_MAX_TEXT) {
            analyser.write_all(&f.to_bytes()).await.expect("write");
            assert_eq!(read_byte(&mut analyser).await, ACK);
        }
        shutdown.cancel();
        tokio::task::yield_now().await;
        assert!(!link.is_finished(), "stopped inside a transmission");
        analyser.write_all(&[EOT]).await.expect("write");
        let end = tokio::time::timeout(Duration::from_secs(5), link)
            .await
            .expect("the link stops after the EOT")
            .expect("task");
        assert_eq!(end.expect("drive"), DriveEnd::Done);
        assert_eq!(*ingest.texts.lock().expect("lock"), vec![text.to_vec()]);
    }

    #[tokio::test]
    async fn a_stop_during_a_commit_still_acknowledges_the_message() {
        let ingest = Arc::new(SlowCommit {
            started: Notify::new(),
            release: Notify::new(),
        });
        let (mut analyser, shutdown, link) = start_link(&ingest);
        analyser.write_all(&[ENQ]).await.expect("write");
        assert_eq!(read_byte(&mut analyser).await, ACK);
        let frames = frames_for_message(b"H|\\^&\rL|1|N\r", 1, STANDARD_MAX_TEXT);
        let (last, before) = frames.split_last().expect("frames");
        for f in before {
            analyser.write_all(&f.to_bytes()).await.expect("write");
            assert_eq!(read_byte(&mut analyser).await, ACK);
        }
        analyser.write_all(&last.to_bytes()).await.expect("write");
        ingest.started.notified().await;
        // The agent stops while the message is being committed ...
        shutdown.cancel();
        tokio::task::yield_now().await;
        ingest.release.notify_one();
        // ... and still acknowledges it, so the analyser does not send it again.
        assert_eq!(read_byte(&mut analyser).await, ACK);
        // Then it stops, between messages.
        let end = tokio::time::timeout(Duration::from_secs(5), link)
            .await
            .expect("the link stops")
            .expect("task");
        assert_eq!(end.expect("drive"), DriveEnd::Done);
    }
}
