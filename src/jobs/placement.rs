//! Placement by load (`SHARDS_PER_PROCESS=auto`): every `PLACEMENT_INTERVAL`, the one replica
//! holding the store's `placement` lock reads the active generation's shards with their load and
//! process, the processes waiting for shards and those being drained, asks [`plan_moves`] which shards to move where,
//! and marks those moves in the store (mark_moves.lua). Each holder then hands its marked shards
//! over by RESUME (README, "Placing shards by load").
//!
//! A shard already marked to move counts at its target, so moves under way are not planned again.
//! Nothing moves while the load is not known (a held shard without an events rate or without a
//! process label), during a reshard, or while the fleet's shards are not all up.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::config::Settings;
use crate::domain::placement::{PlacedShard, plan_moves};
use crate::domain::{FleetStatus, ShardStatus};
use crate::store::{Store, StoreError};

/// The store lock that elects the replica that places.
pub const LOCK: &str = "placement";

/// `PLACEMENT_INTERVAL`, `MOVE_SETTLE`, `MAX_MOVES`.
#[derive(Clone, Copy, Debug)]
pub struct PlacementSettings {
    pub interval: Duration,
    pub settle: Duration,
    pub max_moves: u32,
}

impl PlacementSettings {
    /// `None` unless `SHARDS_PER_PROCESS=auto`: fixed groups never move.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        settings.shards_per_process.is_auto().then(|| Self {
            interval: Duration::from_secs(settings.placement_interval_seconds.max(1)),
            settle: Duration::from_secs(settings.move_settle_seconds),
            max_moves: settings.max_moves,
        })
    }
}

pub struct Placement {
    store: Arc<Store>,
    settings: PlacementSettings,
    /// This replica's name for the lock.
    owner: String,
}

impl Placement {
    pub fn new(store: Arc<Store>, settings: PlacementSettings, owner: String) -> Self {
        Self {
            store,
            settings,
            owner,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.place().await {
                log::warn!("placement: {error}");
            }
            if sleep_or_stop(self.settings.interval, &mut stop).await {
                return;
            }
        }
    }

    /// Marks the moves the fleet needs now, if this replica holds the lock; returns how many.
    pub async fn place(&self) -> Result<u32, StoreError> {
        let ttl = u64::try_from(2 * self.settings.interval.as_millis()).unwrap_or(u64::MAX);
        if !self.store.try_lock(LOCK, &self.owner, ttl).await? {
            return Ok(0);
        }
        let fleet = self.store.overview().await?;
        let Some(placed) = placed_shards(&fleet, self.settings.settle) else {
            return Ok(0);
        };
        let processes = self.store.waiting_processes().await?;
        let desired = self
            .store
            .process_sizing()
            .await?
            .answer
            .map(|answer| answer.desired);
        let moves = plan_moves(
            &placed,
            &processes.waiting,
            &processes.draining,
            desired,
            self.settings.max_moves as usize,
        );
        if moves.is_empty() {
            return Ok(0);
        }
        let marked = self
            .store
            .mark_moves(
                fleet.generation,
                self.settings.settle,
                self.settings.max_moves,
                &moves,
            )
            .await?;
        log::info!(
            "placement: {marked} of {} planned moves marked",
            moves.len()
        );
        Ok(marked)
    }
}

/// The active generation's shards as placement sees them, or `None` while their load is not known
/// (a reshard under way, a shard nobody holds, a holder without a label or an events rate).
fn placed_shards(fleet: &FleetStatus, settle: Duration) -> Option<Vec<PlacedShard>> {
    if fleet.pending.is_some() || fleet.shards.len() < fleet.total_shards as usize {
        return None;
    }
    let settled_before = Utc::now() - settle;
    fleet
        .shards
        .iter()
        .map(|shard: &ShardStatus| {
            // A shard marked to move counts at its target already: counted at the process it
            // leaves, the next placement (before the hand-over) would see the same imbalance and
            // mark more shards, overshooting, and the next ones would move them back.
            let process = shard.moving_to.clone().or_else(|| shard.process.clone());
            Some(PlacedShard {
                shard_id: shard.shard_id,
                process: process?,
                events_per_second: shard.events_per_second?,
                movable: shard.beaten
                    && shard.moving_to.is_none()
                    && shard.moved_in_at.is_none_or(|at| at <= settled_before),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(shards: Vec<ShardStatus>, total_shards: u32) -> FleetStatus {
        FleetStatus {
            total_shards,
            generation: 1,
            shards,
            pending: None,
            shards_per_process: 1,
            unheld_guilds: 0,
        }
    }

    fn held(shard_id: u32, process: Option<&str>, rate: Option<f64>) -> ShardStatus {
        ShardStatus {
            shard_id,
            process: process.map(str::to_owned),
            events_per_second: rate,
            beaten: true,
            ..ShardStatus::default()
        }
    }

    #[test]
    fn nothing_is_placed_while_a_shard_is_unheld_unlabelled_or_without_a_rate() {
        let settle = Duration::from_secs(60);
        let whole = vec![held(0, Some("a"), Some(1.0)), held(1, Some("b"), Some(2.0))];
        assert_eq!(
            placed_shards(&fleet(whole.clone(), 2), settle).map(|s| s.len()),
            Some(2)
        );
        assert!(placed_shards(&fleet(whole[..1].to_vec(), 2), settle).is_none());
        let unlabelled = vec![held(0, None, Some(1.0)), held(1, Some("b"), Some(2.0))];
        assert!(placed_shards(&fleet(unlabelled, 2), settle).is_none());
        let unmeasured = vec![held(0, Some("a"), None), held(1, Some("b"), Some(2.0))];
        assert!(placed_shards(&fleet(unmeasured, 2), settle).is_none());
    }

    #[test]
    fn a_shard_moving_or_settling_or_not_up_stays() {
        let settle = Duration::from_secs(60);
        let mut moving = held(0, Some("a"), Some(1.0));
        moving.moving_to = Some("b".into());
        let mut settling = held(1, Some("a"), Some(1.0));
        settling.moved_in_at = Some(Utc::now());
        let mut settled = held(2, Some("a"), Some(1.0));
        settled.moved_in_at = Some(Utc::now() - chrono::Duration::seconds(61));
        let mut not_up = held(3, Some("a"), Some(1.0));
        not_up.beaten = false;
        let placed = placed_shards(&fleet(vec![moving, settling, settled, not_up], 4), settle)
            .expect("known load");
        let movable: Vec<bool> = placed.iter().map(|shard| shard.movable).collect();
        assert_eq!(movable, [false, false, true, false]);
    }

    #[test]
    fn a_shard_marked_to_move_counts_at_the_process_it_moves_to() {
        let mut moving = held(0, Some("a"), Some(40.0));
        moving.moving_to = Some("b".into());
        let fleet = fleet(vec![moving, held(1, Some("a"), Some(40.0))], 2);
        let placed = placed_shards(&fleet, Duration::ZERO).expect("known load");
        let processes: Vec<&str> = placed.iter().map(|shard| shard.process.as_str()).collect();
        assert_eq!(processes, ["b", "a"]);
        // Balanced as it will be once the move is done: nothing more to move.
        assert!(plan_moves(&placed, &[], &[], None, 4).is_empty());
    }
}
