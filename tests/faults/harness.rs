#![allow(dead_code)] // each scenario uses its own part of the harness

//! The fault suite's measurements: a scenario's outcome read off its `shardman-load` report (the
//! load runs, replicas, Redis and its sentinels come from tests/support). Everything listens on 127.0.0.1 and dies with the test process.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::load::{failures, number};

/// Sleeps until `offset` after `start`.
pub fn at(start: Instant, offset: Duration) {
    std::thread::sleep((start + offset).saturating_duration_since(Instant::now()));
}

/// What one scenario reports.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub double_grants: u64,
    pub fence_regressions: u64,
    pub lost_acknowledged_beats: u64,
    pub failed_requests: u64,
    pub expired_in_client_view: u64,
    /// From the end of the fault until every process held a shard again and no request failed.
    pub recovery_ms: Option<u64>,
    pub max_beat_latency_ms: f64,
    pub notes: String,
}

impl Outcome {
    /// Reads a load report; `fault_end_unix_ms` is when the fault was lifted.
    pub fn from_report(
        scenario: &str,
        report: &Value,
        fault_end_unix_ms: u64,
        notes: &str,
    ) -> Self {
        let processes = report["config"]["processes"].as_u64().unwrap_or(0);
        Self::from_report_holding(scenario, report, fault_end_unix_ms, notes, processes)
    }

    /// Like `from_report`, for a fleet in which only `holders` processes can hold a shard at once
    /// (more processes than shards): the fleet is whole when that many hold one.
    pub fn from_report_holding(
        scenario: &str,
        report: &Value,
        fault_end_unix_ms: u64,
        notes: &str,
        holders: u64,
    ) -> Self {
        let number = |pointer: &str| number(report, pointer);
        let failed: u64 = failures(report).iter().map(|(_, count)| count).sum();
        Self {
            scenario: scenario.into(),
            double_grants: number("/safety/double_grants"),
            fence_regressions: number("/safety/fence_regressions"),
            lost_acknowledged_beats: number("/beats/lost_acknowledged"),
            failed_requests: failed,
            expired_in_client_view: number("/beats/expired_in_client_view"),
            recovery_ms: recovery_ms(report, fault_end_unix_ms, holders),
            max_beat_latency_ms: report
                .pointer("/routes/beat/latency_ms/max")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            notes: notes.into(),
        }
    }

    /// Prints the row and saves it for `scripts/faults.sh`'s table.
    pub fn save(&self) {
        let line = serde_json::to_string(self).expect("json");
        eprintln!("fault result: {line}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fault-results");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}.json", self.scenario)), line);
    }

    /// The safety properties every scenario must keep.
    pub fn assert_safe(&self) {
        assert_eq!(self.double_grants, 0, "double grants in {self:?}");
        assert_eq!(self.fence_regressions, 0, "fence regressions in {self:?}");
    }
}

/// The last moment after the fault when the fleet was not whole (fewer than `whole` processes with a
/// shard, or a failed request), measured from the fault's end. Ignores the run's last half second, when the
/// processes release their shards.
fn recovery_ms(report: &Value, fault_end_unix_ms: u64, whole: u64) -> Option<u64> {
    let started = report["started_unix_ms"].as_u64()?;
    let bucket = report["timeline"]["bucket_ms"].as_u64()?.max(1);
    let errors = report["timeline"]["errors"].as_array()?;
    let ok = report["timeline"]["ok"].as_array()?;
    let holders = report["timeline"]["holders"].as_array()?;
    let duration_ms = (report["config"]["duration_s"].as_f64()? * 1000.0) as u64;
    let usable = (duration_ms.saturating_sub(500) / bucket) as usize;
    let mut last_unhealthy = None;
    for (index, held) in holders.iter().enumerate().take(usable) {
        let count = |list: &[Value]| list.get(index).and_then(Value::as_u64).unwrap_or(0);
        let failed = count(errors) > 0;
        let held = held.as_u64().unwrap_or(0);
        // A bucket with no holders and no request at all was not sampled (the load tool's sampler
        // was late on a busy machine): processes without a shard would be asking for one.
        if held == 0 && count(ok) == 0 && !failed {
            continue;
        }
        let short = held < whole;
        // Before the first full moment the fleet is still starting.
        if failed || short {
            last_unhealthy = Some(index);
        }
    }
    // A fleet whole in every sampled moment recovered at once.
    let Some(last_unhealthy) = last_unhealthy else {
        return Some(0);
    };
    let end = started + (last_unhealthy as u64 + 1) * bucket;
    Some(end.saturating_sub(fault_end_unix_ms))
}
