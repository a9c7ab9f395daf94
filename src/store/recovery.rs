//! Recovery after Redis lost its data or its master moved: both are answered by running
//! `init.lua` again, which re-creates the plan (the bots re-establish their leases with their next
//! beats, see beat.lua) and holds new grants back for one lease length meanwhile.

use std::sync::atomic::Ordering;

use super::scripts::{self, ScriptCall};
use super::{SCHEMA_VERSION, Store, StoreError, text, unexpected};

/// Why `init.lua` runs.
#[derive(Clone, Copy)]
pub(super) enum InitReason {
    /// A replica starts: create what is missing, nothing more.
    Startup,
    /// The plan vanished while this replica was running: Redis lost its data.
    AfterLoss,
    /// The Sentinel master moved: the new master may lack the old one's last writes.
    AfterFailover,
}

impl Store {
    /// Runs a script that answers `NOPLAN` when Redis lost its data: re-initialise, then retry once.
    /// The plan was there when this replica started, so a missing plan now means a loss.
    pub(super) async fn run_planned<C: ScriptCall>(
        &self,
        call: &C,
    ) -> Result<C::Reply, StoreError> {
        self.follow_failover().await?;
        match self.run(call).await {
            Err(StoreError::Internal(message)) if message.contains("NOPLAN") => {
                log::warn!(
                    "the shard plan is gone from the store: Redis lost its data; re-creating it and \
                     holding new grants back for one lease length"
                );
                self.init(InitReason::AfterLoss).await?;
                self.run(call).await
            }
            other => other,
        }
    }

    /// Runs `init.lua`: idempotent, so it also repairs a Redis that lost its data.
    pub(super) async fn init(&self, reason: InitReason) -> Result<(), StoreError> {
        let (quarantine_ms, quarantine_if_created_ms, new_epoch) = match reason {
            InitReason::Startup => (0, self.fresh_redis_hold_ms().await?, false),
            InitReason::AfterLoss => (self.lease_ms, 0, false),
            InitReason::AfterFailover => (self.lease_ms, 0, true),
        };
        let initialized = self
            .run(&scripts::init::Init {
                initial_shards: self.initial_shards.load(Ordering::SeqCst),
                quarantine_ms,
                quarantine_if_created_ms,
                new_epoch,
                initial_shards_per_process: self.initial_shards_per_process,
            })
            .await?;
        if initialized.schema_version == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(unexpected("init.lua", &initialized.schema_version))
        }
    }

    /// At startup: how much of one lease length is left since Redis itself started. A Redis that
    /// restarted less than a lease ago without persistence and holds no plan may have lost one
    /// while bots still run, so a plan created now waits that long before granting (see
    /// init.lua). Zero when the setting is off, for a Redis with AOF on, and for the embedded
    /// store (it starts with this very process).
    async fn fresh_redis_hold_ms(&self) -> Result<u64, StoreError> {
        if !self.quarantine_fresh_redis || self.is_embedded() {
            return Ok(0);
        }
        // With AOF on, a restarted Redis reloads what it had: no plan there means a new
        // deployment, which should grant at once. (A flush or a failover is still caught later.)
        let persistence = self.engine.command(&["INFO", "persistence"]).await?;
        let aof_enabled = text(Some(&persistence))
            .is_some_and(|info| info.lines().any(|line| line.trim() == "aof_enabled:1"));
        if aof_enabled {
            return Ok(0);
        }
        let info = self.engine.command(&["INFO", "server"]).await?;
        let uptime_ms = text(Some(&info))
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
                    .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            })
            .map_or(u64::MAX, |seconds| seconds.saturating_mul(1000));
        Ok(self.lease_ms.saturating_sub(uptime_ms))
    }

    /// After a Sentinel failover, before anything else is written: start a new epoch with a
    /// quarantine, as after a loss, since asynchronous replication may have dropped grants the old
    /// master acknowledged (a grant lost that way must not be handed out again while its bot runs).
    async fn follow_failover(&self) -> Result<(), StoreError> {
        let Some(moves) = self.engine.master_moves() else {
            return Ok(());
        };
        let seen = self.master_moves_seen.load(Ordering::SeqCst);
        if moves != seen
            && self
                .master_moves_seen
                .compare_exchange(seen, moves, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            log::warn!("the Redis master moved: new grants wait one lease while bots re-beat");
            if let Err(error) = self.init(InitReason::AfterFailover).await {
                // Try again on the next request.
                self.master_moves_seen.store(seen, Ordering::SeqCst);
                return Err(error);
            }
        }
        Ok(())
    }
}
