//! Sorted sets of the embedded engine: the [`SortedSet`] type (members by score, ties by member,
//! as Redis orders them) and its commands (ZADD, ZREM, ZCARD, ZRANGE, ZRANGEBYSCORE, ZPOPMIN).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk, index_range, parse_number};
use super::lua::number_text;

#[derive(Default)]
pub(super) struct SortedSet {
    scores: HashMap<String, f64>,
    order: BTreeSet<(Score, String)>,
}

#[derive(Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl SortedSet {
    fn insert(&mut self, member: &str, score: f64) -> bool {
        let previous = self.scores.insert(member.to_owned(), score);
        if let Some(old) = previous {
            self.order.remove(&(Score(old), member.to_owned()));
        }
        self.order.insert((Score(score), member.to_owned()));
        previous.is_none()
    }

    fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => self.order.remove(&(Score(score), member.to_owned())),
            None => false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

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
