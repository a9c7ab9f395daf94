//! Zero-downtime resharding: generations, `Prefer: return=representation`, `/reshard`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shardman::config::Settings;

use crate::helpers::{
    Backend, TestApp, both_stores, expect_json, expect_validation, settings, spawn_app,
    spawn_replicas,
};

/// One simulated bot process: what `/connect` gave it.
struct Process {
    session_id: String,
    shard_id: u64,
    generation: u64,
    state: String,
}

async fn start_process(app: &TestApp) -> Process {
    let body = expect_json(app.connect().await, StatusCode::OK).await;
    Process {
        session_id: body["session_id"].as_str().expect("session_id").into(),
        shard_id: body["shard_id"].as_u64().expect("shard_id"),
        generation: body["generation"].as_u64().expect("generation"),
        state: body["state"].as_str().expect("state").into(),
    }
}

async fn beat_with_representation(app: &TestApp, session_id: &str) -> reqwest::Response {
    app.request(Method::POST, "/beat")
        .header("Prefer", "return=representation")
        .form(&[("session_id", session_id)])
        .send()
        .await
        .expect("request")
}

async fn reshard(app: &TestApp, max_shards: u64) -> Value {
    expect_json(
        app.post_json("/reshard", &json!({ "max_shards": max_shards }))
            .await,
        StatusCode::ACCEPTED,
    )
    .await
}

async fn a_reshard_from_four_to_six_shards_switches_only_when_the_new_generation_is_complete(
    backend: Backend,
) {
    let settings = Settings {
        max_shards: 4,
        ..settings(backend)
    };
    // Three replicas on Redis; the in-process store serves one.
    let replicas = match backend {
        Backend::Redis => spawn_replicas(3, settings).await,
        Backend::Memory => vec![spawn_app(settings).await],
    };
    let app = |index: usize| &replicas[index % replicas.len()];

    let mut old = Vec::new();
    for index in 0..4 {
        old.push(start_process(app(index)).await);
    }
    assert!(
        old.iter()
            .all(|process| process.generation == 1 && process.state == "active")
    );

    let plan = reshard(app(0), 6).await;
    assert_eq!(plan["started"], true);
    assert_eq!(plan["from_max_shards"], 4);
    assert_eq!(plan["max_shards"], 6);
    let new_generation = plan["generation"].as_u64().expect("generation");
    assert!(new_generation > 1);

    let mut new = Vec::new();
    for index in 0..6 {
        new.push(start_process(app(index)).await);
    }
    let mut new_ids: Vec<u64> = new.iter().map(|process| process.shard_id).collect();
    new_ids.sort_unstable();
    assert_eq!(new_ids, (0..6).collect::<Vec<_>>(), "each new id once");
    assert!(
        new.iter()
            .all(|process| process.generation == new_generation && process.state == "standby")
    );
    assert_eq!(app(1).connect().await.status(), StatusCode::UNAUTHORIZED);

    // All but one of the new generation beat: the old one keeps running untouched.
    for (index, process) in new.iter().take(5).enumerate() {
        let body = expect_json(
            beat_with_representation(app(index), &process.session_id).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body["state"], "standby");
        assert_eq!(body["max_shards"], 6);
    }
    for (index, process) in old.iter().enumerate() {
        assert_eq!(
            app(index).beat(&process.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let status = app(2).status().await;
    assert_eq!(status["total_shards"], 4, "still the old count");
    assert_eq!(status["generations"]["pending"]["ready"], 5);
    assert_eq!(status["generations"]["pending"]["max_shards"], 6);

    // The last one completes the generation in that very beat.
    let last = &new[5];
    let body = expect_json(
        beat_with_representation(app(5), &last.session_id).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["state"], "active");
    assert_eq!(body["generation"], new_generation);

    for (index, process) in old.iter().enumerate() {
        let response = app(index).beat(&process.session_id).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "old generation must stop"
        );
        assert_eq!(
            response.json::<Value>().await.expect("json"),
            json!({"detail": "No Shards Available"})
        );
    }
    for (index, process) in new.iter().enumerate() {
        let body = expect_json(
            beat_with_representation(app(index), &process.session_id).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(body["state"], "active");
        assert_eq!(body["shard_id"], process.shard_id);
    }
    let status = app(0).status().await;
    assert_eq!(status["total_shards"], 6);
    assert_eq!(status["generation"], new_generation);
    assert_eq!(status["pending"], Value::Null);
    assert_eq!(status["shards"].as_array().expect("shards").len(), 6);
}

async fn a_beat_without_prefer_keeps_the_original_empty_204(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let process = start_process(&app).await;
    let response = app.beat(&process.session_id).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.expect("body").is_empty());
    let body = expect_json(
        beat_with_representation(&app, &process.session_id).await,
        StatusCode::OK,
    )
    .await;
    let fence = body["fence"].as_u64().expect("fence");
    assert!(fence >= 1);
    assert_eq!(
        body,
        json!({"shard_id": 0, "max_shards": 1, "generation": 1, "state": "active", "fence": fence, "hand_over": false, "reconnect": []})
    );
}

async fn a_second_reshard_replaces_the_pending_generation_and_retires_its_sessions(
    backend: Backend,
) {
    let settings = Settings {
        max_shards: 2,
        ..settings(backend)
    };
    let prefix = settings.key_prefix.clone();
    let app = spawn_app(settings).await;
    let active = start_process(&app).await;
    reshard(&app, 3).await;
    let first_pending = start_process(&app).await;
    assert_eq!(first_pending.state, "standby");

    let plan = reshard(&app, 5).await;
    assert_eq!(plan["max_shards"], 5);
    if let Backend::Redis = backend {
        // The replaced generation's index does not stay in Redis for good.
        let key = format!("{{{prefix}}}:g:{}:deadlines", first_pending.generation);
        let ttl = crate::support::redis::shared_redis().query(&["PTTL", &key]);
        assert!(
            matches!(ttl, redis::Value::Int(ms) if ms > 0),
            "{key}: {ttl:?}"
        );
    }
    assert_eq!(
        app.beat(&first_pending.session_id).await.status(),
        StatusCode::UNAUTHORIZED,
        "the replaced pending generation is retired"
    );
    assert_eq!(
        app.beat(&active.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let next = start_process(&app).await;
    assert_eq!(
        next.generation,
        plan["generation"].as_u64().expect("generation")
    );
    assert_eq!(next.shard_id, 0);

    // Asking for the count already planned changes nothing.
    let again = reshard(&app, 5).await;
    assert_eq!(again["started"], false);
    assert_eq!(again["generation"], plan["generation"]);
}

async fn a_reshard_request_is_validated(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    for body in [
        json!({}),
        json!({"max_shards": 0}),
        json!({"max_shards": 70000}),
        json!({"max_shards": "x"}),
    ] {
        let issues = expect_validation(app.post_json("/reshard", &body).await).await;
        assert_eq!(issues[0][1], "max_shards", "for {body}");
    }
    let anonymous = app
        .anonymous(Method::POST, "/reshard")
        .json(&json!({"max_shards": 2}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.status().await["pending"],
        Value::Null,
        "nothing changed"
    );
}

/// Bots that beat from their claim on (the client packages) say `ready: false` until their shards
/// are READY: the old generation must keep running until the new one is really connected.
async fn a_reshard_waits_for_new_holders_that_beat_before_they_are_ready(backend: Backend) {
    let app = spawn_app(Settings {
        max_shards: 2,
        ..settings(backend)
    })
    .await;
    let old = [start_process(&app).await, start_process(&app).await];
    reshard(&app, 3).await;
    let new = [
        start_process(&app).await,
        start_process(&app).await,
        start_process(&app).await,
    ];

    for process in &new {
        let waiting = json!({"session_id": process.session_id, "ready": false});
        assert_eq!(
            app.beat_json(&waiting).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let status = app.status().await;
    assert_eq!(
        status["total_shards"], 2,
        "not switched while none is ready"
    );
    assert_eq!(status["generations"]["pending"]["ready"], 0);
    for process in &old {
        assert_eq!(
            app.beat(&process.session_id).await.status(),
            StatusCode::NO_CONTENT,
            "the old generation keeps its shards"
        );
    }

    // Ready, as a JSON boolean or as form text; the last one switches the plan.
    let first = json!({"session_id": new[0].session_id, "ready": true});
    assert_eq!(app.beat_json(&first).await.status(), StatusCode::NO_CONTENT);
    let second = app
        .request(Method::POST, "/beat")
        .form(&[
            ("session_id", new[1].session_id.as_str()),
            ("ready", "true"),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(second.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.status().await["total_shards"], 2);
    let last = json!({"session_id": new[2].session_id, "ready": true});
    assert_eq!(app.beat_json(&last).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.status().await["total_shards"], 3);
    assert_eq!(
        app.beat(&old[0].session_id).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn a_beat_with_a_ready_flag_that_is_not_a_boolean_is_refused(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let process = start_process(&app).await;
    let locations = expect_validation(
        app.beat_json(&json!({"session_id": process.session_id, "ready": "maybe"}))
            .await,
    )
    .await;
    assert_eq!(locations, vec![vec![json!("body"), json!("ready")]]);
}

both_stores!(
    a_reshard_waits_for_new_holders_that_beat_before_they_are_ready,
    a_beat_with_a_ready_flag_that_is_not_a_boolean_is_refused,
    a_reshard_from_four_to_six_shards_switches_only_when_the_new_generation_is_complete,
    a_beat_without_prefer_keeps_the_original_empty_204,
    a_second_reshard_replaces_the_pending_generation_and_retires_its_sessions,
    a_reshard_request_is_validated,
);
