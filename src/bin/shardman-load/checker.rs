//! The client-side safety check.
//!
//! Every session records the interval during which its process believed it held its shard: from
//! the moment the grant arrived until the earliest of (a) its own lease view running out — the send
//! time of its last acknowledged beat (or of the connect) plus `MAX_SECONDS` —, (b) the moment it
//! learned the lease was gone (404, 401), (c) the moment it sent its disconnect. A crashed process
//! keeps believing until (a): it may be a zombie that cannot reach the service.
//!
//! Safety: no two sessions may hold overlapping intervals for the same shard of the same generation,
//! and fencing tokens of one shard id must grow in the order the grants arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// One session's belief that it held a shard.
#[derive(Clone, Debug)]
pub struct Interval {
    pub shard_id: u64,
    pub generation: u64,
    pub fence: u64,
    pub session: u64,
    pub process: usize,
    pub start: Instant,
    pub end: Instant,
}

#[derive(Default)]
pub struct Checker {
    intervals: Mutex<Vec<Interval>>,
}

#[derive(Debug, Default, Serialize)]
pub struct SafetyReport {
    /// Sessions granted a shard.
    pub sessions: u64,
    pub distinct_shards: u64,
    /// Pairs of sessions that believed they held the same shard of the same generation at once.
    pub double_grants: u64,
    /// Grants whose fence was not larger than that of an earlier grant of the same shard id.
    pub fence_regressions: u64,
    /// A few of the violations, described.
    pub examples: Vec<String>,
}

impl SafetyReport {
    pub fn safe(&self) -> bool {
        self.double_grants == 0 && self.fence_regressions == 0
    }
}

const EXAMPLES: usize = 20;

impl Checker {
    pub fn record(&self, interval: Interval) {
        self.intervals.lock().expect("checker lock").push(interval);
    }

    /// Checks every recorded interval; `origin` is the run's start, for readable times.
    pub fn check(&self, origin: Instant) -> SafetyReport {
        let intervals = self.intervals.lock().expect("checker lock").clone();
        check(&intervals, origin)
    }
}

pub fn check(intervals: &[Interval], origin: Instant) -> SafetyReport {
    let ms = |at: Instant| at.saturating_duration_since(origin).as_secs_f64() * 1000.0;
    let mut report = SafetyReport {
        sessions: intervals.len() as u64,
        distinct_shards: intervals
            .iter()
            .map(|interval| interval.shard_id)
            .collect::<BTreeSet<_>>()
            .len() as u64,
        ..SafetyReport::default()
    };

    let mut by_shard: BTreeMap<(u64, u64), Vec<&Interval>> = BTreeMap::new();
    for interval in intervals {
        by_shard
            .entry((interval.shard_id, interval.generation))
            .or_default()
            .push(interval);
    }
    for ((shard_id, generation), mut held) in by_shard {
        held.sort_by_key(|interval| interval.start);
        // Every earlier interval still open when a later one starts is a double grant.
        let mut open: Vec<&Interval> = Vec::new();
        for interval in held {
            open.retain(|earlier| earlier.end > interval.start);
            for earlier in &open {
                if earlier.session == interval.session {
                    continue;
                }
                report.double_grants += 1;
                if report.examples.len() < EXAMPLES {
                    report.examples.push(format!(
                        "double grant: shard {shard_id} generation {generation}: process {} \
                         (fence {}) held it {:.0}..{:.0} ms, process {} (fence {}) from {:.0} ms",
                        earlier.process,
                        earlier.fence,
                        ms(earlier.start),
                        ms(earlier.end),
                        interval.process,
                        interval.fence,
                        ms(interval.start),
                    ));
                }
            }
            open.push(interval);
        }
    }

    let mut by_id: BTreeMap<u64, Vec<&Interval>> = BTreeMap::new();
    for interval in intervals {
        by_id.entry(interval.shard_id).or_default().push(interval);
    }
    for (shard_id, mut grants) in by_id {
        grants.sort_by_key(|interval| interval.start);
        for pair in grants.windows(2) {
            if pair[1].fence <= pair[0].fence {
                report.fence_regressions += 1;
                if report.examples.len() < EXAMPLES {
                    report.examples.push(format!(
                        "fence regression: shard {shard_id}: fence {} granted at {:.0} ms after \
                         fence {} granted at {:.0} ms",
                        pair[1].fence,
                        ms(pair[1].start),
                        pair[0].fence,
                        ms(pair[0].start),
                    ));
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn interval(origin: Instant, session: u64, fence: u64, from_ms: u64, to_ms: u64) -> Interval {
        Interval {
            shard_id: 3,
            generation: 1,
            fence,
            session,
            process: session as usize,
            start: origin + Duration::from_millis(from_ms),
            end: origin + Duration::from_millis(to_ms),
        }
    }

    #[test]
    fn back_to_back_leases_with_growing_fences_are_safe() {
        let origin = Instant::now();
        let report = check(
            &[
                interval(origin, 1, 1, 0, 100),
                interval(origin, 2, 2, 100, 200),
            ],
            origin,
        );
        assert!(report.safe(), "{report:?}");
    }

    #[test]
    fn overlapping_beliefs_are_a_double_grant() {
        let origin = Instant::now();
        let report = check(
            &[
                interval(origin, 1, 1, 0, 150),
                interval(origin, 2, 2, 100, 200),
            ],
            origin,
        );
        assert_eq!(report.double_grants, 1);
    }

    #[test]
    fn a_fence_that_does_not_grow_is_reported() {
        let origin = Instant::now();
        let report = check(
            &[
                interval(origin, 1, 5, 0, 100),
                interval(origin, 2, 1, 200, 300),
            ],
            origin,
        );
        assert_eq!(report.double_grants, 0);
        assert_eq!(report.fence_regressions, 1);
    }
}
