//! `shardman reshard N`: `POST /reshard` (README "Zero-downtime resharding: generations").

use serde::Deserialize;
use serde_json::{Value, json};

use super::table::counted;

/// The request: `max_shards`, and `shards_per_process` only when asked for (left out, the new
/// generation keeps the group size).
pub fn body(max_shards: u32, shards_per_process: Option<u32>) -> Value {
    let mut body = json!({ "max_shards": max_shards });
    if let Some(size) = shards_per_process {
        body["shards_per_process"] = json!(size);
    }
    body
}

#[derive(Deserialize)]
pub struct ReshardView {
    started: bool,
    from_generation: u64,
    from_max_shards: u32,
    generation: u64,
    max_shards: u32,
}

pub fn summary(plan: ReshardView) -> String {
    if plan.started {
        format!(
            "reshard started: generation {} with {} (from generation {} with {}); \
             `shardman status` shows its progress\n",
            plan.generation,
            counted(plan.max_shards, "shard"),
            plan.from_generation,
            counted(plan.from_max_shards, "shard"),
        )
    } else {
        format!(
            "nothing to do: generation {} already plans {}\n",
            plan.generation,
            counted(plan.max_shards, "shard"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_size_is_sent_only_when_asked_for() {
        assert_eq!(body(6, None), json!({"max_shards": 6}));
        assert_eq!(
            body(12, Some(4)),
            json!({"max_shards": 12, "shards_per_process": 4})
        );
    }
}
