//! `migrations-lua/claim_events.lua`: claim queued alert events, at least once.

use redis::Value;

use super::reply::{array, text};
use super::{ScriptReply, script_call};

script_call! {
    /// Claims up to `max_events` events for `redeliver_ms`.
    ClaimEvents = "claim_events.lua";
    keys { events_key => events, events_inflight_key => events_inflight }
    argv { max_events: u64, redeliver_ms: u64 }
    reply Claimed;
}

/// The claimed events' texts, as queued.
pub struct Claimed(pub Vec<String>);

impl ScriptReply for Claimed {
    fn decode(reply: &Value) -> Option<Self> {
        array(reply)?
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()
            .map(Claimed)
    }
}
