//! `migrations-lua/identify.lua`: book a new IDENTIFY slot for a session that keeps its shard.

use redis::Value;

use super::reply::{array, natural, tag};
use super::{ScriptReply, script_call};
use crate::domain::IdentifyOutcome;

script_call! {
    /// Books the next slot of the session's bucket.
    Identify<'a> = "identify.lua";
    keys {
        plan_key => plan,
        gateway_key => gateway,
        identify_key => identify,
        events_key => events,
        quarantine_key => quarantine,
    }
    argv {
        nonce: &'a str,
        default_concurrency: u32,
        identify_reserve: i64,
        shard_id: u32,
        generation: u64,
        identify_shard_id: Option<u32>,
    }
    reply IdentifyOutcome;
}

impl ScriptReply for IdentifyOutcome {
    fn decode(reply: &Value) -> Option<Self> {
        let fields = array(reply)?;
        let milliseconds = || fields.get(1).and_then(natural);
        Some(match tag(fields)?.as_str() {
            "slot" => IdentifyOutcome::Slot {
                sleep_ms: milliseconds()?,
            },
            "unknown" => IdentifyOutcome::NotFound,
            "recovering" => IdentifyOutcome::Recovering {
                retry_after_ms: milliseconds()?,
            },
            "retired" => IdentifyOutcome::Retired,
            "not_in_group" => IdentifyOutcome::NotInGroup,
            "budget" => IdentifyOutcome::BudgetExhausted {
                retry_after_ms: milliseconds()?,
            },
            _ => return None,
        })
    }
}
