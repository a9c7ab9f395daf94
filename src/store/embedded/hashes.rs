//! Hash commands of the embedded engine (HGET, HMGET, HGETALL, HEXISTS, HSET, HSETNX, HDEL,
//! HINCRBY), with Redis's semantics: writes create the hash, and a hash whose last field goes is
//! deleted.

use std::collections::HashMap;

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk, parse_number};

impl Keyspace {
    fn hash(
        &mut self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<&mut HashMap<String, String>>, String> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(Entry {
                data: Data::Hash(map),
                ..
            }) => Ok(Some(map)),
            Some(_) => Err(WRONG_TYPE.into()),
        }
    }

    fn hash_or_new(
        &mut self,
        key: &str,
        now_ms: i64,
    ) -> Result<&mut HashMap<String, String>, String> {
        match &mut self
            .live_or(key, now_ms, || Data::Hash(HashMap::new()))
            .data
        {
            Data::Hash(map) => Ok(map),
            _ => Err(WRONG_TYPE.into()),
        }
    }

    pub(super) fn hget(&mut self, args: &[String], now_ms: i64) -> Reply {
        let value = self
            .hash(&args[0], now_ms)?
            .and_then(|map| map.get(&args[1]).cloned());
        Ok(value.map_or(Value::Nil, |text| bulk(&text)))
    }

    pub(super) fn hmget(&mut self, args: &[String], now_ms: i64) -> Reply {
        let map = self.hash(&args[0], now_ms)?;
        let map = map.as_deref();
        Ok(Value::Array(
            args[1..]
                .iter()
                .map(|field| {
                    map.and_then(|map| map.get(field))
                        .map_or(Value::Nil, |text| bulk(text))
                })
                .collect(),
        ))
    }

    pub(super) fn hgetall(&mut self, args: &[String], now_ms: i64) -> Reply {
        let map = self.hash(&args[0], now_ms)?;
        Ok(Value::Array(
            map.into_iter()
                .flat_map(|map| map.iter())
                .flat_map(|(field, value)| [bulk(field), bulk(value)])
                .collect(),
        ))
    }

    pub(super) fn hexists(&mut self, args: &[String], now_ms: i64) -> Reply {
        let exists = self
            .hash(&args[0], now_ms)?
            .is_some_and(|map| map.contains_key(&args[1]));
        Ok(Value::Int(i64::from(exists)))
    }

    /// HSET key field value [field value ...]; checks its own arity (fields come in pairs).
    pub(super) fn hset(&mut self, args: &[String], now_ms: i64) -> Reply {
        if args.len() < 3 || args.len().is_multiple_of(2) {
            return Err("ERR wrong number of arguments for 'hset' command".into());
        }
        let map = self.hash_or_new(&args[0], now_ms)?;
        let added = args[1..]
            .chunks(2)
            .filter(|pair| map.insert(pair[0].clone(), pair[1].clone()).is_none())
            .count();
        Ok(Value::Int(added as i64))
    }

    pub(super) fn hsetnx(&mut self, args: &[String], now_ms: i64) -> Reply {
        let map = self.hash_or_new(&args[0], now_ms)?;
        let added = !map.contains_key(&args[1]);
        if added {
            map.insert(args[1].clone(), args[2].clone());
        }
        Ok(Value::Int(i64::from(added)))
    }

    pub(super) fn hdel(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let removed = match self.hash(key, now_ms)? {
            Some(map) => args[1..]
                .iter()
                .filter(|field| map.remove(*field).is_some())
                .count(),
            None => 0,
        };
        self.drop_if_empty(key);
        Ok(Value::Int(removed as i64))
    }

    pub(super) fn hincrby(&mut self, args: &[String], now_ms: i64) -> Reply {
        let increment: i64 = parse_number(&args[2])?;
        let map = self.hash_or_new(&args[0], now_ms)?;
        let current: i64 = match map.get(&args[1]) {
            Some(text) => parse_number(text)?,
            None => 0,
        };
        let value = current + increment;
        map.insert(args[1].clone(), value.to_string());
        Ok(Value::Int(value))
    }
}
