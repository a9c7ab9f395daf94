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
    concurrent_beats_of_many_sessions_each_get_their_own_answer,
    resume_data_sent_once_outlives_later_beats_without_it,
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

/// Beats sent at once travel to the store together (group commit); each still gets the answer of
/// its own session: its own shard and fence, a 404 for a released or unknown session, and the
/// fields it sent stored under its own shard.
async fn concurrent_beats_of_many_sessions_each_get_their_own_answer(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 48;
    let app = spawn_app(settings).await;
    let mut claims = Vec::new();
    for _ in 0..48 {
        claims.push(app.claim().await);
    }
    let released: Vec<&crate::helpers::Claim> = claims.iter().step_by(5).collect();
    for claim in &released {
        assert_eq!(
            app.disconnect(&claim.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    for round in 0..3u64 {
        let beats = claims.iter().map(|claim| {
            let app = &app;
            async move {
                let response = app
                    .client
                    .post(format!("{}/beat", app.address))
                    .header("Authorization", crate::helpers::SECRET)
                    .header("Prefer", "return=representation")
                    .json(&json!({
                        "session_id": claim.session_id,
                        "guild_count": claim.shard_id * 10 + round,
                    }))
                    .send()
                    .await
                    .expect("request");
                (claim, response)
            }
        });
        let unknown = app.beat("00000000000000000000000000000000");
        let (answers, unknown) =
            futures_util::future::join(futures_util::future::join_all(beats), unknown).await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        for (claim, response) in answers {
            if released.iter().any(|gone| gone.shard_id == claim.shard_id) {
                expect_detail(response, StatusCode::NOT_FOUND, "Session Not Found").await;
                continue;
            }
            let body = expect_json(response, StatusCode::OK).await;
            assert_eq!(body["shard_id"], claim.shard_id, "{body}");
            assert_eq!(body["fence"], claim.fence, "{body}");
            assert_eq!(body["state"], "active");
        }
    }
    let status = app.status().await;
    let shards = status["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 48 - released.len());
    for shard in shards {
        let id = shard["shard_id"].as_u64().unwrap();
        assert_eq!(shard["guild_count"], id * 10 + 2, "{shard}");
    }
}

/// A beat without `resume` keeps the resume data an earlier beat of the session sent alive (it
/// would lapse a lease plus the resume window after it was sent): the next holder still gets it.
async fn resume_data_sent_once_outlives_later_beats_without_it(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 1;
    settings.resume_window_seconds = 1;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    let resume =
        json!({"session_id": "discord-1", "sequence": 42, "resume_gateway_url": "wss://g"});
    let with_resume = app
        .beat_json(&json!({"session_id": claim.session_id, "resume": resume}))
        .await;
    assert_eq!(with_resume.status(), StatusCode::NO_CONTENT);
    // 3 s of beats without resume data: past the 2 s it was first stored for.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            app.beat(&claim.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(
        app.disconnect(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let next = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(next["resume"], resume);
}
