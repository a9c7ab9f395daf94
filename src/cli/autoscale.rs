//! `shardman autoscale`: `GET /autoscale` as an operator reads it (README "Autoscaling the bots").

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::table::{cores, counted, or_dash, rate};

#[derive(Deserialize)]
pub struct AutoscaleView {
    desired_processes: u32,
    held: u32,
    missing: u32,
    total_shards: u32,
    generation: u64,
    #[serde(default)]
    pending_generation: Option<u64>,
    #[serde(default)]
    pending_shards: Option<u32>,
    #[serde(default)]
    load: Option<LoadView>,
    #[serde(default)]
    shard_load: Option<ShardLoadView>,
}

#[derive(Deserialize)]
struct LoadView {
    events_per_second: Option<f64>,
    cpu: Option<f64>,
    load_target: Option<f64>,
    cpu_target: Option<f64>,
    scale_in_since: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ShardLoadView {
    busiest_shard_id: Option<u32>,
    events_per_second: Option<f64>,
    bound: f64,
    over_since: Option<DateTime<Utc>>,
    raise_to: Option<u32>,
}

/// One line per fact, each led by what it is.
pub fn summary(report: AutoscaleView) -> String {
    let mut lines = vec![
        format!(
            "desired processes: {} ({} held, {} missing)",
            report.desired_processes, report.held, report.missing
        ),
        format!(
            "shard plan: generation {} with {}",
            report.generation,
            counted(report.total_shards, "shard")
        ),
    ];
    if let (Some(generation), Some(shards)) = (report.pending_generation, report.pending_shards) {
        lines.push(format!(
            "pending: generation {generation} with {}",
            counted(shards, "shard")
        ));
    }
    if let Some(load) = report.load {
        lines.push(format!(
            "load: {} events/s (target {} per process), cpu {} cores (target {} per process)",
            or_dash(load.events_per_second, rate),
            or_dash(load.load_target, rate),
            or_dash(load.cpu, cores),
            or_dash(load.cpu_target, cores),
        ));
        if let Some(since) = load.scale_in_since {
            lines.push(format!(
                "scaling in: the load has been low since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
    }
    if let Some(shard) = report.shard_load {
        let mut line = format!(
            "busiest shard: {} at {} events/s (bound {})",
            or_dash(shard.busiest_shard_id, |id| id.to_string()),
            or_dash(shard.events_per_second, rate),
            rate(shard.bound)
        );
        if let Some(since) = shard.over_since {
            line.push_str(&format!(
                ", over it since {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        if let Some(shards) = shard.raise_to {
            line.push_str(&format!(
                ", a reshard raises to {}",
                counted(shards, "shard")
            ));
        }
        lines.push(line);
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_leads_with_the_processes_to_run() {
        let report: AutoscaleView = serde_json::from_value(serde_json::json!({
            "desired_processes": 5, "held": 4, "missing": 1, "total_shards": 8, "generation": 1,
            "pending_generation": 2, "pending_shards": 12,
            "load": {"events_per_second": 110.0, "cpu": 0.42, "load_target": 60.0,
                     "cpu_target": null, "scale_in_since": null},
            "shard_load": {"busiest_shard_id": 3, "events_per_second": 130.0, "bound": 120.0,
                           "over_since": "2026-01-01T12:00:00Z", "raise_to": 12}
        }))
        .expect("a report");
        assert_eq!(
            summary(report),
            "\
desired processes: 5 (4 held, 1 missing)
shard plan: generation 1 with 8 shards
pending: generation 2 with 12 shards
load: 110.0 events/s (target 60.0 per process), cpu 0.42 cores (target - per process)
busiest shard: 3 at 130.0 events/s (bound 120.0), over it since 2026-01-01T12:00:00Z, a reshard raises to 12 shards
"
        );
    }
}
