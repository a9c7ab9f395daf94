//! `migrations-lua/drain.lua`: mark a bot process as draining, or take the mark off.

use redis::Value;

use super::reply::{array, natural};
use super::{ScriptReply, script_call};

script_call! {
    /// Marks (or, with `drain_ms` 0, unmarks) a process whose shards placement moves away.
    Drain<'a> = "drain.lua";
    keys {}
    argv {
        process_label: &'a str,
        drain_ms: u64,
    }
    reply DrainMark;
}

/// Until when (ms of the store's clock) the process is drained; `None` once it is not.
pub struct DrainMark(pub Option<u64>);

impl ScriptReply for DrainMark {
    fn decode(reply: &Value) -> Option<Self> {
        let [marked, deadline] = array(reply)? else {
            return None;
        };
        Some(DrainMark(
            (natural(marked)? == 1).then_some(natural(deadline)?),
        ))
    }
}
