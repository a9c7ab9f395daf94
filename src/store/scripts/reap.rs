//! `migrations-lua/reap.lua`: free expired leases and report each expiry once.

use redis::Value;

use super::reply::natural;
use super::{ScriptReply, script_call};

script_call! {
    /// Frees the active and pending generations' expired leases.
    Reap = "reap.lua";
    keys { plan_key => plan, events_key => events }
    argv {}
    reply Freed;
}

/// How many leases were freed.
pub struct Freed(pub usize);

impl ScriptReply for Freed {
    fn decode(reply: &Value) -> Option<Self> {
        Some(Freed(natural(reply)? as usize))
    }
}
