//! Operator actions on one bot process: draining it (`shardman drain`).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::timestamp_from_millis;
use crate::http::auth::{AuthenticationFailure, Authorized};
use crate::http::body::label_issue;
use crate::http::error::{NeedsPlacementByLoad, ProcessNotFound, ValidationFailed, error_set};
use crate::http::state::AppState;
use crate::store::StoreError;

/// A process's drain, as it stands after the request.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"process": "bot-7", "draining": true, "until": "2026-12-07T02:00:00Z", "shard_ids": [3, 9]}))]
struct DrainReport {
    process: String,
    /// Whether its shards are being moved away (and none given to it).
    draining: bool,
    /// When the drain lapses (`PROCESS_DRAIN_SECONDS` after it was asked); null when not draining.
    until: Option<DateTime<Utc>>,
    /// The shards it holds now, of the active generation: each is handed over by RESUME within a
    /// few placements (`PLACEMENT_INTERVAL`, at most `MAX_MOVES` at once). Empty once drained.
    shard_ids: Vec<u32>,
}

error_set! {
    /// What `POST` and `DELETE /processes/{process}/drain` answer instead.
    pub DrainError {
        AuthenticationFailure,
        ValidationFailed = "`process` is empty, longer than 128 characters or has control characters",
        ProcessNotFound,
        NeedsPlacementByLoad,
        StoreError,
    }
}

/// The shards `process` holds now, and whether it runs or waits at all.
async fn shards_of(state: &AppState, process: &str) -> Result<(Vec<u32>, bool), StoreError> {
    let fleet = state.store.overview().await?;
    let shard_ids: Vec<u32> = fleet
        .shards
        .iter()
        .filter(|shard| shard.process.as_deref() == Some(process))
        .map(|shard| shard.shard_id)
        .collect();
    let known = !shard_ids.is_empty() || {
        let processes = state.store.waiting_processes().await?;
        processes.waiting.iter().any(|label| label == process)
            || processes.draining.iter().any(|label| label == process)
    };
    Ok((shard_ids, known))
}

fn checked_label(process: &str, state: &AppState) -> Result<(), DrainError> {
    if let Some(issue) = label_issue(&["path", "process"], process) {
        return Err(ValidationFailed::from(issue).into());
    }
    if !state.settings.shards_per_process.is_auto() {
        return Err(NeedsPlacementByLoad.into());
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/processes/{process}/drain",
    tag = "fleet",
    description = "Drains a bot process (placement by load, `SHARDS_PER_PROCESS=auto`): the placement job moves each of its shards to the other processes by RESUME, the heaviest first and at most `MAX_MOVES` at once, `/connect` gives it no shard, and a spare joins in its place. The drain lasts `PROCESS_DRAIN_SECONDS` or until `DELETE`; stop the process once `shard_ids` is empty (`shardman drain --wait`).",
    security(("secret" = [])),
    params(("process" = String, Path, description = "The process label the bot sends (`/connect?process=`)")),
    responses(
        (status = 202, description = "The process is draining; `shard_ids` are the shards it still holds", body = DrainReport),
        DrainError,
    )
)]
pub async fn drain(
    _: Authorized<DrainError>,
    state: web::Data<AppState>,
    process: web::Path<String>,
) -> Result<HttpResponse, DrainError> {
    let process = process.into_inner();
    checked_label(&process, &state)?;
    let (shard_ids, known) = shards_of(&state, &process).await?;
    if !known {
        return Err(ProcessNotFound.into());
    }
    let hold = Duration::from_secs(state.settings.process_drain_seconds.max(1));
    let until = state.store.drain_process(&process, Some(hold)).await?;
    log::info!(
        "process {process:?} draining: {} shards to move away",
        shard_ids.len()
    );
    Ok(HttpResponse::Accepted().json(DrainReport {
        process,
        draining: until.is_some(),
        until: until
            .and_then(|ms| i64::try_from(ms).ok())
            .map(timestamp_from_millis),
        shard_ids,
    }))
}

#[utoipa::path(
    delete,
    path = "/processes/{process}/drain",
    tag = "fleet",
    description = "Stops draining a bot process: it may take shards again, and placement may give it some. Answers 200 whether or not it was draining.",
    security(("secret" = [])),
    params(("process" = String, Path, description = "The process label the bot sends (`/connect?process=`)")),
    responses(
        (status = 200, description = "The process is not draining", body = DrainReport),
        DrainError,
    )
)]
pub async fn undrain(
    _: Authorized<DrainError>,
    state: web::Data<AppState>,
    process: web::Path<String>,
) -> Result<HttpResponse, DrainError> {
    let process = process.into_inner();
    checked_label(&process, &state)?;
    state.store.drain_process(&process, None).await?;
    let (shard_ids, _) = shards_of(&state, &process).await?;
    log::info!("process {process:?} no longer draining");
    Ok(HttpResponse::Ok().json(DrainReport {
        process,
        draining: false,
        until: None,
        shard_ids,
    }))
}
