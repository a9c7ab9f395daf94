//! One typed call per Lua script in `migrations-lua/`, the way apalis-redis pairs
//! `lua/<name>.lua` with a query module.
//!
//! Every script starts with the same envelope (`includes/common.lua`): `KEYS[1]` the schema key;
//! `ARGV[1]` the key base, `ARGV[2]` the schema version this build knows, `ARGV[3]` the events
//! flag, `ARGV[4]` the lease length. [`Envelope`] builds it once; each script module declares, with
//! [`script_call!`], the script's own `KEYS` and `ARGV` after it, in header order and under the
//! names of the script's locals, and a typed reply that decodes what the script returns. A unit
//! test below reads every script and checks that its header, its locals and its module agree.

pub mod beat;
pub mod claim_events;
pub mod connect;
pub mod disconnect;
pub mod fleet_page;
pub mod identify;
pub mod init;
pub mod lock;
pub mod reap;
pub mod reshard;
pub mod secret_fingerprint;
pub mod settle_event;

use redis::Value;

use super::keys::Keys;

/// A script's source with the shared includes in front (each script is still one `EVALSHA`).
macro_rules! lua_source {
    ($file:literal) => {
        concat!(
            include_str!("../../../migrations-lua/includes/common.lua"),
            include_str!(concat!("../../../migrations-lua/", $file)),
        )
    };
}
pub(crate) use lua_source;

/// Declares a script's typed call: its file, its own `KEYS` (local name => field of [`Keys`]) and
/// `ARGV` (local name: type), in header order, and its reply type.
macro_rules! script_call {
    (
        $(#[$doc:meta])*
        $name:ident $(<$lifetime:lifetime>)? = $file:literal;
        keys { $($key:ident => $key_field:ident),* $(,)? }
        argv { $($arg:ident : $arg_type:ty),* $(,)? }
        reply $reply:ty;
        $(schema_guard $guarded:literal;)?
    ) => {
        $(#[$doc])*
        pub struct $name $(<$lifetime>)? { $(pub $arg: $arg_type,)* }

        impl $(<$lifetime>)? $crate::store::scripts::ScriptCall for $name $(<$lifetime>)? {
            const FILE: &'static str = $file;
            const SOURCE: &'static str = $crate::store::scripts::lua_source!($file);
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
            const ARGV: &'static [&'static str] = &[$(stringify!($arg)),*];
            const SCHEMA_GUARD: bool = true $(&& $guarded)?;
            type Reply = $reply;

            #[allow(unused_variables)]
            fn keys<'k>(&self, keys: &'k $crate::store::keys::Keys) -> Vec<&'k str> {
                vec![$(keys.$key_field.as_str()),*]
            }

            fn argv(&self) -> Vec<String> {
                vec![$($crate::store::scripts::ArgText::arg_text(&self.$arg)),*]
            }
        }
    };
}
pub(crate) use script_call;

/// A typed call of one script.
pub trait ScriptCall {
    /// The file in `migrations-lua/`.
    const FILE: &'static str;
    /// Its source, includes in front.
    const SOURCE: &'static str;
    /// The names of the script's own `KEYS`, from `KEYS[2]` on.
    const KEYS: &'static [&'static str];
    /// The names of the script's own `ARGV`, from `ARGV[5]` on.
    const ARGV: &'static [&'static str];
    /// A script that takes a list of items after its `ARGV` (beat.lua's batch): the names of one
    /// item's arguments, in order; empty for the others.
    const EACH: &'static [&'static str] = &[];
    /// False for a read-only script, which may read under a newer schema (see `Envelope`).
    const SCHEMA_GUARD: bool;
    type Reply: ScriptReply;
    /// The script's own `KEYS`, in header order.
    fn keys<'k>(&self, keys: &'k Keys) -> Vec<&'k str>;
    /// The script's own `ARGV`, in header order.
    fn argv(&self) -> Vec<String>;
}

/// What a script returns, decoded; `None` for a reply the script never gives (a bug).
pub trait ScriptReply: Sized {
    fn decode(reply: &Value) -> Option<Self>;
}

/// The envelope: the first key and the first four arguments of every script.
pub struct Envelope<'a> {
    pub keys: &'a Keys,
    pub schema_version: u64,
    pub events: bool,
    pub lease_ms: u64,
}

impl Envelope<'_> {
    /// `KEYS` and `ARGV` of `call`: the envelope's, then the script's own.
    pub fn vectors<'k, C: ScriptCall>(&'k self, call: &C) -> (Vec<&'k str>, Vec<String>) {
        let mut keys = Vec::with_capacity(1 + C::KEYS.len());
        keys.push(self.keys.schema.as_str());
        keys.extend(call.keys(self.keys));
        let mut argv = Vec::with_capacity(4 + C::ARGV.len());
        argv.push(self.keys.base.clone());
        // "" lets a read-only call through the schema guard: reading never harms newer data.
        argv.push(if C::SCHEMA_GUARD {
            self.schema_version.to_string()
        } else {
            String::new()
        });
        argv.push(self.events.arg_text());
        argv.push(self.lease_ms.to_string());
        argv.extend(call.argv());
        (keys, argv)
    }
}

/// How a value travels in `ARGV`: as text; `""` for "not given", `1`/`0` for flags.
pub trait ArgText {
    fn arg_text(&self) -> String;
}

macro_rules! arg_text_by_display {
    ($($type:ty),*) => {$(
        impl ArgText for $type {
            fn arg_text(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
arg_text_by_display!(u32, u64, i64, f64, String, &str);

impl ArgText for bool {
    fn arg_text(&self) -> String {
        u8::from(*self).to_string()
    }
}

impl<T: ArgText> ArgText for Option<T> {
    fn arg_text(&self) -> String {
        self.as_ref().map(ArgText::arg_text).unwrap_or_default()
    }
}

/// Reading replies: the scripts answer arrays of integers and texts.
pub(super) mod reply {
    use redis::Value;

    pub fn array(reply: &Value) -> Option<&[Value]> {
        match reply {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn integer(value: &Value) -> Option<i64> {
        match value {
            Value::Int(number) => Some(*number),
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
            _ => None,
        }
    }

    /// A count or an id: negative numbers (the scripts' "none") read as 0.
    pub fn natural(value: &Value) -> Option<u64> {
        integer(value).map(|number| number.max(0) as u64)
    }

    pub fn text(value: &Value) -> Option<String> {
        match value {
            Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
            Value::SimpleString(text) => Some(text.clone()),
            Value::Int(number) => Some(number.to_string()),
            _ => None,
        }
    }

    /// The first element's text, to tell a script's answers apart.
    pub fn tag(fields: &[Value]) -> Option<String> {
        fields.first().and_then(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(index, name)` of header lines such as `ARGV[5]  nonce   ...`.
    fn header_entries(source: &str, array: &str) -> Vec<(usize, String)> {
        let header = source.split("]]").next().unwrap_or_default();
        header
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(array)?.strip_prefix('[')?;
                let (index, rest) = rest.split_once(']')?;
                // `KEYS[1], ARGV[1..4]: the envelope ...` points to the includes: no entry.
                let name = rest.strip_prefix(' ')?.split_whitespace().next()?;
                Some((index.parse().ok()?, name.to_owned()))
            })
            .collect()
    }

    /// `(index, name)` of locals such as `local nonce = ARGV[5]` (or `tonumber(ARGV[5])`, ...).
    fn local_entries(source: &str, array: &str) -> Vec<(usize, String)> {
        source
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("local ")?;
                let (name, value) = rest.split_once(" = ")?;
                let (_, index) = value.split_once(&format!("{array}["))?;
                let (index, _) = index.split_once(']')?;
                Some((index.parse().ok()?, name.trim().to_owned()))
            })
            .collect()
    }

    fn numbered(first: usize, names: &[&str]) -> Vec<(usize, String)> {
        names
            .iter()
            .enumerate()
            .map(|(offset, name)| (first + offset, (*name).to_owned()))
            .collect()
    }

    const COMMON: &str = include_str!("../../../migrations-lua/includes/common.lua");
    const ENVELOPE_KEYS: &[&str] = &["schema_key"];
    const ENVELOPE_ARGV: &[&str] = &["base", "known_schema", "events_enabled", "lease_ms"];

    #[test]
    fn the_envelope_is_declared_once_in_the_includes_and_matches_the_rust_side() {
        for (array, names) in [("KEYS", ENVELOPE_KEYS), ("ARGV", ENVELOPE_ARGV)] {
            assert_eq!(header_entries(COMMON, array), numbered(1, names), "{array}");
            assert_eq!(local_entries(COMMON, array), numbered(1, names), "{array}");
        }
        let keys = Keys::new("p");
        let envelope = Envelope {
            keys: &keys,
            schema_version: 3,
            events: true,
            lease_ms: 5000,
        };
        let (keys, argv) = envelope.vectors(&reap::Reap {});
        assert_eq!(keys, ["{p}:schema", "{p}:plan", "{p}:events"]);
        assert_eq!(argv, ["{p}:", "3", "1", "5000"]);
    }

    /// `(offset, name)` of an item's header lines such as `  beat[1]   guild_count  ...`.
    fn each_header_entries(source: &str) -> Vec<(usize, String)> {
        let header = source.split("]]").next().unwrap_or_default();
        header
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix("  beat[")?;
                let (offset, rest) = rest.split_once(']')?;
                let name = rest.split_whitespace().next()?;
                Some((offset.parse().ok()?, name.to_owned()))
            })
            .collect()
    }

    /// `(offset, name)` of an item's locals such as `local latency = ARGV[at + 2]` (`ARGV[at]`
    /// is offset 0; the value may be `tonumber(...)` of it), indented inside the function that
    /// reads one item. A local that merely uses a field (a key built from it) is not one of them.
    fn each_local_entries(source: &str) -> Vec<(usize, String)> {
        source
            .lines()
            .filter_map(|line| {
                let rest = line.trim_start().strip_prefix("local ")?;
                let (name, value) = rest.split_once(" = ")?;
                let value = value.strip_prefix("tonumber(").unwrap_or(value);
                let index = value.strip_prefix("ARGV[at")?;
                let (index, _) = index.split_once(']')?;
                let offset = match index.trim() {
                    "" => 0,
                    plus => plus.strip_prefix('+')?.trim().parse().ok()?,
                };
                Some((offset, name.trim().to_owned()))
            })
            .collect()
    }

    fn check<C: ScriptCall>(call: C) {
        let own = C::SOURCE
            .strip_prefix(COMMON)
            .expect("the includes go first");
        let keys = Keys::new("p");
        assert_eq!(call.keys(&keys).len(), C::KEYS.len(), "{}", C::FILE);
        let items_argv = call.argv().len() - C::ARGV.len();
        if C::EACH.is_empty() {
            assert_eq!(items_argv, 0, "{}", C::FILE);
        } else {
            assert!(
                items_argv > 0,
                "{}: check it with at least one item",
                C::FILE
            );
            assert_eq!(items_argv % C::EACH.len(), 0, "{}", C::FILE);
        }
        let each = numbered(0, C::EACH);
        assert_eq!(
            each_header_entries(own),
            each,
            "{} header of one item",
            C::FILE
        );
        assert_eq!(
            each_local_entries(own),
            each,
            "{} locals of one item",
            C::FILE
        );
        if !C::EACH.is_empty() {
            let first = 5 + C::ARGV.len();
            assert!(
                own.contains(&format!("ARGV[{first}..]"))
                    && own.contains(&format!(
                        "FIRST_BEAT, BEAT_FIELDS = {first}, {}",
                        C::EACH.len()
                    )),
                "{}: the items start at ARGV[{first}], {} arguments each",
                C::FILE,
                C::EACH.len()
            );
        }
        for (array, first, names) in [("KEYS", 2, C::KEYS), ("ARGV", 5, C::ARGV)] {
            let expected = numbered(first, names);
            assert_eq!(
                header_entries(own, array),
                expected,
                "{} header {array}",
                C::FILE
            );
            assert_eq!(
                local_entries(own, array),
                expected,
                "{} locals {array}",
                C::FILE
            );
        }
    }

    #[test]
    fn every_script_header_its_locals_and_its_rust_module_agree() {
        check(init::Init {
            initial_shards: 1,
            quarantine_ms: 0,
            quarantine_if_created_ms: 0,
            new_epoch: false,
            initial_shards_per_process: 1,
        });
        check(connect::Connect {
            nonce: "n",
            default_concurrency: 1,
            identify_reserve: -1,
        });
        let one_beat = beat::OneBeat {
            nonce: "n".into(),
            guild_count: None,
            latency: None,
            extra: None,
            resume: None,
            shard_id: 0,
            generation: 1,
            claimed_max_shards: 1,
            claimed_fence: 1,
            claimed_epoch: 1,
            claimed_shards_per_process: 1,
            shard_reports: String::new(),
            shard_resumes: String::new(),
            ready: true,
        };
        check(beat::Beat {
            resume_window_ms: 0,
            beats: vec![one_beat.clone(), one_beat],
        });
        check(disconnect::Disconnect {
            nonce: "n",
            resume_window_ms: 0,
            shard_id: 0,
            generation: 1,
        });
        check(identify::Identify {
            nonce: "n",
            default_concurrency: 1,
            identify_reserve: -1,
            shard_id: 0,
            generation: 1,
            identify_shard_id: None,
        });
        check(reshard::Reshard {
            new_max_shards: 2,
            new_shards_per_process: None,
        });
        check(reap::Reap {});
        check(lock::Lock {
            lock_name: "gateway",
            owner: "me",
            ttl_ms: 1,
        });
        check(claim_events::ClaimEvents {
            max_events: 1,
            redeliver_ms: 1,
        });
        check(settle_event::SettleEvent {
            event: "e",
            redeliver_ms: 0,
        });
        check(secret_fingerprint::SecretFingerprint {
            current: "c",
            previous: None,
        });
        check(fleet_page::FleetPage {
            generation: 1,
            first: 0,
            count: 1,
            with_extra: false,
            group_size: 1,
        });
    }
}
