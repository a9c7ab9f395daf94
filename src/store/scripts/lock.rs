//! `migrations-lua/lock.lua`: take or renew a job's lock.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Takes or renews `lock:<lock_name>` for `owner`.
    Lock<'a> = "lock.lua";
    keys {}
    argv { lock_name: &'a str, owner: &'a str, ttl_ms: u64 }
    reply Held;
}

/// Whether `owner` holds the lock now.
pub struct Held(pub bool);

impl ScriptReply for Held {
    fn decode(reply: &Value) -> Option<Self> {
        Some(Held(integer(reply)? == 1))
    }
}
