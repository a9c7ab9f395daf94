//! The fleet's load history, which the status page plots: every [`SAMPLE_INTERVAL`], the one
//! replica that holds the store's `load_history` lock reads the fleet and adds a point (its
//! events per second and held shards) to the history the store keeps for [`KEPT`]. Every
//! replica's `/status` then shows the same history.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::domain::events_per_second_total;
use crate::store::{Store, StoreError};

/// The store lock that elects the replica that samples.
pub const LOCK: &str = "load_history";
/// Time between two points: 120 points make the hour the page shows.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a point is kept.
pub const KEPT: Duration = Duration::from_secs(3600);

pub struct LoadHistory {
    store: Arc<Store>,
    /// This replica's name for the lock.
    owner: String,
}

impl LoadHistory {
    pub fn new(store: Arc<Store>, owner: String) -> Self {
        Self { store, owner }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if let Err(error) = self.sample().await {
                log::warn!("load history: {error}");
            }
            if sleep_or_stop(SAMPLE_INTERVAL, &mut stop).await {
                return;
            }
        }
    }

    /// Adds a point if this replica holds the lock; returns whether one was added.
    pub async fn sample(&self) -> Result<bool, StoreError> {
        // Two intervals: the holder renews it every interval, so it keeps it while it runs.
        let ttl = u64::try_from(2 * SAMPLE_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if !self.store.try_lock(LOCK, &self.owner, ttl).await? {
            return Ok(false);
        }
        let fleet = self.store.overview().await?;
        let held = u32::try_from(fleet.shards.len()).unwrap_or(u32::MAX);
        self.store
            .record_load(
                SAMPLE_INTERVAL,
                KEPT,
                events_per_second_total(&fleet.shards),
                held,
            )
            .await
    }
}
