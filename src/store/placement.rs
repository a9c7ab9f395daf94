//! What the placement job (`src/jobs/placement.rs`) asks of the store: the processes waiting for
//! shards and those being drained, marking the moves it decided, and draining a process; and what the silence job (`src/jobs/silence.rs`) asks:
//! marking silent shards.

use std::time::Duration;

use super::scripts::drain::{Drain, DrainMark};
use super::scripts::mark_moves::{MarkMoves, Marked};
use super::scripts::mark_silent::{EpisodesBegun, MarkSilent};
use super::scripts::waiting_processes::{WaitingLabels, WaitingProcesses};
use super::{Store, StoreError};
use crate::domain::placement::Move;
use crate::domain::silence::SilentShard;

impl Store {
    /// The labels of the processes whose claims wait for a shard, first come first (draining ones
    /// left out), and of the processes being drained.
    pub async fn waiting_processes(&self) -> Result<WaitingLabels, StoreError> {
        self.run(&WaitingProcesses {}).await
    }

    /// Drains `process` for `hold` (its shards move away, it gets none), or with `None` stops
    /// draining it. Returns until when it is drained (ms of the store's clock), `None` when not.
    pub async fn drain_process(
        &self,
        process: &str,
        hold: Option<Duration>,
    ) -> Result<Option<u64>, StoreError> {
        let drain_ms = hold.map_or(0, |hold| {
            u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let DrainMark(until) = self
            .run(&Drain {
                process_label: process,
                drain_ms,
            })
            .await?;
        Ok(until)
    }

    /// Marks `moves` of `generation` (mark_moves.lua: only those still as the job saw them, while
    /// fewer than `max_moving` are under way, and none of a shard that arrived by a move within
    /// `settle`). Returns how many were marked.
    pub async fn mark_moves(
        &self,
        generation: u64,
        settle: Duration,
        max_moving: u32,
        moves: &[Move],
    ) -> Result<u32, StoreError> {
        let lines: String = moves
            .iter()
            .map(|shard_move| {
                format!(
                    "{}\t{}\t{}\n",
                    shard_move.shard_id, shard_move.from, shard_move.to
                )
            })
            .collect();
        let Marked(marked) = self
            .run(&MarkMoves {
                generation,
                settle_ms: u64::try_from(settle.as_millis()).unwrap_or(u64::MAX),
                max_moving,
                moves: &lines,
            })
            .await?;
        Ok(marked)
    }

    /// Marks the `silent` shards of `generation` (mark_silent.lua: those still as the job saw
    /// them); returns how many silent spells began (each alerted once).
    pub async fn mark_silent(
        &self,
        generation: u64,
        max_shards: u32,
        threshold: Duration,
        silent: &[SilentShard],
    ) -> Result<u32, StoreError> {
        let lines: String = silent
            .iter()
            .map(|shard| {
                format!(
                    "{}\t{}\t{}\t{}\n",
                    shard.shard_id, shard.lease_id, shard.fence, shard.still_since_ms
                )
            })
            .collect();
        let EpisodesBegun(began) = self
            .run(&MarkSilent {
                generation,
                max_shards,
                silent_after_ms: u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX),
                silent: &lines,
            })
            .await?;
        Ok(began)
    }
}
