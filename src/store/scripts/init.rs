//! `migrations-lua/init.lua`: create the deployment's keys, raise the schema, start a quarantine.

use redis::Value;

use super::reply::{array, natural};
use super::{ScriptReply, script_call};

script_call! {
    /// Run at startup, after a data loss and after a Sentinel master move.
    Init = "init.lua";
    keys { plan_key => plan, quarantine_key => quarantine }
    argv {
        initial_shards: u32,
        quarantine_ms: u64,
        quarantine_if_created_ms: u64,
        new_epoch: bool,
        initial_shards_per_process: u32,
    }
    reply Initialized;
}

/// `{schema_version, generation, max_shards, epoch}`.
pub struct Initialized {
    pub schema_version: u64,
}

impl ScriptReply for Initialized {
    fn decode(reply: &Value) -> Option<Self> {
        match array(reply)? {
            [version, _generation, _max_shards, _epoch] => Some(Self {
                schema_version: natural(version)?,
            }),
            _ => None,
        }
    }
}
