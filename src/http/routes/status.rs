use actix_web::{HttpResponse, web};

use serde::Serialize;

use crate::domain::{FleetStatus, ShardStatus, ready_count};
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
    description = "The planned shard count and every held shard, sorted by id. Needs the secret unless `PUBLIC_STATUS=true`; anonymous callers then get it without `extra`.",
    security((), ("secret" = [])),
    responses(
        (status = 200, description = "The fleet", body = StatusBody, example = json!({"total_shards": 2, "generation": 1, "shards": [{"shard_id": 0, "last_beat": "2026-11-28T13:05:00.123Z", "guild_count": 2431, "latency": 0.084, "extra": {"version": "1.4.2"}}], "pending": null, "generations": {"active": {"generation": 1, "max_shards": 2, "held": 1, "ready": 1, "progress": 0.5}, "pending": null}})),
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
    let generations = Generations {
        active: GenerationSummary::new(fleet.generation, fleet.total_shards, &fleet.shards),
        pending: fleet.pending.as_ref().map(|pending| {
            GenerationSummary::new(pending.generation, pending.max_shards, &pending.shards)
        }),
    };
    Ok(HttpResponse::Ok().json(StatusBody { fleet, generations }))
}
