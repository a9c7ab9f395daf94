//! `GET /autoscale`: how many bot processes the shard plan needs now, for an orchestrator (KEDA's
//! metrics-api trigger reads `desired_processes`). With `LOAD_TARGET` or `CPU_TARGET`, the count
//! the autoscaler sized by load (`jobs::autoscale::processes`), with the load it used.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::shard_load::{BusiestShard, ShardLoadRule};
use crate::domain::sizing::{FleetLoad, ProcessAnswer, ScaleInHold, Sizing, group_count};
use crate::domain::{FleetStatus, process_counts, timestamp_from_millis};
use crate::http::auth::{MaybeAuthorized, RefusedCredentials};
use crate::http::error::{ValidationFailed, error_set};
use crate::http::state::AppState;
use crate::jobs::autoscale::{SHARD_LOAD_HOLD_FIELD, shard_load_rule};
use crate::store::StoreError;

/// What an orchestrator needs to size the bot fleet. Every bot process holds one shard group;
/// with `LOAD_TARGET` or `CPU_TARGET`, the fleet is sized by load (`load`).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "desired_processes": 2, "held": 8, "missing": 0, "total_shards": 8, "generation": 1,
    "pending_generation": null, "pending_shards": null,
    "load": {"events_per_second": 110.0, "cpu": 0.42, "load_target": 60.0, "cpu_target": null,
        "scale_in_since": null}
}))]
pub struct AutoscaleReport {
    /// Bot processes the plan needs now: run this many. During a reshard, the shards of both
    /// generations (the old one serves until the new one is ready). With a load target:
    /// `ceil(load / target)` with hysteresis, between 1 and the shard count (see `load`), and
    /// during a reshard as many again for the new generation (at most its shard count).
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
    /// With `LOAD_TARGET` or `CPU_TARGET` only: the load `desired_processes` was sized from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadReport>,
    /// With `SHARD_LOAD_MAX` (and `MAX_SHARDS` unset) only: the busiest shard against its bound,
    /// the reason a load-driven reshard starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_load: Option<ShardLoadReport>,
}

/// The busiest shard of the active generation against `SHARD_LOAD_MAX × LOAD_TARGET`.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ShardLoadReport {
    /// The shard with the highest `events_per_second`; null while no shard has a rate.
    pub busiest_shard_id: Option<u32>,
    pub events_per_second: Option<f64>,
    /// `SHARD_LOAD_MAX × LOAD_TARGET`: events per second above which a shard is too busy.
    pub bound: f64,
    /// Since when the busiest shard has been over the bound; the count goes up once that has
    /// lasted `SHARD_LOAD_AFTER`. Null when it is not over.
    pub over_since: Option<DateTime<Utc>>,
    /// While it is over: the shard count a raise goes to (`ceil(shards × rate / bound)`, at
    /// least one more), before rounding to `max_concurrency`. Null otherwise.
    pub raise_to: Option<u32>,
}

impl ShardLoadReport {
    pub fn new(rule: &ShardLoadRule, fleet: &FleetStatus, over_since_ms: Option<i64>) -> Self {
        let busiest = BusiestShard::of(&fleet.shards);
        let rate = busiest.map(|busiest| busiest.events_per_second);
        let over = rate.filter(|&rate| rate > rule.bound());
        Self {
            busiest_shard_id: busiest.map(|busiest| busiest.shard_id),
            events_per_second: rate,
            bound: rule.bound(),
            over_since: over_since_ms
                .filter(|_| over.is_some())
                .map(timestamp_from_millis),
            raise_to: over.map(|rate| rule.raise_to(fleet.total_shards, rate)),
        }
    }
}

/// The load the fleet was sized from, and the targets it was divided by.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LoadReport {
    /// Gateway dispatches per second of the active generation's shards, summed; null until a
    /// shard has reported `events` twice.
    pub events_per_second: Option<f64>,
    /// CPU of the active generation's processes, in cores, summed; null until a process has
    /// reported `cpu_seconds` twice.
    pub cpu: Option<f64>,
    /// `LOAD_TARGET`: events per second one process should carry.
    pub load_target: Option<f64>,
    /// `CPU_TARGET`: cores one process should use.
    pub cpu_target: Option<f64>,
    /// Since when the load has stayed low enough for fewer processes: the count goes down once
    /// that has lasted `SCALE_IN_AFTER`. Null when no scale-in is pending.
    pub scale_in_since: Option<DateTime<Utc>>,
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
            load: None,
            shard_load: None,
        }
    }

    /// The fleet sized by load: the autoscaler's last `answer` (the shard group count until it
    /// has made one), and the scale-in `hold` it keeps.
    pub fn sized_by_load(
        fleet: &FleetStatus,
        sizing: &Sizing,
        answer: Option<ProcessAnswer>,
        hold: Option<ScaleInHold>,
    ) -> Self {
        let mut report = Self::from_fleet(fleet);
        let active = answer
            .map_or_else(|| group_count(fleet), |answer| answer.desired)
            .clamp(1, fleet.total_shards.max(1));
        let pending = fleet
            .pending
            .as_ref()
            .map_or(0, |pending| active.min(pending.max_shards.max(1)));
        report.desired_processes = active.saturating_add(pending);
        report.missing = report.desired_processes.saturating_sub(report.held);
        let load = answer.map_or_else(|| FleetLoad::of(fleet), |answer| answer.load);
        report.load = Some(LoadReport {
            events_per_second: load.events_per_second,
            cpu: load.cpu,
            load_target: sizing.load_target,
            cpu_target: sizing.cpu_target,
            scale_in_since: hold.map(|hold| timestamp_from_millis(hold.since_ms)),
        });
        report
    }

    /// What `/autoscale` answers for `fleet`, as read from the store: the same on every replica.
    pub async fn read(state: &AppState, fleet: &FleetStatus) -> Result<Self, StoreError> {
        let settings = &state.settings;
        let mut report = match Sizing::new(
            settings.load_target,
            settings.cpu_target,
            std::time::Duration::from_secs(settings.scale_in_after_seconds),
        ) {
            None => Self::from_fleet(fleet),
            Some(sizing) => {
                let kept = state.store.process_sizing().await?;
                Self::sized_by_load(fleet, &sizing, kept.answer, kept.hold)
            }
        };
        if let Some(rule) = shard_load_rule(settings).filter(|_| settings.autoscale) {
            let over_since = state.store.get_meta(SHARD_LOAD_HOLD_FIELD).await?;
            let over_since = over_since.as_deref().and_then(|text| text.parse().ok());
            report.shard_load = Some(ShardLoadReport::new(&rule, fleet, over_since));
        }
        Ok(report)
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
    description = "How many bot processes the shard plan needs now (one shard group per process), how \
        many are held and how many are missing. With `LOAD_TARGET` or `CPU_TARGET` (and \
        `SHARDS_PER_PROCESS=auto`), `desired_processes` is the fleet's load divided by the target, \
        rounded up, scaling in only after the lower load held for `SCALE_IN_AFTER`, and `load` shows \
        the load it used. Read from the store, so every replica answers the same. Needs the secret \
        unless `PUBLIC_METRICS=true`.",
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
    Ok(HttpResponse::Ok().json(AutoscaleReport::read(&state, &fleet).await?))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{GenerationStatus, ShardStatus};

    fn fleet(total_shards: u32, rates: &[f64]) -> FleetStatus {
        FleetStatus {
            total_shards,
            generation: 1,
            shards: rates
                .iter()
                .zip(0..)
                .map(|(&rate, shard_id)| ShardStatus {
                    shard_id,
                    events_per_second: Some(rate),
                    ..ShardStatus::default()
                })
                .collect(),
            pending: None,
            shards_per_process: 1,
            unheld_guilds: 0,
        }
    }

    fn sizing() -> Sizing {
        Sizing {
            load_target: Some(60.0),
            cpu_target: None,
            scale_in_after: Duration::from_secs(300),
        }
    }

    #[test]
    fn without_a_target_the_answer_has_no_load() {
        let report = AutoscaleReport::from_fleet(&fleet(8, &[40.0, 40.0]));
        assert_eq!(report.desired_processes, 8);
        let body = serde_json::to_value(&report).unwrap();
        assert!(body.get("load").is_none(), "{body}");
    }

    #[test]
    fn before_the_first_evaluation_the_group_count_and_the_load_now_are_shown() {
        let fleet = fleet(8, &[40.0, 40.0, 5.0]);
        let report = AutoscaleReport::sized_by_load(&fleet, &sizing(), None, None);
        assert_eq!(report.desired_processes, 8);
        let load = report.load.expect("a load");
        assert_eq!(load.events_per_second, Some(85.0));
        assert_eq!((load.load_target, load.cpu_target), (Some(60.0), None));
        assert_eq!(load.scale_in_since, None);
    }

    #[test]
    fn the_kept_answer_is_shown_with_its_load_and_hold_clamped_to_the_shards() {
        let fleet = fleet(8, &[40.0]);
        let answer = ProcessAnswer {
            desired: 2,
            load: FleetLoad {
                events_per_second: Some(110.0),
                cpu: None,
            },
        };
        let hold = ScaleInHold {
            since_ms: 1_767_000_000_000,
            count: 1,
        };
        let report = AutoscaleReport::sized_by_load(&fleet, &sizing(), Some(answer), Some(hold));
        assert_eq!((report.desired_processes, report.held), (2, 1));
        assert_eq!(report.missing, 1);
        let load = report.load.expect("a load");
        assert_eq!(load.events_per_second, Some(110.0));
        assert_eq!(
            load.scale_in_since.map(|since| since.timestamp_millis()),
            Some(1_767_000_000_000)
        );

        let too_many = ProcessAnswer {
            desired: 50,
            ..answer
        };
        let report = AutoscaleReport::sized_by_load(&fleet, &sizing(), Some(too_many), None);
        assert_eq!(report.desired_processes, 8);
    }

    #[test]
    fn during_a_reshard_the_new_generation_gets_as_many_processes_again_at_most_its_shards() {
        let mut fleet = fleet(8, &[]);
        fleet.pending = Some(GenerationStatus {
            generation: 2,
            max_shards: 2,
            shards: Vec::new(),
            shards_per_process: 1,
        });
        let answer = |desired| ProcessAnswer {
            desired,
            load: FleetLoad::default(),
        };
        let sized = |desired| {
            AutoscaleReport::sized_by_load(&fleet, &sizing(), Some(answer(desired)), None)
                .desired_processes
        };
        assert_eq!(sized(1), 2);
        assert_eq!(sized(3), 3 + 2);
    }
}
