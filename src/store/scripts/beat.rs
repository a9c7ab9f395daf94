//! `migrations-lua/beat.lua`: refresh leases, store the reports, complete a reshard; one call
//! applies a batch of beats (group commit) and answers each one.

use redis::Value;

use super::reply::{array, integer, natural, text};
use super::{ArgText, ScriptCall, ScriptReply};
use crate::domain::{BeatOutcome, Lease, SessionState};
use crate::store::keys::Keys;

/// One batch of beats, applied in order in one script call.
pub struct Beat {
    pub resume_window_ms: u64,
    /// From `ARGV[6]` on, [`OneBeat::FIELDS`] arguments each.
    pub beats: Vec<OneBeat>,
}

/// One beat of a session whose signed id named these claims (owned: it waits in the batch queue).
#[derive(Clone, Debug)]
pub struct OneBeat {
    pub nonce: String,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    pub extra: Option<String>,
    pub resume: Option<String>,
    pub shard_id: u32,
    pub generation: u64,
    pub claimed_max_shards: u32,
    pub claimed_fence: u64,
    pub claimed_epoch: u64,
    pub claimed_shards_per_process: u32,
    pub shard_reports: String,
    pub shard_resumes: String,
    pub ready: bool,
}

impl OneBeat {
    /// The names of a beat's arguments, in the order beat.lua reads them (`beat[0]`, ...).
    pub const FIELDS: &'static [&'static str] = &[
        "nonce",
        "guild_count",
        "latency",
        "extra",
        "resume",
        "shard_id",
        "generation",
        "claimed_max_shards",
        "claimed_fence",
        "claimed_epoch",
        "claimed_shards_per_process",
        "shard_reports",
        "shard_resumes",
        "ready",
    ];

    fn push_argv(&self, argv: &mut Vec<String>) {
        argv.extend([
            self.nonce.arg_text(),
            self.guild_count.arg_text(),
            self.latency.arg_text(),
            self.extra.arg_text(),
            self.resume.arg_text(),
            self.shard_id.arg_text(),
            self.generation.arg_text(),
            self.claimed_max_shards.arg_text(),
            self.claimed_fence.arg_text(),
            self.claimed_epoch.arg_text(),
            self.claimed_shards_per_process.arg_text(),
            self.shard_reports.arg_text(),
            self.shard_resumes.arg_text(),
            if self.ready { "1" } else { "0" }.to_owned(),
        ]);
    }
}

impl ScriptCall for Beat {
    const FILE: &'static str = "beat.lua";
    const SOURCE: &'static str = super::lua_source!("beat.lua");
    const KEYS: &'static [&'static str] =
        &["plan_key", "events_key", "quarantine_key", "fence_key"];
    const ARGV: &'static [&'static str] = &["resume_window_ms"];
    const EACH: &'static [&'static str] = OneBeat::FIELDS;
    const SCHEMA_GUARD: bool = true;
    type Reply = BeatAnswers;

    fn keys<'k>(&self, keys: &'k Keys) -> Vec<&'k str> {
        vec![
            keys.plan.as_str(),
            keys.events.as_str(),
            keys.quarantine.as_str(),
            keys.fence.as_str(),
        ]
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(1 + self.beats.len() * OneBeat::FIELDS.len());
        argv.push(self.resume_window_ms.arg_text());
        for beat in &self.beats {
            beat.push_argv(&mut argv);
        }
        argv
    }
}

/// One answer per beat of the batch, in order.
pub struct BeatAnswers(pub Vec<BeatOutcome>);

impl ScriptReply for BeatAnswers {
    fn decode(reply: &Value) -> Option<Self> {
        array(reply)?
            .iter()
            .map(BeatOutcome::decode)
            .collect::<Option<Vec<_>>>()
            .map(BeatAnswers)
    }
}

/// `{status, shard_id, max_shards, generation, fence, state}`: 1 alive, 0 unknown, -1 retired.
impl ScriptReply for BeatOutcome {
    fn decode(reply: &Value) -> Option<Self> {
        let [status, shard_id, max_shards, generation, fence, state] = array(reply)? else {
            return None;
        };
        let lease = Lease {
            shard_id: natural(shard_id)? as u32,
            max_shards: natural(max_shards)? as u32,
            generation: natural(generation)?,
            fence: natural(fence)?,
            state: text(state)
                .and_then(|state| SessionState::parse(&state))
                .unwrap_or(SessionState::Retired),
        };
        Some(match integer(status)? {
            0 => BeatOutcome::NotFound,
            1 => BeatOutcome::Alive(lease),
            _ => BeatOutcome::Retired(lease),
        })
    }
}
