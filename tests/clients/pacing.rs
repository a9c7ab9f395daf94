//! The IDENTIFY pacing benchmark of BENCHMARKS.md ("IDENTIFY pacing at cold start"): cold starts
//! of S shards at `max_concurrency` M for each example bot, judged by the stand-in Discord's
//! records: the spacing of consecutive IDENTIFYs within a bucket, the time from the first IDENTIFY
//! to the last against Discord's limit `(ceil(S/M) - 1) x 5 s`, and IDENTIFYs too early.
//!
//! Not part of the suite (minutes per case): `scripts/bench.sh --pacing` runs it, or
//! `cargo test --test clients -- --ignored --nocapture cold_starts_are_paced`, with
//! `PACING_BOTS` (default `python,js,rust`; any of `BotKind::ALL`'s names: `hikari`,
//! `discordeno`, `disnake`...), `PACING_CASES` (`SxM` pairs, default
//! `8x1,8x2,8x16,32x1,32x2,32x16`) and `PACING_REPEAT` (cold starts per case, default 1).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::discord::{Event, Shard};
use crate::harness::{BotKind, Fleet, Setup};

/// Discord's spacing of two IDENTIFYs of one bucket.
const DISCORD_GAP: Duration = Duration::from_secs(5);

/// One cold start as the gateway saw it.
struct ColdStart {
    spacings: Vec<Duration>,
    first_to_last: Duration,
    too_early: usize,
}

fn setting<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse(item).unwrap_or_else(|| panic!("{name}: cannot read {item:?}")))
        .collect()
}

fn bot_kind(name: &str) -> Option<BotKind> {
    BotKind::ALL.into_iter().find(|kind| kind.name() == name)
}

fn case(text: &str) -> Option<(u32, u32)> {
    let (shards, concurrency) = text.split_once('x')?;
    Some((shards.parse().ok()?, concurrency.parse().ok()?))
}

/// Discord's shortest time from the first IDENTIFY of a cold start to the last.
fn discords_limit(shards: u32, concurrency: u32) -> Duration {
    DISCORD_GAP * (shards.div_ceil(concurrency) - 1)
}

/// Starts `shards` shards at `concurrency` (8 processes: groups of `shards / 8`) and waits until
/// every shard is live once.
fn cold_start(kind: BotKind, shards: u32, concurrency: u32) -> ColdStart {
    let group = shards.div_ceil(8);
    let mut fleet = Fleet::start_with(
        kind,
        Setup {
            max_concurrency: concurrency,
            // Nothing here waits for a lease to run out; a long one keeps a starved process's
            // shards while 8 libraries load at once.
            max_seconds: 20,
            ..Setup::new(shards, group)
        },
    );
    let started = Instant::now();
    fleet.spawn_bots(shards.div_ceil(group) as usize);
    let all: Vec<Shard> = (0..shards).map(|id| Shard { id, count: shards }).collect();
    let within = discords_limit(shards, concurrency) * 2 + Duration::from_secs(60);
    fleet.wait_for("every shard live once", within, |fleet| {
        fleet.discord.live_shards() == all
    });
    let identifies: Vec<(Instant, u32)> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.at >= started)
        .filter_map(|record| match (record.event, record.shard) {
            (Event::Identify { too_early: false }, Some(shard)) => Some((record.at, shard.id)),
            _ => None,
        })
        .collect();
    let mut last: HashMap<u32, Instant> = HashMap::new();
    let mut spacings = Vec::new();
    for (at, id) in &identifies {
        if let Some(previous) = last.insert(id % concurrency, *at) {
            spacings.push(*at - previous);
        }
    }
    let too_early = fleet.discord.too_early_identifies().len();
    if too_early > 0 {
        eprintln!("{}", fleet.explain_too_early());
    }
    ColdStart {
        spacings,
        first_to_last: identifies.last().map(|l| l.0).unwrap_or(started)
            - identifies.first().map(|f| f.0).unwrap_or(started),
        too_early,
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64())
}

#[test]
#[ignore = "benchmark (minutes per case): scripts/bench.sh --pacing"]
fn cold_starts_are_paced_at_discords_rate() {
    let bots = setting("PACING_BOTS", "python,js,rust", bot_kind);
    let cases = setting("PACING_CASES", "8x1,8x2,8x16,32x1,32x2,32x16", case);
    let repeat: usize = std::env::var("PACING_REPEAT")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1);
    println!(
        "| bot | S | M | cold starts | IDENTIFY spacing in a bucket: mean / min (s) | first to last IDENTIFY (s), mean | Discord's limit (s) | ratio | too early |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for kind in bots {
        for &(shards, concurrency) in &cases {
            let runs: Vec<ColdStart> = (0..repeat)
                .map(|_| cold_start(kind, shards, concurrency))
                .collect();
            let spacings: Vec<Duration> =
                runs.iter().flat_map(|run| run.spacings.clone()).collect();
            let mean = spacings.iter().sum::<Duration>() / spacings.len().max(1) as u32;
            let min = spacings.iter().min().copied().unwrap_or_default();
            let span = runs.iter().map(|run| run.first_to_last).sum::<Duration>() / repeat as u32;
            let limit = discords_limit(shards, concurrency);
            let ratio = if limit.is_zero() {
                "-".to_owned()
            } else {
                format!("{:.3}", span.as_secs_f64() / limit.as_secs_f64())
            };
            let too_early: usize = runs.iter().map(|run| run.too_early).sum();
            println!(
                "| {} | {shards} | {concurrency} | {repeat} | {} / {} | {} | {} | {ratio} | {too_early} |",
                kind.name(),
                seconds(mean),
                seconds(min),
                seconds(span),
                seconds(limit),
            );
        }
    }
}
