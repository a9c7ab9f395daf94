//! `migrations-lua/mark_silent.lua`: mark shards silent and ask their holders to reconnect them.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Marks the silent shards the silence job found, as far as they still are (see the script).
    MarkSilent<'a> = "mark_silent.lua";
    keys { events_key => events }
    argv {
        generation: u64,
        max_shards: u32,
        silent_after_ms: u64,
        silent: &'a str,
    }
    reply EpisodesBegun;
}

/// How many silent episodes began (each alerted once).
pub struct EpisodesBegun(pub u32);

impl ScriptReply for EpisodesBegun {
    fn decode(reply: &Value) -> Option<Self> {
        Some(EpisodesBegun(u32::try_from(integer(reply)?).ok()?))
    }
}
