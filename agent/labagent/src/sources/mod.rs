//! Analyser-facing transports and the driver that runs the E1381 link over them.

use std::time::Duration;

pub mod astm;
pub mod driver;
pub mod mllp;
pub mod serial;

/// After a stop (shutdown, reload) is asked for, how long a source lets a message in progress
/// finish (an ASTM transmission, a commit and its ACK) before it gives up on it. Well inside
/// the agent's 10 s stop deadline.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a listening source waits for its connections after a stop: their own grace, the
/// second after it at which a link is dropped where it is, and a little more.
pub const CONNECTIONS_GRACE: Duration = Duration::from_secs(7);

/// Longest TLS handshake a listening source waits for (or its idle timeout, if shorter): a
/// client that stalls there holds a connection slot and has sent nothing yet.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// After a listening source stopped accepting: waits for its connections (which stop between
/// messages) at most [`CONNECTIONS_GRACE`].
pub(crate) async fn wait_for(source: &str, connections: tokio_util::task::TaskTracker) {
    connections.close();
    if tokio::time::timeout(CONNECTIONS_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(%source, open = connections.len(), "connections still busy after the stop grace; leaving them");
    }
}
