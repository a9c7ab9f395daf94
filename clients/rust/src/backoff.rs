//! Exponential backoff that honours the server's `Retry-After`.

use std::time::Duration;

/// Waits that double from `base` up to `cap`, each with up to 10 % jitter, and never shorter
/// than a `Retry-After` the server asked for.
#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
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
        let exponential = self
            .base
            .saturating_mul(2u32.saturating_pow(self.attempt))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        jittered(exponential).max(retry_after.unwrap_or(Duration::ZERO))
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// `wait` plus up to 10 % more, so a fleet that failed together does not retry together.
pub fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(1.0 + fastrand::f64() * 0.1)
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn waits_double_up_to_the_cap_and_start_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let waits: Vec<u64> = (0..5).map(|_| backoff.next(None).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 4, 4]);
        backoff.reset();
        assert_eq!(backoff.next(None).as_secs(), 1);
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
