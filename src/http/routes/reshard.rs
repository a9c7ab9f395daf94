//! Operator actions on the shard plan.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::config::MAX_SHARD_COUNT;
use crate::domain::ReshardPlan;
use crate::http::auth::{AuthenticationFailure, Authorized};
use crate::http::body::{BodyFields, FieldReader, UnreadableBody};
use crate::http::error::{ValidationFailed, ValidationIssue, error_set};
use crate::http::state::AppState;
use crate::store::StoreError;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"started": true, "from_generation": 1, "from_max_shards": 4, "generation": 2, "max_shards": 6}))]
struct ReshardAccepted {
    /// False when the count asked for was already the planned one (nothing changed).
    started: bool,
    from_generation: u64,
    from_max_shards: u32,
    /// The generation that will replace the active one once all its shards are held and beating
    /// (already the active one when nobody held the old generation: it was replaced at once).
    generation: u64,
    max_shards: u32,
}

impl From<ReshardPlan> for ReshardAccepted {
    fn from(plan: ReshardPlan) -> Self {
        Self {
            started: plan.started,
            from_generation: plan.from_generation,
            from_max_shards: plan.from_max_shards,
            generation: plan.generation,
            max_shards: plan.max_shards,
        }
    }
}

error_set! {
    /// What `POST /reshard` answers when it plans nothing.
    pub ReshardError {
        AuthenticationFailure,
        UnreadableBody,
        ValidationFailed = "`max_shards` missing, or it or `shards_per_process` not in 1..=65536",
        StoreError,
    }
}

#[utoipa::path(
    post,
    path = "/reshard",
    tag = "fleet",
    description = "Starts a zero-downtime reshard to `max_shards` (and, with `shards_per_process`, a new group size: shard ids per bot process): a new generation is handed out by `/connect` while the active one keeps running; it becomes active once every shard of it is held and has beaten, and from then on the old generation's beats get 401. Accepts JSON or a form.",
    security(("secret" = [])),
    request_body(content(
        (crate::http::schemas::ReshardBody = "application/json"),
        (crate::http::schemas::ReshardBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 202, description = "The reshard is under way (or the count was already planned: `started` is false)", body = ReshardAccepted),
        ReshardError,
    )
)]
pub async fn reshard(
    _: Authorized<ReshardError>,
    state: web::Data<AppState>,
    body: BodyFields<ReshardError>,
) -> Result<HttpResponse, ReshardError> {
    let mut fields = FieldReader::new(&body);
    let max_shards = fields.required_count("max_shards");
    let shards_per_process = fields.optional_count("shards_per_process");
    fields.finish()?;
    // max_shards is checked first, as before shards_per_process existed.
    let max_shards = shard_count(max_shards, "max_shards")?;
    let shards_per_process = shards_per_process
        .map(|size| shard_count(size, "shards_per_process"))
        .transpose()?;
    let plan = state.store.reshard(max_shards, shards_per_process).await?;
    if plan.started {
        log::info!(
            "reshard requested: generation {} with {} shards (from generation {} with {})",
            plan.generation,
            plan.max_shards,
            plan.from_generation,
            plan.from_max_shards
        );
    }
    Ok(HttpResponse::Accepted().json(ReshardAccepted::from(plan)))
}

/// A count of shards, 1 to 65536, named by its body field when it is out of range.
fn shard_count(value: u64, field: &str) -> Result<u32, ValidationFailed> {
    u32::try_from(value)
        .ok()
        .filter(|count| (1..=MAX_SHARD_COUNT).contains(count))
        .ok_or_else(|| {
            ValidationIssue::new(
                &["body", field],
                "ensure this value is between 1 and 65536",
                "value_error.number.not_in_range",
            )
            .into()
        })
}
