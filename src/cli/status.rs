//! `shardman status`: `GET /status` as an operator reads it.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::table::{Column, age, bytes, cores, counted, id_runs, or_dash, rate, render};

// The parts of `/status` shown here, read on their own: a server of another version (or the
// original API, without generations or processes) still gives a summary.

#[derive(Deserialize)]
pub struct StatusView {
    total_shards: u32,
    /// Absent in the original API: generation 1 then.
    #[serde(default = "first_generation")]
    generation: u64,
    shards: Vec<ShardView>,
    #[serde(default)]
    pending: Option<GenerationView>,
    #[serde(default)]
    processes: Vec<ProcessView>,
}

fn first_generation() -> u64 {
    1
}

#[derive(Deserialize)]
struct GenerationView {
    generation: u64,
    max_shards: u32,
    shards: Vec<ShardView>,
}

#[derive(Deserialize)]
struct ShardView {
    shard_id: u32,
    last_beat: Option<DateTime<Utc>>,
    guild_count: Option<u64>,
    #[serde(default)]
    events_per_second: Option<f64>,
    #[serde(default)]
    process: Option<String>,
    #[serde(default)]
    moving_to: Option<String>,
    #[serde(default)]
    silent_since: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct ProcessView {
    process: Option<String>,
    generation: u64,
    shard_ids: Vec<u32>,
    events_per_second: Option<f64>,
    cpu: Option<f64>,
    rss_bytes: Option<u64>,
}

const SHARD_COLUMNS: [Column; 7] = [
    Column::number("SHARD"),
    Column::number("GEN"),
    Column::text("PROCESS"),
    Column::number("EVENTS/S"),
    Column::number("GUILDS"),
    Column::number("LAST BEAT"),
    Column::text("FLAGS"),
];

const PROCESS_COLUMNS: [Column; 6] = [
    Column::text("PROCESS"),
    Column::number("GEN"),
    Column::text("SHARDS"),
    Column::number("EVENTS/S"),
    Column::number("CPU"),
    Column::number("RSS"),
];

/// The plan's line for each generation, then the shards and the processes.
pub fn summary(status: StatusView) -> String {
    summary_at(status, Utc::now())
}

fn summary_at(status: StatusView, now: DateTime<Utc>) -> String {
    let active = GenerationView {
        generation: status.generation,
        max_shards: status.total_shards,
        shards: status.shards,
    };
    let generations: Vec<GenerationView> = std::iter::once(active).chain(status.pending).collect();
    let mut text: String = generations
        .iter()
        .zip(["generation", "pending generation"])
        .map(|(generation, name)| generation.plan_line(name))
        .collect();
    let shard_rows: Vec<Vec<String>> = generations
        .iter()
        .flat_map(|generation| {
            generation
                .shards
                .iter()
                .map(|shard| shard.row(generation.generation, now))
        })
        .collect();
    text.push('\n');
    text.push_str(&render(&SHARD_COLUMNS, &shard_rows));
    if !status.processes.is_empty() {
        let process_rows: Vec<Vec<String>> =
            status.processes.iter().map(ProcessView::row).collect();
        text.push('\n');
        text.push_str(&render(&PROCESS_COLUMNS, &process_rows));
    }
    text
}

impl GenerationView {
    /// `generation 1: 4 shards, 3 held, 1 missing (2)`.
    fn plan_line(&self, name: &str) -> String {
        let held = self.shards.len();
        let mut held_ids = self.shards.iter().map(|shard| shard.shard_id).peekable();
        let missing_ids: Vec<u32> = (0..self.max_shards)
            .filter(|id| {
                while held_ids.next_if(|held| held < id).is_some() {}
                held_ids.peek() != Some(id)
            })
            .collect();
        let missing = if missing_ids.is_empty() {
            "none missing".to_owned()
        } else {
            format!("{} missing ({})", missing_ids.len(), id_runs(missing_ids))
        };
        format!(
            "{name} {}: {}, {held} held, {missing}\n",
            self.generation,
            counted(self.max_shards, "shard")
        )
    }
}

impl ShardView {
    fn row(&self, generation: u64, now: DateTime<Utc>) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(target) = &self.moving_to {
            flags.push(format!("moving to {target}"));
        }
        if let Some(since) = self.silent_since {
            flags.push(format!("silent for {}", age(since, now)));
        }
        vec![
            self.shard_id.to_string(),
            generation.to_string(),
            or_dash(self.process.clone(), |label| label),
            or_dash(self.events_per_second, rate),
            or_dash(self.guild_count, |count| count.to_string()),
            or_dash(self.last_beat, |at| format!("{} ago", age(at, now))),
            flags.join(", "),
        ]
    }
}

impl ProcessView {
    fn row(&self) -> Vec<String> {
        vec![
            or_dash(self.process.clone(), |label| label),
            self.generation.to_string(),
            id_runs(self.shard_ids.iter().copied()),
            or_dash(self.events_per_second, rate),
            or_dash(self.cpu, cores),
            or_dash(self.rss_bytes, bytes),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_shows_the_plan_the_shards_and_the_processes() {
        let status: StatusView = serde_json::from_value(serde_json::json!({
            "total_shards": 4, "generation": 1,
            "shards": [
                {"shard_id": 0, "last_beat": "2026-01-01T12:00:00Z", "guild_count": 1203,
                 "latency": 0.04, "events_per_second": 41.25, "process": "bot-a:1", "extra": null,
                 "moving_to": "bot-b:2"},
                {"shard_id": 1, "last_beat": "2026-01-01T12:00:08Z", "guild_count": null,
                 "latency": null, "events_per_second": 0.0, "process": "bot-a:1", "extra": null,
                 "silent_since": "2026-01-01T11:59:00Z"},
            ],
            "pending": {"generation": 2, "max_shards": 2, "shards": [
                {"shard_id": 1, "last_beat": "2026-01-01T12:00:09Z", "guild_count": null,
                 "latency": null, "events_per_second": null, "process": null, "extra": null}
            ]},
            "processes": [
                {"process": "bot-a:1", "generation": 1, "shard_ids": [0, 1],
                 "events_per_second": 41.25, "cpu": 0.31, "rss_bytes": 187695104},
                {"process": null, "generation": 2, "shard_ids": [1],
                 "events_per_second": null, "cpu": null, "rss_bytes": null}
            ],
            "history": []
        }))
        .expect("a status");
        let now: DateTime<Utc> = "2026-01-01T12:00:10Z".parse().unwrap();
        let expected = "\
generation 1: 4 shards, 2 held, 2 missing (2-3)
pending generation 2: 2 shards, 1 held, 1 missing (0)

SHARD  GEN  PROCESS  EVENTS/S  GUILDS  LAST BEAT  FLAGS
    0    1  bot-a:1      41.2    1203   10 s ago  moving to bot-b:2
    1    1  bot-a:1       0.0       -    2 s ago  silent for 70 s
    1    2  -               -       -    1 s ago

PROCESS  GEN  SHARDS  EVENTS/S   CPU        RSS
bot-a:1    1  0-1         41.2  0.31  179.0 MiB
-          2  1              -     -          -
";
        assert_eq!(summary_at(status, now), expected);
    }

    #[test]
    fn the_original_apis_answer_is_summarised_too() {
        let status: StatusView = serde_json::from_value(serde_json::json!({
            "total_shards": 1,
            "shards": [{"shard_id": 0, "last_beat": "2026-01-01T12:00:00Z", "guild_count": 5,
                        "latency": null, "extra": null}]
        }))
        .expect("a status");
        let text = summary(status);
        assert!(
            text.starts_with("generation 1: 1 shard, 1 held, none missing\n"),
            "{text}"
        );
    }
}
