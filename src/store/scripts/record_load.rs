//! `migrations-lua/record_load.lua`: add a point to the fleet's load history.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Adds the fleet's load now, unless the newest point is younger than `sample_interval_ms`.
    RecordLoad<'a> = "record_load.lua";
    keys { history_key => load_history }
    argv {
        sample_interval_ms: u64,
        history_ms: u64,
        events_per_second: &'a str,
        held: u32,
    }
    reply Recorded;
}

/// Whether the point was added.
pub struct Recorded(pub bool);

impl ScriptReply for Recorded {
    fn decode(reply: &Value) -> Option<Self> {
        Some(Recorded(integer(reply)? == 1))
    }
}
