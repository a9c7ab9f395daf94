//! The embedded engine: an in-process keyspace that runs the same Lua scripts as Redis.
//!
//! With no `REDIS_URL`, shardman runs as a single process. Rather than a second implementation of
//! every operation, this engine gives the scripts in `migrations-lua/` what they use of Redis: Lua
//! 5.1 with `redis.call` over the commands they issue, keys that expire by TTL (checked lazily, as
//! Redis does), and one clock frozen for the length of a script. Scripts run one at a time, so
//! each is atomic, as in Redis.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, Value as LuaValue, Variadic};
use redis::Value;

use super::{LuaScript, StoreError};

pub struct EmbeddedEngine {
    inner: Mutex<Inner>,
}

struct Inner {
    lua: Lua,
    compiled: HashMap<&'static str, Function>,
    keyspace: Keyspace,
}

impl EmbeddedEngine {
    pub fn new() -> Self {
        let lua = Lua::new();
        install_redis_library(&lua).expect("the embedded Lua state accepts the redis library");
        Self {
            inner: Mutex::new(Inner {
                lua,
                compiled: HashMap::new(),
                keyspace: Keyspace::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic inside a script cannot leave the keyspace half-written in a way later calls
        // would trip over more than Redis would after a script error; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Compiles the script, so a broken one fails startup as SCRIPT LOAD does.
    pub fn load(&self, script: &LuaScript) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let function = inner
            .lua
            .load(script.source)
            .set_name(script.name)
            .into_function()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        inner.compiled.insert(script.name, function);
        Ok(())
    }

    pub fn eval(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut guard = self.lock();
        let Inner {
            lua,
            compiled,
            keyspace,
        } = &mut *guard;
        let function = compiled
            .get(script.name)
            .ok_or_else(|| StoreError::Internal(format!("{} was never loaded", script.name)))?
            .clone();
        let now_ms = wall_clock_ms();
        let internal = |error: mlua::Error| StoreError::Internal(error.to_string());
        let globals = lua.globals();
        // raw_set: the globals table refuses new names (see install_redis_library).
        globals
            .raw_set(
                "KEYS",
                lua.create_sequence_from(keys.iter().copied())
                    .map_err(internal)?,
            )
            .map_err(internal)?;
        globals
            .raw_set(
                "ARGV",
                lua.create_sequence_from(args.iter().map(String::as_str))
                    .map_err(internal)?,
            )
            .map_err(internal)?;
        let redis_library: mlua::Table = globals.get("redis").map_err(internal)?;
        let reply = lua.scope(|scope| {
            let call = scope.create_function_mut(|lua, arguments: Variadic<LuaValue>| {
                let words = arguments
                    .iter()
                    .map(argument_text)
                    .collect::<Result<Vec<_>, _>>()?;
                match keyspace.execute(&words, now_ms) {
                    Ok(reply) => reply_to_lua(lua, reply),
                    Err(message) => Err(mlua::Error::RuntimeError(message)),
                }
            })?;
            redis_library.set("call", call)?;
            let result: LuaValue = function.call(())?;
            lua_to_reply(&result)
        });
        match reply {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(script_error)) => Err(StoreError::Internal(script_error)),
            Err(error) => Err(StoreError::Internal(format!("{}: {error}", script.name))),
        }
    }

    /// One command outside any script.
    pub fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let words: Vec<String> = args.iter().map(|word| (*word).to_owned()).collect();
        self.lock()
            .keyspace
            .execute(&words, wall_clock_ms())
            .map_err(StoreError::Internal)
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// `redis.error_reply` and `redis.status_reply`, as Redis defines them; `redis.call` is bound per
/// script run, because it borrows the keyspace.
fn install_redis_library(lua: &Lua) -> mlua::Result<()> {
    let library = lua.create_table()?;
    library.set(
        "error_reply",
        lua.create_function(|lua, message: String| {
            let table = lua.create_table()?;
            table.set("err", message)?;
            Ok(table)
        })?,
    )?;
    library.set(
        "status_reply",
        lua.create_function(|lua, message: String| {
            let table = lua.create_table()?;
            table.set("ok", message)?;
            Ok(table)
        })?,
    )?;
    lua.globals().set("redis", library)?;
    // As in Redis, a script may neither create a global nor read one that does not exist, so a
    // misspelt name fails here as it would on Redis.
    lua.load(
        r#"setmetatable(_G, {
            __newindex = function(_, name)
                error("Script attempted to create global variable '" .. tostring(name) .. "'", 2)
            end,
            __index = function(_, name)
                error("Script attempted to access nonexistent global variable '"
                    .. tostring(name) .. "'", 2)
            end,
        })"#,
    )
    .exec()
}

/// Redis accepts strings and numbers as command arguments; numbers print as Lua prints them.
fn argument_text(value: &LuaValue) -> mlua::Result<String> {
    match value {
        LuaValue::String(text) => Ok(text.to_string_lossy().to_string()),
        LuaValue::Integer(number) => Ok(number.to_string()),
        LuaValue::Number(number) => Ok(number_text(*number)),
        _ => Err(mlua::Error::RuntimeError(
            "Lua redis lib command arguments must be strings or integers".into(),
        )),
    }
}

fn number_text(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        format!("{number}")
    }
}

/// Redis's conversion of a command reply into a Lua value.
fn reply_to_lua(lua: &Lua, reply: Value) -> mlua::Result<LuaValue> {
    Ok(match reply {
        Value::Nil => LuaValue::Boolean(false),
        Value::Int(number) => LuaValue::Number(number as f64),
        Value::BulkString(bytes) => LuaValue::String(lua.create_string(bytes)?),
        Value::Okay => status_table(lua, "OK")?,
        Value::SimpleString(text) => status_table(lua, &text)?,
        Value::Array(items) => {
            let table = lua.create_table()?;
            for (index, item) in items.into_iter().enumerate() {
                table.set(index + 1, reply_to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        other => {
            return Err(mlua::Error::RuntimeError(format!(
                "the embedded engine cannot return {other:?} to Lua"
            )));
        }
    })
}

fn status_table(lua: &Lua, text: &str) -> mlua::Result<LuaValue> {
    let table = lua.create_table()?;
    table.set("ok", text)?;
    Ok(LuaValue::Table(table))
}

/// Redis's conversion of a script's return value into a reply; `Err` for `{err = ...}`.
fn lua_to_reply(value: &LuaValue) -> mlua::Result<Result<Value, String>> {
    Ok(Ok(match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Value::Nil,
        LuaValue::Boolean(true) => Value::Int(1),
        LuaValue::Integer(number) => Value::Int(*number),
        LuaValue::Number(number) => Value::Int(number.trunc() as i64),
        LuaValue::String(text) => Value::BulkString(text.as_bytes().to_vec()),
        LuaValue::Table(table) => {
            if let Ok(message) = table.get::<String>("err") {
                return Ok(Err(message));
            }
            if let Ok(status) = table.get::<String>("ok") {
                return Ok(Ok(Value::SimpleString(status)));
            }
            let mut items = Vec::new();
            for index in 1.. {
                let item: LuaValue = table.get(index)?;
                if item.is_nil() {
                    break;
                }
                match lua_to_reply(&item)? {
                    Ok(reply) => items.push(reply),
                    Err(message) => return Ok(Err(message)),
                }
            }
            Value::Array(items)
        }
        _ => Value::Nil,
    }))
}

/// The keyspace: the data types and commands the scripts use, with Redis's semantics.
#[derive(Default)]
struct Keyspace {
    entries: HashMap<String, Entry>,
}

struct Entry {
    data: Data,
    expires_at_ms: Option<i64>,
}

enum Data {
    String(String),
    Hash(HashMap<String, String>),
    SortedSet(SortedSet),
    Set(HashSet<String>),
    List(VecDeque<String>),
}

#[derive(Default)]
struct SortedSet {
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
}

const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

fn parse_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| "ERR value is not an integer or out of range".to_owned())
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

/// Redis's list/range index: negative counts from the end; returns an inclusive range or None.
fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
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
    fn live(&mut self, key: &str, now_ms: i64) -> Option<&mut Entry> {
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
    fn live_or(&mut self, key: &str, now_ms: i64, empty: fn() -> Data) -> &mut Entry {
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
    fn drop_if_empty(&mut self, key: &str) {
        let empty = self
            .entries
            .get(key)
            .is_some_and(|entry| match &entry.data {
                Data::String(_) => false,
                Data::Hash(map) => map.is_empty(),
                Data::SortedSet(set) => set.scores.is_empty(),
                Data::Set(set) => set.is_empty(),
                Data::List(list) => list.is_empty(),
            });
        if empty {
            self.entries.remove(key);
        }
    }

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

    fn list(&mut self, key: &str, now_ms: i64) -> Result<Option<&mut VecDeque<String>>, String> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(Entry {
                data: Data::List(list),
                ..
            }) => Ok(Some(list)),
            Some(_) => Err(WRONG_TYPE.into()),
        }
    }

    fn string(&mut self, key: &str, now_ms: i64) -> Result<Option<String>, String> {
        match self.live(key, now_ms) {
            None => Ok(None),
            Some(Entry {
                data: Data::String(text),
                ..
            }) => Ok(Some(text.clone())),
            Some(_) => Err(WRONG_TYPE.into()),
        }
    }

    fn execute(&mut self, words: &[String], now_ms: i64) -> Result<Value, String> {
        let Some(name) = words.first() else {
            return Err("ERR wrong number of arguments".into());
        };
        let args = &words[1..];
        let arity = |count: usize| -> Result<(), String> {
            if args.len() < count {
                Err(format!(
                    "ERR wrong number of arguments for '{name}' command"
                ))
            } else {
                Ok(())
            }
        };
        let key = args.first().map(String::as_str).unwrap_or_default();
        match name.to_ascii_uppercase().as_str() {
            "PING" => Ok(Value::SimpleString("PONG".into())),
            "TIME" => Ok(Value::Array(vec![
                bulk(&(now_ms / 1000).to_string()),
                bulk(&((now_ms % 1000) * 1000).to_string()),
            ])),
            "GET" => {
                arity(1)?;
                Ok(self
                    .string(key, now_ms)?
                    .map_or(Value::Nil, |text| bulk(&text)))
            }
            "GETDEL" => {
                arity(1)?;
                let value = self.string(key, now_ms)?;
                if value.is_some() {
                    self.entries.remove(key);
                }
                Ok(value.map_or(Value::Nil, |text| bulk(&text)))
            }
            "SET" => {
                arity(2)?;
                let mut only_if_missing = false;
                let mut expires_at_ms = None;
                let mut options = args[2..].iter();
                while let Some(option) = options.next() {
                    match option.to_ascii_uppercase().as_str() {
                        "NX" => only_if_missing = true,
                        "PX" => {
                            let ms: i64 = parse_number(options.next().ok_or("ERR syntax error")?)?;
                            expires_at_ms = Some(now_ms + ms);
                        }
                        "EX" => {
                            let seconds: i64 =
                                parse_number(options.next().ok_or("ERR syntax error")?)?;
                            expires_at_ms = Some(now_ms + seconds * 1000);
                        }
                        _ => return Err("ERR syntax error".into()),
                    }
                }
                if only_if_missing && self.live(key, now_ms).is_some() {
                    return Ok(Value::Nil);
                }
                self.entries.insert(
                    key.to_owned(),
                    Entry {
                        data: Data::String(args[1].clone()),
                        expires_at_ms,
                    },
                );
                Ok(Value::Okay)
            }
            "DEL" | "EXISTS" => {
                arity(1)?;
                let mut count = 0;
                for key in args {
                    if self.live(key, now_ms).is_some() {
                        count += 1;
                        if name.eq_ignore_ascii_case("DEL") {
                            self.entries.remove(key.as_str());
                        }
                    }
                }
                Ok(Value::Int(count))
            }
            "PEXPIRE" => {
                arity(2)?;
                let ms: i64 = parse_number(&args[1])?;
                Ok(Value::Int(match self.live(key, now_ms) {
                    Some(entry) => {
                        entry.expires_at_ms = Some(now_ms + ms);
                        1
                    }
                    None => 0,
                }))
            }
            "PTTL" => {
                arity(1)?;
                Ok(Value::Int(match self.live(key, now_ms) {
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
            "HGET" => {
                arity(2)?;
                let value = self
                    .hash(key, now_ms)?
                    .and_then(|map| map.get(&args[1]).cloned());
                Ok(value.map_or(Value::Nil, |text| bulk(&text)))
            }
            "HMGET" => {
                arity(2)?;
                let map = self.hash(key, now_ms)?;
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
            "HGETALL" => {
                arity(1)?;
                let map = self.hash(key, now_ms)?;
                Ok(Value::Array(
                    map.into_iter()
                        .flat_map(|map| map.iter())
                        .flat_map(|(field, value)| [bulk(field), bulk(value)])
                        .collect(),
                ))
            }
            "HEXISTS" => {
                arity(2)?;
                let exists = self
                    .hash(key, now_ms)?
                    .is_some_and(|map| map.contains_key(&args[1]));
                Ok(Value::Int(i64::from(exists)))
            }
            "HSET" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err("ERR wrong number of arguments for 'hset' command".into());
                }
                let map = self.hash_or_new(key, now_ms)?;
                let added = args[1..]
                    .chunks(2)
                    .filter(|pair| map.insert(pair[0].clone(), pair[1].clone()).is_none())
                    .count();
                Ok(Value::Int(added as i64))
            }
            "HSETNX" => {
                arity(3)?;
                let map = self.hash_or_new(key, now_ms)?;
                let added = !map.contains_key(&args[1]);
                if added {
                    map.insert(args[1].clone(), args[2].clone());
                }
                Ok(Value::Int(i64::from(added)))
            }
            "HDEL" => {
                arity(2)?;
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
            "INCR" => {
                arity(1)?;
                let current: i64 = match self.string(key, now_ms)? {
                    Some(text) => parse_number(&text)?,
                    None => 0,
                };
                let expires_at_ms = self.live(key, now_ms).and_then(|entry| entry.expires_at_ms);
                self.entries.insert(
                    key.to_owned(),
                    Entry {
                        data: Data::String((current + 1).to_string()),
                        expires_at_ms,
                    },
                );
                Ok(Value::Int(current + 1))
            }
            "HINCRBY" => {
                arity(3)?;
                let increment: i64 = parse_number(&args[2])?;
                let map = self.hash_or_new(key, now_ms)?;
                let current: i64 = match map.get(&args[1]) {
                    Some(text) => parse_number(text)?,
                    None => 0,
                };
                let value = current + increment;
                map.insert(args[1].clone(), value.to_string());
                Ok(Value::Int(value))
            }
            "ZADD" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err("ERR syntax error".into());
                }
                let pairs = args[1..]
                    .chunks(2)
                    .map(|pair| Ok((parse_score(&pair[0])?, pair[1].clone())))
                    .collect::<Result<Vec<_>, String>>()?;
                let entry = self.live_or(key, now_ms, || Data::SortedSet(SortedSet::default()));
                let Data::SortedSet(set) = &mut entry.data else {
                    return Err(WRONG_TYPE.into());
                };
                let added = pairs
                    .iter()
                    .filter(|(score, member)| set.insert(member, *score))
                    .count();
                Ok(Value::Int(added as i64))
            }
            "ZREM" => {
                arity(2)?;
                let removed = match self.sorted_set(key, now_ms)? {
                    Some(set) => args[1..].iter().filter(|member| set.remove(member)).count(),
                    None => 0,
                };
                self.drop_if_empty(key);
                Ok(Value::Int(removed as i64))
            }
            "ZCARD" => {
                arity(1)?;
                let count = self
                    .sorted_set(key, now_ms)?
                    .map_or(0, |set| set.scores.len());
                Ok(Value::Int(count as i64))
            }
            "ZRANGE" => {
                arity(3)?;
                let (start, stop): (i64, i64) = (parse_number(&args[1])?, parse_number(&args[2])?);
                let members = match self.sorted_set(key, now_ms)? {
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
            "ZRANGEBYSCORE" => {
                arity(3)?;
                let (low, high) = (parse_score(&args[1])?, parse_score(&args[2])?);
                let members = match self.sorted_set(key, now_ms)? {
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
            "ZPOPMIN" => {
                arity(1)?;
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
            "SADD" => {
                arity(2)?;
                let entry = self.live_or(key, now_ms, || Data::Set(HashSet::new()));
                let Data::Set(set) = &mut entry.data else {
                    return Err(WRONG_TYPE.into());
                };
                let added = args[1..]
                    .iter()
                    .filter(|member| set.insert((*member).clone()))
                    .count();
                Ok(Value::Int(added as i64))
            }
            "SREM" => {
                arity(2)?;
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
            "SCARD" => {
                arity(1)?;
                Ok(Value::Int(
                    self.set(key, now_ms)?.map_or(0, |set| set.len()) as i64,
                ))
            }
            "SMEMBERS" => {
                arity(1)?;
                let members = self
                    .set(key, now_ms)?
                    .map(|set| set.iter().map(|member| bulk(member)).collect())
                    .unwrap_or_default();
                Ok(Value::Array(members))
            }
            "LPUSH" => {
                arity(2)?;
                let entry = self.live_or(key, now_ms, || Data::List(VecDeque::new()));
                let Data::List(list) = &mut entry.data else {
                    return Err(WRONG_TYPE.into());
                };
                for value in &args[1..] {
                    list.push_front(value.clone());
                }
                Ok(Value::Int(list.len() as i64))
            }
            "LLEN" => {
                arity(1)?;
                Ok(Value::Int(
                    self.list(key, now_ms)?.map_or(0, |list| list.len()) as i64,
                ))
            }
            "LTRIM" => {
                arity(3)?;
                let (start, stop): (i64, i64) = (parse_number(&args[1])?, parse_number(&args[2])?);
                if let Some(list) = self.list(key, now_ms)? {
                    match index_range(start, stop, list.len()) {
                        Some((first, last)) => {
                            list.truncate(last + 1);
                            list.drain(..first);
                        }
                        None => list.clear(),
                    }
                }
                self.drop_if_empty(key);
                Ok(Value::Okay)
            }
            "RPOP" => {
                arity(1)?;
                let count: Option<usize> =
                    args.get(1).map(|text| parse_number(text)).transpose()?;
                let popped: Option<Vec<String>> = self.list(key, now_ms)?.map(|list| {
                    (0..count.unwrap_or(1))
                        .map_while(|_| list.pop_back())
                        .collect()
                });
                self.drop_if_empty(key);
                Ok(match (popped, count) {
                    (None, _) => Value::Nil,
                    (Some(items), Some(_)) => {
                        Value::Array(items.iter().map(|item| bulk(item)).collect())
                    }
                    (Some(items), None) => items.first().map_or(Value::Nil, |item| bulk(item)),
                })
            }
            other => Err(format!(
                "ERR the embedded engine does not support '{other}'"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(source: &'static str) -> Result<Value, StoreError> {
        let engine = EmbeddedEngine::new();
        let script = LuaScript::new("test.lua", source);
        engine.load(&script)?;
        engine.eval(&script, &["k"], &["a".to_owned()])
    }

    #[test]
    fn scripts_see_keys_and_argv_and_call_commands_like_redis() {
        let reply = run("redis.call('SET', KEYS[1], ARGV[1], 'PX', 1000) \
                         return {redis.call('GET', KEYS[1]), redis.call('GET', 'missing')}");
        // A missing key is false in Lua and nil in the reply, inside the array, as Redis does.
        assert_eq!(
            reply.expect("runs"),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil])
        );
    }

    #[test]
    fn a_script_may_not_create_or_read_an_unknown_global_as_in_redis() {
        let created = run("oops = 1 return 1").expect_err("creating a global fails");
        assert!(
            created
                .to_string()
                .contains("create global variable 'oops'"),
            "{created}"
        );
        let read = run("return undefined_name").expect_err("reading an unknown global fails");
        assert!(
            read.to_string().contains("nonexistent global variable"),
            "{read}"
        );
    }
}
