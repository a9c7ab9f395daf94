//! String commands of the embedded engine (GET, GETDEL, SET, INCR), with Redis's semantics: a
//! string key holds one value and an optional TTL, INCR keeps the TTL, SET replaces it.

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk, parse_number};

impl Keyspace {
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

    pub(super) fn get(&mut self, args: &[String], now_ms: i64) -> Reply {
        Ok(self
            .string(&args[0], now_ms)?
            .map_or(Value::Nil, |text| bulk(&text)))
    }

    pub(super) fn getdel(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let value = self.string(key, now_ms)?;
        if value.is_some() {
            self.entries.remove(key);
        }
        Ok(value.map_or(Value::Nil, |text| bulk(&text)))
    }

    /// SET key value [NX] [PX ms | EX seconds].
    pub(super) fn set_string(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
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
                    let seconds: i64 = parse_number(options.next().ok_or("ERR syntax error")?)?;
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

    pub(super) fn incr(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
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
}
