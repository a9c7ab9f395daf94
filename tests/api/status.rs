//! `GET /status`: the fleet, sorted by id; private unless `PUBLIC_STATUS`, and then without `extra`.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, both_stores, expect_detail, expect_json, expect_validation, held_ids, loc, settings,
    spawn_app,
};

both_stores!(
    status_lists_every_held_shard_sorted_by_id_with_what_it_reported,
    status_of_an_empty_fleet_has_the_shard_count_and_no_shards,
    status_needs_the_secret_unless_it_is_public,
    public_status_hides_extra_from_anonymous_callers_only,
);

async fn status_lists_every_held_shard_sorted_by_id_with_what_it_reported(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 5;
    let app = spawn_app(settings).await;
    let claims = [
        app.claim().await,
        app.claim().await,
        app.claim().await,
        app.claim().await,
    ];
    // Free 1, so the listing has a hole; beat in reverse order so store order is not id order.
    app.disconnect(&claims[1].session_id).await;
    for claim in claims.iter().rev().filter(|claim| claim.shard_id != 1) {
        let response = app
            .beat_json(&json!({
                "session_id": claim.session_id,
                "guild_count": claim.shard_id * 100,
                "latency": claim.shard_id as f64 / 10.0,
                "extra": {"id": claim.shard_id},
            }))
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let before = Utc::now() - chrono::Duration::seconds(30);

    let status = expect_json(app.get("/status").await, StatusCode::OK).await;

    assert_eq!(status["total_shards"], 5);
    assert_eq!(held_ids(&status), vec![0, 2, 3]);
    for shard in status["shards"].as_array().unwrap() {
        let id = shard["shard_id"].as_u64().unwrap();
        assert_eq!(shard["guild_count"], id * 100);
        assert_eq!(shard["latency"], id as f64 / 10.0);
        assert_eq!(shard["extra"], json!({"id": id}));
        let text = shard["last_beat"].as_str().expect("last_beat is a string");
        let last_beat = DateTime::parse_from_rfc3339(text)
            .unwrap_or_else(|error| panic!("last_beat {text:?} is not RFC 3339: {error}"));
        assert_eq!(
            last_beat.offset().local_minus_utc(),
            0,
            "last_beat is UTC: {text}"
        );
        let last_beat = last_beat.with_timezone(&Utc);
        assert!(last_beat > before && last_beat < Utc::now() + chrono::Duration::seconds(30));
    }
}

async fn status_of_an_empty_fleet_has_the_shard_count_and_no_shards(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 3;
    let app = spawn_app(settings).await;

    let status = expect_json(app.get("/status").await, StatusCode::OK).await;

    assert_eq!(status["total_shards"], 3);
    assert_eq!(status["shards"], json!([]));

    // A shard that connected but never beat is listed, with nothing reported yet.
    app.claim().await;
    let status = app.status().await;
    let shard = &status["shards"][0];
    assert_eq!(shard["shard_id"], 0);
    assert!(shard["last_beat"].is_string());
    assert_eq!(shard["guild_count"], json!(null));
    assert_eq!(shard["latency"], json!(null));
    assert_eq!(shard["extra"], json!(null));
}

async fn status_needs_the_secret_unless_it_is_public(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    let locs = expect_validation(app.get_anonymous("/status").await).await;
    assert_eq!(locs, vec![loc(&["header", "authorization"])]);
    expect_detail(
        app.get_as("/status", "wrong").await,
        StatusCode::FORBIDDEN,
        "Invalid Token",
    )
    .await;
}

async fn public_status_hides_extra_from_anonymous_callers_only(backend: Backend) {
    let mut settings = settings(backend);
    settings.public_status = true;
    settings.max_shards = 2;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    let beat = app
        .beat_json(&json!({
            "session_id": claim.session_id,
            "guild_count": 3,
            "latency": 0.2,
            "extra": {"token": "private"},
        }))
        .await;
    assert_eq!(beat.status(), StatusCode::NO_CONTENT);

    let anonymous = expect_json(app.get_anonymous("/status").await, StatusCode::OK).await;
    let authorized = expect_json(app.get("/status").await, StatusCode::OK).await;

    assert_eq!(anonymous["total_shards"], 2);
    let public = &anonymous["shards"][0];
    assert_eq!(public["shard_id"], 0);
    assert_eq!(public["guild_count"], 3);
    assert_eq!(public["latency"], 0.2);
    assert!(public["last_beat"].is_string());
    assert!(
        public.get("extra").is_none_or(|extra| extra.is_null()),
        "anonymous callers must not see extra: {public}"
    );
    assert!(!anonymous.to_string().contains("private"));
    assert_eq!(
        authorized["shards"][0]["extra"],
        json!({"token": "private"})
    );
    // A wrong secret is still refused, even though no secret would do.
    expect_detail(
        app.get_as("/status", "wrong").await,
        StatusCode::FORBIDDEN,
        "Invalid Token",
    )
    .await;
}
