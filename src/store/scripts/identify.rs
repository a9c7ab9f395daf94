//! `migrations-lua/identify.lua`: book a new IDENTIFY slot for a session that keeps its shard;
//! and the answers it shares with the permit scripts when the session may not identify.

use redis::Value;

use super::reply::{array, natural, tag};
use super::{ScriptReply, script_call};
use crate::domain::{ConfirmOutcome, IdentifyOutcome, PermitOutcome};

script_call! {
    /// Books the next slot of the session's bucket.
    Identify<'a> = "identify.lua";
    keys {
        plan_key => plan,
        gateway_key => gateway,
        identify_key => identify,
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
    reply IdentifyOutcome;
}

/// Why a session may not identify (`check_identify` in `includes/common.lua`): the
/// answers identify.lua, identify_permit.lua and identify_confirm.lua share.
pub(super) enum Refusal {
    NotFound,
    Retired,
    NotInGroup,
    Recovering { retry_after_ms: u64 },
}

impl Refusal {
    /// The refusal a script answered, if `fields` is one.
    pub(super) fn decode(fields: &[Value]) -> Option<Self> {
        Some(match (tag(fields)?.as_str(), fields) {
            ("unknown", _) => Refusal::NotFound,
            ("retired", _) => Refusal::Retired,
            ("not_in_group", _) => Refusal::NotInGroup,
            ("recovering", [_, retry]) => Refusal::Recovering {
                retry_after_ms: natural(retry)?,
            },
            _ => return None,
        })
    }
}

macro_rules! outcome_from_refusal {
    ($($outcome:ident),*) => {$(
        impl From<Refusal> for $outcome {
            fn from(refusal: Refusal) -> Self {
                match refusal {
                    Refusal::NotFound => $outcome::NotFound,
                    Refusal::Retired => $outcome::Retired,
                    Refusal::NotInGroup => $outcome::NotInGroup,
                    Refusal::Recovering { retry_after_ms } => {
                        $outcome::Recovering { retry_after_ms }
                    }
                }
            }
        }
    )*};
}
outcome_from_refusal!(IdentifyOutcome, PermitOutcome, ConfirmOutcome);

impl ScriptReply for IdentifyOutcome {
    fn decode(reply: &Value) -> Option<Self> {
        let fields = array(reply)?;
        if let Some(refusal) = Refusal::decode(fields) {
            return Some(refusal.into());
        }
        let milliseconds = || fields.get(1).and_then(natural);
        Some(match tag(fields)?.as_str() {
            "slot" => IdentifyOutcome::Slot {
                sleep_ms: milliseconds()?,
            },
            "budget" => IdentifyOutcome::BudgetExhausted {
                retry_after_ms: milliseconds()?,
            },
            _ => return None,
        })
    }
}
