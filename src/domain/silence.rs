//! Which held shards are silent (`SHARD_SILENT_AFTER`): pure, no I/O.
//!
//! A shard whose `events` counter has stood still for the threshold while the rest of its fleet
//! has traffic (the active generation's rates sum above 0) is most likely connected to nothing:
//! a zombie gateway session that still beats. The silence job (`jobs::silence`) marks those
//! (mark_silent.lua), which alerts once per still spell and asks the holder to reconnect. A shard
//! that never reported `events` (an older client) is never silent.

use super::ShardStatus;

/// A silent shard, as mark_silent.lua checks it is still the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilentShard {
    pub shard_id: u32,
    /// Its group's first id: its lease's.
    pub lease_id: u32,
    pub fence: u64,
    /// Since when its counter has stood still, ms of the store's clock.
    pub still_since_ms: i64,
}

/// The held `shards` (of one generation, `group_size` shards per lease) that are silent at
/// `now_ms`: counter still for at least `silent_after_ms`, and some shard of the fleet with events.
pub fn silent_shards(
    shards: &[ShardStatus],
    group_size: u32,
    silent_after_ms: i64,
    now_ms: i64,
) -> Vec<SilentShard> {
    let fleet_has_traffic = shards
        .iter()
        .any(|shard| shard.events_per_second.is_some_and(|rate| rate > 0.0));
    if !fleet_has_traffic {
        return Vec::new();
    }
    let group_size = group_size.max(1);
    shards
        .iter()
        .filter_map(|shard| {
            let still_since_ms = shard.events_moved_at_ms?;
            (now_ms.saturating_sub(still_since_ms) >= silent_after_ms).then_some(SilentShard {
                shard_id: shard.shard_id,
                lease_id: shard.shard_id / group_size * group_size,
                fence: shard.fence,
                still_since_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn shard(shard_id: u32, rate: Option<f64>, moved_at_ms: Option<i64>) -> ShardStatus {
        ShardStatus {
            shard_id,
            events_per_second: rate,
            events_moved_at_ms: moved_at_ms,
            fence: 7,
            ..ShardStatus::default()
        }
    }

    #[test]
    fn a_still_counter_in_a_busy_fleet_is_silent_after_the_threshold() {
        let shards = [
            shard(0, Some(40.0), Some(20 * MINUTE)),
            shard(1, Some(0.0), Some(10 * MINUTE)),
        ];
        assert_eq!(silent_shards(&shards, 1, 10 * MINUTE, 20 * MINUTE - 1), []);
        assert_eq!(
            silent_shards(&shards, 1, 10 * MINUTE, 20 * MINUTE),
            [SilentShard {
                shard_id: 1,
                lease_id: 1,
                fence: 7,
                still_since_ms: 10 * MINUTE
            }]
        );
    }

    #[test]
    fn a_fleet_without_traffic_has_no_silent_shard() {
        let shards = [shard(0, Some(0.0), Some(0)), shard(1, None, Some(0))];
        assert_eq!(silent_shards(&shards, 1, MINUTE, 60 * MINUTE), []);
    }

    #[test]
    fn a_shard_that_never_reported_events_is_never_silent() {
        let shards = [shard(0, Some(5.0), Some(60 * MINUTE)), shard(1, None, None)];
        assert_eq!(silent_shards(&shards, 1, MINUTE, 60 * MINUTE), []);
    }

    #[test]
    fn a_group_s_shard_names_its_group_s_lease() {
        let shards = [
            shard(0, Some(5.0), Some(60 * MINUTE)),
            shard(6, Some(0.0), Some(0)),
        ];
        let silent = silent_shards(&shards, 4, MINUTE, 60 * MINUTE);
        assert_eq!(
            silent
                .iter()
                .map(|s| (s.shard_id, s.lease_id))
                .collect::<Vec<_>>(),
            [(6, 4)]
        );
    }
}
