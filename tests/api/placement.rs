//! Placement by load (`SHARDS_PER_PROCESS=auto`): the placement job marks shards of the busiest
//! process to move to a process that waits, their holder's beats say `hand_over`, and once the
//! holder hands them over they go, with their resume data, to that process ahead of any queue.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shardman::config::{Settings, ShardsPerProcess};

use crate::helpers::{
    Backend, TestApp, both_stores, expect_detail, expect_json, expect_validation, loc, settings,
    spawn_app,
};

both_stores!(
    a_process_that_waits_takes_shards_from_the_busiest_by_resume,
    a_drained_process_hands_every_shard_over_by_resume_and_gets_none_until_undone,
    a_drain_refuses_bad_labels_unknown_processes_and_fixed_groups,
    fixed_groups_never_move,
    a_grant_says_whether_shards_are_placed_by_load_or_in_groups,
);

fn auto_settings(backend: Backend) -> Settings {
    let mut settings = settings(backend);
    settings.max_shards = 4;
    settings.shards_per_process = ShardsPerProcess::Auto;
    // A short lease: rates are measured over a sixth of it (at least a second).
    settings.max_seconds = 6;
    settings.placement_interval_seconds = 1;
    settings.move_settle_seconds = 0;
    settings
}

async fn claim_as(app: &TestApp, process: &str) -> Value {
    expect_json(
        app.get(&format!("/connect?process={process}")).await,
        StatusCode::OK,
    )
    .await
}

fn resume_data(sequence: u64) -> Value {
    json!({"session_id": "discord-session", "sequence": sequence, "resume_gateway_url": "wss://resume.example"})
}

/// A beat reporting `events` and resume data; answers whether the holder must hand over.
async fn beat(app: &TestApp, session_id: &str, events: u64) -> bool {
    let response = app
        .request(Method::POST, "/beat")
        .header("Prefer", "return=representation")
        .json(&json!({
            "session_id": session_id,
            "events": events,
            "resume": resume_data(events),
        }))
        .send()
        .await
        .expect("beat");
    let body = expect_json(response, StatusCode::OK).await;
    body["hand_over"].as_bool().expect("hand_over")
}

/// Beats every session until `count` of them are told to hand over (or 10 s pass); answers the
/// indexes of those told.
async fn told_to_hand_over(app: &TestApp, sessions: &[String], count: usize) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut told = Vec::new();
        for (index, session) in sessions.iter().enumerate() {
            if beat(app, session, 200).await {
                told.push(index);
            }
        }
        if told.len() == count || tokio::time::Instant::now() > deadline {
            return told;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn a_process_that_waits_takes_shards_from_the_busiest_by_resume(backend: Backend) {
    let app = spawn_app(auto_settings(backend)).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let grant = claim_as(&app, "host-a:1").await;
        sessions.push(grant["session_id"].as_str().expect("session_id").to_owned());
    }
    // Two reports over more than a second: every shard carries 100 events/s.
    for session in &sessions {
        assert!(!beat(&app, session, 0).await);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for session in &sessions {
        assert!(!beat(&app, session, 110).await);
    }

    let waiter = app.with_timeout(Duration::from_secs(60));
    let waiting =
        tokio::spawn(async move { waiter.get("/connect?wait=30&process=host-b:2").await });

    // Placement sees host-b waiting and moves half of host-a's load to it: 2 of the 4 shards.
    let told = told_to_hand_over(&app, &sessions, 2).await;
    assert_eq!(told.len(), 2, "two shards are to hand over: {told:?}");

    // The holder hands one over: its last beat carries the sequence, then it lets go.
    let handed = told[0];
    beat(&app, &sessions[handed], 321).await;
    assert_eq!(
        app.disconnect(&sessions[handed]).await.status(),
        StatusCode::NO_CONTENT
    );
    let moved = expect_json(waiting.await.expect("the waiting claim"), StatusCode::OK).await;
    assert_eq!(moved["shard_id"].as_u64(), Some(handed as u64));
    assert_eq!(moved["resume"], resume_data(321), "{moved}");
    assert_eq!(moved["sleep_duration"].as_f64(), Some(0.0));

    // A claim of anyone else cannot take the second one while it is reserved for host-b.
    let second = told[1];
    beat(&app, &sessions[second], 400).await;
    app.disconnect(&sessions[second]).await;
    assert_eq!(
        app.get("/connect?process=host-c:3").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = claim_as(&app, "host-b:2").await;
    assert_eq!(again["shard_id"].as_u64(), Some(second as u64));
    assert_eq!(again["resume"], resume_data(400));

    let status = app.status().await;
    let host_b: Vec<u64> = status["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter(|process| process["process"] == "host-b:2")
        .flat_map(|process| process["shard_ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|id| id.as_u64())
        .collect();
    assert_eq!(host_b.len(), 2, "{status}");
}

async fn fixed_groups_never_move(backend: Backend) {
    let mut settings = auto_settings(backend);
    settings.shards_per_process = ShardsPerProcess::Fixed(1);
    let app = spawn_app(settings).await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let grant = claim_as(&app, "host-a:1").await;
        sessions.push(grant["session_id"].as_str().expect("session_id").to_owned());
    }
    for session in &sessions {
        beat(&app, session, 0).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let waiter = app.with_timeout(Duration::from_secs(60));
    let waiting = tokio::spawn(async move { waiter.get("/connect?wait=4&process=host-b:2").await });
    for _ in 0..3 {
        for session in &sessions {
            assert!(!beat(&app, session, 500).await, "a fixed group never moves");
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert_eq!(
        waiting.await.expect("the waiting claim").status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn a_grant_says_whether_shards_are_placed_by_load_or_in_groups(backend: Backend) {
    let app = spawn_app(auto_settings(backend)).await;
    assert_eq!(claim_as(&app, "host-a:1").await["placement"], "load");
    let mut settings = auto_settings(backend);
    settings.shards_per_process = ShardsPerProcess::Fixed(2);
    let app = spawn_app(settings).await;
    assert_eq!(claim_as(&app, "host-a:1").await["placement"], "groups");
}

async fn drain(app: &TestApp, process: &str, method: Method) -> reqwest::Response {
    app.request(method, &format!("/processes/{process}/drain"))
        .send()
        .await
        .expect("drain")
}

async fn a_drained_process_hands_every_shard_over_by_resume_and_gets_none_until_undone(
    backend: Backend,
) {
    let app = spawn_app(auto_settings(backend)).await;
    let mut sessions = Vec::new();
    for process in ["host-a:1", "host-a:1", "host-b:2", "host-b:2"] {
        let grant = claim_as(&app, process).await;
        sessions.push(grant["session_id"].as_str().expect("session_id").to_owned());
    }
    for session in &sessions {
        beat(&app, session, 0).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for session in &sessions {
        assert!(!beat(&app, session, 110).await, "balanced: nothing moves");
    }

    let drained = expect_json(
        drain(&app, "host-a:1", Method::POST).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(drained["process"], "host-a:1");
    assert_eq!(drained["draining"], true);
    assert_eq!(drained["shard_ids"], json!([0, 1]), "{drained}");
    assert!(drained["until"].is_string(), "{drained}");
    assert_eq!(app.status().await["draining"], json!(["host-a:1"]));

    // Both of its shards are told to hand over (within MAX_MOVES), host-b's none.
    let told = told_to_hand_over(&app, &sessions, 2).await;
    assert_eq!(told, [0, 1], "host-a's shards hand over");

    // Each goes to host-b with its resume data.
    let mut moved_sessions = Vec::new();
    for (index, sequence) in [(0, 501), (1, 502)] {
        beat(&app, &sessions[index], sequence).await;
        app.disconnect(&sessions[index]).await;
        let moved = claim_as(&app, "host-b:2").await;
        assert_eq!(moved["shard_id"].as_u64(), Some(index as u64), "{moved}");
        assert_eq!(moved["resume"], resume_data(sequence), "{moved}");
        moved_sessions.push(moved["session_id"].as_str().expect("session_id").to_owned());
    }
    let status = app.status().await;
    let labels: Vec<&str> = status["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .filter_map(|shard| shard["process"].as_str())
        .collect();
    assert_eq!(labels, ["host-b:2"; 4], "{status}");

    // A shard free again goes to anyone but the draining process.
    app.disconnect(&moved_sessions[0]).await;
    assert_eq!(
        app.get("/connect?process=host-a:1").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Undone, it may take shards again: the one host-b gave back.
    let undone = expect_json(
        drain(&app, "host-a:1", Method::DELETE).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(undone["draining"], false);
    assert_eq!(undone["shard_ids"], json!([]));
    assert_eq!(app.status().await["draining"], json!([]));
    let back = claim_as(&app, "host-a:1").await;
    assert_eq!(back["shard_id"].as_u64(), Some(0), "{back}");
}

async fn a_drain_refuses_bad_labels_unknown_processes_and_fixed_groups(backend: Backend) {
    let app = spawn_app(auto_settings(backend)).await;
    claim_as(&app, "host-a:1").await;
    let issues = expect_validation(drain(&app, "host%07a", Method::POST).await).await;
    assert_eq!(issues, [loc(&["path", "process"])]);
    expect_detail(
        drain(&app, "host-z:9", Method::POST).await,
        StatusCode::NOT_FOUND,
        "Process Not Found",
    )
    .await;
    let refused = app
        .request_as(Method::POST, "/processes/host-a:1/drain", "wrong")
        .send()
        .await
        .expect("drain");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.status().await["draining"], json!([]));

    let mut fixed = auto_settings(backend);
    fixed.shards_per_process = ShardsPerProcess::Fixed(1);
    let app = spawn_app(fixed).await;
    claim_as(&app, "host-a:1").await;
    expect_detail(
        drain(&app, "host-a:1", Method::POST).await,
        StatusCode::CONFLICT,
        "Needs SHARDS_PER_PROCESS=auto",
    )
    .await;
}
