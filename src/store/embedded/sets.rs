//! Set commands of the embedded engine (SADD, SREM, SCARD, SMEMBERS), with Redis's semantics: SADD
//! creates the set, and a set whose last member goes is deleted. SMEMBERS has no defined order, as
//! in Redis.

use std::collections::HashSet;

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk};

impl Keyspace {
    fn set(&mut self, key: &str, now_ms: i64) -> Result<Option<&mut HashSet<String>>, String> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(Entry {
                data: Data::Set(set),
                ..
            }) => Ok(Some(set)),
            Some(_) => Err(WRONG_TYPE.into()),
        }
    }

    pub(super) fn sadd(&mut self, args: &[String], now_ms: i64) -> Reply {
        let entry = self.live_or(&args[0], now_ms, || Data::Set(HashSet::new()));
        let Data::Set(set) = &mut entry.data else {
            return Err(WRONG_TYPE.into());
        };
        let added = args[1..]
            .iter()
            .filter(|member| set.insert((*member).clone()))
            .count();
        Ok(Value::Int(added as i64))
    }

    pub(super) fn srem(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let removed = match self.set(key, now_ms)? {
            Some(set) => args[1..]
                .iter()
                .filter(|member| set.remove(*member))
                .count(),
            None => 0,
        };
        self.drop_if_empty(key);
        Ok(Value::Int(removed as i64))
    }

    pub(super) fn scard(&mut self, args: &[String], now_ms: i64) -> Reply {
        Ok(Value::Int(
            self.set(&args[0], now_ms)?.map_or(0, |set| set.len()) as i64,
        ))
    }

    pub(super) fn smembers(&mut self, args: &[String], now_ms: i64) -> Reply {
        let members = self
            .set(&args[0], now_ms)?
            .map(|set| set.iter().map(|member| bulk(member)).collect())
            .unwrap_or_default();
        Ok(Value::Array(members))
    }
}
