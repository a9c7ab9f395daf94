use actix_web::{HttpResponse, web};

use serde::Serialize;

use crate::domain::{
    FleetStatus, LoadSample, ProcessLoad, ShardStatus, process_loads, ready_count,
};
use crate::http::auth::{MaybeAuthorized, RefusedCredentials};
use crate::http::error::{ValidationFailed, error_set};
use crate::http::state::AppState;
use crate::store::StoreError;

/// `/status`: the original API's fields, plus where each generation of the shard plan stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusBody {
    #[serde(flatten)]
    fleet: FleetStatus,
    generations: Generations,
    /// The bot processes holding shards, the active generation's first, then the pending one's,
    /// each by its first shard id.
    processes: Vec<ProcessLoad>,
    /// The processes being drained (`shardman drain`): their shards move to the others, and
    /// they get none.
    draining: Vec<String>,
    /// The fleet's load over the last hour, oldest first: a point every 30 s with the active
    /// generation's events per second and held shards (kept in the store, so every replica shows
    /// the same).
    history: Vec<LoadSample>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Generations {
    active: GenerationSummary,
    /// The generation a reshard is filling, until it becomes active.
    pending: Option<GenerationSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GenerationSummary {
    generation: u64,
    max_shards: u32,
    /// Shard ids with a live session.
    held: usize,
    /// Held shard ids whose session has beaten since it connected.
    ready: usize,
    /// `ready / max_shards`, from 0 to 1: a pending generation becomes active at 1.
    progress: f64,
}

impl GenerationSummary {
    fn new(generation: u64, max_shards: u32, shards: &[ShardStatus]) -> Self {
        let ready = ready_count(shards);
        Self {
            generation,
            max_shards,
            held: shards.len(),
            ready,
            progress: if max_shards == 0 {
                0.0
            } else {
                ready as f64 / f64::from(max_shards)
            },
        }
    }
}

error_set! {
    /// What `GET /status` answers instead of the fleet.
    pub StatusError {
        RefusedCredentials,
        ValidationFailed = "No `Authorization` header (and `PUBLIC_STATUS` is false)",
        StoreError,
    }
}

/// The fleet. Anonymous callers get it only with `PUBLIC_STATUS=true`, and then without `extra`,
/// which bots may fill with private data.
#[utoipa::path(
    get,
    path = "/status",
    tag = "fleet",
    description = "The planned shard count and every held shard, sorted by id, with what it reports and the load it carries; the bot processes with their load, CPU and memory; the fleet's load over the last hour. Needs the secret unless `PUBLIC_STATUS=true`; anonymous callers then get it without `extra`.",
    security((), ("secret" = [])),
    responses(
        (status = 200, description = "The fleet", body = StatusBody, example = json!({"total_shards": 2, "generation": 1, "shards": [{"shard_id": 0, "last_beat": "2026-11-28T13:05:00.123Z", "guild_count": 2431, "latency": 0.084, "events_per_second": 41.25, "process": "bot-7f9c4-x2:1", "extra": {"version": "1.4.2"}}], "pending": null, "generations": {"active": {"generation": 1, "max_shards": 2, "held": 1, "ready": 1, "progress": 0.5}, "pending": null}, "processes": [{"process": "bot-7f9c4-x2:1", "generation": 1, "shard_ids": [0], "events_per_second": 41.25, "cpu": 0.31, "rss_bytes": 187695104}], "draining": [], "history": [{"at": "2026-11-28T13:04:30.004Z", "events_per_second": 40.9, "held": 1}]})),
        StatusError,
    )
)]
pub async fn status(
    caller: MaybeAuthorized<StatusError>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, StatusError> {
    if !caller.authorized && !state.settings.public_status {
        return Err(crate::http::auth::missing_header().into());
    }
    let mut fleet = state.store.status().await?;
    if !caller.authorized {
        let pending = fleet
            .pending
            .iter_mut()
            .flat_map(|pending| &mut pending.shards);
        for shard in fleet.shards.iter_mut().chain(pending) {
            shard.extra = None;
        }
    }
    let mut processes = process_loads(fleet.generation, fleet.shards_per_process, &fleet.shards);
    if let Some(pending) = &fleet.pending {
        processes.extend(process_loads(
            pending.generation,
            pending.shards_per_process,
            &pending.shards,
        ));
    }
    let history = state.store.load_history().await?;
    let draining = state.store.waiting_processes().await?.draining;
    let generations = Generations {
        active: GenerationSummary::new(fleet.generation, fleet.total_shards, &fleet.shards),
        pending: fleet.pending.as_ref().map(|pending| {
            GenerationSummary::new(pending.generation, pending.max_shards, &pending.shards)
        }),
    };
    Ok(HttpResponse::Ok().json(StatusBody {
        fleet,
        generations,
        processes,
        draining,
        history,
    }))
}
