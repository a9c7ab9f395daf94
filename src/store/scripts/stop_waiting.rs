//! `migrations-lua/stop_waiting.lua`: take a waiting claim out of the queue.

use redis::Value;

use super::{ScriptReply, script_call};

script_call! {
    /// Takes the ticket of a claim whose wait ended without a grant out of the queue.
    StopWaiting<'a> = "stop_waiting.lua";
    keys {}
    argv { ticket: &'a str }
    reply Left;
}

/// The ticket is no longer queued.
pub struct Left;

impl ScriptReply for Left {
    fn decode(_: &Value) -> Option<Self> {
        Some(Left)
    }
}
