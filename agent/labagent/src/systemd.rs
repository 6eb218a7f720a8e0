//! systemd notifications (sd_notify): READY=1 once the store has recovered and every listener
//! is bound, STATUS= lines, STOPPING=1 on shutdown. Without systemd (no NOTIFY_SOCKET) every
//! call does nothing.

use sd_notify::NotifyState;

/// Tells systemd the agent is ready, with a one-line status.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the agent is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
