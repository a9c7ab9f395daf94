//! `migrations-lua/identify_permit.lua`: the permit to IDENTIFY now, granted once the shard's
//! bucket is open.

use redis::Value;

use super::identify::Refusal;
use super::reply::{array, natural, tag};
use super::{ScriptReply, script_call};
use crate::domain::PermitOutcome;

script_call! {
    /// Grants the permit of the shard's bucket when it is open, or tells when it opens.
    IdentifyPermit<'a> = "identify_permit.lua";
    keys {
        plan_key => plan,
        gateway_key => gateway,
        identify_key => identify,
        permits_key => identify_permits,
        events_key => events,
        quarantine_key => quarantine,
    }
    argv {
        nonce: &'a str,
        default_concurrency: u32,
        identify_reserve: i64,
        shard_id: u32,
        generation: u64,
        identify_shard_id: Option<u32>,
    }
    reply PermitReply;
}

/// One ask for a permit.
#[derive(Debug, PartialEq, Eq)]
pub enum PermitReply {
    /// The bucket is not open yet: it opens in `wait_ms` at the earliest, at that time when
    /// `firm`, otherwise perhaps sooner (an outstanding permit's confirm moves it).
    Wait {
        shard_id: u32,
        wait_ms: u64,
        firm: bool,
    },
    /// A final answer: granted, or refused.
    Final(PermitOutcome),
}

impl ScriptReply for PermitReply {
    fn decode(reply: &Value) -> Option<Self> {
        let fields = array(reply)?;
        if let Some(refusal) = Refusal::decode(fields) {
            return Some(PermitReply::Final(refusal.into()));
        }
        Some(match (tag(fields)?.as_str(), fields) {
            ("granted", [_, shard_id]) => PermitReply::Final(PermitOutcome::Granted {
                shard_id: natural(shard_id)? as u32,
            }),
            ("wait", [_, wait_ms, firm, shard_id]) => PermitReply::Wait {
                shard_id: natural(shard_id)? as u32,
                wait_ms: natural(wait_ms)?,
                firm: natural(firm)? == 1,
            },
            ("budget", [_, retry]) => PermitReply::Final(PermitOutcome::BudgetExhausted {
                retry_after_ms: natural(retry)?,
            }),
            _ => return None,
        })
    }
}
