//! The bot-facing lifecycle: connect, beat, disconnect.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Authorized;
use crate::body::{BodyFields, FieldReader};
use crate::domain::{BeatOutcome, BeatReport};
use crate::error::{ApiError, ValidationIssue};
use crate::state::AppState;

#[derive(Serialize)]
struct ConnectConfirmed {
    shard_id: u32,
    max_shards: u32,
    session_id: String,
    fence: u64,
    generation: u64,
}

pub async fn connect(
    _: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let grant = state
        .store
        .connect()
        .await?
        .ok_or(ApiError::NoShardsAvailable)?;
    log::info!(
        "shard {} granted (generation {}, fence {})",
        grant.lease.shard_id,
        grant.lease.generation,
        grant.lease.fence
    );
    Ok(HttpResponse::Ok().json(ConnectConfirmed {
        shard_id: grant.lease.shard_id,
        max_shards: grant.lease.max_shards,
        session_id: grant.session_id,
        fence: grant.lease.fence,
        generation: grant.lease.generation,
    }))
}

pub async fn beat(
    _: Authorized,
    state: web::Data<AppState>,
    body: BodyFields,
) -> Result<HttpResponse, ApiError> {
    let report = read_beat(&body, state.settings.max_extra_bytes)?;
    match state.store.beat(&report).await? {
        BeatOutcome::Alive(_) => Ok(HttpResponse::NoContent().finish()),
        BeatOutcome::Retired(_) => Err(ApiError::NoShardsAvailable),
        BeatOutcome::NotFound => Err(ApiError::SessionNotFound),
    }
}

fn read_beat(body: &BodyFields, max_extra_bytes: usize) -> Result<BeatReport, ApiError> {
    let mut fields = FieldReader::new(body);
    let session_id = fields.required_string("session_id");
    let guild_count = fields.optional_count("guild_count");
    let latency = fields.optional_float("latency");
    let extra = fields.optional_json("extra");
    fields.finish()?;
    let extra = extra.map(|value| value.to_string());
    if extra.as_ref().is_some_and(|text| text.len() > max_extra_bytes) {
        return Err(ApiError::PayloadTooLarge(format!(
            "extra exceeds MAX_EXTRA_BYTES ({max_extra_bytes} bytes)"
        )));
    }
    Ok(BeatReport {
        session_id,
        guild_count,
        latency,
        extra,
    })
}

#[derive(Deserialize)]
pub struct SessionQuery {
    session_id: Option<String>,
}

pub async fn disconnect_by_query(
    _: Authorized,
    state: web::Data<AppState>,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let session_id = query.into_inner().session_id.ok_or_else(|| {
        ApiError::invalid(ValidationIssue::missing(&["query", "session_id"]))
    })?;
    release(&state, &session_id).await
}

pub async fn disconnect_by_body(
    _: Authorized,
    state: web::Data<AppState>,
    body: BodyFields,
) -> Result<HttpResponse, ApiError> {
    let mut fields = FieldReader::new(&body);
    let session_id = fields.required_string("session_id");
    fields.finish()?;
    release(&state, &session_id).await
}

async fn release(state: &AppState, session_id: &str) -> Result<HttpResponse, ApiError> {
    if state.store.disconnect(session_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::SessionNotFound)
    }
}
