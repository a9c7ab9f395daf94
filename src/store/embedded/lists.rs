//! List commands of the embedded engine (LPUSH, LLEN, LTRIM, RPOP), with Redis's semantics: LPUSH
//! creates the list, and a list trimmed or popped empty is deleted.

use std::collections::VecDeque;

use redis::Value;

use super::keyspace::{Data, Entry, Keyspace, Reply, WRONG_TYPE, bulk, index_range, parse_number};

impl Keyspace {
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

    pub(super) fn lpush(&mut self, args: &[String], now_ms: i64) -> Reply {
        let entry = self.live_or(&args[0], now_ms, || Data::List(VecDeque::new()));
        let Data::List(list) = &mut entry.data else {
            return Err(WRONG_TYPE.into());
        };
        for value in &args[1..] {
            list.push_front(value.clone());
        }
        Ok(Value::Int(list.len() as i64))
    }

    pub(super) fn llen(&mut self, args: &[String], now_ms: i64) -> Reply {
        Ok(Value::Int(
            self.list(&args[0], now_ms)?.map_or(0, |list| list.len()) as i64,
        ))
    }

    pub(super) fn ltrim(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
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

    /// RPOP key [count]: one value (or nil) without a count, an array with one.
    pub(super) fn rpop(&mut self, args: &[String], now_ms: i64) -> Reply {
        let key = args[0].as_str();
        let count: Option<usize> = args.get(1).map(|text| parse_number(text)).transpose()?;
        let popped: Option<Vec<String>> = self.list(key, now_ms)?.map(|list| {
            (0..count.unwrap_or(1))
                .map_while(|_| list.pop_back())
                .collect()
        });
        self.drop_if_empty(key);
        Ok(match (popped, count) {
            (None, _) => Value::Nil,
            (Some(items), Some(_)) => Value::Array(items.iter().map(|item| bulk(item)).collect()),
            (Some(items), None) => items.first().map_or(Value::Nil, |item| bulk(item)),
        })
    }
}
