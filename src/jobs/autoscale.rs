//! The shard count follows load (when `MAX_SHARDS` is unset).
//!
//! The target is `max(Discord's recommended shards, ceil(guilds / GUILDS_PER_SHARD), MIN_SHARDS)`,
//! rounded up to a multiple of `max_concurrency` when that is above 1 (so every identify bucket
//! gets the same number of shards). A higher target starts a reshard at once. A lower one only
//! with `ALLOW_SHRINK=true`, and only after it has held for `SHRINK_AFTER` seconds: the time it was
//! first seen is kept in the store, so it survives replica restarts and any replica can finish
//! the wait another one began.
//!
//! With `SHARD_LOAD_MAX`, the busiest shard's load is one more lower bound of the target
//! ([`shard_load`]): a shard that carries more than that share of `LOAD_TARGET` for
//! `SHARD_LOAD_AFTER` raises the count, and a shrink keeps to what the load needs.
//!
//! With `LOAD_TARGET` or `CPU_TARGET`, the same evaluation also sizes the bot fleet by load
//! ([`sizing`]), whether or not `MAX_SHARDS` is set, and keeps the answer in the store for
//! `/autoscale`.
//!
//! [`target_shards`], [`decide`] and [`sizing::decide`] are pure; [`Autoscaler`] runs them every
//! `AUTOSCALE_INTERVAL` seconds on the one replica that holds the store's `autoscale` lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::stop::sleep_or_stop;
use crate::config::{MAX_SHARD_COUNT, Settings};
use crate::domain::FleetStatus;
use crate::domain::shard_load::{BusiestShard, ShardLoadNeed, ShardLoadRule};
use crate::domain::sizing::{self, FleetLoad, ProcessAnswer, Sizing, group_count};
use crate::store::{ProcessSizing, Store, StoreError};

/// The store lock that elects the replica that evaluates.
pub const LOCK: &str = "autoscale";
/// The store's meta field holding the pending shrink: `"<since ms>:<target>"`.
pub const SHRINK_HOLD_FIELD: &str = "autoscale_shrink_since";
/// The store's meta field holding since when (ms) the busiest shard has been over
/// `SHARD_LOAD_MAX`.
pub const SHARD_LOAD_HOLD_FIELD: &str = "autoscale_shard_load_since";

/// What the fleet looks like right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Discord's recommended `shards` from `/gateway/bot`, when known.
    pub recommended_shards: Option<u32>,
    /// Sum of the `guild_count` that the running shards last reported.
    pub total_guilds: u64,
    /// Discord's `max_concurrency` (or `MAX_CONCURRENCY`).
    pub max_concurrency: u32,
    /// The least count the busiest shard's load allows (`SHARD_LOAD_MAX`; 0 without it).
    pub shards_for_load: u32,
}

/// The operator's rules (`GUILDS_PER_SHARD`, `MIN_SHARDS`, `ALLOW_SHRINK`, `SHRINK_AFTER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub guilds_per_shard: u32,
    pub min_shards: u32,
    pub allow_shrink: bool,
    pub shrink_after: Duration,
    /// `SHARDS_PER_PROCESS`: counts are whole groups, so groups never straddle a count change.
    pub shards_per_process: u32,
}

/// The shard count the load calls for, between 1 and 65,536.
pub fn target_shards(load: &Load, policy: &Policy) -> u32 {
    let per_shard = u64::from(policy.guilds_per_shard.max(1));
    let for_guilds = load.total_guilds.div_ceil(per_shard);
    let wanted = for_guilds
        .max(load.recommended_shards.unwrap_or(0).into())
        .max(policy.min_shards.into())
        .max(load.shards_for_load.into())
        .max(1);
    // A multiple of max_concurrency and of the group size: lcm(K, max_concurrency).
    let concurrency = lcm(
        u64::from(load.max_concurrency.max(1)),
        u64::from(policy.shards_per_process.max(1)),
    );
    let rounded = wanted.div_ceil(concurrency) * concurrency;
    let limit = u64::from(MAX_SHARD_COUNT);
    // Past the limit, the largest multiple of max_concurrency that fits (or the limit itself).
    let capped = if rounded <= limit {
        rounded
    } else {
        (limit / concurrency * concurrency).max(1)
    };
    u32::try_from(capped).unwrap_or(MAX_SHARD_COUNT)
}

fn lcm(a: u64, b: u64) -> u64 {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    a / x * b
}

/// A lower target that is being waited out: since when (ms since the epoch), and the highest
/// lower target seen since then (the count a shrink would go to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShrinkHold {
    pub since_ms: i64,
    pub target: u32,
}

impl ShrinkHold {
    pub fn encode(&self) -> String {
        format!("{}:{}", self.since_ms, self.target)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (since, target) = text.split_once(':')?;
        Some(Self {
            since_ms: since.parse().ok()?,
            target: target.parse().ok()?,
        })
    }
}

/// What to do about the planned count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The plan is right (or may not shrink).
    Keep,
    /// Reshard to this count now.
    Reshard(u32),
    /// A lower target is being waited out.
    Wait,
}

/// Compares the planned count with the target; returns the decision and the shrink hold to keep
/// in the store (`None`: clear it).
pub fn decide(
    planned: u32,
    target: u32,
    policy: &Policy,
    hold: Option<ShrinkHold>,
    now_ms: i64,
) -> (Decision, Option<ShrinkHold>) {
    if target > planned {
        return (Decision::Reshard(target), None);
    }
    if target == planned || !policy.allow_shrink {
        return (Decision::Keep, None);
    }
    // A lower target: start or continue the wait. The shrink goes to the highest target seen
    // during the wait, so a brief dip cannot take the count below what the load needed.
    let hold = match hold {
        Some(hold) if hold.target < planned => ShrinkHold {
            since_ms: hold.since_ms,
            target: hold.target.max(target),
        },
        _ => ShrinkHold {
            since_ms: now_ms,
            target,
        },
    };
    let held_ms = now_ms.saturating_sub(hold.since_ms);
    let needed_ms = i64::try_from(policy.shrink_after.as_millis()).unwrap_or(i64::MAX);
    if held_ms >= needed_ms {
        (Decision::Reshard(hold.target), None)
    } else {
        (Decision::Wait, Some(hold))
    }
}

/// What the autoscaler reads from `Settings`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoscaleSettings {
    /// `AUTOSCALE_INTERVAL`.
    pub interval: Duration,
    /// `MAX_SHARDS` is unset: the shard count follows load.
    pub shard_count: bool,
    pub policy: Policy,
    /// `MAX_CONCURRENCY`: used until Discord's own value is known.
    pub max_concurrency: u32,
    /// `BOT_TOKEN` is set: Discord's recommendation will come, so wait for it.
    pub gateway_polled: bool,
    /// `LOAD_TARGET` / `CPU_TARGET`: the bot processes are sized by load.
    pub sizing: Option<Sizing>,
    /// `SHARD_LOAD_MAX`: the busiest shard's load raises the shard count.
    pub shard_load: Option<ShardLoadRule>,
}

impl AutoscaleSettings {
    /// `None` when there is nothing to evaluate: `MAX_SHARDS` is set (the operator fixed the
    /// count) and no load target sizes the fleet.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let sizing = Sizing::new(
            settings.load_target,
            settings.cpu_target,
            Duration::from_secs(settings.scale_in_after_seconds),
        );
        (settings.autoscale || sizing.is_some()).then(|| Self {
            shard_count: settings.autoscale,
            sizing,
            interval: Duration::from_secs(settings.autoscale_interval_seconds),
            policy: Policy {
                guilds_per_shard: settings.guilds_per_shard,
                min_shards: settings.min_shards,
                allow_shrink: settings.allow_shrink,
                shrink_after: Duration::from_secs(settings.shrink_after_seconds),
                shards_per_process: settings.shards_per_process.group_size(),
            },
            max_concurrency: settings.max_concurrency,
            gateway_polled: settings.bot_token.is_some(),
            shard_load: shard_load_rule(settings),
        })
    }
}

/// `SHARD_LOAD_MAX` with its `LOAD_TARGET` and `SHARD_LOAD_AFTER`, when set.
pub fn shard_load_rule(settings: &Settings) -> Option<ShardLoadRule> {
    Some(ShardLoadRule {
        max_share: settings.shard_load_max?,
        load_target: settings.load_target?,
        after: Duration::from_secs(settings.shard_load_after_seconds),
    })
}

/// The periodic evaluation on one replica.
pub struct Autoscaler {
    store: Arc<Store>,
    settings: AutoscaleSettings,
    /// This replica's name for the lock.
    owner: String,
    /// Notified when new gateway info arrived: evaluate now rather than at the next tick.
    wake: Arc<Notify>,
}

impl Autoscaler {
    pub fn new(
        store: Arc<Store>,
        settings: AutoscaleSettings,
        owner: String,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            settings,
            owner,
            wake,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = self.settings.interval;
        loop {
            if let Err(error) = self.evaluate().await {
                log::warn!("autoscale: {error}");
            }
            tokio::select! {
                stopped = sleep_or_stop(interval, &mut stop) => if stopped { return },
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One evaluation, if this replica holds the lock.
    pub async fn evaluate(&self) -> Result<(), StoreError> {
        let settings = &self.settings;
        let store = &self.store;
        let ttl = u64::try_from(settings.interval.as_millis()).unwrap_or(u64::MAX);
        if !store.try_lock(LOCK, &self.owner, ttl).await? {
            return Ok(());
        }
        if let Some(sizing) = &settings.sizing {
            // Rates and CPU only: the paged read without `extra`.
            let status = store.overview().await?;
            self.size_processes(&status, sizing).await?;
        }
        if settings.shard_count {
            self.scale_shards().await?;
        }
        Ok(())
    }

    /// Sizes the bot fleet by load ([`sizing::decide`]) and keeps the answer and the scale-in
    /// hold in the store.
    async fn size_processes(
        &self,
        status: &FleetStatus,
        sizing: &Sizing,
    ) -> Result<(), StoreError> {
        let store = &self.store;
        let kept = store.process_sizing().await?;
        let current = kept
            .answer
            .map_or_else(|| group_count(status), |answer| answer.desired);
        let load = FleetLoad::of(status);
        let now_ms = i64::try_from(store.now_ms().await?).unwrap_or(i64::MAX);
        let (desired, hold) = sizing::decide(
            current,
            status.total_shards,
            &load,
            sizing,
            kept.hold,
            now_ms,
        );
        let answer = Some(ProcessAnswer { desired, load });
        store
            .save_process_sizing(ProcessSizing { answer, hold }, kept)
            .await?;
        if desired != current {
            log::info!(
                "autoscale: {} events/s, {} cores: {current} -> {desired} bot processes",
                load.events_per_second
                    .map_or_else(|| "unknown".to_owned(), |rate| format!("{rate:.1}")),
                load.cpu
                    .map_or_else(|| "unknown".to_owned(), |cpu| format!("{cpu:.2}")),
            );
        }
        Ok(())
    }

    /// Follows the guilds and Discord's recommendation with the shard count.
    async fn scale_shards(&self) -> Result<(), StoreError> {
        let settings = &self.settings;
        let store = &self.store;
        let gateway = store.gateway().await?;
        if settings.gateway_polled && gateway.is_none() {
            // Discord's recommendation is on its way; scaling before it would reshard twice.
            log::debug!("autoscale: waiting for Discord's gateway info");
            return Ok(());
        }
        // Guild counts and rates: the paged read without `extra`.
        let status = store.overview().await?;
        // The store's clock, shared by all replicas, measures the holds.
        let now_ms = i64::try_from(store.now_ms().await?).unwrap_or(i64::MAX);
        let shard_load = self.shard_load_need(&status, now_ms).await?;
        let load = Load {
            recommended_shards: gateway.as_ref().map(|info| info.shards),
            // The active generation carries the bot's guilds; during a reshard the pending one
            // reports the same guilds again.
            total_guilds: status.total_guilds(),
            max_concurrency: gateway
                .as_ref()
                .map_or(settings.max_concurrency, |info| info.max_concurrency),
            shards_for_load: shard_load.at_least(),
        };
        let policy = &settings.policy;
        let target = target_shards(&load, policy);
        // The count the fleet is heading for: the pending generation's, during a reshard.
        let planned = status
            .pending
            .as_ref()
            .map_or(status.total_shards, |pending| pending.max_shards);
        let hold = store
            .get_meta(SHRINK_HOLD_FIELD)
            .await?
            .as_deref()
            .and_then(ShrinkHold::decode);
        let (decision, new_hold) = decide(planned, target, policy, hold, now_ms);
        if new_hold != hold {
            let encoded = new_hold.map(|hold| hold.encode());
            store
                .set_meta(SHRINK_HOLD_FIELD, encoded.as_deref())
                .await?;
        }
        match decision {
            Decision::Keep => {}
            Decision::Wait => log::debug!(
                "autoscale: {target} shards would do; waiting before shrinking from {planned}"
            ),
            Decision::Reshard(count) => {
                let plan = store.reshard(count, None).await?;
                if !plan.started {
                    return Ok(());
                }
                let without_load = Load {
                    shards_for_load: 0,
                    ..load
                };
                let by_load = if target_shards(&without_load, policy) < target {
                    " (the busiest shard is over SHARD_LOAD_MAX)"
                } else {
                    ""
                };
                log::info!(
                    "autoscale: {} guilds, {} recommended by Discord: resharding {} -> {}{by_load} \
                     (generation {})",
                    load.total_guilds,
                    load.recommended_shards
                        .map_or_else(|| "none".to_owned(), |shards| shards.to_string()),
                    plan.from_max_shards,
                    plan.max_shards,
                    plan.generation
                );
            }
        }
        Ok(())
    }

    /// What the busiest shard of the active generation asks of the shard count
    /// ([`ShardLoadRule::decide`]), keeping the over-the-bound hold in the store.
    async fn shard_load_need(
        &self,
        status: &FleetStatus,
        now_ms: i64,
    ) -> Result<ShardLoadNeed, StoreError> {
        let Some(rule) = &self.settings.shard_load else {
            return Ok(ShardLoadNeed::None);
        };
        let store = &self.store;
        let kept = store.get_meta(SHARD_LOAD_HOLD_FIELD).await?;
        let since = kept.as_deref().and_then(|text| text.parse().ok());
        let busiest = BusiestShard::of(&status.shards);
        let (need, new_since) = rule.decide(status.total_shards, busiest, since, now_ms);
        if new_since != since {
            let encoded = new_since.map(|since| since.to_string());
            store
                .set_meta(SHARD_LOAD_HOLD_FIELD, encoded.as_deref())
                .await?;
        }
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            guilds_per_shard: 1000,
            min_shards: 1,
            allow_shrink: true,
            shrink_after: Duration::from_secs(3600),
            shards_per_process: 1,
        }
    }

    #[test]
    fn with_shard_groups_the_count_is_a_multiple_of_the_group_size_and_max_concurrency() {
        let groups_of_four = Policy {
            shards_per_process: 4,
            ..policy()
        };
        assert_eq!(target_shards(&load(Some(9), 0, 1), &groups_of_four), 12);
        assert_eq!(target_shards(&load(Some(9), 0, 6), &groups_of_four), 12);
        assert_eq!(target_shards(&load(Some(13), 0, 6), &groups_of_four), 24);
    }

    fn load(recommended: Option<u32>, guilds: u64, concurrency: u32) -> Load {
        Load {
            recommended_shards: recommended,
            total_guilds: guilds,
            max_concurrency: concurrency,
            shards_for_load: 0,
        }
    }

    #[test]
    fn the_target_covers_the_guilds_rounding_up() {
        assert_eq!(target_shards(&load(None, 0, 1), &policy()), 1);
        assert_eq!(target_shards(&load(None, 1000, 1), &policy()), 1);
        assert_eq!(target_shards(&load(None, 1001, 1), &policy()), 2);
        assert_eq!(target_shards(&load(None, 7_500, 1), &policy()), 8);
    }

    #[test]
    fn the_target_is_at_least_discords_recommendation_and_min_shards() {
        assert_eq!(target_shards(&load(Some(5), 1_200, 1), &policy()), 5);
        let min_three = Policy {
            min_shards: 3,
            ..policy()
        };
        assert_eq!(target_shards(&load(Some(2), 100, 1), &min_three), 3);
    }

    #[test]
    fn the_target_is_a_multiple_of_max_concurrency_above_one() {
        assert_eq!(target_shards(&load(Some(5), 0, 4), &policy()), 8);
        assert_eq!(target_shards(&load(None, 16_001, 16), &policy()), 32);
        assert_eq!(target_shards(&load(Some(8), 0, 4), &policy()), 8);
    }

    #[test]
    fn the_busiest_shard_s_need_joins_the_target_the_larger_wins_rounded() {
        // The README's example: 8 shards, shard 0 at 100/s over a bound of 30/s ask for 27;
        // with max_concurrency 16 that is 32.
        let busy = Load {
            shards_for_load: 27,
            ..load(Some(8), 0, 16)
        };
        assert_eq!(target_shards(&busy, &policy()), 32);
        // The guilds ask for more: the guilds win.
        let crowded = Load {
            shards_for_load: 3,
            ..load(None, 7_500, 1)
        };
        assert_eq!(target_shards(&crowded, &policy()), 8);
    }

    #[test]
    fn the_target_never_exceeds_discords_limit() {
        assert_eq!(
            target_shards(&load(None, u64::MAX, 1), &policy()),
            MAX_SHARD_COUNT
        );
        assert_eq!(
            target_shards(&load(None, u64::MAX, 1000), &policy()),
            65_000
        );
    }

    #[test]
    fn a_higher_target_reshards_at_once() {
        let (decision, hold) = decide(4, 6, &policy(), None, 0);
        assert_eq!(decision, Decision::Reshard(6));
        assert_eq!(hold, None);
    }

    #[test]
    fn an_equal_target_keeps_the_plan_and_clears_a_hold() {
        let old = Some(ShrinkHold {
            since_ms: 0,
            target: 2,
        });
        assert_eq!(decide(4, 4, &policy(), old, 10), (Decision::Keep, None));
    }

    #[test]
    fn a_lower_target_never_shrinks_without_allow_shrink() {
        let no_shrink = Policy {
            allow_shrink: false,
            ..policy()
        };
        let long_ago = Some(ShrinkHold {
            since_ms: 0,
            target: 2,
        });
        assert_eq!(
            decide(8, 2, &no_shrink, long_ago, i64::MAX / 2),
            (Decision::Keep, None)
        );
    }

    #[test]
    fn a_lower_target_shrinks_only_after_it_held_for_shrink_after() {
        let hour = 3_600_000;
        let (decision, hold) = decide(8, 4, &policy(), None, 1_000);
        assert_eq!(decision, Decision::Wait);
        assert_eq!(
            hold,
            Some(ShrinkHold {
                since_ms: 1_000,
                target: 4
            })
        );
        let (decision, hold) = decide(8, 4, &policy(), hold, 1_000 + hour - 1);
        assert_eq!(decision, Decision::Wait);
        let (decision, hold) = decide(8, 4, &policy(), hold, 1_000 + hour);
        assert_eq!(decision, Decision::Reshard(4));
        assert_eq!(hold, None);
    }

    #[test]
    fn a_rise_back_to_the_plan_restarts_the_wait() {
        let (_, hold) = decide(8, 4, &policy(), None, 0);
        let (decision, hold) = decide(8, 8, &policy(), hold, 1_000);
        assert_eq!((decision, hold), (Decision::Keep, None));
        let (decision, hold) = decide(8, 4, &policy(), hold, 3_600_000);
        assert_eq!(decision, Decision::Wait);
        assert_eq!(hold.map(|hold| hold.since_ms), Some(3_600_000));
    }

    #[test]
    fn a_shrink_goes_to_the_highest_lower_target_seen_while_waiting() {
        let (_, hold) = decide(8, 3, &policy(), None, 0);
        let (_, hold) = decide(8, 6, &policy(), hold, 1_000);
        let (decision, _) = decide(8, 2, &policy(), hold, 3_600_000);
        assert_eq!(decision, Decision::Reshard(6));
    }

    #[test]
    fn a_shrink_hold_survives_the_store_as_text() {
        let hold = ShrinkHold {
            since_ms: 1_767_000_000_000,
            target: 12,
        };
        assert_eq!(ShrinkHold::decode(&hold.encode()), Some(hold));
        assert_eq!(ShrinkHold::decode("garbage"), None);
    }
}
