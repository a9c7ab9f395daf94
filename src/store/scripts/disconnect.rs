//! `migrations-lua/disconnect.lua`: release a session's shard at once.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Releases the shard of a session whose signed id named these claims.
    Disconnect<'a> = "disconnect.lua";
    keys { events_key => events, plan_key => plan }
    argv { nonce: &'a str, resume_window_ms: u64, shard_id: u32, generation: u64 }
    reply Released;
}

/// Whether the session existed (and its shard id is free again).
pub struct Released(pub bool);

impl ScriptReply for Released {
    fn decode(reply: &Value) -> Option<Self> {
        Some(Released(integer(reply)? == 1))
    }
}
