//! Conversions between Lua values and Redis replies, as Redis's scripting makes them: command
//! arguments from Lua strings and numbers, a command's reply into a Lua value (nil -> false, status
//! -> `{ok = ...}`), and a script's return value back into a reply (`{err = ...}` -> an error).
//! Kept apart from the engine so the mapping can be read, and checked against Redis's, in one place.

use std::ffi::c_int;

use mlua::state::RawLua;
use mlua::{FromLuaMulti, IntoLuaMulti, Lua, MultiValue, Value as LuaValue, ffi};
use redis::Value;

/// Redis accepts strings and numbers as command arguments; numbers print as Lua prints them.
pub(super) fn argument_text(value: &LuaValue) -> mlua::Result<String> {
    match value {
        LuaValue::String(text) => Ok(text.to_string_lossy().to_string()),
        LuaValue::Integer(number) => Ok(number.to_string()),
        LuaValue::Number(number) => Ok(number_text(*number)),
        _ => Err(mlua::Error::RuntimeError(
            "Lua redis lib command arguments must be strings or integers".into(),
        )),
    }
}

pub(super) fn number_text(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        format!("{number}")
    }
}

/// Redis's conversion of a command reply into a Lua value.
pub(super) fn reply_to_lua(lua: &Lua, reply: Value) -> mlua::Result<LuaValue> {
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
pub(super) fn lua_to_reply(value: &LuaValue) -> mlua::Result<Result<Value, String>> {
    Ok(Ok(match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Value::Nil,
        LuaValue::Boolean(true) => Value::Int(1),
        LuaValue::Integer(number) => Value::Int(*number),
        LuaValue::Number(number) => Value::Int(number.trunc() as i64),
        LuaValue::String(text) => Value::BulkString(text.as_bytes().to_vec()),
        LuaValue::Table(table) => {
            // Raw reads of plain values: a failed typed read would build an error each time, and
            // a batch's answer holds a table per beat.
            if let LuaValue::String(message) = table.raw_get::<LuaValue>("err")? {
                return Ok(Err(message.to_string_lossy().to_string()));
            }
            if let LuaValue::String(status) = table.raw_get::<LuaValue>("ok")? {
                return Ok(Ok(Value::SimpleString(
                    status.to_string_lossy().to_string(),
                )));
            }
            let mut items = Vec::with_capacity(table.raw_len());
            for index in 1.. {
                let item: LuaValue = table.raw_get(index)?;
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

/// A command's words, read straight off the Lua stack when `redis.call` is called (mlua's
/// general path makes a registry-backed value of each argument first, which cost more than most
/// commands themselves: BENCHMARKS.md, issue 11).
///
/// `from_stack_args` here and `push_into_stack_multi` below are mlua's own (`#[doc(hidden)]`)
/// stack hooks, which `Lua::create_function` calls; they were checked against mlua 0.12.2's source,
/// which is why Cargo.toml pins that version exactly.
pub(super) struct CommandWords(pub(super) Vec<String>);

impl FromLuaMulti for CommandWords {
    fn from_lua_multi(values: MultiValue, _lua: &Lua) -> mlua::Result<Self> {
        values
            .iter()
            .map(argument_text)
            .collect::<mlua::Result<_>>()
            .map(CommandWords)
    }

    unsafe fn from_stack_args(
        nargs: c_int,
        _first: usize,
        _to: Option<&str>,
        lua: &RawLua,
    ) -> mlua::Result<Self> {
        let state = lua.state();
        let mut words = Vec::with_capacity(nargs.max(0) as usize);
        for index in -nargs..0 {
            // SAFETY: mlua calls this with the callback's `nargs` arguments on top of the stack,
            // so each index names one of them; reading one neither pushes nor raises.
            let word = unsafe {
                match ffi::lua_type(state, index) {
                    ffi::LUA_TSTRING => {
                        let mut len = 0;
                        let bytes = ffi::lua_tolstring(state, index, &mut len);
                        let bytes = std::slice::from_raw_parts(bytes.cast::<u8>(), len);
                        match std::str::from_utf8(bytes) {
                            Ok(text) => text.to_owned(),
                            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
                        }
                    }
                    ffi::LUA_TNUMBER => number_text(ffi::lua_tonumber(state, index)),
                    _ => return Err(not_a_word()),
                }
            };
            words.push(word);
        }
        Ok(CommandWords(words))
    }
}

fn not_a_word() -> mlua::Error {
    mlua::Error::RuntimeError("Lua redis lib command arguments must be strings or integers".into())
}

/// A command's reply on its way to Lua, pushed straight onto the stack (see [`CommandWords`]),
/// converted as [`reply_to_lua`] does.
pub(super) struct CommandReply(pub(super) Value);

impl IntoLuaMulti for CommandReply {
    fn into_lua_multi(self, lua: &Lua) -> mlua::Result<MultiValue> {
        Ok(MultiValue::from_iter([reply_to_lua(lua, self.0)?]))
    }

    unsafe fn push_into_stack_multi(self, lua: &RawLua) -> mlua::Result<c_int> {
        // SAFETY: the engine sets no memory limit, so a push does not raise (mlua pushes
        // directly on the same condition); push_reply checks the stack's room first.
        unsafe { push_reply(lua.state(), self.0)? };
        Ok(1)
    }
}

/// Pushes one reply, as [`reply_to_lua`] converts it.
unsafe fn push_reply(state: *mut ffi::lua_State, reply: Value) -> mlua::Result<()> {
    // SAFETY: the caller hands a live state; room for the value, a table's key and its item is
    // checked before anything is pushed.
    unsafe {
        if ffi::lua_checkstack(state, 3) == 0 {
            return Err(mlua::Error::StackError);
        }
        match reply {
            Value::Nil => ffi::lua_pushboolean(state, 0),
            Value::Int(number) => ffi::lua_pushnumber(state, number as f64),
            Value::BulkString(bytes) => {
                ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len());
            }
            Value::Okay => push_status(state, "OK"),
            Value::SimpleString(text) => push_status(state, &text),
            Value::Array(items) => {
                ffi::lua_createtable(state, items.len().try_into().unwrap_or(0), 0);
                for (index, item) in items.into_iter().enumerate() {
                    push_reply(state, item)?;
                    ffi::lua_rawseti(state, -2, (index + 1) as ffi::lua_Integer);
                }
            }
            other => {
                return Err(mlua::Error::RuntimeError(format!(
                    "the embedded engine cannot return {other:?} to Lua"
                )));
            }
        }
    }
    Ok(())
}

/// `{ok = text}`, Redis's Lua form of a status reply.
unsafe fn push_status(state: *mut ffi::lua_State, text: &str) {
    // SAFETY: push_reply made room for the table, its key and its value.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_pushlstring(state, text.as_ptr().cast(), text.len());
        ffi::lua_setfield(state, -2, c"ok".as_ptr());
    }
}
