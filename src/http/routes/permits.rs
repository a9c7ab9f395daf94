//! `POST /identify/permit` and `POST /identify/confirm`: IDENTIFY pacing by permits, for sessions
//! that connected with `?identify=permit` (the waiting is the store's, `store/permits.rs`).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::connect::drained;
use super::shards::{budget_exhausted, group_shard_id, not_in_group, recovering, seconds};
use crate::domain::{ConfirmOutcome, PermitOutcome};
use crate::http::auth::{AuthenticationFailure, Authorized};
use crate::http::body::{BodyFields, FieldReader, UnreadableBody};
use crate::http::error::{
    IdentifyBudgetExhausted, NoShardsAvailable, RecoveringFromDataLoss, SessionNotFound,
    ValidationFailed, error_set,
};
use crate::http::state::AppState;
use crate::store::StoreError;

/// `wait` of `POST /identify/permit`: at most this many seconds.
const MAX_PERMIT_WAIT_SECONDS: f64 = 30.0;
/// `wait` of `POST /identify/permit` when left out.
const DEFAULT_PERMIT_WAIT_SECONDS: f64 = 10.0;

/// `POST /identify/permit`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"permit": true, "shard_id": 0}))]
struct PermitAnswer {
    /// true: send IDENTIFY now, then `POST /identify/confirm`. false: the wait ran out before the
    /// shard's bucket opened; ask again.
    permit: bool,
    /// The shard the answer is for.
    shard_id: u32,
    /// Only with `"permit": false`: seconds until the bucket opens at the earliest, as far as the
    /// replica knows (may be 0); asking again at once is fine.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<f64>,
}

error_set! {
    /// What `POST /identify/permit` answers when it answers no permit.
    pub PermitError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "A missing or ill-typed field, a `shard_id` outside the session's group, or a `wait` that is not a number from 0 to 30",
        NoShardsAvailable = "The session's generation was replaced: stop this shard",
        SessionNotFound,
        IdentifyBudgetExhausted,
        RecoveringFromDataLoss,
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/identify/permit",
    tag = "bots",
    description = "The permit to send one shard's IDENTIFY now, for a session that connected with `?identify=permit`: ask right before the IDENTIFY (after HELLO), and confirm with `POST /identify/confirm` once Discord answered it with READY. The replica waits (up to `wait` seconds) until the shard's bucket (`shard_id % max_concurrency`) is open: 5 s after the previous permit of the bucket was confirmed, or 8.1 s after it was granted when it never is, and after every slot booked by `/connect` without `identify=permit` or by `POST /identify`. Each permit granted spends one identify of the daily budget. The lease is not extended: keep beating while you wait. Accepts JSON or a form.",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::PermitBody = "application/json"),
        (crate::http::schemas::PermitBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "`\"permit\": true`: IDENTIFY now, then confirm. `\"permit\": false`: the wait ran out (or the replica is shutting down); ask again", body = PermitAnswer),
        PermitError,
    )
)]
pub async fn identify_permit(
    _: Authorized<PermitError>,
    state: web::Data<AppState>,
    body: BodyFields<PermitError>,
) -> Result<HttpResponse, PermitError> {
    let mut fields = FieldReader::new(&body);
    let session_id = fields.required_string("session_id");
    let shard_id = group_shard_id(&mut fields);
    let wait = fields.optional_float_within("wait", 0.0, MAX_PERMIT_WAIT_SECONDS);
    fields.finish()?;
    let wait = Duration::from_secs_f64(wait.unwrap_or(DEFAULT_PERMIT_WAIT_SECONDS));
    let outcome = state
        .store
        .identify_permit(&session_id, shard_id, wait, drained(state.draining.clone()))
        .await?;
    let answer = match outcome {
        PermitOutcome::Granted { shard_id } => PermitAnswer {
            permit: true,
            shard_id,
            retry_after: None,
        },
        PermitOutcome::NotYet {
            shard_id,
            retry_after_ms,
        } => PermitAnswer {
            permit: false,
            shard_id,
            retry_after: Some(seconds(retry_after_ms)),
        },
        PermitOutcome::NotFound => return Err(SessionNotFound.into()),
        PermitOutcome::Retired => return Err(NoShardsAvailable.into()),
        PermitOutcome::NotInGroup => return Err(not_in_group().into()),
        PermitOutcome::Recovering { retry_after_ms } => {
            return Err(recovering(retry_after_ms).into());
        }
        PermitOutcome::BudgetExhausted { retry_after_ms } => {
            return Err(budget_exhausted(retry_after_ms).into());
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// `POST /identify/confirm`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"confirmed": true}))]
struct ConfirmAnswer {
    /// true: it was the bucket's outstanding permit, whose bucket now opens 5 s from now.
    /// false: it was not (confirmed already, or so late that another permit was granted since):
    /// nothing changed, which is harmless.
    confirmed: bool,
}

error_set! {
    /// What `POST /identify/confirm` answers when it confirms nothing.
    pub ConfirmError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "A missing or ill-typed field, or a `shard_id` outside the session's group",
        NoShardsAvailable = "The session's generation was replaced: stop this shard",
        SessionNotFound,
        RecoveringFromDataLoss,
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/identify/confirm",
    tag = "bots",
    description = "Tells that Discord has the IDENTIFY a permit allowed (send this once READY answers it, never before): the shard's bucket then opens 5 s from now (Discord's 5 s: READY came after Discord had the IDENTIFY) instead of 8.1 s after the grant. Repeating it is harmless. Accepts JSON or a form.",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::ConfirmBody = "application/json"),
        (crate::http::schemas::ConfirmBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Whether it was the bucket's outstanding permit", body = ConfirmAnswer),
        ConfirmError,
    )
)]
pub async fn identify_confirm(
    _: Authorized<ConfirmError>,
    state: web::Data<AppState>,
    body: BodyFields<ConfirmError>,
) -> Result<HttpResponse, ConfirmError> {
    let mut fields = FieldReader::new(&body);
    let session_id = fields.required_string("session_id");
    let shard_id = group_shard_id(&mut fields);
    fields.finish()?;
    let confirmed = match state.store.identify_confirm(&session_id, shard_id).await? {
        ConfirmOutcome::Confirmed(confirmed) => confirmed,
        ConfirmOutcome::NotFound => return Err(SessionNotFound.into()),
        ConfirmOutcome::Retired => return Err(NoShardsAvailable.into()),
        ConfirmOutcome::NotInGroup => return Err(not_in_group().into()),
        ConfirmOutcome::Recovering { retry_after_ms } => {
            return Err(recovering(retry_after_ms).into());
        }
    };
    Ok(HttpResponse::Ok().json(ConfirmAnswer { confirmed }))
}
