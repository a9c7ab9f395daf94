//! `GET /autoscale`: how many bot processes the shard plan needs now, for an orchestrator (KEDA's
//! metrics-api trigger reads `desired_processes`).

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{FleetStatus, process_counts};
use crate::http::auth::{MaybeAuthorized, RefusedCredentials};
use crate::http::error::{ValidationFailed, error_set};
use crate::http::state::AppState;
use crate::store::StoreError;

/// What an orchestrator needs to size the bot fleet. Every bot process holds one shard.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "desired_processes": 40, "held": 30, "missing": 10, "total_shards": 16, "generation": 1,
    "pending_generation": 2, "pending_shards": 24
}))]
pub struct AutoscaleReport {
    /// Bot processes the plan needs now: run this many. During a reshard, the shards of both
    /// generations (the old one serves until the new one is ready).
    pub desired_processes: u32,
    /// Processes (shard groups) held by a live session, in both generations.
    pub held: u32,
    /// Planned processes nobody runs: `desired_processes - held`, never negative.
    pub missing: u32,
    /// Shards planned in the active generation.
    pub total_shards: u32,
    /// The active generation.
    pub generation: u64,
    /// The generation being started by a reshard, if any.
    pub pending_generation: Option<u64>,
    /// Shards planned in the pending generation, if any.
    pub pending_shards: Option<u32>,
}

impl AutoscaleReport {
    /// The one place that decides how many processes the fleet needs: every planned shard of the
    /// active generation and, during a reshard, of the pending one. One process holds one shard
    /// group (`SHARDS_PER_PROCESS` shards; one by default).
    pub fn from_fleet(fleet: &FleetStatus) -> Self {
        let pending = fleet.pending.as_ref();
        let (active_needed, active_held) =
            process_counts(fleet.total_shards, fleet.shards_per_process, &fleet.shards);
        let (pending_needed, pending_held) = pending.map_or((0, 0), |pending| {
            process_counts(
                pending.max_shards,
                pending.shards_per_process,
                &pending.shards,
            )
        });
        let desired_processes = active_needed.saturating_add(pending_needed);
        let held = active_held.saturating_add(pending_held);
        Self {
            desired_processes,
            held,
            missing: desired_processes.saturating_sub(held),
            total_shards: fleet.total_shards,
            generation: fleet.generation,
            pending_generation: pending.map(|pending| pending.generation),
            pending_shards: pending.map(|pending| pending.max_shards),
        }
    }
}

/// Needs the secret unless `PUBLIC_METRICS=true`; a wrong secret is refused either way.
pub(crate) fn require_metrics_access<E>(
    caller: &MaybeAuthorized<E>,
    state: &AppState,
) -> Result<(), ValidationFailed> {
    if caller.authorized || state.settings.public_metrics {
        Ok(())
    } else {
        Err(crate::http::auth::missing_header())
    }
}

error_set! {
    /// What `GET /autoscale` answers instead of the fleet's size.
    pub AutoscaleError {
        RefusedCredentials,
        ValidationFailed = "No `Authorization` header (and `PUBLIC_METRICS` is false)",
        StoreError,
    }
}

/// How many bot processes the plan needs now.
#[utoipa::path(
    get,
    path = "/autoscale",
    tag = "operations",
    description = "How many bot processes the shard plan needs now (one shard per process), how many \
        shards are held and how many are missing. Read from the store, so every replica answers the \
        same. Needs the secret unless `PUBLIC_METRICS=true`.",
    security((), ("secret" = [])),
    responses(
        (status = 200, description = "The fleet's size", body = AutoscaleReport),
        AutoscaleError,
    )
)]
pub async fn autoscale(
    caller: MaybeAuthorized<AutoscaleError>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AutoscaleError> {
    require_metrics_access(&caller, &state)?;
    let fleet = state.store.overview().await?;
    Ok(HttpResponse::Ok().json(AutoscaleReport::from_fleet(&fleet)))
}
