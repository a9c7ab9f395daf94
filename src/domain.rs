//! Domain types: what a lease, a beat, a reshard and the fleet's status are. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a session stands in the shard plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Its generation is the active one: run the shard.
    Active,
    /// Its generation is pending (a reshard is under way): connect to Discord, it goes active soon.
    Standby,
    /// Its generation was replaced: stop.
    Retired,
}

impl SessionState {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "standby" => Some(Self::Standby),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A shard id held by one session of one generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub shard_id: u32,
    pub max_shards: u32,
    pub generation: u64,
    /// Grows with every grant of this shard id: a fencing token for whatever the bot writes.
    pub fence: u64,
    pub state: SessionState,
}

/// A successful `/connect`.
#[derive(Clone, Debug)]
pub struct Grant {
    pub session_id: String,
    pub lease: Lease,
    /// Discord's gateway URL, from the shared `/gateway/bot` answer, once one was read.
    pub gateway_url: Option<String>,
    /// Every shard of the granted group (one with `SHARDS_PER_PROCESS` 1), the first one first.
    pub shards: Vec<GrantedShard>,
}

/// One shard of a granted group: when it may IDENTIFY, or the resume data to RESUME with.
#[derive(Clone, Debug)]
pub struct GrantedShard {
    pub shard_id: u32,
    /// How long to wait before sending IDENTIFY, in milliseconds; 0 when resuming.
    pub sleep_ms: u64,
    /// The previous holder's resume data (JSON), when it can be resumed.
    pub resume: Option<serde_json::Value>,
}

impl Grant {
    /// The session's own (first) shard: what `/connect` answered before shard groups.
    pub fn first_shard(&self) -> Option<&GrantedShard> {
        self.shards.first()
    }
}

#[derive(Clone, Debug)]
pub enum ConnectOutcome {
    Granted(Grant),
    /// Every shard id of the generation is held.
    Full,
    /// The daily identify budget is down to its reserve.
    BudgetExhausted {
        retry_after_ms: u64,
    },
    /// Redis lost its data a moment ago; no grants until the running bots have re-beaten.
    Recovering {
        retry_after_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentifyOutcome {
    Slot {
        sleep_ms: u64,
    },
    NotFound,
    Retired,
    BudgetExhausted {
        retry_after_ms: u64,
    },
    /// Redis lost its data: the session should beat (re-establishing its lease), then ask again.
    Recovering {
        retry_after_ms: u64,
    },
    /// The shard id asked for is not one of the session's group.
    NotInGroup,
}

/// What a bot process reports with each beat.
#[derive(Clone, Debug, Default)]
pub struct BeatReport {
    pub session_id: String,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    /// Already serialised JSON, so the store keeps it as text.
    pub extra: Option<String>,
    /// Discord resume data (`{session_id, sequence, resume_gateway_url}`) as JSON text.
    pub resume: Option<String>,
    /// Per-shard reports of a shard group (`shards: [...]`); the flat fields report for the
    /// group's first shard.
    pub shards: Vec<ShardReport>,
    /// Whether every shard of the session is connected to Discord (READY or RESUMED). Only a
    /// ready holder counts toward completing a reshard, so the old generation is retired only
    /// once the new one is really up.
    pub ready: bool,
}

/// What one shard of a group reports with a beat.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub shard_id: u32,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    /// Resume data as compact JSON text.
    pub resume: Option<String>,
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ShardStatus {
    pub shard_id: u32,
    pub last_beat: DateTime<Utc>,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    pub extra: Option<serde_json::Value>,
    #[serde(skip)]
    pub fence: u64,
    /// Whether the holder has beaten since it connected.
    #[serde(skip)]
    pub beaten: bool,
}

/// One generation of the shard plan and its held shards, sorted by shard id.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct GenerationStatus {
    pub generation: u64,
    pub max_shards: u32,
    pub shards: Vec<ShardStatus>,
    /// Shard ids per process (a group shares one session).
    #[serde(skip)]
    pub shards_per_process: u32,
}

impl GenerationStatus {
    pub fn held(&self) -> usize {
        self.shards.len()
    }
}

/// Processes a generation needs (one per shard group) and how many of them run (groups with a
/// held shard: a group's shards are held together).
pub fn process_counts(
    max_shards: u32,
    shards_per_process: u32,
    held: &[ShardStatus],
) -> (u32, u32) {
    let group_size = shards_per_process.max(1);
    let mut groups: Vec<u32> = held
        .iter()
        .map(|shard| shard.shard_id / group_size)
        .collect();
    groups.dedup();
    (
        max_shards.div_ceil(group_size),
        u32::try_from(groups.len()).unwrap_or(u32::MAX),
    )
}

/// Held shards whose holder has beaten since it connected.
pub fn ready_count(shards: &[ShardStatus]) -> usize {
    shards.iter().filter(|shard| shard.beaten).count()
}

/// The guilds the shards report.
pub fn guild_total(shards: &[ShardStatus]) -> u64 {
    shards.iter().filter_map(|shard| shard.guild_count).sum()
}

/// The fleet: the active generation (`total_shards`, `generation`, `shards`, as the original API
/// showed it) and, during a reshard, the pending one.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FleetStatus {
    pub total_shards: u32,
    pub generation: u64,
    /// Held shards of the active generation, sorted by shard id.
    pub shards: Vec<ShardStatus>,
    pub pending: Option<GenerationStatus>,
    /// Shard ids per process of the active generation.
    #[serde(skip)]
    pub shards_per_process: u32,
}

impl FleetStatus {
    /// The guilds the active generation's shards report.
    pub fn total_guilds(&self) -> u64 {
        guild_total(&self.shards)
    }
}

/// The result of asking for a new shard count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReshardPlan {
    /// False when the count asked for was already the planned one.
    pub started: bool,
    pub from_generation: u64,
    pub from_max_shards: u32,
    /// The pending generation (equal to `from_generation` when nothing is pending).
    pub generation: u64,
    pub max_shards: u32,
}

/// Discord's `GET /gateway/bot`, as shardman keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// Discord's recommended shard count.
    pub shards: u32,
    pub max_concurrency: u32,
    pub session_start_total: u32,
    pub session_start_remaining: u32,
    pub session_start_reset_after_ms: u64,
    /// Discord's gateway URL (`url`), handed to bots in `/connect`.
    pub url: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Connect,
    Disconnect,
    Expire,
    ReshardStarted,
    ReshardCompleted,
    IdentifyBudgetLow,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Disconnect => "disconnect",
            EventKind::Expire => "expire",
            EventKind::ReshardStarted => "reshard_started",
            EventKind::ReshardCompleted => "reshard_completed",
            EventKind::IdentifyBudgetLow => "identify_budget_low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            EventKind::Connect,
            EventKind::Disconnect,
            EventKind::Expire,
            EventKind::ReshardStarted,
            EventKind::ReshardCompleted,
            EventKind::IdentifyBudgetLow,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// Something that happened to the fleet, queued by the scripts for the webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The store's id of the event (a counter): the same event delivered twice has the same id.
    pub id: Option<u64>,
    pub kind: EventKind,
    pub shard_id: Option<u32>,
    pub generation: u64,
    /// The generation's shard count, when the event knows it.
    pub max_shards: Option<u32>,
    pub at: DateTime<Utc>,
}

impl Event {
    /// Parses the scripts' `id|kind|shard_id|generation|max_shards|at_ms` (-1 for "none"), or
    /// `kind|...` without the id, as queued by builds before events had ids.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('|').peekable();
        let id = match parts.peek()?.parse::<u64>() {
            Ok(id) => {
                parts.next();
                Some(id)
            }
            Err(_) => None,
        };
        let kind = EventKind::parse(parts.next()?)?;
        let mut number = || parts.next()?.parse::<i64>().ok();
        let (shard_id, generation, max_shards, at_ms) =
            (number()?, number()?, number()?, number()?);
        Some(Event {
            id,
            kind,
            shard_id: u32::try_from(shard_id).ok(),
            generation: u64::try_from(generation).ok()?,
            max_shards: u32::try_from(max_shards).ok(),
            at: timestamp_from_millis(at_ms),
        })
    }
}

/// Milliseconds since the Unix epoch (Redis's `TIME`) as a UTC timestamp.
pub fn timestamp_from_millis(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_from_the_scripts_format() {
        let event = Event::parse("expire|3|2|6|1700000000000").expect("parses");
        assert_eq!(event.kind, EventKind::Expire);
        assert_eq!(event.shard_id, Some(3));
        assert_eq!(event.generation, 2);
        assert_eq!(event.max_shards, Some(6));
        let budget = Event::parse("identify_budget_low|-1|1|-1|0").expect("parses");
        assert_eq!(budget.shard_id, None);
        assert_eq!(budget.max_shards, None);
        assert!(Event::parse("nonsense|1|1|1|1").is_none());
        let numbered = Event::parse("41|connect|0|1|4|1700000000000").expect("parses");
        assert_eq!((numbered.id, numbered.kind), (Some(41), EventKind::Connect));
        assert!(Event::parse("connect|1|1").is_none());
    }
}
