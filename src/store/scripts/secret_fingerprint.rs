//! `migrations-lua/secret_fingerprint.lua`: compare this replica's secret with the deployment's.

use redis::Value;

use super::reply::{array, text};
use super::{ScriptReply, script_call};

script_call! {
    /// Compares this replica's fingerprints with the deployment's record, creating or moving the
    /// record along a rotation.
    SecretFingerprint<'a> = "secret_fingerprint.lua";
    keys {}
    argv { current: &'a str, previous: Option<&'a str> }
    reply Compared;
}

/// What the script decided about this replica's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// There was no record: this replica's fingerprints are the deployment's now.
    Created,
    /// Its current fingerprint is the record's current or previous one.
    Accepted,
    /// Accepted, and it ended a rotation: the record's previous fingerprint is gone.
    Cleared,
    /// Its previous fingerprint was the record's current one: the record moved to its own.
    Advanced,
    /// Its current fingerprint is neither of the record's: it runs another secret.
    Refused,
}

/// The verdict and the deployment's record as the script left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compared {
    pub verdict: Verdict,
    pub record_current: String,
    /// `None` outside a rotation.
    pub record_previous: Option<String>,
}

impl ScriptReply for Compared {
    fn decode(reply: &Value) -> Option<Self> {
        let [verdict, current, previous] = array(reply)? else {
            return None;
        };
        let verdict = match text(verdict)?.as_str() {
            "created" => Verdict::Created,
            "accepted" => Verdict::Accepted,
            "cleared" => Verdict::Cleared,
            "advanced" => Verdict::Advanced,
            "refused" => Verdict::Refused,
            _ => return None,
        };
        Some(Compared {
            verdict,
            record_current: text(current)?,
            record_previous: Some(text(previous)?).filter(|previous| !previous.is_empty()),
        })
    }
}
