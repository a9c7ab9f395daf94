//! Brute-force protection: failed authentications are limited per client address.
//!
//! Each address may fail `FAILED_AUTH_PER_MINUTE` times in a burst, then one more time per
//! `60 / FAILED_AUTH_PER_MINUTE` seconds (a GCRA from `governor`). An address over its budget is
//! blocked until its next failure would be allowed: a request from it that presents a secret
//! answers 429 with `Retry-After` **before** the secret is compared, so a blocked attacker learns
//! nothing, not even from a correct guess.
//!
//! One exception, so that a typo in one process does not take down the healthy processes sharing
//! its address (one VM, one NAT, a sidecar): a request carrying a session id signed for its bot
//! (see `auth::select_bot`) is still let in ([`Admission::SessionHolder`]). Whoever holds such an
//! id once had the secret; without one an attacker learns nothing new. Its secret is compared as
//! usual, and a wrong one counts as a failure.
//!
//! The address is the TCP peer, unless the peer is one of `TRUSTED_PROXIES`: then it is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to its left could
//! have been written by the client and are ignored).
//!
//! The counts live in each replica's memory: behind N replicas an attacker gets at most N times the
//! budget, which still turns a brute force of a random secret into a hopeless one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

/// `TRUSTED_PROXIES` is parsed with the other settings; re-exported for the existing callers.
pub use crate::config::parse_trusted_proxies;

/// Addresses tracked before the limiter forgets the ones that are back to a full budget.
const TRACKED_ADDRESSES: usize = 10_000;

/// How a request that presents a secret is let in, decided once per request (by
/// `auth::select_bot`, before the secret is compared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Its address is not blocked: the secret decides.
    Open,
    /// Its address is blocked, but it carries a session id signed for its bot: the secret
    /// decides, and a wrong one answers 403 and counts as a failure.
    SessionHolder,
    /// Its address is blocked: 429 for this long, without looking at the secret.
    Blocked(Duration),
}

impl Admission {
    /// The admission of a request from an address blocked for `wait`: let in only with a session
    /// id signed for its bot.
    pub fn while_blocked(wait: Duration, holds_session: bool) -> Self {
        if holds_session {
            Admission::SessionHolder
        } else {
            Admission::Blocked(wait)
        }
    }
}

pub struct FailedAuthLimiter {
    /// `None` when `FAILED_AUTH_PER_MINUTE=0` (no limit).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over their budget, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// When the latest block of any address ends, in ms after `started`. Once it is past, no
    /// address is blocked: an ordinary request (a beat) checks this and takes no lock.
    blocks_end_ms: AtomicU64,
    started: Instant,
    trusted_proxies: Vec<IpNet>,
}

impl FailedAuthLimiter {
    pub fn new(failures_per_minute: u32, trusted_proxies: Vec<IpNet>) -> Self {
        Self {
            limiter: NonZeroU32::new(failures_per_minute)
                .map(|budget| RateLimiter::keyed(Quota::per_minute(budget))),
            blocked: Mutex::new(HashMap::new()),
            blocks_end_ms: AtomicU64::new(0),
            started: Instant::now(),
            trusted_proxies,
        }
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|network| network.contains(&address))
    }

    /// The client's address, as described in the module documentation.
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| parse_forwarded_entry(entry.trim()))
            .collect();
        Some(
            forwarded
                .iter()
                .rev()
                .find(|address| !self.is_trusted(**address))
                .copied()
                .unwrap_or(peer),
        )
    }

    fn millis_since_start(&self, instant: Instant) -> u64 {
        u64::try_from(instant.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX)
    }

    /// Whether any address may be blocked right now: one atomic load, no lock.
    fn any_blocked(&self) -> bool {
        self.limiter.is_some()
            && self.blocks_end_ms.load(Ordering::Relaxed) > self.millis_since_start(Instant::now())
    }

    /// How long the request's client address stays blocked; `None` when it is not. While no
    /// address is blocked this neither reads the address nor takes a lock.
    pub fn blocked_wait(&self, req: &HttpRequest) -> Option<Duration> {
        if !self.any_blocked() {
            return None;
        }
        self.check(self.client_address(req)?).err()
    }

    /// `Err(wait)` while the address is blocked.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        if !self.any_blocked() {
            return Ok(());
        }
        let mut blocked = self.blocked.lock().expect("rate limit lock");
        let now = Instant::now();
        match blocked.get(&address) {
            Some(until) if *until > now => Err(*until - now),
            Some(_) => {
                blocked.remove(&address);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed authentication; `Err(wait)` when it went over the budget, which blocks the
    /// address for `wait`.
    pub fn record_failure(&self, address: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() > TRACKED_ADDRESSES {
            limiter.retain_recent();
        }
        match limiter.check_key(&address) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(limiter.clock().now())
                    .max(Duration::from_secs(1));
                let mut blocked = self.blocked.lock().expect("rate limit lock");
                let now = Instant::now();
                if blocked.len() > TRACKED_ADDRESSES {
                    blocked.retain(|_, until| *until > now);
                }
                let until = now + wait;
                blocked.insert(address, until);
                // Rounded up, so the fast path never skips the lock while this block lasts.
                self.blocks_end_ms
                    .fetch_max(self.millis_since_start(until) + 1, Ordering::Relaxed);
                Err(wait)
            }
        }
    }
}

/// One `X-Forwarded-For` entry: an IP, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    None
}

/// Seconds for `Retry-After`, rounded up.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_blocked_after_its_budget_of_failures() {
        let limiter = FailedAuthLimiter::new(3, Vec::new());
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        let bystander: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.record_failure(attacker).is_ok());
        }
        let wait = limiter
            .record_failure(attacker)
            .expect_err("fourth failure is over budget");
        assert!(
            wait <= Duration::from_secs(20),
            "one failure per 20 s replenishes: {wait:?}"
        );
        assert!(limiter.check(attacker).is_err());
        assert!(limiter.check(bystander).is_ok());
    }

    #[test]
    fn nothing_counts_as_blocked_until_an_address_goes_over_its_budget() {
        let limiter = FailedAuthLimiter::new(2, Vec::new());
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(!limiter.any_blocked(), "a fresh limiter blocks nobody");
        for _ in 0..2 {
            assert!(limiter.record_failure(attacker).is_ok());
        }
        assert!(
            !limiter.any_blocked(),
            "failures within the budget block nobody, so beats take no lock"
        );
        assert!(limiter.record_failure(attacker).is_err());
        assert!(limiter.any_blocked());
    }

    #[test]
    fn a_blocked_address_admits_only_requests_holding_a_session() {
        let wait = Duration::from_secs(3);
        assert_eq!(
            Admission::while_blocked(wait, true),
            Admission::SessionHolder
        );
        assert_eq!(
            Admission::while_blocked(wait, false),
            Admission::Blocked(wait)
        );
    }

    #[test]
    fn a_failure_while_blocked_keeps_the_address_blocked() {
        let limiter = FailedAuthLimiter::new(1, Vec::new());
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(limiter.record_failure(address).is_ok());
        assert!(limiter.record_failure(address).is_err());
        // A session holder's wrong secret counts like any other.
        assert!(limiter.record_failure(address).is_err());
        assert!(limiter.check(address).is_err());
    }

    #[test]
    fn a_block_ends_after_its_wait_and_the_fast_path_returns() {
        // 60 a minute: one failure back per second, the shortest block there is.
        let limiter = FailedAuthLimiter::new(60, Vec::new());
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        let wait = loop {
            if let Err(wait) = limiter.record_failure(address) {
                break wait;
            }
        };
        assert!(limiter.check(address).is_err());
        std::thread::sleep(wait + Duration::from_millis(50));
        assert!(limiter.check(address).is_ok());
        assert!(!limiter.any_blocked());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = FailedAuthLimiter::new(0, Vec::new());
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..100 {
            assert!(limiter.record_failure(address).is_ok());
        }
        assert!(limiter.check(address).is_ok());
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_networks() {
        let parsed = parse_trusted_proxies("10.0.0.0/8, 127.0.0.1 ,::1").unwrap();
        assert_eq!(parsed.len(), 3);
        assert!(parse_trusted_proxies("10.0.0.0/8,nonsense").is_err());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
    }
}
