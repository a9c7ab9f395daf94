//! `GET /connect`: a new session's claim, which may wait for a free shard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::shards::{budget_exhausted, recovering, seconds};
use crate::domain::{ConnectOutcome, IdentifyPacing, SessionState};
use crate::http::auth::{AuthenticationFailure, Authorized};
use crate::http::body::label_issue;
use crate::http::error::{
    IdentifyBudgetExhausted, NoShardsAvailable, RecoveringFromDataLoss, ValidationFailed,
    ValidationIssue, error_set,
};
use crate::http::schemas::EXAMPLE_SESSION_ID;
use crate::http::state::AppState;
use crate::store::StoreError;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({"shard_id": 0, "max_shards": 16, "session_id": EXAMPLE_SESSION_ID, "fence": 7, "generation": 1, "state": "active", "sleep_duration": 5.0, "resume": null, "shard_ids": [0], "sleep_durations": [5.0], "resumes": [null], "lease_seconds": 60, "beat_interval": 20.0, "gateway_url": "wss://gateway.discord.gg", "placement": "groups"}))]
struct ConnectConfirmed {
    shard_id: u32,
    max_shards: u32,
    session_id: String,
    fence: u64,
    generation: u64,
    /// `active`, or `standby` while the session's generation waits to replace the active one.
    #[schema(value_type = String)]
    state: SessionState,
    /// Seconds to wait before sending IDENTIFY (0 when `resume` is given, and with
    /// `?identify=permit`: ask `POST /identify/permit` instead).
    sleep_duration: f64,
    /// The previous holder's Discord resume data (`session_id`, `sequence`, `resume_gateway_url`):
    /// RESUME with it instead of IDENTIFY.
    #[schema(value_type = Option<Object>)]
    resume: Option<serde_json::Value>,
    /// Every shard id of the granted group (`SHARDS_PER_PROCESS` consecutive ids; the last group
    /// may be shorter); `shard_id` is the first. One session, one lease, one beat for all.
    shard_ids: Vec<u32>,
    /// Per shard id of `shard_ids`: seconds to wait before its IDENTIFY (each booked in its own
    /// bucket; 0 where `resumes` has data, and all 0 with `?identify=permit`).
    sleep_durations: Vec<f64>,
    /// Per shard id of `shard_ids`: the previous holder's resume data, or null.
    #[schema(value_type = Vec<Option<Object>>)]
    resumes: Vec<Option<serde_json::Value>>,
    /// `MAX_SECONDS`: the lease lasts this long after each beat (and the first one until the
    /// last identify slot plus this).
    lease_seconds: u64,
    /// A beat rhythm that keeps the lease with room to spare (a third of `lease_seconds`).
    beat_interval: f64,
    /// Discord's gateway URL from shardman's shared `/gateway/bot` answer (null until one was
    /// read): connect there without asking Discord yourself.
    gateway_url: Option<String>,
    /// Only with `?wait=`: seconds the request waited before the claim that granted it. The lease
    /// began no earlier than this after the request was sent; count the lease from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    waited: Option<f64>,
    /// `groups` (`SHARDS_PER_PROCESS=K`: a process holds one claim, a spare waits for a whole
    /// one) or `load` (`SHARDS_PER_PROCESS=auto`: a claim is one shard, a process holds as many as
    /// placement gives it, keeps a waiting `/connect` open for more and hands a shard over when a
    /// beat answers `hand_over`).
    #[schema(example = "groups")]
    placement: &'static str,
}

/// `?wait=` of `GET /connect`: at most this many seconds.
const MAX_CONNECT_WAIT_SECONDS: f64 = 60.0;

/// The last value of the query parameter `name`, as FastAPI reads a repeated scalar parameter.
fn query_value(query: &str, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs
        .into_iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// `?identify=slot` (the default: `sleep_duration` is the booked slot) or `?identify=permit` (no
/// slot booked: each shard asks `POST /identify/permit` right before its IDENTIFY).
fn read_pacing(query: &str) -> Result<IdentifyPacing, ValidationFailed> {
    match query_value(query, "identify").as_deref() {
        None | Some("slot") => Ok(IdentifyPacing::Slot),
        Some("permit") => Ok(IdentifyPacing::Permit),
        Some(_) => Err(ValidationIssue::new(
            &["query", "identify"],
            "value is not a valid enumeration member; permitted: 'slot', 'permit'",
            "type_error.enum",
        )
        .into()),
    }
}

/// `?wait=<seconds>` (0 to 60, fractions allowed): how long `/connect` may wait for a free shard.
fn read_wait(query: &str) -> Result<Option<Duration>, ValidationFailed> {
    let Some(text) = query_value(query, "wait") else {
        return Ok(None);
    };
    let issue = |msg: &str, kind: &str| {
        Err(ValidationFailed::from(ValidationIssue::new(
            &["query", "wait"],
            msg,
            kind,
        )))
    };
    match text.trim().parse::<f64>() {
        Ok(seconds) if !seconds.is_finite() => {
            issue("value is not a valid float", "type_error.float")
        }
        Ok(seconds) if seconds < 0.0 => issue(
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
        ),
        Ok(seconds) if seconds > MAX_CONNECT_WAIT_SECONDS => issue(
            "ensure this value is less than or equal to 60",
            "value_error.number.not_le",
        ),
        Ok(seconds) => Ok(Some(Duration::from_secs_f64(seconds))),
        Err(_) => issue("value is not a valid float", "type_error.float"),
    }
}

/// Resolves once the replica drains (SIGTERM): a waiting claim then answers at once, so that its
/// client asks again where it is served, rather than holding up the shutdown.
pub(super) async fn drained(draining: Arc<AtomicBool>) {
    while !draining.load(Ordering::Relaxed) {
        tokio::time::sleep(DRAIN_CHECK).await;
    }
}

/// How often a waiting claim checks whether its replica is shutting down.
const DRAIN_CHECK: Duration = Duration::from_millis(200);

/// `GET /connect`'s query.
#[derive(Deserialize)]
pub struct ConnectQuery {
    /// A label for the bot process, kept with the session and shown by `/status`.
    process: Option<String>,
}

/// A `process` label as `/connect` keeps it (see [`label_issue`]).
fn process_label(label: Option<String>) -> Result<Option<String>, ValidationFailed> {
    match label {
        Some(label) => match label_issue(&["query", "process"], &label) {
            Some(issue) => Err(issue.into()),
            None => Ok(Some(label)),
        },
        None => Ok(None),
    }
}

error_set! {
    /// What `GET /connect` answers when it grants nothing.
    pub ConnectError {
        AuthenticationFailure,
        ValidationFailed = "A `process` label that is empty, longer than 128 characters or not printable, a `wait` that is not a number from 0 to 60, or an `identify` other than `slot` or `permit`",
        NoShardsAvailable = "Every shard id is held (after waiting up to `wait` seconds for one)",
        IdentifyBudgetExhausted,
        RecoveringFromDataLoss,
        StoreError,
    }
}

#[utoipa::path(
    get,
    path = "/connect",
    tag = "bots",
    description = "Claims the lowest free shard id of the active generation for a new session. `fence` grows with every grant of that shard id (a fencing token). With `wait`, a request that finds every shard held waits for one, in turn with the other waiting requests of every replica.",
    security(("secret" = [])),
    params(
        ("process" = Option<String>, Query, description = "A label for the bot process (at most 128 printable characters), kept with the session: `/status` lists the shards and load of each process under it. The client packages send `<hostname>:<pid>`.", example = "bot-7f9c4-x2:1"),
        ("wait" = Option<f64>, Query, description = "Seconds (0 to 60) to wait for a shard to become free instead of answering 401 at once; answered as soon as a shard is released or added, within 0.2 s of a lease expiring, first come first served", minimum = 0, maximum = 60, example = 30),
        ("identify" = Option<String>, Query, description = "How the session's shards are paced to IDENTIFY. `slot` (the default, the original protocol): each shard's IDENTIFY slot is booked now and `sleep_durations` says how long to wait for it. `permit`: nothing is booked and no identify is spent now (`sleep_durations` are all 0); each shard asks `POST /identify/permit` right before its IDENTIFY and confirms it with `POST /identify/confirm`", example = "permit"),
    ),
    responses(
        (status = 200, description = "A shard was granted", body = ConnectConfirmed),
        ConnectError,
    )
)]
pub async fn connect(
    _: Authorized<ConnectError>,
    request: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ConnectQuery>,
) -> Result<HttpResponse, ConnectError> {
    let process = process_label(query.into_inner().process)?;
    let wait = read_wait(request.query_string())?;
    let pacing = read_pacing(request.query_string())?;
    // A wait of 0 is one attempt, like no wait; only its answer tells how long it waited.
    let claim = state
        .store
        .claim_delivered(
            process,
            pacing,
            wait.filter(|wait| !wait.is_zero()),
            drained(state.draining.clone()),
        )
        .await?;
    let waited = wait.map(|_| claim.waited.as_secs_f64());
    let grant = match claim.outcome {
        ConnectOutcome::Granted(grant) => grant,
        ConnectOutcome::Full => return Err(NoShardsAvailable.into()),
        ConnectOutcome::BudgetExhausted { retry_after_ms } => {
            return Err(budget_exhausted(retry_after_ms).into());
        }
        ConnectOutcome::Recovering { retry_after_ms } => {
            return Err(recovering(retry_after_ms).into());
        }
    };
    log::info!(
        "shard {} granted (generation {}, fence {}, {}{})",
        grant.lease.shard_id,
        grant.lease.generation,
        grant.lease.fence,
        waited.map_or_else(String::new, |seconds| format!(
            "after waiting {seconds:.3} s, "
        )),
        if grant
            .first_shard()
            .is_some_and(|shard| shard.resume.is_some())
        {
            "resume"
        } else {
            "identify"
        }
    );
    let sleep_duration = seconds(grant.first_shard().map_or(0, |shard| shard.sleep_ms));
    let resume = grant.first_shard().and_then(|shard| shard.resume.clone());
    Ok(HttpResponse::Ok().json(ConnectConfirmed {
        shard_id: grant.lease.shard_id,
        max_shards: grant.lease.max_shards,
        session_id: grant.session_id,
        fence: grant.lease.fence,
        generation: grant.lease.generation,
        state: grant.lease.state,
        sleep_duration,
        resume,
        shard_ids: grant.shards.iter().map(|shard| shard.shard_id).collect(),
        sleep_durations: grant
            .shards
            .iter()
            .map(|shard| seconds(shard.sleep_ms))
            .collect(),
        resumes: grant.shards.into_iter().map(|shard| shard.resume).collect(),
        lease_seconds: state.settings.max_seconds,
        beat_interval: state.settings.max_seconds as f64 / 3.0,
        gateway_url: grant.gateway_url,
        waited,
        placement: if state.settings.shards_per_process.is_auto() {
            "load"
        } else {
            "groups"
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::PROCESS_LABEL_MAX_CHARS;

    fn refusal(label: &str) -> String {
        let error = process_label(Some(label.to_owned())).expect_err(label);
        let body = serde_json::to_value(&error.issues).expect("issues serialise");
        assert_eq!(body[0]["loc"], serde_json::json!(["query", "process"]));
        body[0]["type"].as_str().expect("a type").to_owned()
    }

    #[test]
    fn identify_pacing_is_a_slot_unless_the_query_asks_for_permits() {
        assert_eq!(read_pacing("").unwrap(), IdentifyPacing::Slot);
        assert_eq!(read_pacing("identify=slot").unwrap(), IdentifyPacing::Slot);
        assert_eq!(
            read_pacing("wait=3&identify=permit").unwrap(),
            IdentifyPacing::Permit
        );
        // The last one counts.
        assert_eq!(
            read_pacing("identify=x&identify=permit").unwrap(),
            IdentifyPacing::Permit
        );
        for query in ["identify=", "identify=Permit", "identify=permits"] {
            let error = read_pacing(query).expect_err(query);
            let body = serde_json::to_value(&error.issues).expect("issues serialise");
            assert_eq!(body[0]["loc"], serde_json::json!(["query", "identify"]));
            assert_eq!(body[0]["type"], "type_error.enum");
        }
    }

    #[test]
    fn a_process_label_is_one_to_128_printable_characters() {
        assert_eq!(process_label(None).unwrap(), None);
        for label in [
            "bot-7f9c4-x2:1",
            "wörker 2",
            &"p".repeat(PROCESS_LABEL_MAX_CHARS),
        ] {
            assert_eq!(
                process_label(Some(label.to_owned())).unwrap().as_deref(),
                Some(label)
            );
        }
        // Characters, not bytes: 128 two-byte letters still fit.
        assert!(process_label(Some("ö".repeat(PROCESS_LABEL_MAX_CHARS))).is_ok());
    }

    #[test]
    fn an_empty_long_or_unprintable_process_label_is_refused_with_its_reason() {
        assert_eq!(refusal(""), "value_error.any_str.min_length");
        assert_eq!(
            refusal(&"p".repeat(PROCESS_LABEL_MAX_CHARS + 1)),
            "value_error.any_str.max_length"
        );
        for label in ["bot\n1", "bot\t1", "bot\u{1b}[31m", "bot\u{7f}"] {
            assert_eq!(refusal(label), "value_error.str.printable", "{label:?}");
        }
    }
}
