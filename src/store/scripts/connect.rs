//! `migrations-lua/connect.lua`: claim the lowest free shard id and book its IDENTIFY slot, in
//! turn with the claims that wait.

use redis::Value;

use super::reply::{array, natural, tag, text};
use super::{ScriptReply, script_call};
use crate::domain::{Lease, SessionState};

script_call! {
    /// Claims a shard id for a new session whose nonce the replica made.
    Connect<'a> = "connect.lua";
    keys {
        plan_key => plan,
        fence_key => fence,
        gateway_key => gateway,
        identify_key => identify,
        events_key => events,
        quarantine_key => quarantine,
    }
    argv {
        nonce: &'a str,
        default_concurrency: u32,
        identify_reserve: i64,
        process_label: Option<&'a str>,
        /// The waiting claim's ticket, or "" for a claim that does not wait.
        ticket: &'a str,
        waiter_renew_ms: u64,
        /// The claimant asks a permit before each IDENTIFY: no slot booked, no identify spent.
        identify_permits: bool,
    }
    reply Claim;
}

pub struct GroupShard {
    pub shard_id: u32,
    pub sleep_ms: u64,
    pub resume: Option<String>,
}

fn group_shards(shard_ids: &Value, sleeps: &Value, resumes: &Value) -> Option<Vec<GroupShard>> {
    let (shard_ids, sleeps) = (array(shard_ids)?, array(sleeps)?);
    // A Lua table of resumes ends at its first nil, so it may be shorter than the group.
    let resumes = array(resumes).unwrap_or_default();
    if shard_ids.len() != sleeps.len() {
        return None;
    }
    shard_ids
        .iter()
        .zip(sleeps)
        .enumerate()
        .map(|(index, (shard_id, sleep_ms))| {
            Some(GroupShard {
                shard_id: natural(shard_id)? as u32,
                sleep_ms: natural(sleep_ms)?,
                resume: resumes.get(index).and_then(text),
            })
        })
        .collect()
}

pub enum Claim {
    Granted {
        lease: Lease,
        /// Creation time of the plan, signed into the session id.
        epoch: u64,
        gateway_url: Option<String>,
        /// The group's shard ids, each with its wait before IDENTIFY and the previous holder's
        /// resume JSON (handed to this claim only); the first is the session's own shard id.
        shards: Vec<GroupShard>,
        /// The generation's group size.
        shards_per_process: u32,
    },
    Full,
    Recovering {
        retry_after_ms: u64,
    },
    BudgetExhausted {
        retry_after_ms: u64,
    },
}

impl ScriptReply for Claim {
    fn decode(reply: &Value) -> Option<Self> {
        let fields = array(reply)?;
        match (tag(fields)?.as_str(), fields) {
            (
                "granted",
                [
                    _,
                    shard_id,
                    max_shards,
                    generation,
                    fence,
                    state,
                    epoch,
                    gateway_url,
                    shard_ids,
                    sleeps,
                    resumes,
                    group_size,
                ],
            ) => Some(Claim::Granted {
                lease: Lease {
                    shard_id: natural(shard_id)? as u32,
                    max_shards: natural(max_shards)? as u32,
                    generation: natural(generation)?,
                    fence: natural(fence)?,
                    state: SessionState::parse(&text(state)?)?,
                    hand_over: false,
                    reconnect: Vec::new(),
                },
                epoch: natural(epoch)?,
                gateway_url: text(gateway_url),
                shards: group_shards(shard_ids, sleeps, resumes)?,
                shards_per_process: natural(group_size)?.max(1) as u32,
            }),
            ("full", _) => Some(Claim::Full),
            ("recovering", [_, retry]) => Some(Claim::Recovering {
                retry_after_ms: natural(retry)?,
            }),
            ("budget", [_, retry]) => Some(Claim::BudgetExhausted {
                retry_after_ms: natural(retry)?,
            }),
            _ => None,
        }
    }
}
