//! `migrations-lua/beat.lua`: refresh a lease, store the report, complete a reshard.

use redis::Value;

use super::reply::{array, integer, natural, text};
use super::{ScriptReply, script_call};
use crate::domain::{BeatOutcome, Lease, SessionState};

script_call! {
    /// One beat of a session whose signed id named these claims.
    Beat<'a> = "beat.lua";
    keys {
        plan_key => plan,
        events_key => events,
        quarantine_key => quarantine,
        fence_key => fence,
    }
    argv {
        nonce: &'a str,
        guild_count: Option<u64>,
        latency: Option<f64>,
        extra: Option<&'a str>,
        resume: Option<&'a str>,
        resume_window_ms: u64,
        shard_id: u32,
        generation: u64,
        claimed_max_shards: u32,
        claimed_fence: u64,
        claimed_epoch: u64,
        claimed_shards_per_process: u32,
        shard_reports: String,
        shard_resumes: String,
    }
    reply BeatOutcome;
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
