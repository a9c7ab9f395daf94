//! Domain types: what a lease, a beat and the fleet's status are. No I/O here.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A shard id held by one session of one generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub shard_id: u32,
    pub max_shards: u32,
    pub generation: u64,
    /// Grows with every grant of this shard id: a fencing token for whatever the bot writes.
    pub fence: u64,
}

/// A successful `/connect`.
#[derive(Clone, Debug)]
pub struct Grant {
    pub session_id: String,
    pub lease: Lease,
}

/// What a bot process reports with each beat.
#[derive(Clone, Debug, Default)]
pub struct BeatReport {
    pub session_id: String,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    /// Already serialised JSON, so the store keeps it as text.
    pub extra: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeatOutcome {
    /// The lease was refreshed.
    Alive(Lease),
    /// The session's generation is no longer active: the bot must stop.
    Retired(Lease),
    NotFound,
}

/// One held shard as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShardStatus {
    pub shard_id: u32,
    pub last_beat: DateTime<Utc>,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    pub extra: Option<serde_json::Value>,
}

/// The fleet: the planned shard count and every held shard, sorted by shard id.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FleetStatus {
    pub total_shards: u32,
    pub generation: u64,
    pub shards: Vec<ShardStatus>,
}

/// Milliseconds since the Unix epoch (Redis's `TIME`) as a UTC timestamp.
pub fn timestamp_from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::UNIX_EPOCH)
}
