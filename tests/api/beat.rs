//! `POST /beat`: both encodings, what it stores, and its errors.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    Backend, both_stores, expect_detail, expect_json, redis_key, settings, spawn_app,
};
use crate::support::redis::shared_redis;

both_stores!(
    a_form_beat_is_accepted_with_204_and_stores_its_fields,
    a_json_beat_is_accepted_with_204_and_stores_its_fields,
    a_beat_without_optional_fields_keeps_what_earlier_beats_stored,
    a_beat_for_an_unknown_session_is_404,
    a_beat_after_disconnect_is_404,
    a_beat_with_a_wrong_secret_is_403_and_changes_nothing,
);

async fn a_form_beat_is_accepted_with_204_and_stores_its_fields(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;

    let response = app
        .beat_form(&[
            ("session_id", &claim.session_id),
            ("guild_count", "1234"),
            ("latency", "0.125"),
            ("extra", "hello"),
        ])
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty(), "204 has no body");
    let shard = app.shard_status(0).await.expect("shard 0 is held");
    assert_eq!(shard["guild_count"], 1234);
    assert_eq!(shard["latency"], 0.125);
    // A form carries text only; it is kept as text.
    assert_eq!(shard["extra"], "hello");
}

async fn a_json_beat_is_accepted_with_204_and_stores_its_fields(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    let extra =
        json!({"cluster": "eu-1", "members": [1, 2, 3], "ready": true, "nested": {"x": null}});

    let response = app
        .beat_json(&json!({
            "session_id": claim.session_id,
            "guild_count": 77,
            "latency": 0.5,
            "extra": extra,
        }))
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let shard = app.shard_status(0).await.expect("shard 0 is held");
    assert_eq!(shard["guild_count"], 77);
    assert_eq!(shard["latency"], 0.5);
    assert_eq!(shard["extra"], extra, "extra comes back as the same JSON");
}

async fn a_beat_without_optional_fields_keeps_what_earlier_beats_stored(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    let first = app
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 5, "latency": 0.25, "extra": [1]}))
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    let before = app.shard_status(0).await.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let after = app.shard_status(0).await.unwrap();
    assert_eq!(after["guild_count"], 5);
    assert_eq!(after["latency"], 0.25);
    assert_eq!(after["extra"], json!([1]));
    let parse = |shard: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(shard["last_beat"].as_str().unwrap()).unwrap()
    };
    assert!(
        parse(&after) > parse(&before),
        "last_beat moves with every beat"
    );
}

async fn a_beat_for_an_unknown_session_is_404(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    app.claim().await;

    expect_detail(
        app.beat("00000000000000000000000000000000").await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
    expect_detail(
        app.beat_json(&json!({"session_id": "nobody"})).await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
}

async fn a_beat_after_disconnect_is_404(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    assert_eq!(
        app.disconnect(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    expect_detail(
        app.beat(&claim.session_id).await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
}

async fn a_beat_with_a_wrong_secret_is_403_and_changes_nothing(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;

    let response = app
        .request_as(Method::POST, "/beat", "wrong")
        .form(&[
            ("session_id", claim.session_id.as_str()),
            ("guild_count", "9"),
        ])
        .send()
        .await
        .unwrap();

    expect_detail(response, StatusCode::FORBIDDEN, "Invalid Token").await;
    assert_eq!(
        app.shard_status(0).await.unwrap()["guild_count"],
        json!(null)
    );
}

/// The shard count shrank under a running session (here by editing the plan, as a reshard would):
/// the session's shard id is no longer below the count, so its beat is refused with 401.
#[tokio::test]
async fn a_beat_for_a_shard_no_longer_below_the_shard_count_is_401_on_redis() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 2;
    let prefix = settings.key_prefix.clone();
    let app = spawn_app(settings).await;
    let _first = app.claim().await;
    let second = app.claim().await;
    assert_eq!(second.shard_id, 1);

    shared_redis().query(&["HSET", &redis_key(&prefix, "plan"), "max_shards", "1"]);

    expect_detail(
        app.beat(&second.session_id).await,
        StatusCode::UNAUTHORIZED,
        "No Shards Available",
    )
    .await;
    let status = expect_json(app.get("/status").await, StatusCode::OK).await;
    assert_eq!(status["total_shards"], 1);
}
