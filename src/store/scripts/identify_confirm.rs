//! `migrations-lua/identify_confirm.lua`: a permitted IDENTIFY was sent; its bucket opens
//! `CONFIRMED_GAP_MS` later.

use redis::Value;

use super::identify::Refusal;
use super::reply::{array, natural, tag};
use super::{ScriptReply, script_call};
use crate::domain::ConfirmOutcome;

script_call! {
    /// Confirms the permit of one shard of the session.
    IdentifyConfirm<'a> = "identify_confirm.lua";
    keys {
        plan_key => plan,
        gateway_key => gateway,
        identify_key => identify,
        permits_key => identify_permits,
        quarantine_key => quarantine,
    }
    argv {
        nonce: &'a str,
        default_concurrency: u32,
        shard_id: u32,
        generation: u64,
        identify_shard_id: Option<u32>,
    }
    reply ConfirmOutcome;
}

impl ScriptReply for ConfirmOutcome {
    fn decode(reply: &Value) -> Option<Self> {
        let fields = array(reply)?;
        if let Some(refusal) = Refusal::decode(fields) {
            return Some(refusal.into());
        }
        match (tag(fields)?.as_str(), fields) {
            ("confirmed", [_, matched]) => Some(ConfirmOutcome::Confirmed(natural(matched)? == 1)),
            _ => None,
        }
    }
}
