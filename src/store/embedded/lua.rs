//! Conversions between Lua values and Redis replies, as Redis's scripting makes them: command
//! arguments from Lua strings and numbers, a command's reply into a Lua value (nil -> false, status
//! -> `{ok = ...}`), and a script's return value back into a reply (`{err = ...}` -> an error).
//! Kept apart from the engine so the mapping can be read, and checked against Redis's, in one place.

use mlua::{Lua, Value as LuaValue};
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
