//! `migrations-lua/waiting_processes.lua`: the processes whose claims wait, in queue order, and
//! the processes being drained.

use redis::Value;

use super::reply::{array, text};
use super::{ScriptReply, script_call};

script_call! {
    /// The labels of the processes waiting for shards, first come first, and of those draining.
    WaitingProcesses = "waiting_processes.lua";
    keys {}
    argv {}
    reply WaitingLabels;
    schema_guard false;
}

/// Process labels: those whose claims wait, in the order they came (draining ones left out), and
/// those being drained.
pub struct WaitingLabels {
    pub waiting: Vec<String>,
    pub draining: Vec<String>,
}

fn labels(reply: &Value) -> Option<Vec<String>> {
    array(reply)?.iter().map(text).collect()
}

impl ScriptReply for WaitingLabels {
    fn decode(reply: &Value) -> Option<Self> {
        let [waiting, draining] = array(reply)? else {
            return None;
        };
        Some(WaitingLabels {
            waiting: labels(waiting)?,
            draining: labels(draining)?,
        })
    }
}
