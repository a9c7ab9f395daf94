//! `migrations-lua/reshard.lua`: start a pending generation with a new shard count.

use redis::Value;

use super::reply::{array, natural};
use super::{ScriptReply, script_call};
use crate::domain::ReshardPlan;

script_call! {
    /// Plans `new_max_shards` shards (nothing changes if that is the plan already).
    Reshard = "reshard.lua";
    keys { plan_key => plan, events_key => events, quarantine_key => quarantine }
    argv { new_max_shards: u32, new_shards_per_process: Option<u32> }
    reply ReshardPlan;
}

/// `{started, active generation, active max_shards, new generation or 0, new max_shards or 0}`.
impl ScriptReply for ReshardPlan {
    fn decode(reply: &Value) -> Option<Self> {
        let [
            started,
            from_generation,
            from_max_shards,
            pending_generation,
            pending_max_shards,
        ] = array(reply)?
        else {
            return None;
        };
        let from_generation = natural(from_generation)?;
        let from_max_shards = natural(from_max_shards)? as u32;
        let pending_generation = natural(pending_generation)?;
        let pending = pending_generation > 0;
        Some(ReshardPlan {
            started: natural(started)? == 1,
            from_generation,
            from_max_shards,
            generation: if pending {
                pending_generation
            } else {
                from_generation
            },
            max_shards: if pending {
                natural(pending_max_shards)? as u32
            } else {
                from_max_shards
            },
        })
    }
}
