//! Paged reads of the fleet for `/status`, `/metrics` and `/autoscale`.
//!
//! One script reading the whole fleet would hold Redis for about half a second with 65,536 held
//! shards, and every `/connect` and `/beat` would wait behind it. So the fleet is read page by page
//! (`fleet_page.lua`, [`PAGE`] shard ids per call): Redis is never blocked for more than a few
//! milliseconds. The pages are not one atomic snapshot; each shard's figures are consistent, which
//! is all a status read needs.

use super::recovery::InitReason;
use super::scripts::fleet_page::{Figures, FleetPage};
use super::{Store, StoreError, array, text, unexpected};
use crate::domain::{FleetStatus, GenerationStatus, ShardStatus};

/// Shard ids per script call: about 5 ms of Redis time when every id is held.
pub const PAGE: u32 = 512;

impl Store {
    /// The fleet with every figure (`extra` too), for `/status`, read in pages of [`PAGE`] ids.
    pub async fn status(&self) -> Result<FleetStatus, StoreError> {
        self.fleet(Figures::for_status()).await
    }

    /// The fleet without the status-only figures (`extra`), for scrapes, in pages of [`PAGE`] ids.
    pub async fn overview(&self) -> Result<FleetStatus, StoreError> {
        self.fleet(Figures::for_scrapes()).await
    }

    async fn fleet(&self, figures: Figures) -> Result<FleetStatus, StoreError> {
        let mut plan = self.read_plan().await?;
        if plan.is_none() {
            // Redis lost its data while this replica ran: re-create the plan (see init.lua).
            self.init(InitReason::AfterLoss).await?;
            plan = self.read_plan().await?;
        }
        let [
            generation,
            max_shards,
            pending_generation,
            pending_max_shards,
            group_size,
            pending_group_size,
        ] = plan.ok_or_else(|| unexpected("overview", &"no plan after init"))?;
        let shards = self
            .generation_page_walk(generation, max_shards, group_size, &figures)
            .await?;
        let pending = if pending_generation > 0 {
            Some(GenerationStatus {
                generation: pending_generation as u64,
                max_shards: pending_max_shards.max(0) as u32,
                shards: self
                    .generation_page_walk(
                        pending_generation,
                        pending_max_shards,
                        pending_group_size,
                        &figures,
                    )
                    .await?,
                shards_per_process: pending_group_size as u32,
            })
        } else {
            None
        };
        Ok(FleetStatus {
            total_shards: max_shards.max(0) as u32,
            generation: generation.max(0) as u64,
            shards,
            pending,
            shards_per_process: group_size as u32,
        })
    }

    /// `[generation, max_shards, pending_generation, pending_max_shards, shards_per_process,
    /// pending_shards_per_process]` (0 for no pending generation), or `None` without a plan.
    async fn read_plan(&self) -> Result<Option<[i64; 6]>, StoreError> {
        let reply = self
            .engine
            .command(&[
                "HMGET",
                &self.keys.plan,
                "generation",
                "max_shards",
                "pending_generation",
                "pending_max_shards",
                "shards_per_process",
                "pending_shards_per_process",
            ])
            .await?;
        let values: Vec<Option<i64>> = array(&reply, "overview")?
            .iter()
            .map(|value| text(Some(value)).and_then(|text| text.parse().ok()))
            .collect();
        Ok(match values[..] {
            [
                Some(generation),
                Some(max_shards),
                pending,
                pending_max,
                group_size,
                pending_group_size,
            ] => Some([
                generation,
                max_shards,
                pending.unwrap_or(0),
                pending_max.unwrap_or(0),
                group_size.unwrap_or(1).max(1),
                pending_group_size.unwrap_or(1).max(1),
            ]),
            _ => None,
        })
    }

    async fn generation_page_walk(
        &self,
        generation: i64,
        max_shards: i64,
        group_size: i64,
        figures: &Figures,
    ) -> Result<Vec<ShardStatus>, StoreError> {
        let mut shards = Vec::new();
        if generation <= 0 {
            return Ok(shards);
        }
        let generation = generation as u64;
        let max_shards = max_shards.max(0) as u32;
        let mut first = 0;
        while first < max_shards {
            let count = PAGE.min(max_shards - first);
            let page = self
                .run(&FleetPage {
                    generation,
                    first,
                    count,
                    group_size: group_size as u32,
                    shard_figures: &figures.shard_figures,
                    lease_figures: &figures.lease_figures,
                })
                .await?;
            let statuses = figures
                .statuses(page)
                .ok_or_else(|| unexpected("fleet_page.lua", &"a row without the figures asked"))?;
            shards.extend(statuses);
            first += count;
        }
        Ok(shards)
    }
}
