//! Why a claim ends, and the JSON lines that report claim changes
//! (`clients/contract/claim_events.json`).

use crate::answers::{Claim, State};
use serde::Serialize;

/// Closing a gateway connection with this code keeps its Discord session resumable (1000 and 1001
/// end it).
pub const RESUMABLE_CLOSE: u16 = 4000;
/// Closing with this code ends the Discord session.
pub const FINAL_CLOSE: u16 = 1000;

/// Why a claim ended: the `reason` of a `released` line. The same list in every client package.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    /// The process's own lease view ran out (no acknowledged beat for `lease_seconds`); that
    /// session id is never used again.
    Lapsed,
    /// A beat or an identify route answered 404: shardman no longer knows the session.
    Lost,
    /// A beat or an identify route answered 401: a reshard replaced the generation; the process exits.
    Retired,
    /// The process is shutting down (SIGTERM/SIGINT, see [`crate::shutdown_signal`]).
    Shutdown,
    /// The bot library cannot run the shards (Discord closed one with a code that forbids
    /// reconnecting: a bad token, an invalid shard...); the process exits non-zero.
    Failed,
    /// A beat answered `hand_over` (`SHARDS_PER_PROCESS=auto`): placement moves the claim's shard
    /// to another process, which RESUMEs it. Given back as on shutdown; only this claim ends.
    HandedOver,
}

impl Release {
    /// Every reason, in the contract's order.
    pub const ALL: [Self; 6] = [
        Self::Lapsed,
        Self::Lost,
        Self::Retired,
        Self::Shutdown,
        Self::Failed,
        Self::HandedOver,
    ];

    /// The `reason` of the `released` line.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Lapsed => "lapsed",
            Self::Lost => "lost",
            Self::Retired => "retired",
            Self::Shutdown => "shutdown",
            Self::Failed => "failed",
            Self::HandedOver => "handed_over",
        }
    }

    /// Whether the process claims anew (else the run ends).
    pub fn claims_again(self) -> bool {
        matches!(self, Self::Lapsed | Self::Lost)
    }

    /// Whether the claim is handed back: a last beat with the shards' resume data, then
    /// `/disconnect`.
    pub fn gives_back(self) -> bool {
        matches!(self, Self::Shutdown | Self::Failed | Self::HandedOver)
    }

    /// How the shards close: a retired generation's sessions are over, every other one may be
    /// resumed by the next holder.
    pub fn close_code(self) -> u16 {
        if self == Self::Retired {
            FINAL_CLOSE
        } else {
            RESUMABLE_CLOSE
        }
    }

    /// The example bot's exit code when the run ends this way (`None`: the process goes on,
    /// claiming again after `Lapsed` and `Lost`).
    pub fn exit_code(self) -> Option<u8> {
        match self {
            Self::Lapsed | Self::Lost | Self::HandedOver => None,
            Self::Retired | Self::Shutdown => Some(0),
            Self::Failed => Some(1),
        }
    }
}

/// A change of this process's claim, as the example bots print it: one JSON line each.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimEvent {
    pub event: &'static str,
    pub shard_ids: Vec<u32>,
    pub shard_count: u32,
    pub generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Release>,
}

impl ClaimEvent {
    /// `/connect` granted `claim`.
    pub fn claimed(claim: &Claim) -> Self {
        Self {
            event: "claimed",
            shard_ids: claim.shard_ids.clone(),
            shard_count: claim.shard_count,
            generation: claim.generation,
            state: Some(claim.state),
            reason: None,
        }
    }

    /// `claim` ended for `reason`.
    pub fn released(claim: &Claim, reason: Release) -> Self {
        Self {
            event: "released",
            shard_ids: claim.shard_ids.clone(),
            shard_count: claim.shard_count,
            generation: claim.generation,
            state: None,
            reason: Some(reason),
        }
    }
}
