//! Domain types: what a lease, a beat, a reshard and the fleet's status are. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod placement;
pub mod shard_load;
pub mod silence;
pub mod sizing;

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
    /// The placement moves this shard to another process: hand it over (README, "Scaling on
    /// load").
    pub hand_over: bool,
    /// Shards of the session that are silent (no events for `SHARD_SILENT_AFTER` while the fleet
    /// has traffic): reconnect them, RESUME first. Told once per silent spell.
    pub reconnect: Vec<u32>,
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

/// How a new session's shards are paced to IDENTIFY (`GET /connect?identify=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdentifyPacing {
    /// The original protocol: `/connect` books each shard's slot, the bot sleeps until it.
    #[default]
    Slot,
    /// Nothing booked at `/connect`: each shard asks `POST /identify/permit` right before its
    /// IDENTIFY and confirms it with `POST /identify/confirm`.
    Permit,
}

/// `POST /identify/permit`'s outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PermitOutcome {
    /// IDENTIFY `shard_id` now, then confirm.
    Granted {
        shard_id: u32,
    },
    /// The wait ran out before the bucket opened: ask again, in about `retry_after_ms`.
    NotYet {
        shard_id: u32,
        retry_after_ms: u64,
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

/// `POST /identify/confirm`'s outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Whether the confirm was the bucket's outstanding permit (false: late or repeated).
    Confirmed(bool),
    NotFound,
    Retired,
    Recovering {
        retry_after_ms: u64,
    },
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
    /// Gateway dispatches the first shard's current session has received so far (a counter:
    /// shardman turns it into a rate on its own clock).
    pub events: Option<u64>,
    /// The process's CPU time so far, in seconds (a counter, like `events`).
    pub cpu_seconds: Option<f64>,
    /// The process's resident memory, in bytes.
    pub rss_bytes: Option<u64>,
    /// The process label the session was claimed with (`/connect?process=`), so that a lease
    /// re-established after a loss of Redis's data gets it back (placement needs it).
    pub process: Option<String>,
}

/// What one shard of a group reports with a beat.
#[derive(Clone, Debug, Default)]
pub struct ShardReport {
    pub shard_id: u32,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    /// Resume data as compact JSON text.
    pub resume: Option<String>,
    /// Gateway dispatches this shard's current session has received so far.
    pub events: Option<u64>,
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
    /// Gateway dispatches per second, between the shard's last two `events` reports (measured on
    /// the store's clock); null until it reported twice.
    pub events_per_second: Option<f64>,
    /// The label its process gave `/connect` (`<hostname>:<pid>` by default), if any.
    pub process: Option<String>,
    /// `SHARDS_PER_PROCESS=auto`: the process this shard is being moved to, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
    /// Since when its `events` counter has stood still, while it is silent (`SHARD_SILENT_AFTER`:
    /// alerted once, its holder told to reconnect it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_since: Option<DateTime<Utc>>,
    /// When its `events` counter last moved (or was first reported), ms of the store's clock.
    #[serde(skip)]
    pub events_moved_at_ms: Option<i64>,
    /// The still spell of its last silent episode (mark_silent.lua), ms of the store's clock:
    /// silent while it equals `events_moved_at_ms`.
    #[serde(skip)]
    pub silent_episode_ms: Option<i64>,
    /// When it last arrived by a move (placement leaves it there for `MOVE_SETTLE`).
    #[serde(skip)]
    pub moved_in_at: Option<DateTime<Utc>>,
    pub extra: Option<serde_json::Value>,
    /// Its process's CPU use in cores, between its last two `cpu_seconds` reports.
    #[serde(skip)]
    pub cpu: Option<f64>,
    /// Its process's resident memory, as last reported.
    #[serde(skip)]
    pub rss_bytes: Option<u64>,
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

/// One bot process as `/status` lists it: the shards its sessions hold and what it carries.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProcessLoad {
    /// The label the process gave `/connect`; null for a session that gave none (each such
    /// session is listed on its own).
    pub process: Option<String>,
    /// The generation its sessions belong to.
    pub generation: u64,
    pub shard_ids: Vec<u32>,
    /// Its shards' `events_per_second`, summed; null while none of them has a rate.
    pub events_per_second: Option<f64>,
    /// CPU in use, in cores (1.0 = one core busy), between its last two `cpu_seconds` reports.
    pub cpu: Option<f64>,
    /// Resident memory, as last reported.
    pub rss_bytes: Option<u64>,
}

/// The processes holding a generation's shards, by their first shard id. Sessions that gave the
/// same label are one process (figures every session of it reports alike, CPU and memory, are
/// taken once: the largest); a session without a label is a process of its own.
pub fn process_loads(
    generation: u64,
    shards_per_process: u32,
    held: &[ShardStatus],
) -> Vec<ProcessLoad> {
    let group_size = shards_per_process.max(1);
    let mut processes: Vec<ProcessLoad> = Vec::new();
    // Which entry of `processes` a label, or an unlabelled session (its group), went to.
    let mut by_label: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut by_group: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for shard in held {
        let slot = match shard.process.as_deref() {
            Some(label) => by_label.get(label).copied(),
            None => by_group.get(&(shard.shard_id / group_size)).copied(),
        };
        let index = slot.unwrap_or_else(|| {
            processes.push(ProcessLoad {
                process: shard.process.clone(),
                generation,
                shard_ids: Vec::new(),
                events_per_second: None,
                cpu: None,
                rss_bytes: None,
            });
            processes.len() - 1
        });
        match shard.process.as_deref() {
            Some(label) => by_label.insert(label, index),
            None => by_group.insert(shard.shard_id / group_size, index),
        };
        let process = &mut processes[index];
        process.shard_ids.push(shard.shard_id);
        process.events_per_second = sum(process.events_per_second, shard.events_per_second);
        process.cpu = larger(process.cpu, shard.cpu);
        process.rss_bytes = larger(process.rss_bytes, shard.rss_bytes);
    }
    processes
}

/// The fleet's dispatches per second: every rate the shards report, summed (0 when none does).
pub fn events_per_second_total(shards: &[ShardStatus]) -> f64 {
    // A fold from 0.0, not `sum()`, which starts from -0.0 and so shows "-0" for an idle fleet.
    shards
        .iter()
        .filter_map(|shard| shard.events_per_second)
        .fold(0.0, |total, rate| total + rate)
}

fn sum(total: Option<f64>, more: Option<f64>) -> Option<f64> {
    match (total, more) {
        (Some(total), Some(more)) => Some(total + more),
        (total, more) => total.or(more),
    }
}

fn larger<T: PartialOrd>(known: Option<T>, more: Option<T>) -> Option<T> {
    match (known, more) {
        (Some(known), Some(more)) => Some(if more > known { more } else { known }),
        (known, more) => known.or(more),
    }
}

/// One point of the fleet's load history (`/status` `history`): the active generation's
/// dispatches per second and held shards at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LoadSample {
    pub at: DateTime<Utc>,
    pub events_per_second: f64,
    pub held: u32,
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
    /// Guilds of the active generation's shards that nobody holds right now (a handover under
    /// way), as their last holders reported them: a deploy moves guilds, it does not lose them.
    #[serde(skip)]
    pub unheld_guilds: u64,
}

impl FleetStatus {
    /// The guilds the active generation's shards last reported, held or between holders.
    pub fn total_guilds(&self) -> u64 {
        guild_total(&self.shards) + self.unheld_guilds
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
    ShardSilent,
}

impl EventKind {
    const ALL: [EventKind; 7] = [
        EventKind::Connect,
        EventKind::Disconnect,
        EventKind::Expire,
        EventKind::ReshardStarted,
        EventKind::ReshardCompleted,
        EventKind::IdentifyBudgetLow,
        EventKind::ShardSilent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Connect => "connect",
            EventKind::Disconnect => "disconnect",
            EventKind::Expire => "expire",
            EventKind::ReshardStarted => "reshard_started",
            EventKind::ReshardCompleted => "reshard_completed",
            EventKind::IdentifyBudgetLow => "identify_budget_low",
            EventKind::ShardSilent => "shard_silent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
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

    fn held(shard_id: u32, process: Option<&str>, rate: Option<f64>) -> ShardStatus {
        ShardStatus {
            shard_id,
            process: process.map(str::to_owned),
            events_per_second: rate,
            ..ShardStatus::default()
        }
    }

    #[test]
    fn a_process_carries_its_shards_events_and_its_cpu_and_memory_once() {
        let mut shards = vec![
            held(0, Some("a:1"), Some(40.0)),
            held(1, Some("a:1"), None),
            held(2, Some("b:2"), Some(5.0)),
            held(3, Some("a:1"), Some(2.5)),
        ];
        // Two sessions of one process report the same CPU and memory (one slightly older).
        (shards[0].cpu, shards[0].rss_bytes) = (Some(0.5), Some(100));
        (shards[3].cpu, shards[3].rss_bytes) = (Some(0.52), Some(104));

        let processes = process_loads(7, 1, &shards);

        assert_eq!(processes.len(), 2);
        let a = &processes[0];
        assert_eq!((a.process.as_deref(), a.generation), (Some("a:1"), 7));
        assert_eq!(a.shard_ids, [0, 1, 3]);
        assert_eq!(a.events_per_second, Some(42.5));
        assert_eq!((a.cpu, a.rss_bytes), (Some(0.52), Some(104)));
        let b = &processes[1];
        assert_eq!(
            (b.shard_ids.as_slice(), b.events_per_second),
            (&[2][..], Some(5.0))
        );
        assert_eq!((b.cpu, b.rss_bytes), (None, None));
        assert_eq!(events_per_second_total(&shards), 47.5);
        assert!(
            events_per_second_total(&[]).is_sign_positive(),
            "an idle fleet is +0"
        );
    }

    #[test]
    fn each_unlabelled_session_is_a_process_of_its_own() {
        let shards = [
            held(0, None, Some(1.0)),
            held(1, None, Some(2.0)),
            held(2, None, None),
            held(4, None, None),
        ];

        let processes = process_loads(1, 2, &shards);

        let groups: Vec<_> = processes
            .iter()
            .map(|process| (process.shard_ids.clone(), process.events_per_second))
            .collect();
        assert_eq!(
            groups,
            [(vec![0, 1], Some(3.0)), (vec![2], None), (vec![4], None)]
        );
        assert!(processes.iter().all(|process| process.process.is_none()));
    }

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
