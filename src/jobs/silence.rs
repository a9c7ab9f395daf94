//! Silent shards (`SHARD_SILENT_AFTER`): the one replica holding the store's `silence` lock reads
//! the active generation now and then, finds its silent shards ([`silent_shards`]) and marks them
//! (mark_silent.lua): one `shard_silent` alert per still spell, and the holder's next beat answer
//! asks it to reconnect them (again after another threshold while they stay silent).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::config::Settings;
use crate::domain::silence::silent_shards;
use crate::store::{Store, StoreError};

/// The store lock that elects the replica that looks for silent shards.
pub const LOCK: &str = "silence";
/// The longest time between two looks.
const MOST_BETWEEN_LOOKS: Duration = Duration::from_secs(30);

pub struct Silence {
    store: Arc<Store>,
    /// How long a counter stands still before its shard is silent.
    threshold: Duration,
    /// This replica's name for the lock.
    owner: String,
}

impl Silence {
    /// `None` with `SHARD_SILENT_AFTER=0`. The threshold is never below `MAX_SECONDS`: counters
    /// move only with beats, so a shorter one could not tell a quiet shard from beat spacing.
    pub fn from_settings(store: Arc<Store>, settings: &Settings, owner: String) -> Option<Self> {
        (settings.shard_silent_after_seconds > 0).then(|| Self {
            store,
            threshold: silence_threshold(settings),
            owner,
        })
    }

    /// A quarter of the threshold (at most 30 s, at least 1 s): a silent shard is found within
    /// a quarter more.
    fn interval(&self) -> Duration {
        (self.threshold / 4).clamp(Duration::from_secs(1), MOST_BETWEEN_LOOKS)
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.look().await {
                log::warn!("silent shards: {error}");
            }
            if sleep_or_stop(self.interval(), &mut stop).await {
                return;
            }
        }
    }

    /// Marks the silent shards, if this replica holds the lock; returns how many silent spells
    /// began.
    pub async fn look(&self) -> Result<u32, StoreError> {
        let ttl = u64::try_from(2 * self.interval().as_millis()).unwrap_or(u64::MAX);
        if !self.store.try_lock(LOCK, &self.owner, ttl).await? {
            return Ok(0);
        }
        let fleet = self.store.overview().await?;
        let now_ms = i64::try_from(self.store.now_ms().await?).unwrap_or(i64::MAX);
        let threshold_ms = i64::try_from(self.threshold.as_millis()).unwrap_or(i64::MAX);
        let silent = silent_shards(
            &fleet.shards,
            fleet.shards_per_process,
            threshold_ms,
            now_ms,
        );
        if silent.is_empty() {
            return Ok(0);
        }
        let began = self
            .store
            .mark_silent(
                fleet.generation,
                fleet.total_shards,
                self.threshold,
                &silent,
            )
            .await?;
        if began > 0 {
            let ids: Vec<u32> = silent.iter().map(|shard| shard.shard_id).collect();
            log::warn!("silent shards: {began} fell silent (silent now: {ids:?})");
        }
        Ok(began)
    }
}

/// `SHARD_SILENT_AFTER`, never below `MAX_SECONDS`.
pub fn silence_threshold(settings: &Settings) -> Duration {
    Duration::from_secs(
        settings
            .shard_silent_after_seconds
            .max(settings.max_seconds),
    )
}
