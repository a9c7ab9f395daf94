//! How many shards the busiest shard's load calls for (`SHARD_LOAD_MAX`): pure, no I/O.
//!
//! With placement by load a shard is the unit a process carries, so one shard busier than a
//! process can carry with room cannot be placed well: more shards split its guilds. The bound is
//! `SHARD_LOAD_MAX × LOAD_TARGET` events per second. Resharding to `n'` shards spreads the guilds
//! over `n'` ids, so a shard's share scales by about `n / n'`; the count that brings the busiest
//! shard under the bound is
//!
//! ```text
//! needed = ceil(shards × busiest / bound)
//! ```
//!
//! A raise must have held for `SHARD_LOAD_AFTER` (one reshard re-IDENTIFYs every shard: a burst
//! must not cause one), and is at least one more shard (the autoscaler then rounds it up to a
//! multiple of `max_concurrency`, so a raise is at least one identify bucket's worth). Below the
//! bound the same figure, over the bound's [`SCALE_IN_BAND`], is a floor a guild-driven shrink
//! keeps to, so a shrink never undoes what the load asked for and cannot start a raise-shrink
//! cycle. A busiest shard that reports a single guild is left alone: no shard count splits a
//! guild.

use std::time::Duration;

use super::ShardStatus;
use super::sizing::SCALE_IN_BAND;

/// `SHARD_LOAD_MAX`, `LOAD_TARGET`, `SHARD_LOAD_AFTER`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ShardLoadRule {
    /// The share of `LOAD_TARGET` one shard may carry, in (0, 1].
    pub max_share: f64,
    pub load_target: f64,
    /// How long the busiest shard must stay over the bound before the count goes up.
    pub after: Duration,
}

/// The active generation's busiest shard with a known rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BusiestShard {
    pub shard_id: u32,
    pub events_per_second: f64,
    pub guild_count: Option<u64>,
}

impl BusiestShard {
    /// `None` while no shard has a rate.
    pub fn of(shards: &[ShardStatus]) -> Option<Self> {
        shards
            .iter()
            .filter_map(|shard| {
                Some(Self {
                    shard_id: shard.shard_id,
                    events_per_second: shard.events_per_second?,
                    guild_count: shard.guild_count,
                })
            })
            .max_by(|one, other| one.events_per_second.total_cmp(&other.events_per_second))
    }
}

/// What the rule asks of the shard count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardLoadNeed {
    /// Nothing: no rate known, or the busiest shard is over the bound but not for long enough.
    None,
    /// Raise the count to at least this many (the busiest shard has been over the bound for
    /// `after`).
    Raise(u32),
    /// The busiest shard is under the bound: a shrink may go no lower than this.
    Floor(u32),
}

impl ShardLoadNeed {
    /// The least count the load allows, as the autoscaler's target combines it (the larger wins).
    pub fn at_least(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Raise(count) | Self::Floor(count) => count,
        }
    }
}

impl ShardLoadRule {
    /// Events per second above which a shard is too busy.
    pub fn bound(&self) -> f64 {
        self.max_share * self.load_target
    }

    /// What the load needs of `shards` (the active generation's count), and since when (ms, the
    /// store's clock) the busiest shard has been over the bound (`over_since`: the hold to keep;
    /// `None` clears it).
    pub fn decide(
        &self,
        shards: u32,
        busiest: Option<BusiestShard>,
        over_since: Option<i64>,
        now_ms: i64,
    ) -> (ShardLoadNeed, Option<i64>) {
        let Some(busiest) = busiest else {
            return (ShardLoadNeed::None, None);
        };
        let shards = shards.max(1);
        if busiest.events_per_second <= self.bound() {
            let floor = scaled(
                shards,
                busiest.events_per_second,
                self.bound() * SCALE_IN_BAND,
            );
            return (ShardLoadNeed::Floor(floor.min(shards)), None);
        }
        if busiest.guild_count.is_some_and(|guilds| guilds <= 1) {
            return (ShardLoadNeed::None, None);
        }
        let since = over_since.unwrap_or(now_ms);
        let needed_ms = i64::try_from(self.after.as_millis()).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(since) < needed_ms {
            return (ShardLoadNeed::None, Some(since));
        }
        (
            ShardLoadNeed::Raise(self.raise_to(shards, busiest.events_per_second)),
            Some(since),
        )
    }

    /// The count a raise goes to from `shards` for a busiest shard at `events_per_second` (over
    /// the bound): `ceil(shards × busiest / bound)`, at least one more.
    pub fn raise_to(&self, shards: u32, events_per_second: f64) -> u32 {
        let shards = shards.max(1);
        scaled(shards, events_per_second, self.bound()).max(shards.saturating_add(1))
    }
}

/// `ceil(shards × rate / bound)`: the count that would bring a shard at `rate` down to `bound`.
fn scaled(shards: u32, rate: f64, bound: f64) -> u32 {
    // `as` saturates: the autoscaler caps the count at Discord's limit.
    (f64::from(shards) * rate.max(0.0) / bound).ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn rule(after_minutes: u64) -> ShardLoadRule {
        // One process carries 60/s; a shard may carry half of it.
        ShardLoadRule {
            max_share: 0.5,
            load_target: 60.0,
            after: Duration::from_secs(60 * after_minutes),
        }
    }

    fn busiest(events_per_second: f64, guild_count: Option<u64>) -> Option<BusiestShard> {
        Some(BusiestShard {
            shard_id: 0,
            events_per_second,
            guild_count,
        })
    }

    #[test]
    fn a_shard_over_the_bound_raises_the_count_so_it_would_fall_under_it() {
        // 8 shards, the busiest at 100/s over a bound of 30/s: 8 x 100 / 30 = 26.7, so 27.
        let (need, since) = rule(0).decide(8, busiest(100.0, Some(40)), None, 0);
        assert_eq!((need, since), (ShardLoadNeed::Raise(27), Some(0)));
        // Just over the bound: still at least one more shard.
        let (need, _) = rule(0).decide(8, busiest(30.1, None), None, 0);
        assert_eq!(need, ShardLoadNeed::Raise(9));
    }

    #[test]
    fn a_raise_waits_until_the_load_held_for_shard_load_after() {
        let rule = rule(5);
        let (need, since) = rule.decide(8, busiest(100.0, None), None, MINUTE);
        assert_eq!((need, since), (ShardLoadNeed::None, Some(MINUTE)));
        let (need, since) = rule.decide(8, busiest(100.0, None), since, 6 * MINUTE - 1);
        assert_eq!((need, since), (ShardLoadNeed::None, Some(MINUTE)));
        let (need, _) = rule.decide(8, busiest(100.0, None), since, 6 * MINUTE);
        assert_eq!(need, ShardLoadNeed::Raise(27));
    }

    #[test]
    fn a_dip_under_the_bound_restarts_the_wait() {
        let rule = rule(5);
        let (_, since) = rule.decide(8, busiest(100.0, None), None, 0);
        let (need, since) = rule.decide(8, busiest(20.0, None), since, 2 * MINUTE);
        assert_eq!(since, None);
        assert!(matches!(need, ShardLoadNeed::Floor(_)));
        let (_, since) = rule.decide(8, busiest(100.0, None), since, 3 * MINUTE);
        assert_eq!(since, Some(3 * MINUTE));
    }

    #[test]
    fn under_the_bound_the_load_is_a_floor_for_a_shrink_with_a_band() {
        // 16 shards, the busiest at 12/s: 8 shards would put it near 24/s, under 30 x 0.9 = 27.
        let (need, since) = rule(0).decide(16, busiest(12.0, None), None, 0);
        assert_eq!((need, since), (ShardLoadNeed::Floor(8), None));
        // Close under the bound: the floor is the count itself, never more.
        let (need, _) = rule(0).decide(16, busiest(29.0, None), None, 0);
        assert_eq!(need, ShardLoadNeed::Floor(16));
        let (need, _) = rule(0).decide(16, busiest(0.0, None), None, 0);
        assert_eq!(need.at_least(), 0);
    }

    #[test]
    fn no_rate_or_a_single_guild_asks_nothing() {
        assert_eq!(
            rule(0).decide(8, None, Some(0), MINUTE),
            (ShardLoadNeed::None, None)
        );
        // One huge guild on its own shard: more shards cannot split it.
        let (need, _) = rule(0).decide(8, busiest(500.0, Some(1)), None, 0);
        assert_eq!(need, ShardLoadNeed::None);
    }

    #[test]
    fn the_busiest_shard_is_the_one_with_the_highest_known_rate() {
        let shard = |shard_id, rate| ShardStatus {
            shard_id,
            events_per_second: rate,
            guild_count: Some(10),
            ..ShardStatus::default()
        };
        let shards = [shard(0, Some(3.0)), shard(1, None), shard(2, Some(9.5))];
        let found = BusiestShard::of(&shards).expect("a rate");
        assert_eq!((found.shard_id, found.events_per_second), (2, 9.5));
        assert_eq!(BusiestShard::of(&[shard(0, None)]), None);
    }
}
