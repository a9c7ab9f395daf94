//! Waits between retries, as `clients/contract/backoff.json` pins them for all three client
//! packages: exponential, jittered, capped, and never shorter than the server's `Retry-After`.

use std::time::Duration;

/// Every wait is spread by this much either way, so a fleet that failed together retries apart.
pub const JITTER: f64 = 0.2;
/// Requests' backoff starts here and doubles...
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// ... up to this (unless the server's `Retry-After` asks for more).
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// `/connect` answered 401 "No Shards Available": ask again after about this long.
pub const NO_SHARDS_AVAILABLE_RETRY: Duration = Duration::from_secs(1);

/// Waits that double from `base` up to `cap`, each jittered, and never shorter than a
/// `Retry-After` the server asked for. Counts its attempts; [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    /// The requests' backoff: from 0.5 s, capped at 30 s.
    fn default() -> Self {
        Self::new(BACKOFF_BASE, BACKOFF_CAP)
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The wait before the next try.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let wait = self.delay(self.attempt, retry_after, fastrand::f64());
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait before try `attempt` (from 0) for the uniform draw `unit` in [0, 1]: the doubled
    /// base, jittered, capped; a longer `retry_after` wins.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let nominal = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)));
        jittered_with(nominal, unit)
            .min(self.cap)
            .max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// `wait` spread by [`JITTER`] either way.
pub fn jittered(wait: Duration) -> Duration {
    jittered_with(wait, fastrand::f64())
}

/// `wait` spread by [`JITTER`] for the uniform draw `unit` in [0, 1] (0: the shortest, 1: the
/// longest).
pub fn jittered_with(wait: Duration, unit: f64) -> Duration {
    wait.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// The wait before the next beat after `failures` failed ones in a row (from 0): the backoff
/// capped at `beat_interval`, `Retry-After` included, because the lease view, not the server,
/// decides when to give up.
pub fn beat_retry_delay(
    failures: u32,
    retry_after: Option<Duration>,
    beat_interval: Duration,
    unit: f64,
) -> Duration {
    Backoff::new(BACKOFF_BASE, beat_interval)
        .delay(failures, retry_after, unit)
        .min(beat_interval)
}

/// The wait before asking `/connect` again while every shard is held.
pub fn no_shards_available_delay() -> Duration {
    jittered(NO_SHARDS_AVAILABLE_RETRY)
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn waits_double_up_to_the_cap_and_start_over_after_a_reset() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let waits: Vec<u64> = (0..5)
            .map(|attempt| backoff.delay(attempt, None, 0.5).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 4, 4]);
        let mut counting = backoff.clone();
        for _ in 0..3 {
            counting.next(None);
        }
        counting.reset();
        assert!(counting.next(None) <= Duration::from_millis(1200));
    }

    #[test]
    fn a_retry_after_longer_than_the_backoff_is_honoured() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(
            backoff.next(Some(Duration::from_secs(45))),
            Duration::from_secs(45)
        );
    }
}
