//! One typed call per Lua script in `migrations-lua/`, the way apalis-redis pairs
//! `lua/<name>.lua` with a query module.
//!
//! Every script starts with the same envelope (`includes/common.lua`): `KEYS[1]` the schema key;
//! `ARGV[1]` the key base, `ARGV[2]` the schema version this build knows, `ARGV[3]` the events
//! flag, `ARGV[4]` the lease length. [`Envelope`] builds it once; each script module declares, with
//! [`script_call!`], the script's own `KEYS` and `ARGV` after it, in header order and under the
//! names of the script's locals (and, for a script that takes a list, one item's arguments), and a
//! typed reply that decodes what the script returns. `declare_scripts!` lists the scripts once: the
//! engines load that list, and a unit test below reads each script and checks that its header, its
//! locals and its module agree.

use redis::Value;

use super::keys::Keys;

/// Declares the script modules and, from the same list, [`every_script`] (what the engines load)
/// and the contracts the header test checks: a new script is one line here.
macro_rules! declare_scripts {
    ($($module:ident::$call:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// Every script, compiled into the binary and loaded into the engine at startup.
        pub fn every_script() -> Vec<LuaScript> {
            vec![$(LuaScript::of::<$module::$call>()),*]
        }

        #[cfg(test)]
        fn every_contract() -> Vec<tests::Contract> {
            vec![$(tests::Contract::of::<$module::$call>()),*]
        }
    };
}

declare_scripts! {
    init::Init,
    connect::Connect,
    beat::BeatBatch,
    disconnect::Disconnect,
    identify::Identify,
    identify_permit::IdentifyPermit,
    identify_confirm::IdentifyConfirm,
    reshard::Reshard,
    reap::Reap,
    lock::Lock,
    fleet_page::FleetPage,
    record_load::RecordLoad,
    claim_events::ClaimEvents,
    settle_event::SettleEvent,
    stop_waiting::StopWaiting,
    give_back::GiveBack,
    secret_fingerprint::SecretFingerprint,
    mark_moves::MarkMoves,
    mark_silent::MarkSilent,
    waiting_processes::WaitingProcesses,
    drain::Drain,
}

/// One Lua script as the engines load it: its file name (for errors), its source and its SHA1.
pub struct LuaScript {
    pub name: &'static str,
    pub source: &'static str,
    pub(in crate::store) sha: redis::Script,
}

impl LuaScript {
    pub(in crate::store) fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha: redis::Script::new(source),
        }
    }

    fn of<C: ScriptCall>() -> Self {
        Self::new(C::FILE, C::SOURCE)
    }
}

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
/// `ARGV` (local name: type), in header order, and its reply type. A script that takes a list of
/// items after its `ARGV` (beat.lua's batch) declares them with `each <field>: <Item> { ... }`:
/// the item's struct, its arguments' names ([`ScriptCall::EACH`]) and the order `argv` writes
/// them in all come from that one list, in the script's header order.
macro_rules! script_call {
    (
        $(#[$doc:meta])*
        $name:ident $(<$lifetime:lifetime>)? = $file:literal;
        keys { $($key:ident => $key_field:ident),* $(,)? }
        argv { $($(#[$arg_doc:meta])* $arg:ident : $arg_type:ty),* $(,)? }
        $(
            each $items:ident : $(#[$item_doc:meta])* $item:ident {
                $($(#[$field_doc:meta])* $field:ident : $field_type:ty),* $(,)?
            }
        )?
        reply $reply:ty;
        $(schema_guard $guarded:literal;)?
    ) => {
        $(#[$doc])*
        pub struct $name $(<$lifetime>)? {
            $($(#[$arg_doc])* pub $arg: $arg_type,)*
            $(
                #[doc = concat!("After the `ARGV` above, each one's arguments in turn (see [`", stringify!($item), "`]).")]
                pub $items: Vec<$item>,
            )?
        }

        $(
            $(#[$item_doc])*
            #[derive(Clone, Debug, Default)]
            pub struct $item { $($(#[$field_doc])* pub $field: $field_type,)* }
        )?

        impl $(<$lifetime>)? $crate::store::scripts::ScriptCall for $name $(<$lifetime>)? {
            const FILE: &'static str = $file;
            const SOURCE: &'static str = $crate::store::scripts::lua_source!($file);
            const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];
            const ARGV: &'static [&'static str] = &[$(stringify!($arg)),*];
            const EACH: &'static [&'static str] = &[$($(stringify!($field)),*)?];
            const SCHEMA_GUARD: bool = true $(&& $guarded)?;
            type Reply = $reply;

            #[allow(unused_variables)]
            fn keys<'k>(&self, keys: &'k $crate::store::keys::Keys) -> Vec<&'k str> {
                vec![$(keys.$key_field.as_str()),*]
            }

            fn argv(&self) -> Vec<String> {
                #[allow(unused_mut)]
                let mut argv = vec![$($crate::store::scripts::ArgText::arg_text(&self.$arg)),*];
                $(
                    argv.reserve(self.$items.len() * Self::EACH.len());
                    for item in &self.$items {
                        $(argv.push($crate::store::scripts::ArgText::arg_text(&item.$field));)*
                    }
                )?
                argv
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
    const EACH: &'static [&'static str];
    /// False for a read-only script, which may read under a newer schema (see `Envelope`).
    const SCHEMA_GUARD: bool;
    type Reply: ScriptReply;
    /// The script's own `KEYS`, in header order.
    fn keys<'k>(&self, keys: &'k Keys) -> Vec<&'k str>;
    /// The script's own `ARGV`, in header order, then each item's.
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

    /// What a script's module declares of it, for the checks below.
    pub(super) struct Contract {
        file: &'static str,
        source: &'static str,
        keys: &'static [&'static str],
        argv: &'static [&'static str],
        each: &'static [&'static str],
    }

    impl Contract {
        pub(super) fn of<C: ScriptCall>() -> Self {
            Self {
                file: C::FILE,
                source: C::SOURCE,
                keys: C::KEYS,
                argv: C::ARGV,
                each: C::EACH,
            }
        }
    }

    fn check(contract: &Contract) {
        let file = contract.file;
        let own = contract
            .source
            .strip_prefix(COMMON)
            .expect("the includes go first");
        let each = numbered(0, contract.each);
        assert_eq!(each_header_entries(own), each, "{file} header of one item");
        assert_eq!(each_local_entries(own), each, "{file} locals of one item");
        if !contract.each.is_empty() {
            let first = 5 + contract.argv.len();
            assert!(
                own.contains(&format!("ARGV[{first}..]"))
                    && own.contains(&format!(
                        "FIRST_BEAT, BEAT_FIELDS = {first}, {}",
                        contract.each.len()
                    )),
                "{file}: the items start at ARGV[{first}], {} arguments each",
                contract.each.len()
            );
        }
        for (array, first, names) in [("KEYS", 2, contract.keys), ("ARGV", 5, contract.argv)] {
            let expected = numbered(first, names);
            assert_eq!(
                header_entries(own, array),
                expected,
                "{file} header {array}"
            );
            assert_eq!(local_entries(own, array), expected, "{file} locals {array}");
        }
    }

    #[test]
    fn every_script_header_its_locals_and_its_rust_module_agree() {
        for contract in &every_contract() {
            check(contract);
        }
    }

    #[test]
    fn every_script_in_migrations_lua_is_declared_once() {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-lua");
        let mut on_disk: Vec<String> = std::fs::read_dir(folder)
            .expect("migrations-lua is readable")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".lua"))
            .collect();
        on_disk.sort();
        let mut declared: Vec<String> = every_contract()
            .iter()
            .map(|contract| contract.file.to_owned())
            .collect();
        declared.sort();
        assert_eq!(declared, on_disk);
    }
}
