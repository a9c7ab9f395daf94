//! Shapes the OpenAPI document shows but no handler builds: error bodies and request bodies (the
//! handlers read bodies field by field, see `body`). A leaf of its own, so the handlers can name
//! them in their `#[utoipa::path]` attributes without importing the document that lists them.

use serde::Serialize;
use utoipa::ToSchema;

/// The session id of the documents' examples: what `/connect` hands out (shard 0 of generation 1
/// of 16, fence 7), signed as a deployment with `SECRET=change-me` and the default `KEY_PREFIX`
/// would sign it, so it has the form `verify()` accepts.
pub const EXAMPLE_SESSION_ID: &str =
    "0.1.16.7.1764000000000.4f2a9c0e8b7d4a35a1f0c2d3e4b5a697.a0791d1992debe064111482914b2f9c8";

/// Every error except validation: `{"detail": "<message>"}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": "Session Not Found"}))]
pub struct Detail {
    pub detail: String,
}

/// A 422, shaped like FastAPI's.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": [{"loc": ["header", "authorization"], "msg": "field required",
    "type": "value_error.missing"}]}))]
pub struct ValidationError {
    pub detail: Vec<ValidationIssue>,
}

/// One invalid or missing field.
#[derive(Serialize, ToSchema)]
pub struct ValidationIssue {
    /// Where: `["header", "authorization"]`, `["body", "guild_count"]`, `["query", "session_id"]`.
    #[schema(example = json!(["body", "guild_count"]))]
    pub loc: Vec<String>,
    #[schema(example = "value is not a valid integer")]
    pub msg: String,
    /// pydantic's error type.
    #[serde(rename = "type")]
    #[schema(example = "type_error.integer")]
    pub kind: String,
}

/// `POST /beat`, as JSON or as a form (`requests.post(url, data={...})` sends a form).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": EXAMPLE_SESSION_ID, "guild_count": 2431,
    "latency": 0.084, "events": 183204, "cpu_seconds": 412.7, "rss_bytes": 187695104,
    "extra": {"version": "1.4.2"}}))]
pub struct BeatBody {
    /// From `/connect`.
    pub session_id: String,
    /// Guilds this shard serves (an integer, at least 0).
    pub guild_count: Option<u64>,
    /// Gateway latency in seconds.
    pub latency: Option<f64>,
    /// Any JSON, up to `MAX_EXTRA_BYTES`; in a form, JSON text.
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
    /// Discord's resume data for this session, handed to the next holder of the shard id if this
    /// process disappears (in a form, JSON text).
    pub resume: Option<ResumeData>,
    /// With `SHARDS_PER_PROCESS` above 1: what each shard of the session's group reports (the
    /// flat fields report for the group's first shard). In a form, JSON text.
    pub shards: Option<Vec<ShardReportBody>>,
    /// Whether every shard of the session is connected to Discord (default true: the original
    /// clients beat only once connected). Only ready holders complete a reshard.
    pub ready: Option<bool>,
    /// Gateway dispatches this shard's current Discord session has received so far (an integer,
    /// at least 0). A counter, so a retried beat never counts twice: shardman turns it into
    /// `events_per_second` on its own clock, and a lower count than before starts over (a new
    /// session).
    pub events: Option<u64>,
    /// The process's CPU time so far, in seconds (at least 0); shardman shows the cores it uses.
    pub cpu_seconds: Option<f64>,
    /// The process's resident memory, in bytes (an integer, at least 0).
    pub rss_bytes: Option<u64>,
}

/// One shard of a group, in a beat's `shards`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"shard_id": 5, "guild_count": 1180, "latency": 0.052, "events": 90311}))]
pub struct ShardReportBody {
    /// A shard id of the session's group (others are ignored).
    pub shard_id: u32,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    /// Discord's resume data for this shard.
    pub resume: Option<ResumeData>,
    /// Gateway dispatches this shard's current session has received so far (as the flat field).
    pub events: Option<u64>,
}

/// `POST /identify`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": EXAMPLE_SESSION_ID, "shard_id": 0}))]
pub struct IdentifyBody {
    pub session_id: String,
    /// The shard of the session's group that must identify again; its first when left out.
    pub shard_id: Option<u32>,
}

/// `POST /identify/permit`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": EXAMPLE_SESSION_ID, "shard_id": 0, "wait": 10}))]
pub struct PermitBody {
    pub session_id: String,
    /// The shard of the session's group about to IDENTIFY; its first when left out.
    pub shard_id: Option<u32>,
    /// Seconds (0 to 30, default 10) to wait for the shard's bucket to open before answering
    /// `"permit": false`.
    pub wait: Option<f64>,
}

/// `POST /identify/confirm`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": EXAMPLE_SESSION_ID, "shard_id": 0}))]
pub struct ConfirmBody {
    pub session_id: String,
    /// The shard of the session's group that sent its IDENTIFY; its first when left out.
    pub shard_id: Option<u32>,
}

/// Discord's resume data: what a successor needs to RESUME instead of IDENTIFY.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": "9f8e7d6c5b4a", "sequence": 1234, "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg"}))]
pub struct ResumeData {
    pub session_id: String,
    pub sequence: u64,
    pub resume_gateway_url: String,
}

/// `POST /reshard`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"max_shards": 6}))]
pub struct ReshardBody {
    /// The new shard count, 1 to 65536.
    pub max_shards: u32,
    /// The new generation's shard ids per process (1 to 65536); the planned value when left out.
    pub shards_per_process: Option<u32>,
}

/// `POST /disconnect`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": EXAMPLE_SESSION_ID}))]
pub struct SessionBody {
    pub session_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_token::SessionSigner;

    #[test]
    fn the_example_session_id_is_one_the_server_would_accept() {
        let claims = SessionSigner::new("change-me", "shardman")
            .verify(EXAMPLE_SESSION_ID)
            .expect("the example verifies");
        assert_eq!(
            (
                claims.shard_id,
                claims.generation,
                claims.max_shards,
                claims.fence
            ),
            (0, 1, 16, 7),
            "the claims of the /connect example"
        );
    }
}
