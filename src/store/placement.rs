//! What the placement job (`src/jobs/placement.rs`) asks of the store: the processes waiting for
//! shards, and marking the moves it decided.

use std::time::Duration;

use super::scripts::mark_moves::{MarkMoves, Marked};
use super::scripts::waiting_processes::{WaitingLabels, WaitingProcesses};
use super::{Store, StoreError};
use crate::domain::placement::Move;

impl Store {
    /// The labels of the processes whose claims wait for a shard, first come first.
    pub async fn waiting_processes(&self) -> Result<Vec<String>, StoreError> {
        let WaitingLabels(labels) = self.run(&WaitingProcesses {}).await?;
        Ok(labels)
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
}
