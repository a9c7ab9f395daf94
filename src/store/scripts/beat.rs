//! `migrations-lua/beat.lua`: refresh leases, store the reports, complete a reshard; one call
//! applies a batch of beats (group commit) and answers each one.

use redis::Value;

use super::{ArgText, ScriptReply, script_call};
use crate::domain::{BeatOutcome, BeatReport, Lease, SessionState};
use crate::session_token::SessionClaims;

script_call! {
    /// One batch of beats, applied in order in one script call.
    BeatBatch = "beat.lua";
    keys {
        plan_key => plan,
        events_key => events,
        quarantine_key => quarantine,
        fence_key => fence,
    }
    argv { resume_window_ms: u64 }
    each beats:
        /// One beat of a session whose signed id named these claims (owned: it waits in the batch
        /// queue). Its fields are its arguments, in beat.lua's order (`beat[0]`, ...): the header
        /// there says what each holds and where the lease keeps it.
        Beat {
            nonce: String,
            guild_count: Option<u64>,
            latency: Option<f64>,
            extra: Option<String>,
            resume: Option<String>,
            shard_id: u32,
            generation: u64,
            claimed_max_shards: u32,
            claimed_fence: u64,
            claimed_epoch: u64,
            claimed_shards_per_process: u32,
            shard_reports: String,
            shard_resumes: String,
            ready: bool,
            events: Option<u64>,
            cpu_seconds: Option<f64>,
            rss_bytes: Option<u64>,
            process: Option<String>,
        }
    reply BeatAnswers;
}

impl Beat {
    /// The beat of the session these claims (its verified session id) name, reporting `report`.
    pub fn from_claims(claims: SessionClaims, report: &BeatReport) -> Self {
        Beat {
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
                        "{}\t{}\t{}\t{}\n",
                        shard.shard_id,
                        shard.guild_count.arg_text(),
                        shard.latency.arg_text(),
                        shard.events.arg_text()
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
            events: report.events,
            cpu_seconds: report.cpu_seconds,
            rss_bytes: report.rss_bytes,
            process: report.process.clone(),
        }
    }
}

/// One answer per beat of the batch, in order.
pub struct BeatAnswers(pub Vec<BeatOutcome>);

/// beat.lua answers one text, a line per beat: `<status> <shard_id> <max_shards> <generation>
/// <fence> <state>[ move][ reconnect <id>,...]`, status 1 alive, 0 unknown, -1 retired; `move`
/// when the shard is to be handed over (placement by load), `reconnect` with the session's silent
/// shards.
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
    let mut next = fields.next();
    let hand_over = next == Some("move");
    if hand_over {
        next = fields.next();
    }
    let reconnect = match next {
        None => Vec::new(),
        Some("reconnect") => fields
            .next()?
            .split(',')
            .map(|id| id.parse().ok())
            .collect::<Option<Vec<u32>>>()?,
        Some(_) => return None,
    };
    if fields.next().is_some() {
        return None;
    }
    let lease = Lease {
        shard_id,
        max_shards,
        generation,
        fence,
        state: SessionState::parse(state).unwrap_or(SessionState::Retired),
        hand_over,
        reconnect,
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
    use crate::store::scripts::ScriptCall;

    #[test]
    fn a_batch_writes_its_argument_then_each_beat_s_fields_in_the_declared_order() {
        let beat = |nonce: &str, shard_id| Beat {
            nonce: nonce.into(),
            shard_id,
            ready: true,
            ..Beat::default()
        };
        let batch = BeatBatch {
            resume_window_ms: 7,
            beats: vec![beat("a", 3), beat("b", 5)],
        };
        let argv = batch.argv();
        let fields = BeatBatch::EACH;
        assert_eq!(argv.len(), 1 + 2 * fields.len());
        assert_eq!(argv[0], "7");
        let field = |item: usize, name: &str| {
            let offset = fields.iter().position(|field| *field == name).expect(name);
            argv[1 + item * fields.len() + offset].as_str()
        };
        assert_eq!((field(0, "nonce"), field(0, "shard_id")), ("a", "3"));
        assert_eq!((field(1, "nonce"), field(1, "shard_id")), ("b", "5"));
        assert_eq!((field(1, "ready"), field(1, "guild_count")), ("1", ""));
    }

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
    fn a_shard_marked_to_move_is_told_to_hand_over() {
        let reply = Value::BulkString(b"1 3 16 2 41 active move\n1 4 16 2 42 active".to_vec());
        let BeatAnswers(outcomes) = BeatAnswers::decode(&reply).expect("a well-formed answer");
        assert!(matches!(&outcomes[0], BeatOutcome::Alive(lease) if lease.hand_over));
        assert!(matches!(&outcomes[1], BeatOutcome::Alive(lease) if !lease.hand_over));
    }

    #[test]
    fn silent_shards_are_told_to_reconnect() {
        let reply = Value::BulkString(
            b"1 3 16 2 41 active move reconnect 3,5\n1 4 16 2 42 active reconnect 4".to_vec(),
        );
        let BeatAnswers(outcomes) = BeatAnswers::decode(&reply).expect("decodes");
        assert!(
            matches!(&outcomes[0], BeatOutcome::Alive(lease) if lease.hand_over && lease.reconnect == [3, 5])
        );
        assert!(
            matches!(&outcomes[1], BeatOutcome::Alive(lease) if !lease.hand_over && lease.reconnect == [4])
        );
        let bad = Value::BulkString(b"1 4 16 2 42 active reconnect x".to_vec());
        assert!(BeatAnswers::decode(&bad).is_none());
    }

    #[test]
    fn a_malformed_batch_answer_is_refused() {
        for reply in [
            "1 3 16 2 41",
            "1 3 16 2 41 active extra",
            "1 3 16 2 41 active move extra",
            "x 3 16 2 41 active",
        ] {
            let reply = Value::BulkString(reply.as_bytes().to_vec());
            assert!(BeatAnswers::decode(&reply).is_none(), "{reply:?}");
        }
        assert!(BeatAnswers::decode(&Value::Int(1)).is_none());
    }
}
