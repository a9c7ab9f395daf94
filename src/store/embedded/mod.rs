//! The embedded engine: an in-process keyspace that runs the same Lua scripts as Redis.
//!
//! With no `REDIS_URL`, shardman runs as a single process. Rather than a second implementation of
//! every operation, this engine gives the scripts in `migrations-lua/` what they use of Redis: Lua
//! 5.1 with `redis.call` over the commands they issue, keys that expire by TTL (checked lazily, as
//! Redis does), and one clock frozen for the length of a script. Scripts run one at a time, so
//! each is atomic, as in Redis.
//!
//! This file holds the engine itself: the Lua state, loading and running scripts, and the `redis`
//! library they call. The keyspace and its dispatcher are in `keyspace.rs`, the commands in one
//! file per data type, and the Lua <-> reply conversions in `lua.rs`.

mod hashes;
mod keyspace;
mod lists;
mod lua;
mod sets;
mod sorted_set;
mod sorted_sets;
mod strings;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use mlua::{Function, Lua, Value as LuaValue};
use redis::Value;

use self::keyspace::Keyspace;
use self::lua::{CommandReply, CommandWords, lua_to_reply};
use super::StoreError;
use super::scripts::LuaScript;

pub(super) struct EmbeddedEngine {
    inner: Mutex<Inner>,
}

struct Inner {
    lua: Lua,
    compiled: HashMap<&'static str, Function>,
}

/// What `redis.call` works on, kept in the Lua state's app data so that one Rust function serves
/// every script run: the keyspace, and the clock frozen for the script running.
struct Data {
    keyspace: Keyspace,
    now_ms: i64,
}

impl EmbeddedEngine {
    pub(super) fn new() -> Self {
        let lua = Lua::new();
        lua.set_app_data(Data {
            keyspace: Keyspace::default(),
            now_ms: 0,
        });
        install_redis_library(&lua).expect("the embedded Lua state accepts the redis library");
        Self {
            inner: Mutex::new(Inner {
                lua,
                compiled: HashMap::new(),
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
    pub(super) fn load(&self, script: &LuaScript) -> Result<(), StoreError> {
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

    pub(super) fn eval(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let guard = self.lock();
        let Inner { lua, compiled } = &*guard;
        let function = compiled
            .get(script.name)
            .ok_or_else(|| StoreError::Internal(format!("{} was never loaded", script.name)))?;
        let internal = |error: mlua::Error| StoreError::Internal(error.to_string());
        data_of(lua).map_err(internal)?.now_ms = wall_clock_ms();
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
        let reply = function
            .call::<LuaValue>(())
            .and_then(|result| lua_to_reply(&result));
        match reply {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(script_error)) => Err(StoreError::Internal(script_error)),
            Err(error) => Err(StoreError::Internal(format!("{}: {error}", script.name))),
        }
    }

    /// One command outside any script.
    pub(super) fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let words: Vec<String> = args.iter().map(|word| (*word).to_owned()).collect();
        let guard = self.lock();
        let mut data =
            data_of(&guard.lua).map_err(|error| StoreError::Internal(error.to_string()))?;
        data.keyspace
            .execute(&words, wall_clock_ms())
            .map_err(StoreError::Internal)
    }
}

fn data_of(lua: &Lua) -> mlua::Result<mlua::AppDataRefMut<'_, Data>> {
    lua.try_app_data_mut::<Data>()
        .map_err(|_| mlua::Error::RecursiveMutCallback)?
        .ok_or_else(|| mlua::Error::RuntimeError("the embedded engine lost its keyspace".into()))
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// `redis.call`, `redis.error_reply` and `redis.status_reply`, as Redis defines them.
fn install_redis_library(lua: &Lua) -> mlua::Result<()> {
    let library = lua.create_table()?;
    library.set(
        "call",
        lua.create_function(|lua, CommandWords(words)| {
            let mut data = data_of(lua)?;
            let Data { keyspace, now_ms } = &mut *data;
            match keyspace.execute(&words, *now_ms) {
                Ok(reply) => Ok(CommandReply(reply)),
                Err(message) => Err(mlua::Error::RuntimeError(message)),
            }
        })?,
    )?;
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
    fn numbers_become_their_text_and_statuses_and_counts_reach_lua_as_in_redis() {
        let reply = run("local ok = redis.call('SET', KEYS[1], 42) \
                         return {ok.ok, redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[1]) + 1}");
        assert_eq!(
            reply.expect("runs"),
            Value::Array(vec![
                Value::BulkString(b"OK".to_vec()),
                Value::BulkString(b"42".to_vec()),
                Value::Int(2),
            ])
        );
        let refused = run("return redis.call('SET', KEYS[1], {})").expect_err("a table is no word");
        assert!(
            refused.to_string().contains("must be strings or integers"),
            "{refused}"
        );
        let wrong_type =
            run("redis.call('SET', KEYS[1], 'a') return redis.call('HGET', KEYS[1], 'f')")
                .expect_err("a string is no hash");
        assert!(wrong_type.to_string().contains("WRONGTYPE"), "{wrong_type}");
    }

    #[test]
    fn zrank_counts_the_members_ahead_by_score_and_is_nil_for_a_stranger() {
        let reply = run("redis.call('ZADD', KEYS[1], 3, 'c', 1, 'a', 2, 'b') \
                         return {redis.call('ZRANK', KEYS[1], 'a'), redis.call('ZRANK', KEYS[1], 'c'), \
                         redis.call('ZRANK', KEYS[1], 'z') == false, redis.call('ZRANK', 'none', 'a') == false}");
        assert_eq!(
            reply.expect("runs"),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(2),
                Value::Int(1),
                Value::Int(1)
            ])
        );
    }

    #[test]
    fn zscore_answers_the_score_as_text_and_nil_for_a_stranger() {
        let reply = run("redis.call('ZADD', KEYS[1], 1700000000123, 'a') \
                         return {redis.call('ZSCORE', KEYS[1], 'a'), \
                         redis.call('ZSCORE', KEYS[1], 'z') == false, redis.call('ZSCORE', 'none', 'a') == false}");
        assert_eq!(
            reply.expect("runs"),
            Value::Array(vec![
                Value::BulkString(b"1700000000123".to_vec()),
                Value::Int(1),
                Value::Int(1)
            ])
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
