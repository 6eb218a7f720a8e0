//! Capped exponential backoff with jitter, for reconnecting to analysers, brokers and EHRs.
//!
//! Pure: the caller supplies the randomness (a `u64` per step), so tests are deterministic and
//! the protocol code never reads a clock. "Full jitter" (AWS architecture blog): the delay is
//! uniform in `[base/2, base]`, which keeps a fleet of agents from reconnecting in lock-step
//! after an EHR outage while never waiting less than half the nominal delay.

use std::time::Duration;

/// Backoff policy and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, doubles per failure, never exceeds `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// 500 ms doubling to 60 s: the default for reconnects.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(60))
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The nominal delay of the next failure, before jitter.
    pub fn nominal(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Records a failure and returns how long to wait, jittered by `random`.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let base = self.nominal();
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let span = (base - half).as_nanos() as u64;
        let jitter = if span == 0 { 0 } else { random % (span + 1) };
        half + Duration::from_nanos(jitter)
    }

    /// Records a success: the next failure starts again from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A cheap random number for jitter (not for security): mixes the clock's nanoseconds with a
/// counter through SplitMix64.
pub fn jitter_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let mut z = nanos
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps_with_jitter_in_half_to_full() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let nominal: Vec<u64> = (0..6)
            .map(|_| {
                let n = b.nominal().as_millis() as u64;
                let d = b.next_delay(u64::MAX).as_millis() as u64;
                assert!(d >= n / 2 && d <= n, "{d} not in [{}, {n}]", n / 2);
                n
            })
            .collect();
        assert_eq!(nominal, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(0), Duration::from_millis(50));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            assert!(b.next_delay(jitter_seed()) <= Duration::from_secs(60));
        }
        assert_eq!(b.attempt(), 100);
    }
}
