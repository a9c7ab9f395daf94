//! `migrations-lua/mark_moves.lua`: mark shards to move to other processes.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Marks the moves the placement decided, as far as they still hold (see the script).
    MarkMoves<'a> = "mark_moves.lua";
    keys {}
    argv {
        generation: u64,
        settle_ms: u64,
        max_moving: u32,
        moves: &'a str,
    }
    reply Marked;
}

/// How many moves were marked.
pub struct Marked(pub u32);

impl ScriptReply for Marked {
    fn decode(reply: &Value) -> Option<Self> {
        Some(Marked(u32::try_from(integer(reply)?).ok()?))
    }
}
