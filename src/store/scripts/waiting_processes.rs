//! `migrations-lua/waiting_processes.lua`: the processes whose claims wait, in queue order.

use redis::Value;

use super::reply::{array, text};
use super::{ScriptReply, script_call};

script_call! {
    /// The labels of the processes waiting for shards, first come first.
    WaitingProcesses = "waiting_processes.lua";
    keys {}
    argv {}
    reply WaitingLabels;
    schema_guard false;
}

/// Process labels, in the order their claims came.
pub struct WaitingLabels(pub Vec<String>);

impl ScriptReply for WaitingLabels {
    fn decode(reply: &Value) -> Option<Self> {
        array(reply)?
            .iter()
            .map(text)
            .collect::<Option<Vec<_>>>()
            .map(WaitingLabels)
    }
}
