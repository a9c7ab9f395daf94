//! `migrations-lua/fleet_page.lua`: read one page of a generation's held shards.

use redis::Value;

use super::reply::{array, integer, natural, text};
use super::{ScriptReply, script_call};
use crate::domain::{ShardStatus, timestamp_from_millis};

script_call! {
    /// Reads the live leases of ids `first .. first + count` of `generation`.
    FleetPage = "fleet_page.lua";
    keys { plan_key => plan }
    argv { generation: u64, first: u32, count: u32, with_extra: bool, group_size: u32 }
    reply Page;
    schema_guard false;
}

/// The page's held shards, by shard id.
pub struct Page(pub Vec<ShardStatus>);

impl ScriptReply for Page {
    fn decode(reply: &Value) -> Option<Self> {
        array(reply)?
            .iter()
            .map(|row| {
                let [
                    shard_id,
                    last_beat,
                    beaten,
                    fence,
                    guild_count,
                    latency,
                    extra,
                ] = array(row)?
                else {
                    return None;
                };
                Some(ShardStatus {
                    shard_id: natural(shard_id)? as u32,
                    last_beat: timestamp_from_millis(integer(last_beat)?),
                    guild_count: text(guild_count).and_then(|text| text.parse().ok()),
                    latency: text(latency).and_then(|text| text.parse().ok()),
                    extra: text(extra).and_then(|text| serde_json::from_str(&text).ok()),
                    fence: natural(fence)?,
                    beaten: integer(beaten)? == 1,
                })
            })
            .collect::<Option<Vec<_>>>()
            .map(Page)
    }
}
