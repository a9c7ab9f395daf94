//! The keyspace of the embedded engine: keys, their TTLs, and the one dispatcher that maps a
//! command name to its implementation. Keys expire lazily, as in Redis: an expired key is dropped
//! when a command next touches it. The key-level commands (PING, TIME, DEL, EXISTS, PEXPIRE,
//! PTTL) live here; the commands of each data type live in a file of their own (`strings.rs`,
//! `hashes.rs`, ...), each an `impl Keyspace` block, so a new command goes beside its type and
//! into the table in [`Keyspace::execute`].

use std::collections::{HashMap, HashSet, VecDeque};

use redis::Value;

use super::sorted_set::SortedSet;

/// The keyspace: the data types and commands the scripts use, with Redis's semantics.
#[derive(Default)]
pub(super) struct Keyspace {
    pub(super) entries: HashMap<String, Entry>,
}

pub(super) struct Entry {
    pub(super) data: Data,
    pub(super) expires_at_ms: Option<i64>,
}

pub(super) enum Data {
    String(String),
    Hash(HashMap<String, String>),
    SortedSet(SortedSet),
    Set(HashSet<String>),
    List(VecDeque<String>),
}

/// A command's outcome: the reply, or the error text Redis would answer.
pub(super) type Reply = Result<Value, String>;

/// One command: the keyspace, its arguments (the name excluded) and the frozen clock.
type Command = fn(&mut Keyspace, &[String], i64) -> Reply;

pub(super) const WRONG_TYPE: &str =
    "WRONGTYPE Operation against a key holding the wrong kind of value";

pub(super) fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

pub(super) fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| "ERR value is not an integer or out of range".to_owned())
}

/// Redis's list/range index: negative counts from the end; returns an inclusive range or None.
pub(super) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

impl Keyspace {
    /// The live entry at `key`, dropping it first if it has expired.
    pub(super) fn live(&mut self, key: &str, now_ms: i64) -> Option<&mut Entry> {
        let expired = self
            .entries
            .get(key)
            .is_some_and(|entry| entry.expires_at_ms.is_some_and(|at| at <= now_ms));
        if expired {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// The entry at `key`, created with `empty` when missing.
    pub(super) fn live_or(&mut self, key: &str, now_ms: i64, empty: fn() -> Data) -> &mut Entry {
        if self.live(key, now_ms).is_none() {
            self.entries.insert(
                key.to_owned(),
                Entry {
                    data: empty(),
                    expires_at_ms: None,
                },
            );
        }
        self.entries.get_mut(key).expect("just inserted")
    }

    /// Redis deletes a container once it is empty.
    pub(super) fn drop_if_empty(&mut self, key: &str) {
        let empty = self
            .entries
            .get(key)
            .is_some_and(|entry| match &entry.data {
                Data::String(_) => false,
                Data::Hash(map) => map.is_empty(),
                Data::SortedSet(set) => set.is_empty(),
                Data::Set(set) => set.is_empty(),
                Data::List(list) => list.is_empty(),
            });
        if empty {
            self.entries.remove(key);
        }
    }

    /// Runs one command: `words` is the name and its arguments, `now_ms` the clock of the script.
    pub(super) fn execute(&mut self, words: &[String], now_ms: i64) -> Reply {
        let Some(name) = words.first() else {
            return Err("ERR wrong number of arguments".into());
        };
        let args = &words[1..];
        // Each command with the fewest arguments it takes (HSET and ZADD check their own).
        let (arity, command): (usize, Command) = match name.to_ascii_uppercase().as_str() {
            "PING" => (0, Keyspace::ping),
            "TIME" => (0, Keyspace::time),
            "GET" => (1, Keyspace::get),
            "GETDEL" => (1, Keyspace::getdel),
            "SET" => (2, Keyspace::set_string),
            "DEL" => (1, Keyspace::del),
            "EXISTS" => (1, Keyspace::exists),
            "PEXPIRE" => (2, Keyspace::pexpire),
            "PTTL" => (1, Keyspace::pttl),
            "HGET" => (2, Keyspace::hget),
            "HMGET" => (2, Keyspace::hmget),
            "HGETALL" => (1, Keyspace::hgetall),
            "HEXISTS" => (2, Keyspace::hexists),
            "HSET" => (0, Keyspace::hset),
            "HSETNX" => (3, Keyspace::hsetnx),
            "HDEL" => (2, Keyspace::hdel),
            "INCR" => (1, Keyspace::incr),
            "HINCRBY" => (3, Keyspace::hincrby),
            "ZADD" => (0, Keyspace::zadd),
            "ZREM" => (2, Keyspace::zrem),
            "ZCARD" => (1, Keyspace::zcard),
            "ZRANGE" => (3, Keyspace::zrange),
            "ZRANGEBYSCORE" => (3, Keyspace::zrangebyscore),
            "ZRANK" => (2, Keyspace::zrank),
            "ZSCORE" => (2, Keyspace::zscore),
            "ZPOPMIN" => (1, Keyspace::zpopmin),
            "SADD" => (2, Keyspace::sadd),
            "SREM" => (2, Keyspace::srem),
            "SCARD" => (1, Keyspace::scard),
            "SMEMBERS" => (1, Keyspace::smembers),
            "LPUSH" => (2, Keyspace::lpush),
            "LLEN" => (1, Keyspace::llen),
            "LTRIM" => (3, Keyspace::ltrim),
            "RPOP" => (1, Keyspace::rpop),
            other => {
                return Err(format!(
                    "ERR the embedded engine does not support '{other}'"
                ));
            }
        };
        if args.len() < arity {
            return Err(format!(
                "ERR wrong number of arguments for '{name}' command"
            ));
        }
        command(self, args, now_ms)
    }

    fn ping(&mut self, _args: &[String], _now_ms: i64) -> Reply {
        Ok(Value::SimpleString("PONG".into()))
    }

    fn time(&mut self, _args: &[String], now_ms: i64) -> Reply {
        Ok(Value::Array(vec![
            bulk(&(now_ms / 1000).to_string()),
            bulk(&((now_ms % 1000) * 1000).to_string()),
        ]))
    }

    fn del(&mut self, keys: &[String], now_ms: i64) -> Reply {
        let mut count = 0;
        for key in keys {
            if self.live(key, now_ms).is_some() {
                count += 1;
                self.entries.remove(key.as_str());
            }
        }
        Ok(Value::Int(count))
    }

    fn exists(&mut self, keys: &[String], now_ms: i64) -> Reply {
        let mut count = 0;
        for key in keys {
            if self.live(key, now_ms).is_some() {
                count += 1;
            }
        }
        Ok(Value::Int(count))
    }

    fn pexpire(&mut self, args: &[String], now_ms: i64) -> Reply {
        let ms: i64 = parse_number(&args[1])?;
        Ok(Value::Int(match self.live(&args[0], now_ms) {
            Some(entry) => {
                entry.expires_at_ms = Some(now_ms + ms);
                1
            }
            None => 0,
        }))
    }

    fn pttl(&mut self, args: &[String], now_ms: i64) -> Reply {
        Ok(Value::Int(match self.live(&args[0], now_ms) {
            None => -2,
            Some(Entry {
                expires_at_ms: None,
                ..
            }) => -1,
            Some(Entry {
                expires_at_ms: Some(at),
                ..
            }) => *at - now_ms,
        }))
    }
}
