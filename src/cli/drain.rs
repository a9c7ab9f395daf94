//! `shardman drain PROCESS`: `POST /processes/{process}/drain` (README "Draining a process"), and
//! with `--wait`, `GET /status` until the process holds no shard.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::remote::{Failure, Shardman};
use super::table::{counted, id_runs};

/// How often `--wait` looks at the fleet.
const POLL: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub struct DrainView {
    process: String,
    draining: bool,
    until: Option<DateTime<Utc>>,
    shard_ids: Vec<u32>,
}

pub fn summary(drain: DrainView) -> String {
    match (drain.draining, drain.shard_ids.is_empty()) {
        (false, true) => format!("{} is not draining; it holds no shard\n", drain.process),
        (false, false) => format!(
            "{} is not draining; it holds {} ({})\n",
            drain.process,
            counted(drain.shard_ids.len() as u32, "shard"),
            id_runs(drain.shard_ids.iter().copied()),
        ),
        (true, true) => format!(
            "{} is draining and holds no shard: it can be stopped\n",
            drain.process
        ),
        (true, false) => format!(
            "{} is draining: {} ({}) move to other processes by RESUME{}\n",
            drain.process,
            counted(drain.shard_ids.len() as u32, "shard"),
            id_runs(drain.shard_ids.iter().copied()),
            drain
                .until
                .map(|until| format!("; the drain lapses at {}", until.to_rfc3339()))
                .unwrap_or_default(),
        ),
    }
}

#[derive(Deserialize)]
struct FleetView {
    shards: Vec<HeldView>,
}

#[derive(Deserialize)]
struct HeldView {
    shard_id: u32,
    #[serde(default)]
    process: Option<String>,
}

/// Waits until `process` holds no shard of the active generation, for at most `timeout`; returns
/// the line to print once it does.
pub async fn wait_until_empty(
    shardman: &Shardman,
    process: &str,
    timeout: Duration,
) -> Result<String, Failure> {
    let started = Instant::now();
    loop {
        let fleet: FleetView = shardman.get("status").await?.read()?;
        let held: Vec<u32> = fleet
            .shards
            .iter()
            .filter(|shard| shard.process.as_deref() == Some(process))
            .map(|shard| shard.shard_id)
            .collect();
        if held.is_empty() {
            return Ok(format!("{process} holds no shard: it can be stopped\n"));
        }
        if started.elapsed() >= timeout {
            return Err(Failure::TimedOut(format!(
                "{process} still holds {} ({}) after {} s",
                counted(held.len() as u32, "shard"),
                id_runs(held.iter().copied()),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
