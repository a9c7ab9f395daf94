//! `migrations-lua/settle_event.lua`: end or renew one claim of `claim_events.lua`.

use redis::Value;

use super::reply::integer;
use super::{ScriptReply, script_call};

script_call! {
    /// Forgets `event` (`redeliver_ms` 0) or keeps it claimed for `redeliver_ms` more.
    SettleEvent<'a> = "settle_event.lua";
    keys { events_inflight_key => events_inflight }
    argv { event: &'a str, redeliver_ms: u64 }
    reply StillClaimed;
}

/// Whether the event was still this caller's claim.
pub struct StillClaimed(pub bool);

impl ScriptReply for StillClaimed {
    fn decode(reply: &Value) -> Option<Self> {
        Some(StillClaimed(integer(reply)? == 1))
    }
}
