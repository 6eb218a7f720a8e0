//! systemd notifications (sd_notify): READY=1 once the store has recovered and every listener
//! is bound, STATUS= lines a technician sees in `systemctl status`, WATCHDOG=1 while the
//! pipeline is healthy, STOPPING=1 on shutdown. Without systemd (no NOTIFY_SOCKET) every call
//! does nothing.

use sd_notify::NotifyState;
use std::time::Duration;

/// Tells systemd the agent is ready, with a one-line status.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the one-line status (`systemctl status labagent`).
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Pets the watchdog.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// Tells systemd a configuration reload has begun (READY=1 follows when it is done).
pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

/// Tells systemd the agent is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// How often to pet the watchdog: half of `WatchdogSec`, when systemd set one for us.
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// The STATUS= line: "2/2 sources up, 14 queued, 1 parked".
pub fn status_line(status: &crate::health::AgentStatus) -> String {
    let up = status.sources.iter().filter(|s| s.connections > 0).count();
    let queued: u64 = status.sinks.iter().map(|s| s.queue_depth).sum();
    let parked: u64 = status.sinks.iter().map(|s| s.parked).sum();
    let mut line = format!(
        "{up}/{} sources connected, {queued} queued",
        status.sources.len()
    );
    if parked > 0 {
        line.push_str(&format!(", {parked} parked"));
    }
    line
}
