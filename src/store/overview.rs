//! A paged read of the fleet for `/metrics` and `/autoscale`.
//!
//! `status.lua` reads the whole fleet in one script: one atomic snapshot, but with 65,536 held
//! shards it holds Redis for about a second (see BENCHMARKS.md). Scrapes come every few seconds
//! from every Prometheus and autoscaler, so they read page by page instead (`fleet_page.lua`,
//! [`PAGE`] shard ids per call): Redis is never blocked for more than a few milliseconds, and the
//! figures are consistent per shard, which is all a scrape needs. `extra` is not read.

use super::{Store, StoreError, array, integer, text, unexpected};
use crate::domain::{FleetStatus, GenerationStatus, ShardStatus, timestamp_from_millis};

/// Shard ids per script call: about 5 ms of Redis time when every id is held.
pub const PAGE: u32 = 512;

impl Store {
    /// The fleet as `status()` shows it, without `extra`, read in pages of [`PAGE`] shard ids.
    pub async fn overview(&self) -> Result<FleetStatus, StoreError> {
        let plan = self
            .engine
            .command(&[
                "HMGET",
                &self.keys.plan,
                "generation",
                "max_shards",
                "pending_generation",
                "pending_max_shards",
            ])
            .await?;
        let plan: Vec<i64> = array(&plan, "overview")?
            .iter()
            .map(|value| {
                text(Some(value))
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        let [
            generation,
            max_shards,
            pending_generation,
            pending_max_shards,
        ] = plan[..]
        else {
            return Err(unexpected("overview", &plan));
        };
        let shards = self.generation_page_walk(generation, max_shards).await?;
        let pending = if pending_generation > 0 {
            Some(GenerationStatus {
                generation: pending_generation as u64,
                max_shards: pending_max_shards.max(0) as u32,
                shards: self
                    .generation_page_walk(pending_generation, pending_max_shards)
                    .await?,
            })
        } else {
            None
        };
        Ok(FleetStatus {
            total_shards: max_shards.max(0) as u32,
            generation: generation.max(0) as u64,
            shards,
            pending,
        })
    }

    async fn generation_page_walk(
        &self,
        generation: i64,
        max_shards: i64,
    ) -> Result<Vec<ShardStatus>, StoreError> {
        let mut shards = Vec::new();
        if generation <= 0 {
            return Ok(shards);
        }
        let generation = generation.to_string();
        let page = i64::from(PAGE);
        let mut first = 0;
        while first < max_shards {
            let count = page.min(max_shards - first);
            let reply = self
                .engine
                .eval(
                    &self.scripts.fleet_page,
                    &[&self.keys.plan],
                    &[
                        self.keys.base.clone(),
                        generation.clone(),
                        first.to_string(),
                        count.to_string(),
                    ],
                )
                .await?;
            for row in array(&reply, "fleet_page")? {
                let fields = array(row, "fleet_page")?;
                let [shard_id, last_beat, beaten, guild_count, latency] = fields else {
                    return Err(unexpected("fleet_page", row));
                };
                shards.push(ShardStatus {
                    shard_id: integer(shard_id, "fleet_page")? as u32,
                    last_beat: timestamp_from_millis(integer(last_beat, "fleet_page")?),
                    guild_count: text(Some(guild_count)).and_then(|text| text.parse().ok()),
                    latency: text(Some(latency)).and_then(|text| text.parse().ok()),
                    extra: None,
                    fence: 0,
                    beaten: integer(beaten, "fleet_page")? == 1,
                });
            }
            first += count;
        }
        Ok(shards)
    }
}
