//! Real bot fleets: a client that follows the seed's protocol (connect, sleep `sleep_duration`,
//! IDENTIFY, then beat) keeps its shard; first starts and idle generations need no reshard.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, both_stores, expect_json, settings, settings_on, spawn_app};
use crate::support::redis::{RedisOptions, RedisServer};

both_stores!(
    a_session_keeps_its_shard_when_it_beats_only_after_a_long_identify_wait,
    a_reshard_of_a_generation_nobody_holds_replaces_it_at_once,
);

async fn a_session_keeps_its_shard_when_it_beats_only_after_a_long_identify_wait(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 1;
    settings.max_shards = 2;
    settings.max_concurrency = 1;
    let app = spawn_app(settings).await;
    let first = expect_json(app.connect().await, StatusCode::OK).await;
    let second = expect_json(app.connect().await, StatusCode::OK).await;
    let sleep = second["sleep_duration"].as_f64().expect("sleep_duration");
    assert!(
        sleep > 5.0,
        "one bucket: the second shard waits for its slot ({sleep} s), over 5 leases"
    );

    // Follow the seed exactly: sleep, (identify), and only then beat.
    tokio::time::sleep(Duration::from_secs_f64(sleep + 0.3)).await;
    assert_eq!(
        app.beat(second["session_id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::NO_CONTENT,
        "the lease covers the wait for the identify slot"
    );
    assert_eq!(
        app.beat(first["session_id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a shard with no wait that never beat lost its lease after MAX_SECONDS"
    );
}

async fn a_reshard_of_a_generation_nobody_holds_replaces_it_at_once(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 4;
    let app = spawn_app(settings).await;

    let plan = expect_json(
        app.post_json("/reshard", &json!({"max_shards": 6})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        (plan["generation"].clone(), plan["max_shards"].clone()),
        (json!(2), json!(6))
    );

    let grant = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(
        grant["state"], "active",
        "no standby phase: nobody ran generation 1"
    );
    assert_eq!(grant["max_shards"], 6);
    assert_eq!(grant["generation"], 2);
    let status = app.status().await;
    assert_eq!(status["total_shards"], 6);
    assert_eq!(status["generation"], 2);
    assert!(status["pending"].is_null(), "nothing pending: {status}");
}

#[tokio::test]
async fn a_brand_new_deployment_on_a_redis_with_aof_grants_at_once() {
    let redis = RedisServer::start_with(RedisOptions {
        append_only: true,
        ..RedisOptions::default()
    });
    let mut settings = settings_on(&redis);
    settings.max_seconds = 60;
    settings.quarantine_fresh_redis = true;
    let app = spawn_app(settings).await;
    assert_eq!(app.connect().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_brand_new_deployment_on_a_redis_without_persistence_waits_out_the_quarantine() {
    let redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_seconds = 60;
    settings.quarantine_fresh_redis = true;
    let app = spawn_app(settings).await;
    assert_eq!(
        app.connect().await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "this Redis may have just lost a plan: no grant for one lease"
    );
}
