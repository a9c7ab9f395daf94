//! Issue 20 §4: the busiest shard's load raises the shard count (`SHARD_LOAD_MAX`), and a shard
//! whose `events` counter stands still while its fleet has traffic is silent (`SHARD_SILENT_AFTER`):
//! shown in `/status`, alerted once, and its holder told to reconnect it in the beat answer.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::{Settings, ShardsPerProcess};

use crate::helpers::{
    Backend, Claim, SECRET, TestApp, both_stores, eventually, expect_json, settings, spawn_app,
};
use crate::operations::{metrics_text, sample};
use crate::standin::{Reply, StandIn, alert_of};

both_stores!(
    a_busy_shard_raises_the_shard_count_rounded_to_max_concurrency,
    a_busy_shard_waits_for_shard_load_after_and_shows_why,
    a_silent_shard_is_shown_alerted_once_and_its_holder_told_to_reconnect,
);

/// A lease of 6 s: a counter's rate spans at least a sixth of it, 1 s (beat.lua, "Load counters").
const LEASE_SECONDS: u64 = 6;
/// A little over that window, so each second report makes a rate.
const PAST_THE_WINDOW: Duration = Duration::from_millis(1200);

/// Two shards with MAX_SHARDS unset, sized by load at 60 events/s a process, evaluated every
/// second; `max_concurrency` 2, so the guilds (none) keep the count at 2.
fn busy_fleet(backend: Backend, shard_load_max: Option<f64>) -> Settings {
    let mut settings = settings(backend);
    settings.max_seconds = LEASE_SECONDS;
    settings.autoscale = true;
    settings.max_shards = 2;
    settings.max_concurrency = 2;
    settings.shards_per_process = ShardsPerProcess::Auto;
    settings.load_target = Some(60.0);
    settings.shard_load_max = shard_load_max;
    settings.shard_load_after_seconds = 0;
    settings.autoscale_interval_seconds = 1;
    settings
}

async fn beat(app: &TestApp, session_id: &str, events: u64) -> Value {
    let response = app
        .client
        .post(format!("{}/beat", app.address))
        .header("Authorization", SECRET)
        .header("Prefer", "return=representation")
        .json(&json!({"session_id": session_id, "events": events}))
        .send()
        .await
        .expect("request");
    expect_json(response, StatusCode::OK).await
}

/// Claims both shards and reports shard 0 at about 100 events/s and shard 1 at 5/s.
async fn report_a_busy_shard(app: &TestApp) -> Vec<Claim> {
    let claims = vec![app.claim().await, app.claim().await];
    for claim in &claims {
        beat(app, &claim.session_id, 0).await;
    }
    let started = Instant::now();
    tokio::time::sleep(PAST_THE_WINDOW).await;
    let elapsed = started.elapsed().as_secs_f64();
    for claim in &claims {
        let rate = if claim.shard_id == 0 { 100.0 } else { 5.0 };
        beat(app, &claim.session_id, (rate * elapsed) as u64).await;
    }
    claims
}

async fn autoscale(app: &TestApp) -> Value {
    expect_json(app.get("/autoscale").await, StatusCode::OK).await
}

/// `/autoscale` once `check` holds, or the last answer after 5 s.
async fn autoscale_until(app: &TestApp, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = autoscale(app).await;
        if check(&body) || Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The count the fleet is heading for: the pending generation's during a reshard.
fn planned(body: &Value) -> u64 {
    body["pending_shards"]
        .as_u64()
        .or(body["total_shards"].as_u64())
        .expect("a shard count")
}

async fn a_busy_shard_raises_the_shard_count_rounded_to_max_concurrency(backend: Backend) {
    let app = spawn_app(busy_fleet(backend, Some(0.5))).await;
    report_a_busy_shard(&app).await;

    // 100/s over a bound of 0.5 x 60 = 30/s: 2 x 100 / 30 = 6.7, so 7 shards, rounded up to a
    // multiple of max_concurrency 2: 8.
    let last = autoscale_until(&app, |body| planned(body) == 8).await;
    assert_eq!(planned(&last), 8, "no reshard to 8: {last}");
    let reason = &last["shard_load"];
    assert_eq!(reason["busiest_shard_id"], 0, "{last}");
    assert_eq!(reason["bound"], 30.0, "{last}");
    assert_eq!(reason["raise_to"], 7, "{last}");
}

async fn a_busy_shard_waits_for_shard_load_after_and_shows_why(backend: Backend) {
    // Without SHARD_LOAD_MAX the same load never reshards; with it and a long SHARD_LOAD_AFTER,
    // /autoscale shows the shard over its bound and since when, and the count waits.
    for shard_load_max in [None, Some(0.5)] {
        let mut settings = busy_fleet(backend, shard_load_max);
        settings.shard_load_after_seconds = 300;
        let app = spawn_app(settings).await;
        report_a_busy_shard(&app).await;
        let last = autoscale_until(&app, |body| {
            body["load"]["events_per_second"].as_f64() > Some(90.0)
                && (shard_load_max.is_none() || body["shard_load"]["over_since"].is_string())
        })
        .await;
        assert!(
            last["load"]["events_per_second"].as_f64() > Some(90.0),
            "the load was not evaluated: {last}"
        );
        // Two more evaluations.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let body = autoscale(&app).await;
        assert_eq!(planned(&body), 2, "{body}");
        match shard_load_max {
            None => assert!(body.get("shard_load").is_none(), "{body}"),
            Some(_) => {
                assert!(body["shard_load"]["over_since"].is_string(), "{body}");
                assert_eq!(body["shard_load"]["raise_to"], 7, "{body}");
            }
        }
    }
}

async fn a_silent_shard_is_shown_alerted_once_and_its_holder_told_to_reconnect(backend: Backend) {
    let webhook = StandIn::start(|_, _| Reply::no_content()).await;
    let mut settings = settings(backend);
    settings.max_seconds = LEASE_SECONDS;
    settings.max_shards = 2;
    settings.shard_silent_after_seconds = LEASE_SECONDS;
    settings.webhook_url = Some(format!("{}/api/webhooks/1/webhook-token", webhook.base));
    let app = spawn_app(settings).await;
    let busy = app.claim().await;
    let quiet = app.claim().await;

    // Shard `busy` receives events all along; `quiet`'s counter stands still at 7. Each round
    // beats both (keeping their leases) and collects what `quiet`'s holder is told.
    let mut busy_events = 0;
    let mut told: Vec<(Instant, Value)> = Vec::new();
    let started = Instant::now();
    // The threshold is 6 s; the check looks every 1.5 s. Told once, then again 6 s later.
    while told.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "told {told:?}, status {}",
            app.status().await
        );
        busy_events += 50;
        let busy_answer = beat(&app, &busy.session_id, busy_events).await;
        assert_eq!(busy_answer["reconnect"], json!([]), "{busy_answer}");
        let reconnect = beat(&app, &quiet.session_id, 7).await["reconnect"].clone();
        if reconnect != json!([]) {
            told.push((Instant::now(), reconnect));
        }
        tokio::time::sleep(PAST_THE_WINDOW).await;
    }
    assert_eq!(told[0].1, json!([quiet.shard_id]));
    assert_eq!(told[1].1, json!([quiet.shard_id]));
    assert!(
        told[1].0 - told[0].0 >= Duration::from_secs(5),
        "told again too soon: {:?}",
        told[1].0 - told[0].0
    );
    assert!(
        started.elapsed() >= Duration::from_secs(LEASE_SECONDS),
        "silent before the threshold"
    );

    let shard = app.shard_status(quiet.shard_id).await.expect("held");
    assert!(shard["silent_since"].is_string(), "{shard}");
    let other = app.shard_status(busy.shard_id).await.expect("held");
    assert!(other.get("silent_since").is_none(), "{other}");
    let metrics = metrics_text(&app).await;
    assert_eq!(sample(&metrics, "shardman_silent_shards", &[]), Some(1.0));

    // One alert for the spell, however often the holder is told.
    let silent_alerts = || {
        webhook
            .requests()
            .iter()
            .filter(|request| {
                alert_of(&request.body) == ("shard_silent".into(), quiet.shard_id.to_string())
            })
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || async { silent_alerts() >= 1 }).await,
        "no shard_silent alert"
    );
    assert_eq!(silent_alerts(), 1);

    // Events again: no longer silent.
    beat(&app, &quiet.session_id, 9).await;
    let shard = app.shard_status(quiet.shard_id).await.expect("held");
    assert!(shard.get("silent_since").is_none(), "{shard}");
}
