//! The shard count follows load when `MAX_SHARDS` is unset; with `LOAD_TARGET` or `CPU_TARGET`,
//! `/autoscale` sizes the bot fleet by the load the beats report.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::{Secret, Settings, ShardsPerProcess};
use shardman::store::{PROCESSES_FIELD, SCALE_IN_HOLD_FIELD, Store};

use crate::helpers::{
    Backend, Claim, TestApp, both_stores, eventually, expect_json, settings, spawn_app,
    spawn_replicas,
};
use crate::operations::{metrics_text, sample};
use crate::standin::discord;

fn autoscaling() -> Settings {
    let mut settings = settings(Backend::Redis);
    settings.autoscale = true;
    settings.max_shards = 1;
    settings.guilds_per_shard = 100;
    settings.autoscale_interval_seconds = 1;
    settings
}

/// The count the fleet is heading for: the pending generation's during a reshard.
async fn planned(store: &Store) -> u32 {
    let status = store.status().await.expect("status");
    status
        .pending
        .as_ref()
        .map_or(status.total_shards, |pending| pending.max_shards)
}

async fn plans(store: &Store, count: u32, within: Duration) -> bool {
    eventually(within, || async { planned(store).await == count }).await
}

#[tokio::test]
async fn autoscale_grows_the_shard_count_from_reported_guild_counts() {
    let settings = autoscaling();
    let replicas = spawn_replicas(3, settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    let claim = replicas[0].claim().await;

    let beat = replicas[1]
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 250}))
        .await;
    assert!(beat.status().is_success(), "beat: {}", beat.status());

    assert!(
        plans(&store, 3, Duration::from_secs(5)).await,
        "250 guilds at 100 per shard call for 3 shards; planned {}",
        planned(&store).await
    );
}

#[tokio::test]
async fn autoscale_follows_discords_recommendation_rounded_to_max_concurrency() {
    let discord = discord(5, 2).await;
    let mut settings = autoscaling();
    settings.bot_token = Some(Secret::new("token"));
    settings.discord_api_base = discord.base.clone();
    let _app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");

    assert!(
        plans(&store, 6, Duration::from_secs(5)).await,
        "5 recommended with max_concurrency 2 make 6; planned {}",
        planned(&store).await
    );
}

#[tokio::test]
async fn a_set_max_shards_is_never_changed_by_load() {
    let mut settings = autoscaling();
    settings.autoscale = false;
    settings.max_shards = 2;
    let app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    let claim = app.claim().await;
    app.beat_json(&json!({"session_id": claim.session_id, "guild_count": 5000}))
        .await;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(planned(&store).await, 2);
}

#[tokio::test]
async fn a_lower_target_shrinks_only_after_shrink_after() {
    let mut settings = autoscaling();
    settings.max_shards = 4;
    settings.allow_shrink = true;
    settings.shrink_after_seconds = 2;
    let _app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");

    // The first evaluation sees the lower target and only starts the wait.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(planned(&store).await, 4, "shrank before SHRINK_AFTER");
    assert!(
        store
            .get_meta(shardman::jobs::autoscale::SHRINK_HOLD_FIELD)
            .await
            .expect("meta")
            .is_some(),
        "the wait is kept in the store"
    );
    assert!(
        plans(&store, 1, Duration::from_secs(5)).await,
        "no shrink to MIN_SHARDS after SHRINK_AFTER; planned {}",
        planned(&store).await
    );
}

// ---------------------------------------------------------------------------------------------
// The bot fleet sized by load (LOAD_TARGET, CPU_TARGET)

both_stores!(
    a_load_target_sizes_the_fleet_by_the_events_the_shards_report,
    a_cpu_target_sizes_the_fleet_by_the_processes_cpu,
    a_lower_load_waits_for_scale_in_after_and_shows_since_when,
);

/// A lease of 6 s: a counter's rate spans at least a sixth of it, 1 s (beat.lua, "Load counters").
const LEASE_SECONDS: u64 = 6;
/// A little over that window, so each second report makes a rate.
const PAST_THE_WINDOW: Duration = Duration::from_millis(1200);

/// 8 shards, one per session (`SHARDS_PER_PROCESS=auto` claims one shard until placement by load
/// lands), evaluated every second.
fn sized(backend: Backend) -> Settings {
    let mut settings = settings(backend);
    settings.max_seconds = LEASE_SECONDS;
    settings.max_shards = 8;
    settings.shards_per_process = ShardsPerProcess::Auto;
    settings.autoscale_interval_seconds = 1;
    settings
}

async fn claim_all(app: &TestApp, count: usize) -> Vec<Claim> {
    let mut claims = Vec::new();
    for _ in 0..count {
        claims.push(app.claim().await);
    }
    claims
}

async fn beat(app: &TestApp, body: Value) {
    let response = app.beat_json(&body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{body}");
}

/// Each shard's `events` counter, and when it was last reported.
struct Counters {
    counted: Vec<u64>,
    reported: Vec<Instant>,
}

impl Counters {
    fn new(shards: usize) -> Self {
        Self {
            counted: vec![0; shards],
            reported: vec![Instant::now(); shards],
        }
    }

    /// Beats every claim with its counter grown at `rates[shard_id]` events per second since its
    /// last report, as a shard receiving dispatches at that rate would count them.
    async fn report(&mut self, app: &TestApp, claims: &[Claim], rates: &[f64]) {
        for claim in claims {
            let shard = usize::try_from(claim.shard_id).unwrap();
            let elapsed = self.reported[shard].elapsed().as_secs_f64();
            self.counted[shard] += (rates[shard] * elapsed).round() as u64;
            self.reported[shard] = Instant::now();
            beat(
                app,
                json!({"session_id": claim.session_id, "events": self.counted[shard]}),
            )
            .await;
        }
    }
}

async fn autoscale(app: &TestApp) -> Value {
    expect_json(app.get("/autoscale").await, StatusCode::OK).await
}

/// `/autoscale` once the autoscaler has sized the fleet from a load with `field` known and
/// `check` holds (the beats of a round are sent one by one: an evaluation may see half of them).
async fn sized_answer(app: &TestApp, field: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = autoscale(app).await;
        if body["load"][field].is_f64() && check(&body) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no answer sized by {field}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the answer's events per second are between `low` and `high`.
fn about(low: f64, high: f64) -> impl Fn(&Value) -> bool {
    move |body| {
        body["load"]["events_per_second"]
            .as_f64()
            .is_some_and(|load| (low..=high).contains(&load))
    }
}

fn ceil_over(load: f64, target: f64) -> u64 {
    (load / target).ceil() as u64
}

async fn a_load_target_sizes_the_fleet_by_the_events_the_shards_report(backend: Backend) {
    let mut settings = sized(backend);
    settings.load_target = Some(60.0);
    settings.scale_in_after_seconds = 0;
    let app = spawn_app(settings).await;
    let claims = claim_all(&app, 8).await;

    // No rates yet: one process per shard, as without a target, and the load is unknown.
    let body = autoscale(&app).await;
    assert_eq!(body["desired_processes"], 8, "{body}");
    assert_eq!(body["load"]["load_target"], 60.0, "{body}");
    assert!(body["load"]["cpu_target"].is_null(), "{body}");

    // The README's example: shards 0 and 1 at 40/s, the other six at 5/s: 110/s over a target of
    // 60/s make 2 processes.
    let mut counters = Counters::new(8);
    let rates = [40.0, 40.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0];
    counters.report(&app, &claims, &[0.0; 8]).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    counters.report(&app, &claims, &rates).await;

    // Every shard has a rate once the load is above 80/s (shards 0 and 1 alone make 80/s).
    let body = sized_answer(&app, "events_per_second", about(85.0, 120.0)).await;
    let load = body["load"]["events_per_second"].as_f64().unwrap();
    assert_eq!(body["desired_processes"], ceil_over(load, 60.0), "{body}");
    assert_eq!(body["desired_processes"], 2, "{body}");
    assert!(body["load"]["scale_in_since"].is_null(), "{body}");
    assert_eq!(body["total_shards"], 8, "{body}");
    let text = metrics_text(&app).await;
    assert_eq!(sample(&text, "shardman_desired_processes", &[]), Some(2.0));

    // Shards 0 and 1 go to 150/s: 330/s call for 6 processes at once.
    tokio::time::sleep(PAST_THE_WINDOW).await;
    let busier = [150.0, 150.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0];
    counters.report(&app, &claims, &busier).await;
    let body = sized_answer(&app, "events_per_second", about(250.0, 359.0)).await;
    let load = body["load"]["events_per_second"].as_f64().unwrap();
    assert_eq!(body["desired_processes"], ceil_over(load, 60.0), "{body}");
}

async fn a_cpu_target_sizes_the_fleet_by_the_processes_cpu(backend: Backend) {
    let mut settings = sized(backend);
    settings.cpu_target = Some(0.5);
    settings.scale_in_after_seconds = 0;
    let app = spawn_app(settings).await;
    // Two processes, each with a session: 0.7 cores each make 1.4 cores, 3 processes of 0.5.
    let mut sessions = Vec::new();
    for label in ["bot-a:1", "bot-b:2"] {
        let body = expect_json(
            app.get(&format!("/connect?process={label}")).await,
            StatusCode::OK,
        )
        .await;
        sessions.push(body["session_id"].as_str().unwrap().to_owned());
    }
    for session in &sessions {
        beat(&app, json!({"session_id": session, "cpu_seconds": 10.0})).await;
    }
    tokio::time::sleep(PAST_THE_WINDOW).await;
    let used = 0.7 * PAST_THE_WINDOW.as_secs_f64();
    for session in &sessions {
        beat(
            &app,
            json!({"session_id": session, "cpu_seconds": 10.0 + used}),
        )
        .await;
    }

    // Both processes have a rate once the CPU is above 0.7 cores.
    let body = sized_answer(&app, "cpu", |body| {
        body["load"]["cpu"]
            .as_f64()
            .is_some_and(|cpu| (1.0..=1.5).contains(&cpu))
    })
    .await;
    let cpu = body["load"]["cpu"].as_f64().unwrap();
    assert_eq!(body["desired_processes"], ceil_over(cpu, 0.5), "{body}");
    assert_eq!(body["desired_processes"], 3, "{body}");
    assert_eq!(body["load"]["cpu_target"], 0.5, "{body}");
    assert!(body["load"]["load_target"].is_null(), "{body}");
}

async fn a_lower_load_waits_for_scale_in_after_and_shows_since_when(backend: Backend) {
    let mut settings = sized(backend);
    settings.load_target = Some(60.0);
    let app = spawn_app(settings.clone()).await;
    let claims = claim_all(&app, 8).await;
    let mut counters = Counters::new(8);
    counters.report(&app, &claims, &[0.0; 8]).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    counters.report(&app, &claims, &[5.0; 8]).await;

    // 40/s would need 1 process, but the lower load must hold for SCALE_IN_AFTER (300 s).
    let body = sized_answer(&app, "events_per_second", |body| {
        body["load"]["scale_in_since"].is_string()
    })
    .await;
    assert_eq!(body["desired_processes"], 8, "{body}");
    // The answer and the wait are kept in the store, for every replica and the next start.
    if let Backend::Redis = backend {
        let store = Store::open(&settings).await.expect("store");
        let kept = store.get_meta(PROCESSES_FIELD).await.expect("meta");
        assert!(kept.is_some_and(|kept| kept.starts_with("8:")));
        let hold = store.get_meta(SCALE_IN_HOLD_FIELD).await.expect("meta");
        assert!(
            hold.is_some_and(|hold| hold.ends_with(":1")),
            "the wait goes to 1"
        );
    }
}
