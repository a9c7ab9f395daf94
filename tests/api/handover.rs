//! A shard's last reported guild count (and latency) stays with the shard across a handover until
//! its next holder reports: `/status` shows it and autoscale counts it, so a deploy never looks
//! like a shrink, even with `ALLOW_SHRINK`.

use std::time::Duration;

use serde_json::json;
use shardman::config::{Settings, ShardsPerProcess};

use crate::helpers::{Backend, TestApp, both_stores, settings, spawn_app};

/// Two shards planned, autoscale every second at 100 guilds per shard, free to shrink after 2 s:
/// 200 guilds hold the plan at 2, anything that looks like fewer than 101 shrinks it to 1.
fn shrinkable(backend: Backend) -> Settings {
    let mut settings = settings(backend);
    settings.autoscale = true;
    settings.max_shards = 2;
    settings.guilds_per_shard = 100;
    settings.autoscale_interval_seconds = 1;
    settings.allow_shrink = true;
    settings.shrink_after_seconds = 2;
    settings
}

/// Long enough for autoscale to shrink the plan if it saw fewer guilds (SHRINK_AFTER + rounds).
const SHRINK_WOULD_HAVE_HAPPENED: Duration = Duration::from_millis(4000);

/// The shard count the fleet is heading for: the pending generation's during a reshard.
async fn planned_shards(app: &TestApp) -> u64 {
    let status = app.status().await;
    status["pending"]["max_shards"]
        .as_u64()
        .or(status["total_shards"].as_u64())
        .expect("total_shards")
}

async fn beat(app: &TestApp, body: serde_json::Value) {
    let response = app.beat_json(&body).await;
    assert!(
        response.status().is_success(),
        "beat {body}: {}",
        response.status()
    );
}

async fn a_released_shard_keeps_its_guild_count_until_its_next_holder_reports(backend: Backend) {
    let app = spawn_app(shrinkable(backend)).await;
    let old = app.claim().await;
    assert_eq!(old.shard_id, 0);
    beat(
        &app,
        json!({"session_id": old.session_id, "guild_count": 200, "latency": 0.05}),
    )
    .await;
    assert!(app.disconnect(&old.session_id).await.status().is_success());

    tokio::time::sleep(SHRINK_WOULD_HAVE_HAPPENED).await;
    assert_eq!(
        planned_shards(&app).await,
        2,
        "autoscale counted the 200 guilds of the shard between holders"
    );

    let new = app.claim().await;
    assert_eq!(new.shard_id, 0);
    let shard = app.shard_status(0).await.expect("shard 0 is held");
    assert_eq!(shard["guild_count"], 200, "{shard}");
    assert_eq!(shard["latency"], 0.05, "{shard}");
    // A beat that reports no count (the new holder is still connecting) keeps the old one.
    beat(&app, json!({"session_id": new.session_id, "ready": false})).await;
    tokio::time::sleep(SHRINK_WOULD_HAVE_HAPPENED).await;
    assert_eq!(app.shard_status(0).await.expect("held")["guild_count"], 200);
    assert_eq!(planned_shards(&app).await, 2, "no shrink before it reports");

    // Its own report replaces the previous holder's: 30 guilds now call for one shard.
    beat(
        &app,
        json!({"session_id": new.session_id, "guild_count": 30}),
    )
    .await;
    let shard = app.shard_status(0).await.expect("held");
    assert_eq!(shard["guild_count"], 30, "{shard}");
    assert!(
        crate::helpers::eventually(Duration::from_secs(6), || async {
            planned_shards(&app).await == 1
        })
        .await,
        "the new holder's own count counts"
    );
}

async fn an_expired_shard_keeps_its_guild_count_until_its_next_holder_reports(backend: Backend) {
    let mut settings = shrinkable(backend);
    settings.max_seconds = 1;
    let app = spawn_app(settings).await;
    let old = app.claim().await;
    beat(
        &app,
        json!({"session_id": old.session_id, "guild_count": 150}),
    )
    .await;
    beat(
        &app,
        json!({"session_id": old.session_id, "guild_count": 200}),
    )
    .await;

    // The holder dies: its lease runs out a second later and nobody claims the shard meanwhile.
    tokio::time::sleep(SHRINK_WOULD_HAVE_HAPPENED).await;
    assert!(app.shard_status(0).await.is_none(), "the lease expired");
    assert_eq!(planned_shards(&app).await, 2);

    let new = app.claim().await;
    assert_eq!(new.shard_id, 0);
    assert_eq!(
        app.shard_status(0).await.expect("held")["guild_count"],
        200,
        "the count the dead holder last reported"
    );
}

async fn each_shard_of_a_group_keeps_its_count_across_a_handover(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    settings.shards_per_process = ShardsPerProcess::Fixed(2);
    let app = spawn_app(settings).await;
    let old = app.claim().await;
    let shards = json!([
        {"shard_id": 0, "guild_count": 10, "latency": 0.01},
        {"shard_id": 1, "guild_count": 20, "latency": 0.02},
    ]);
    beat(
        &app,
        json!({"session_id": old.session_id, "shards": shards}),
    )
    .await;
    assert!(app.disconnect(&old.session_id).await.status().is_success());

    let new = app.claim().await;
    let status = app.status().await;
    let counts: Vec<_> = status["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| (shard["shard_id"].clone(), shard["guild_count"].clone()))
        .collect();
    assert_eq!(counts, vec![(json!(0), json!(10)), (json!(1), json!(20))]);

    let shards = json!([{"shard_id": 1, "guild_count": 25}]);
    beat(
        &app,
        json!({"session_id": new.session_id, "shards": shards}),
    )
    .await;
    assert_eq!(app.shard_status(1).await.expect("held")["guild_count"], 25);
    assert_eq!(app.shard_status(0).await.expect("held")["guild_count"], 10);
}

both_stores!(
    a_released_shard_keeps_its_guild_count_until_its_next_holder_reports,
    an_expired_shard_keeps_its_guild_count_until_its_next_holder_reports,
    each_shard_of_a_group_keeps_its_count_across_a_handover,
);
