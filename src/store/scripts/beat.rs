//! `migrations-lua/beat.lua`: refresh leases, store the reports, complete a reshard; one call
//! applies a batch of beats (group commit) and answers each one.

use redis::Value;

use super::{ArgText, ScriptCall, ScriptReply};
use crate::domain::{BeatOutcome, BeatReport, Lease, SessionState};
use crate::session_token::SessionClaims;
use crate::store::keys::Keys;

/// One batch of beats, applied in order in one script call.
pub struct Beat {
    pub resume_window_ms: u64,
    /// From `ARGV[6]` on, [`OneBeat::FIELDS`] arguments each.
    pub beats: Vec<OneBeat>,
}

/// One beat of a session whose signed id named these claims (owned: it waits in the batch queue).
#[derive(Clone, Debug)]
pub struct OneBeat {
    pub nonce: String,
    pub guild_count: Option<u64>,
    pub latency: Option<f64>,
    pub extra: Option<String>,
    pub resume: Option<String>,
    pub shard_id: u32,
    pub generation: u64,
    pub claimed_max_shards: u32,
    pub claimed_fence: u64,
    pub claimed_epoch: u64,
    pub claimed_shards_per_process: u32,
    pub shard_reports: String,
    pub shard_resumes: String,
    pub ready: bool,
}

impl OneBeat {
    /// The beat of the session these claims (its verified session id) name, reporting `report`.
    pub fn from_claims(claims: SessionClaims, report: &BeatReport) -> Self {
        OneBeat {
            nonce: claims.nonce,
            guild_count: report.guild_count,
            latency: report.latency,
            extra: report.extra.clone(),
            resume: report.resume.clone(),
            shard_id: claims.shard_id,
            generation: claims.generation,
            claimed_max_shards: claims.max_shards,
            claimed_fence: claims.fence,
            claimed_epoch: claims.epoch,
            claimed_shards_per_process: claims.shards_per_process,
            shard_reports: report
                .shards
                .iter()
                .map(|shard| {
                    format!(
                        "{}\t{}\t{}\n",
                        shard.shard_id,
                        shard.guild_count.map(|n| n.to_string()).unwrap_or_default(),
                        shard.latency.map(|s| s.to_string()).unwrap_or_default()
                    )
                })
                .collect(),
            // Compact JSON escapes tabs and newlines inside strings: the lines stay lines.
            shard_resumes: report
                .shards
                .iter()
                .filter_map(|shard| {
                    Some(format!("{}\t{}\n", shard.shard_id, shard.resume.as_ref()?))
                })
                .collect(),
            ready: report.ready,
        }
    }

    /// The names of a beat's arguments, in the order beat.lua reads them (`beat[0]`, ...).
    pub const FIELDS: &'static [&'static str] = &[
        "nonce",
        "guild_count",
        "latency",
        "extra",
        "resume",
        "shard_id",
        "generation",
        "claimed_max_shards",
        "claimed_fence",
        "claimed_epoch",
        "claimed_shards_per_process",
        "shard_reports",
        "shard_resumes",
        "ready",
    ];

    fn push_argv(&self, argv: &mut Vec<String>) {
        argv.extend([
            self.nonce.arg_text(),
            self.guild_count.arg_text(),
            self.latency.arg_text(),
            self.extra.arg_text(),
            self.resume.arg_text(),
            self.shard_id.arg_text(),
            self.generation.arg_text(),
            self.claimed_max_shards.arg_text(),
            self.claimed_fence.arg_text(),
            self.claimed_epoch.arg_text(),
            self.claimed_shards_per_process.arg_text(),
            self.shard_reports.arg_text(),
            self.shard_resumes.arg_text(),
            if self.ready { "1" } else { "0" }.to_owned(),
        ]);
    }
}

impl ScriptCall for Beat {
    const FILE: &'static str = "beat.lua";
    const SOURCE: &'static str = super::lua_source!("beat.lua");
    const KEYS: &'static [&'static str] =
        &["plan_key", "events_key", "quarantine_key", "fence_key"];
    const ARGV: &'static [&'static str] = &["resume_window_ms"];
    const EACH: &'static [&'static str] = OneBeat::FIELDS;
    const SCHEMA_GUARD: bool = true;
    type Reply = BeatAnswers;

    fn keys<'k>(&self, keys: &'k Keys) -> Vec<&'k str> {
        vec![
            keys.plan.as_str(),
            keys.events.as_str(),
            keys.quarantine.as_str(),
            keys.fence.as_str(),
        ]
    }

    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(1 + self.beats.len() * OneBeat::FIELDS.len());
        argv.push(self.resume_window_ms.arg_text());
        for beat in &self.beats {
            beat.push_argv(&mut argv);
        }
        argv
    }
}

/// One answer per beat of the batch, in order.
pub struct BeatAnswers(pub Vec<BeatOutcome>);

/// beat.lua answers one text, a line per beat: `<status> <shard_id> <max_shards> <generation>
/// <fence> <state>`, status 1 alive, 0 unknown, -1 retired.
impl ScriptReply for BeatAnswers {
    fn decode(reply: &Value) -> Option<Self> {
        let text = match reply {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?,
            Value::SimpleString(text) => text.as_str(),
            _ => return None,
        };
        if text.is_empty() {
            return Some(BeatAnswers(Vec::new()));
        }
        text.split('\n')
            .map(decode_answer)
            .collect::<Option<Vec<_>>>()
            .map(BeatAnswers)
    }
}

fn decode_answer(line: &str) -> Option<BeatOutcome> {
    let mut fields = line.split(' ');
    let mut number = || -> Option<i64> { fields.next()?.parse().ok() };
    let natural = |number: i64| number.max(0) as u64;
    let status = number()?;
    let shard_id = natural(number()?) as u32;
    let max_shards = natural(number()?) as u32;
    let generation = natural(number()?);
    let fence = natural(number()?);
    let state = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let lease = Lease {
        shard_id,
        max_shards,
        generation,
        fence,
        state: SessionState::parse(state).unwrap_or(SessionState::Retired),
    };
    Some(match status {
        0 => BeatOutcome::NotFound,
        1 => BeatOutcome::Alive(lease),
        _ => BeatOutcome::Retired(lease),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answer_decodes_to_one_outcome_per_line_in_order() {
        let reply = Value::BulkString(
            b"1 3 16 2 41 standby\n0 -1 0 0 0 unknown\n-1 5 16 1 9 retired".to_vec(),
        );
        let BeatAnswers(outcomes) = BeatAnswers::decode(&reply).expect("a well-formed answer");
        assert_eq!(outcomes.len(), 3);
        match &outcomes[0] {
            BeatOutcome::Alive(lease) => {
                assert_eq!(
                    (
                        lease.shard_id,
                        lease.max_shards,
                        lease.generation,
                        lease.fence
                    ),
                    (3, 16, 2, 41)
                );
                assert_eq!(lease.state, SessionState::Standby);
            }
            other => panic!("first: {other:?}"),
        }
        assert!(matches!(outcomes[1], BeatOutcome::NotFound));
        assert!(matches!(&outcomes[2], BeatOutcome::Retired(lease) if lease.shard_id == 5));
    }

    #[test]
    fn a_malformed_batch_answer_is_refused() {
        for reply in [
            "1 3 16 2 41",
            "1 3 16 2 41 active extra",
            "x 3 16 2 41 active",
        ] {
            let reply = Value::BulkString(reply.as_bytes().to_vec());
            assert!(BeatAnswers::decode(&reply).is_none(), "{reply:?}");
        }
        assert!(BeatAnswers::decode(&Value::Int(1)).is_none());
    }
}
