//! Sorted-set commands of the embedded engine (ZADD, ZREM, ZCARD, ZRANGE, ZRANGEBYSCORE, ZRANK,
//! ZSCORE, ZPOPMIN), on the [`SortedSet`] value of `sorted_set.rs`.

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk, index_range, parse_number};
use super::lua::number_text;
use super::sorted_set::{Score, SortedSet};

fn parse_score(text: &str) -> Result<f64, String> {
    match text {
        "-inf" => Ok(f64::NEG_INFINITY),
        "+inf" | "inf" => Ok(f64::INFINITY),
        _ => text
            .parse()
            .map_err(|_| "ERR value is not a valid float".to_owned()),
    }
}

impl Keyspace {
    fn sorted_set(&mut self, key: &str, now_ms: i64) -> Result<Option<&mut SortedSet>, String> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(Entry {
                data: Data::SortedSet(set),
                ..
            }) => Ok(Some(set)),
            Some(_) => Err(WRONG_TYPE.into()),
        }
    }

    /// ZADD key score member [score member ...]; checks its own arity (members come in pairs).
    pub(super) fn zadd(&mut self, args: &[String], now_ms: i64) -> Reply {
        if args.len() < 3 || args.len().is_multiple_of(2) {
            return Err("ERR syntax error".into());
        }
        let pairs = args[1..]
            .chunks(2)
            .map(|pair| Ok((parse_score(&pair[0])?, pair[1].clone())))
            .collect::<Result<Vec<_>, String>>()?;
        let entry = self.live_or(&args[0], now_ms, || Data::SortedSet(SortedSet::default()));
        let Data::SortedSet(set) = &mut entry.data else {
            return Err(WRONG_TYPE.into());
        };
        let added = pairs
            .iter()
            .filter(|(score, member)| set.insert(member, *score))
            .count();
        Ok(Value::Int(added as i64))
    }

    pub(super) fn zrem(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let removed = match self.sorted_set(key, now_ms)? {
            Some(set) => args[1..].iter().filter(|member| set.remove(member)).count(),
            None => 0,
        };
        self.drop_if_empty(key);
        Ok(Value::Int(removed as i64))
    }

    pub(super) fn zcard(&mut self, args: &[String], now_ms: i64) -> Reply {
        let count = self
            .sorted_set(&args[0], now_ms)?
            .map_or(0, |set| set.scores.len());
        Ok(Value::Int(count as i64))
    }

    pub(super) fn zrange(&mut self, args: &[String], now_ms: i64) -> Reply {
        let (start, stop): (i64, i64) = (parse_number(&args[1])?, parse_number(&args[2])?);
        let members = match self.sorted_set(&args[0], now_ms)? {
            Some(set) => match index_range(start, stop, set.order.len()) {
                Some((first, last)) => set
                    .order
                    .iter()
                    .skip(first)
                    .take(last - first + 1)
                    .map(|(_, member)| bulk(member))
                    .collect(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(Value::Array(members))
    }

    pub(super) fn zrangebyscore(&mut self, args: &[String], now_ms: i64) -> Reply {
        let (low, high) = (parse_score(&args[1])?, parse_score(&args[2])?);
        let members = match self.sorted_set(&args[0], now_ms)? {
            Some(set) => set
                .order
                .iter()
                .filter(|(score, _)| score.0 >= low && score.0 <= high)
                .map(|(_, member)| bulk(member))
                .collect(),
            None => Vec::new(),
        };
        Ok(Value::Array(members))
    }

    /// ZRANK key member: the member's 0-based position by score, or nil when it is not there.
    /// O(N) here (Redis: O(log N)); the embedded store serves one process's small sets.
    pub(super) fn zrank(&mut self, args: &[String], now_ms: i64) -> Reply {
        let member = args[1].as_str();
        let rank = self.sorted_set(&args[0], now_ms)?.and_then(|set| {
            let score = *set.scores.get(member)?;
            Some(set.order.range(..(Score(score), member.to_owned())).count())
        });
        Ok(rank.map_or(Value::Nil, |rank| Value::Int(rank as i64)))
    }

    /// ZSCORE key member: the member's score as text, or nil when it is not there.
    pub(super) fn zscore(&mut self, args: &[String], now_ms: i64) -> Reply {
        let score = self
            .sorted_set(&args[0], now_ms)?
            .and_then(|set| set.scores.get(args[1].as_str()).copied());
        Ok(score.map_or(Value::Nil, |score| bulk(&number_text(score))))
    }

    pub(super) fn zpopmin(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let popped = match self.sorted_set(key, now_ms)? {
            Some(set) => set.order.pop_first().map(|(score, member)| {
                set.scores.remove(&member);
                vec![bulk(&member), bulk(&number_text(score.0))]
            }),
            None => None,
        };
        self.drop_if_empty(key);
        Ok(Value::Array(popped.unwrap_or_default()))
    }
}
