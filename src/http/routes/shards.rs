//! The bot-facing lifecycle after the claim (`connect.rs`): beat, disconnect, identify.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use crate::domain::{BeatOutcome, BeatReport, IdentifyOutcome, Lease, SessionState};
use crate::http::auth::{AuthenticationFailure, Authorized};
use crate::http::body::{BodyFields, FieldReader, UnreadableBody};
use crate::http::error::{
    ExtraTooLarge, IdentifyBudgetExhausted, NoShardsAvailable, RecoveringFromDataLoss,
    SessionNotFound, ValidationFailed, ValidationIssue, error_set,
};
use crate::http::schemas::EXAMPLE_SESSION_ID;
use crate::http::state::AppState;
use crate::store::StoreError;

/// `Prefer: return=representation` on `/beat`: where the session stands.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"shard_id": 0, "max_shards": 16, "generation": 2, "state": "standby", "fence": 3, "hand_over": false, "reconnect": []}))]
struct BeatRepresentation {
    shard_id: u32,
    max_shards: u32,
    generation: u64,
    #[schema(value_type = String)]
    state: SessionState,
    fence: u64,
    /// `SHARDS_PER_PROCESS=auto`: shardman moves this shard to another process. Hand it over:
    /// a last beat with its resume data, close it so the session stays resumable (not 1000 or
    /// 1001), then `/disconnect` (README, "Scaling on load").
    hand_over: bool,
    /// Shards of this session that have been silent (no events) for `SHARD_SILENT_AFTER` while
    /// the fleet has traffic: reconnect each, RESUME first. Told once per silent spell (again
    /// after another `SHARD_SILENT_AFTER`); `[]` otherwise.
    reconnect: Vec<u32>,
}

impl From<Lease> for BeatRepresentation {
    fn from(lease: Lease) -> Self {
        Self {
            shard_id: lease.shard_id,
            max_shards: lease.max_shards,
            generation: lease.generation,
            state: lease.state,
            fence: lease.fence,
            hand_over: lease.hand_over,
            reconnect: lease.reconnect,
        }
    }
}

pub(super) fn seconds(milliseconds: u64) -> f64 {
    milliseconds as f64 / 1000.0
}

/// Whole seconds for `Retry-After`, rounded up so a client never comes back too early.
fn retry_after(milliseconds: u64) -> u64 {
    milliseconds.div_ceil(1000).max(1)
}

pub(super) fn budget_exhausted(retry_after_ms: u64) -> IdentifyBudgetExhausted {
    IdentifyBudgetExhausted {
        retry_after_secs: retry_after(retry_after_ms),
    }
}

pub(super) fn recovering(retry_after_ms: u64) -> RecoveringFromDataLoss {
    RecoveringFromDataLoss {
        retry_after_secs: retry_after(retry_after_ms),
    }
}

error_set! {
    /// What `POST /beat` answers when it keeps no lease.
    pub BeatError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "A missing or ill-typed field",
        ExtraTooLarge,
        NoShardsAvailable = "The session's shard is no longer planned: stop this shard",
        SessionNotFound,
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/beat",
    tag = "bots",
    description = "Refreshes the session's lease to `MAX_SECONDS` and stores what the bot reports. Accepts JSON or a form (`requests.post(url, data={...})`).",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::BeatBody = "application/json"),
        (crate::http::schemas::BeatBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 204, description = "The lease was refreshed. During a secret rotation, a session signed under `SECRET_PREVIOUS` is answered with the same session signed under `SECRET` in the `Session-Id` header: send that id from then on", headers(("Session-Id" = String, description = "The session id to send from now on (only when the session was re-signed)"))),
        (status = 200, description = "With `Prefer: return=representation`: the lease was refreshed, and where the session stands (and `Session-Id` as for 204)", body = BeatRepresentation, headers(("Session-Id" = String, description = "The session id to send from now on (only when the session was re-signed)"))),
        BeatError,
    )
)]
pub async fn beat(
    _: Authorized<BeatError>,
    request: HttpRequest,
    state: web::Data<AppState>,
    body: BodyFields<BeatError>,
) -> Result<HttpResponse, BeatError> {
    let report = read_beat(&body, state.settings.max_extra_bytes)?;
    let lease = match state.store.beat(&report).await? {
        BeatOutcome::Alive(lease) => lease,
        BeatOutcome::Retired(_) => return Err(NoShardsAvailable.into()),
        BeatOutcome::NotFound => return Err(SessionNotFound.into()),
    };
    let representation = wants_representation(&request);
    let mut answer = match representation {
        true => HttpResponse::Ok(),
        false => HttpResponse::NoContent(),
    };
    // A session signed under SECRET_PREVIOUS, re-signed under SECRET: the client sends this id
    // from now on, so the session outlives the end of the rotation.
    if let Some(resigned) = state.store.resigned(&report.session_id) {
        answer.insert_header((SESSION_ID_HEADER, resigned));
    }
    Ok(match representation {
        true => answer.json(BeatRepresentation::from(lease)),
        false => answer.finish(),
    })
}

/// The answer header of a beat whose session was re-signed during a secret rotation.
pub const SESSION_ID_HEADER: &str = "Session-Id";

/// RFC 7240 `Prefer: return=representation`; clients that do not send it get the original 204.
fn wants_representation(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all("prefer")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|preference| {
            preference
                .trim()
                .eq_ignore_ascii_case("return=representation")
        })
}

fn read_beat(
    body: &BodyFields<BeatError>,
    max_extra_bytes: usize,
) -> Result<BeatReport, BeatError> {
    let mut fields = FieldReader::new(body);
    let session_id = fields.required_string("session_id");
    let guild_count = fields.optional_count("guild_count");
    let latency = fields.optional_float("latency");
    let extra = fields.optional_json("extra");
    let resume = fields.optional_resume("resume");
    let shards = fields.optional_shard_reports("shards");
    let ready = fields.optional_bool("ready");
    let events = fields.optional_count("events");
    let cpu_seconds = fields.optional_non_negative_float("cpu_seconds");
    let rss_bytes = fields.optional_count("rss_bytes");
    let process = fields.optional_label("process");
    fields.finish()?;
    let extra = extra.map(|value| value.to_string());
    if extra
        .as_ref()
        .is_some_and(|text| text.len() > max_extra_bytes)
    {
        return Err(ExtraTooLarge {
            limit_bytes: max_extra_bytes,
        }
        .into());
    }
    Ok(BeatReport {
        session_id,
        guild_count,
        latency,
        extra,
        resume: resume.map(|value| value.to_string()),
        shards,
        // Left out by the original clients, which beat only once connected to Discord.
        ready: ready.unwrap_or(true),
        events,
        cpu_seconds,
        rss_bytes,
        process,
    })
}

error_set! {
    /// What `GET /disconnect` answers when it frees nothing.
    pub DisconnectByQueryError {
        AuthenticationFailure,
        ValidationFailed = "No `session_id` in the query",
        SessionNotFound,
        StoreError,
    }
}

#[utoipa::path(
    get,
    path = "/disconnect",
    tag = "bots",
    description = "Frees the session's shard at once.",
    security(("secret" = [])),
    params(("session_id" = String, Query, description = "From `/connect`", example = json!(EXAMPLE_SESSION_ID))),
    responses(
        (status = 204, description = "The shard is free"),
        DisconnectByQueryError,
    )
)]
pub async fn disconnect_by_query(
    _: Authorized<DisconnectByQueryError>,
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DisconnectByQueryError> {
    // Read as pairs, not through a struct: a repeated `session_id` is then the last one (as on
    // `/connect`), not the extractor's plain-text 400 outside the API's error shape.
    let pairs = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let session_id = pairs
        .into_iter()
        .rev()
        .find_map(|(name, value)| (name == "session_id").then_some(value))
        .ok_or_else(|| {
            ValidationFailed::from(ValidationIssue::missing(&["query", "session_id"]))
        })?;
    release(&state, &session_id).await
}

error_set! {
    /// What `POST /disconnect` answers when it frees nothing.
    pub DisconnectByBodyError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "No `session_id` in the body",
        SessionNotFound,
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/disconnect",
    tag = "bots",
    description = "Frees the session's shard at once. Accepts JSON or a form.",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::SessionBody = "application/json"),
        (crate::http::schemas::SessionBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 204, description = "The shard is free"),
        DisconnectByBodyError,
    )
)]
pub async fn disconnect_by_body(
    _: Authorized<DisconnectByBodyError>,
    state: web::Data<AppState>,
    body: BodyFields<DisconnectByBodyError>,
) -> Result<HttpResponse, DisconnectByBodyError> {
    let mut fields = FieldReader::new(&body);
    let session_id = fields.required_string("session_id");
    fields.finish()?;
    release(&state, &session_id).await
}

async fn release<E: From<StoreError> + From<SessionNotFound>>(
    state: &AppState,
    session_id: &str,
) -> Result<HttpResponse, E> {
    if state.store.disconnect(session_id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(SessionNotFound.into())
    }
}

error_set! {
    /// What `POST /identify` answers when it books no slot.
    pub IdentifyError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "A missing or ill-typed field, or a `shard_id` outside the session's group",
        NoShardsAvailable = "The session's generation was replaced: stop this shard",
        SessionNotFound,
        IdentifyBudgetExhausted,
        RecoveringFromDataLoss,
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/identify",
    tag = "bots",
    description = "Books the next IDENTIFY slot for a session that holds its shard but must identify again (Discord invalidated its session). Slots keep every bucket (`shard_id % max_concurrency`) at one IDENTIFY per 5 s across all replicas. Accepts JSON or a form.",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::IdentifyBody = "application/json"),
        (crate::http::schemas::IdentifyBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Wait `sleep_duration` seconds, then IDENTIFY", body = IdentifySlot),
        IdentifyError,
    )
)]
pub async fn identify(
    _: Authorized<IdentifyError>,
    state: web::Data<AppState>,
    body: BodyFields<IdentifyError>,
) -> Result<HttpResponse, IdentifyError> {
    let mut fields = FieldReader::new(&body);
    let session_id = fields.required_string("session_id");
    let shard_id = group_shard_id(&mut fields);
    fields.finish()?;
    match state.store.identify(&session_id, shard_id).await? {
        IdentifyOutcome::Slot { sleep_ms } => Ok(HttpResponse::Ok().json(IdentifySlot {
            sleep_duration: seconds(sleep_ms),
        })),
        IdentifyOutcome::NotFound => Err(SessionNotFound.into()),
        IdentifyOutcome::Retired => Err(NoShardsAvailable.into()),
        IdentifyOutcome::NotInGroup => Err(not_in_group().into()),
        IdentifyOutcome::Recovering { retry_after_ms } => Err(recovering(retry_after_ms).into()),
        IdentifyOutcome::BudgetExhausted { retry_after_ms } => {
            Err(budget_exhausted(retry_after_ms).into())
        }
    }
}

/// The optional `shard_id` of `/identify` and the permit routes: a shard of the session's group
/// (checked by the store; one beyond `u32` is not one).
pub(super) fn group_shard_id(fields: &mut FieldReader<'_>) -> Option<u32> {
    fields
        .optional_count("shard_id")
        .map(|id| u32::try_from(id).unwrap_or(u32::MAX))
}

/// The 422 of a `shard_id` outside the session's group.
pub(super) fn not_in_group() -> ValidationFailed {
    ValidationIssue::new(
        &["body", "shard_id"],
        "not a shard of this session's group",
        "value_error.shard_id.not_in_group",
    )
    .into()
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"sleep_duration": 5.0}))]
struct IdentifySlot {
    /// Seconds to wait before sending IDENTIFY.
    sleep_duration: f64,
}
