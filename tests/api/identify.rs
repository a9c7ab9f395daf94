//! IDENTIFY scheduling: slots per bucket, `/identify`, and the daily budget's reserve.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use shardman::config::Settings;
use shardman::domain::GatewayInfo;
use shardman::store::Store;

use crate::helpers::{
    Backend, both_stores, expect_detail, expect_json, retry_after_seconds, settings, spawn_app,
    spawn_replicas,
};

/// Discord: one IDENTIFY per 5 s per bucket (slots are booked 6 s apart, a margin for the
/// clients' start-up and response delays).
const MIN_GAP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn identify_slots_per_bucket_are_never_under_five_seconds_apart_across_replicas() {
    let settings = Settings {
        max_shards: 12,
        max_concurrency: 4,
        ..settings(Backend::Redis)
    };
    let replicas = spawn_replicas(3, settings).await;
    let connects = (0..12).map(|index| {
        let app = &replicas[index % 3];
        async move {
            let body = expect_json(app.connect().await, StatusCode::OK).await;
            let sleep = Duration::from_secs_f64(body["sleep_duration"].as_f64().expect("sleep"));
            (
                body["shard_id"].as_u64().expect("shard_id"),
                Instant::now() + sleep,
            )
        }
    });
    let grants = futures_util::future::join_all(connects).await;

    let mut ids: Vec<u64> = grants.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..12).collect::<Vec<_>>());
    let started = grants.iter().map(|(_, at)| *at).min().expect("grants");
    for bucket in 0..4 {
        let mut slots: Vec<Instant> = grants
            .iter()
            .filter(|(id, _)| id % 4 == bucket)
            .map(|(_, at)| *at)
            .collect();
        slots.sort_unstable();
        assert_eq!(slots.len(), 3);
        // Buckets run in parallel: each one's first identify goes at once.
        assert!(
            slots[0] - started < Duration::from_secs(2),
            "bucket {bucket} starts at once"
        );
        for pair in slots.windows(2) {
            assert!(
                pair[1] - pair[0] >= MIN_GAP,
                "bucket {bucket}: {:?}",
                pair[1] - pair[0]
            );
        }
    }
}

async fn a_session_that_must_identify_again_books_the_next_slot_of_its_bucket(backend: Backend) {
    let app = spawn_app(Settings {
        max_shards: 2,
        max_concurrency: 2,
        ..settings(backend)
    })
    .await;
    let first = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(first["sleep_duration"], 0.0);
    let second = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(
        second["sleep_duration"], 0.0,
        "another bucket identifies in parallel"
    );

    let session_id = first["session_id"].as_str().expect("session_id");
    let slot = expect_json(
        app.post_form("/identify", &[("session_id", session_id)])
            .await,
        StatusCode::OK,
    )
    .await;
    let sleep = slot["sleep_duration"].as_f64().expect("sleep");
    assert!(
        (5.5..=6.0).contains(&sleep),
        "the next slot of bucket 0: {sleep}"
    );
    let again = expect_json(
        app.post_json("/identify", &json!({ "session_id": session_id }))
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(again["sleep_duration"].as_f64().expect("sleep") >= sleep + 5.0);

    expect_detail(
        app.post_form("/identify", &[("session_id", "nope")]).await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
}

#[tokio::test]
async fn connects_stop_at_the_identify_reserve_with_429_until_discord_resets_the_budget() {
    let settings = Settings {
        max_shards: 4,
        ..settings(Backend::Redis)
    };
    // What the gateway poller would have stored: 6 identifies left of 100, reserve 5%.
    let store = Store::open(&settings).await.expect("store");
    store
        .save_gateway(&GatewayInfo {
            shards: 4,
            max_concurrency: 1,
            session_start_total: 100,
            session_start_remaining: 6,
            url: None,
            session_start_reset_after_ms: 3_600_000,
        })
        .await
        .expect("save");
    let app = spawn_app(settings).await;

    let granted = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(granted["shard_id"], 0);
    let refused = app.connect().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = retry_after_seconds(&refused);
    assert!(
        (3590..=3600).contains(&retry_after),
        "until the reset: {retry_after}"
    );
    expect_detail(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "Identify Budget Exhausted",
    )
    .await;

    let status = app.status().await;
    assert_eq!(
        status["shards"].as_array().expect("shards").len(),
        1,
        "nothing granted"
    );
    let left = store.gateway().await.expect("gateway").expect("known");
    assert_eq!(left.session_start_remaining, 5, "the reserve was not spent");

    // A fresh budget from Discord lets connects through again, from the id that was put back.
    store
        .save_gateway(&GatewayInfo {
            session_start_remaining: 1000,
            session_start_total: 1000,
            ..left
        })
        .await
        .expect("save");
    let next = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(next["shard_id"], 1);
}

both_stores!(a_session_that_must_identify_again_books_the_next_slot_of_its_bucket);
