//! Runs a sans-I/O [`Link`] over any async byte stream (TCP socket, serial port, pty) and owns the
//! clock for it: reads feed `handle_input`, the link's deadline drives `handle_timeout`, and
//! transmits are written out as soon as the link produces them.

use labagent_astm::link::{Event, Link, ReceivedMessage};
use std::future::Future;
use std::io;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What the driver asks of its owner.
pub trait LinkHandler {
    /// A complete message arrived. Return `true` once it is stored durably (the link then sends
    /// the held ACK), `false` to refuse it (NAK: the analyser keeps it and retries).
    fn on_message(&mut self, message: ReceivedMessage) -> impl Future<Output = bool> + Send;

    /// Every other link event, for telemetry and for senders waiting on `Sent`.
    fn on_event(&mut self, _event: &Event) {}

    /// True when the driver should return (e.g. a sender has nothing left to send).
    fn done(&self, _link: &Link) -> bool {
        false
    }

    /// Resolves when the driver should stop (shutdown, reload). The driver stops only between
    /// messages ([`Link::is_between_messages`]), never between a message's commit and its ACK
    /// (the analyser would send it again and its new translation would reach the EHR under new
    /// control ids, a duplicate nobody can spot) nor inside a transmission whose frames are
    /// already acknowledged; a message in progress gets [`super::STOP_GRACE`] to finish.
    fn stopping(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// Why [`drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveEnd {
    /// The handler said it is done, or asked the driver to stop.
    Done,
    /// Asked to stop, the driver waited [`super::STOP_GRACE`] for a message in progress and
    /// gave up on it: frames it already acknowledged are lost unless the analyser sends the
    /// message again.
    Abandoned,
    /// The peer closed the stream (a pty hang-up reads as end of file too).
    Eof,
}

/// Runs `link` over `io` until the handler is done or the stream ends.
pub async fn drive<S, H>(io: &mut S, link: &mut Link, handler: &mut H) -> io::Result<DriveEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: LinkHandler,
{
    let mut buf = vec![0u8; 4096];
    // Set once a stop is asked for while a message is in progress: the latest moment to go.
    let mut stop_by: Option<Instant> = None;
    loop {
        flush(io, link).await?;
        while let Some(event) = link.poll_event() {
            match event {
                Event::Message(message) => {
                    let id = message.id;
                    let stored = handler.on_message(message).await;
                    let now = Instant::now();
                    if stored {
                        link.commit(id, now);
                    } else {
                        link.refuse(id, now);
                    }
                }
                other => handler.on_event(&other),
            }
            flush(io, link).await?;
        }
        if handler.done(link) {
            return Ok(DriveEnd::Done);
        }
        if let Some(by) = stop_by {
            if link.is_between_messages() {
                return Ok(DriveEnd::Done);
            }
            if Instant::now() >= by {
                return Ok(DriveEnd::Abandoned);
            }
        }
        let deadline = link.poll_timeout();
        tokio::select! {
            () = handler.stopping(), if stop_by.is_none() => {
                if link.is_between_messages() {
                    return Ok(DriveEnd::Done);
                }
                stop_by = Some(Instant::now() + super::STOP_GRACE);
            }
            () = sleep_until(stop_by) => {}
            read = io.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(DriveEnd::Eof);
                }
                link.handle_input(&buf[..n], Instant::now());
            }
            () = sleep_until(deadline) => {
                link.handle_timeout(Instant::now());
            }
        }
    }
}

async fn flush<S: AsyncWrite + Unpin>(io: &mut S, link: &mut Link) -> io::Result<()> {
    while let Some(bytes) = link.poll_transmit() {
        io.write_all(&bytes).await?;
        io.flush().await?;
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
