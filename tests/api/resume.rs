//! Resume handoff: a newcomer to a shard id inherits its previous holder's Discord session.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::Settings;

use crate::helpers::{Backend, TestApp, both_stores, expect_json, settings, spawn_app};

fn resume_data(sequence: u64) -> Value {
    json!({
        "session_id": "discord-session-abc",
        "sequence": sequence,
        "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg",
    })
}

async fn connect(app: &TestApp) -> Value {
    expect_json(app.connect().await, StatusCode::OK).await
}

async fn beat_with_resume(app: &TestApp, session_id: &str, sequence: u64) {
    let response = app
        .beat_json(&json!({ "session_id": session_id, "resume": resume_data(sequence) }))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn a_newcomer_after_a_disconnect_resumes_and_only_once(backend: Backend) {
    let app = spawn_app(Settings {
        max_concurrency: 1,
        ..settings(backend)
    })
    .await;
    let first = connect(&app).await;
    let session_id = first["session_id"].as_str().expect("session_id");
    beat_with_resume(&app, session_id, 41).await;
    beat_with_resume(&app, session_id, 42).await;
    assert_eq!(
        app.disconnect(session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let second = connect(&app).await;
    assert_eq!(second["shard_id"], first["shard_id"]);
    assert_eq!(
        second["resume"],
        resume_data(42),
        "the last sequence reported"
    );
    assert_eq!(second["sleep_duration"], 0.0, "resuming spends no identify");

    let second_id = second["session_id"].as_str().expect("session_id");
    assert_eq!(
        app.disconnect(second_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let third = connect(&app).await;
    assert_eq!(
        third["resume"],
        Value::Null,
        "never handed to two claimants"
    );
    assert!(
        third["sleep_duration"].as_f64().expect("sleep") > 4.0,
        "must identify"
    );
}

async fn a_newcomer_after_an_expiry_resumes(backend: Backend) {
    let app = spawn_app(Settings {
        max_seconds: 1,
        ..settings(backend)
    })
    .await;
    let first = connect(&app).await;
    beat_with_resume(&app, first["session_id"].as_str().expect("session_id"), 7).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = connect(&app).await;
    assert_eq!(second["shard_id"], first["shard_id"]);
    assert_eq!(second["resume"], resume_data(7));
    assert_eq!(second["sleep_duration"], 0.0);
}

async fn resume_data_is_not_handed_across_a_change_of_shard_count(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let first = connect(&app).await;
    let session_id = first["session_id"].as_str().expect("session_id");
    beat_with_resume(&app, session_id, 3).await;
    assert_eq!(
        app.disconnect(session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let plan = app.post_json("/reshard", &json!({"max_shards": 2})).await;
    assert_eq!(plan.status(), StatusCode::ACCEPTED);

    let newcomer = connect(&app).await;
    assert_eq!(newcomer["shard_id"], 0);
    // Nobody held the old generation any more, so the new one replaced it at once.
    assert_eq!(newcomer["state"], "active");
    assert_eq!(newcomer["resume"], Value::Null);
}

async fn resume_data_lapses_after_the_resume_window(backend: Backend) {
    let app = spawn_app(Settings {
        resume_window_seconds: 1,
        ..settings(backend)
    })
    .await;
    let first = connect(&app).await;
    let session_id = first["session_id"].as_str().expect("session_id");
    beat_with_resume(&app, session_id, 3).await;
    assert_eq!(
        app.disconnect(session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(connect(&app).await["resume"], Value::Null);
}

async fn malformed_resume_data_is_refused_with_a_422(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let session_id = connect(&app).await["session_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let response = app
        .beat_json(
            &json!({"session_id": session_id, "resume": {"session_id": "x", "sequence": "nope"}}),
        )
        .await;
    let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let locs: Vec<Value> = body["detail"]
        .as_array()
        .expect("detail")
        .iter()
        .map(|issue| issue["loc"].clone())
        .collect();
    assert!(locs.contains(&json!(["body", "resume", "sequence"])));
    assert!(locs.contains(&json!(["body", "resume", "resume_gateway_url"])));

    // A form sends the object as JSON text.
    let text = resume_data(9).to_string();
    let response = app
        .beat_form(&[
            ("session_id", session_id.as_str()),
            ("resume", text.as_str()),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

both_stores!(
    a_newcomer_after_a_disconnect_resumes_and_only_once,
    a_newcomer_after_an_expiry_resumes,
    resume_data_is_not_handed_across_a_change_of_shard_count,
    resume_data_lapses_after_the_resume_window,
    malformed_resume_data_is_refused_with_a_422,
);
