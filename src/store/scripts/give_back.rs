//! `migrations-lua/give_back.lua`: undo a grant whose answer could not be delivered.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

/// Ends each entry of [`GiveBack::resumes`]: JSON text never holds this byte raw.
pub const RESUME_SEPARATOR: char = '\u{1f}';

script_call! {
    /// Frees the group of an undelivered grant and puts back the resume data it had taken.
    GiveBack<'a> = "give_back.lua";
    keys { events_key => events }
    argv {
        nonce: &'a str,
        shard_id: u32,
        generation: u64,
        resume_window_ms: u64,
        /// Per shard of the group, from the first: its resume JSON (empty for none), then
        /// [`RESUME_SEPARATOR`].
        resumes: String,
    }
    reply GivenBack;
}

/// Whether the grant still held its group (which is free again).
pub struct GivenBack(pub bool);

impl ScriptReply for GivenBack {
    fn decode(reply: &Value) -> Option<Self> {
        Some(GivenBack(integer(reply)? == 1))
    }
}
