//! Load reports: `events` per shard, `cpu_seconds` and `rss_bytes` per process, the `process`
//! label of `/connect`, the rates `/status` shows, and bad input for each (a 422 that changes
//! nothing).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::ShardsPerProcess;

use crate::helpers::{
    Backend, TestApp, both_stores, expect_json, expect_validation, issue_type, loc, settings,
    spawn_app,
};

both_stores!(
    events_become_a_rate_on_the_store_s_clock,
    a_retried_beat_never_counts_its_events_twice,
    a_counter_that_goes_down_starts_a_new_session_s_baseline,
    each_shard_of_a_group_has_its_own_rate,
    cpu_seconds_become_cores_and_rss_bytes_are_shown_per_process,
    sessions_with_one_process_label_are_one_process,
    the_status_history_holds_a_first_point_from_startup,
    negative_load_figures_are_a_422_that_changes_nothing,
    non_numeric_load_figures_are_a_422_that_changes_nothing,
    bad_load_figures_in_shards_are_a_422_naming_the_entry,
    a_bad_process_label_is_a_422_and_grants_nothing,
    form_beats_carry_load_figures_too,
);

/// A lease of 6 s: a counter's rate spans at least a sixth of it, 1 s (beat.lua, "Load counters").
const LEASE_SECONDS: u64 = 6;
/// A little over that window, so the second report makes a rate.
const PAST_THE_WINDOW: Duration = Duration::from_millis(1200);

async fn app_with(backend: Backend, max_shards: u32, shards_per_process: u32) -> TestApp {
    let mut settings = settings(backend);
    settings.max_seconds = LEASE_SECONDS;
    settings.max_shards = max_shards;
    settings.shards_per_process = ShardsPerProcess::Fixed(shards_per_process);
    spawn_app(settings).await
}

/// `GET /connect?process=<label>`.
async fn connect_as(app: &TestApp, label: &str) -> reqwest::Response {
    let query = serde_urlencoded::to_string([("process", label)]).expect("a query");
    app.get(&format!("/connect?{query}")).await
}

/// `/connect?process=<label>`: the session id.
async fn claim_as(app: &TestApp, label: &str) -> String {
    let body = expect_json(connect_as(app, label).await, StatusCode::OK).await;
    body["session_id"].as_str().expect("session_id").to_owned()
}

async fn beat(app: &TestApp, body: Value) {
    let response = app.beat_json(&body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{body}");
}

fn shard(status: &Value, shard_id: u64) -> &Value {
    status["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .find(|shard| shard["shard_id"] == shard_id)
        .unwrap_or_else(|| panic!("shard {shard_id} is held: {status}"))
}

fn rate(status: &Value, shard_id: u64) -> Option<f64> {
    shard(status, shard_id)["events_per_second"].as_f64()
}

/// Asserts that `rate` is `counted` events over a time between `shortest` and `longest`.
fn assert_rate_within(rate: Option<f64>, counted: f64, shortest: Duration, longest: Duration) {
    let rate = rate.expect("a rate after two reports");
    let (low, high) = (
        counted / longest.as_secs_f64() - 0.001,
        counted / shortest.as_secs_f64() + 0.001,
    );
    assert!(
        (low..=high).contains(&rate),
        "{rate} events/s is not {counted} events over {shortest:?} to {longest:?}"
    );
}

async fn events_become_a_rate_on_the_store_s_clock(backend: Backend) {
    let app = app_with(backend, 1, 1).await;
    let session = claim_as(&app, "bot-a:1").await;

    let started = Instant::now();
    beat(&app, json!({"session_id": session, "events": 100})).await;
    let status = app.status().await;
    assert_eq!(rate(&status, 0), None, "one report makes no rate yet");
    assert_eq!(shard(&status, 0)["process"], "bot-a:1");

    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(&app, json!({"session_id": session, "events": 400})).await;
    let second_answered = started.elapsed();

    // The store took both counters somewhere inside the two requests' round trips.
    assert_rate_within(
        rate(&app.status().await, 0),
        300.0,
        PAST_THE_WINDOW,
        second_answered,
    );
}

async fn a_retried_beat_never_counts_its_events_twice(backend: Backend) {
    let app = app_with(backend, 1, 1).await;
    let session = claim_as(&app, "bot-a:1").await;
    beat(&app, json!({"session_id": session, "events": 0})).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(&app, json!({"session_id": session, "events": 600})).await;
    let measured = rate(&app.status().await, 0).expect("a rate");

    // The same beat again, as a client retrying an unacknowledged one sends it.
    beat(&app, json!({"session_id": session, "events": 600})).await;
    beat(&app, json!({"session_id": session, "events": 600})).await;

    assert_eq!(rate(&app.status().await, 0), Some(measured));
}

async fn a_counter_that_goes_down_starts_a_new_session_s_baseline(backend: Backend) {
    let app = app_with(backend, 1, 1).await;
    let session = claim_as(&app, "bot-a:1").await;
    beat(&app, json!({"session_id": session, "events": 5000})).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(&app, json!({"session_id": session, "events": 5600})).await;
    let before = rate(&app.status().await, 0).expect("a rate");

    // A new Discord session counts from 0 again: the rate stays, the baseline restarts.
    tokio::time::sleep(PAST_THE_WINDOW).await;
    let restarted = Instant::now();
    beat(&app, json!({"session_id": session, "events": 20})).await;
    assert_eq!(rate(&app.status().await, 0), Some(before));
    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(&app, json!({"session_id": session, "events": 320})).await;

    assert_rate_within(
        rate(&app.status().await, 0),
        300.0,
        PAST_THE_WINDOW,
        restarted.elapsed(),
    );
}

async fn each_shard_of_a_group_has_its_own_rate(backend: Backend) {
    let app = app_with(backend, 4, 2).await;
    let first = claim_as(&app, "bot-a:1").await;
    let second = claim_as(&app, "bot-b:2").await;
    let report = |session: &str, ids: [u64; 2], counts: [u64; 2]| {
        json!({
            "session_id": session,
            "events": counts[0],
            "shards": [
                {"shard_id": ids[0], "events": counts[0]},
                {"shard_id": ids[1], "events": counts[1]},
            ],
        })
    };
    let started = Instant::now();
    beat(&app, report(&first, [0, 1], [0, 0])).await;
    beat(&app, report(&second, [2, 3], [0, 0])).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(&app, report(&first, [0, 1], [400, 40])).await;
    beat(&app, report(&second, [2, 3], [0, 4])).await;
    let longest = started.elapsed();

    let status = app.status().await;
    for (shard_id, counted) in [(0, 400.0), (1, 40.0), (2, 0.0), (3, 4.0)] {
        assert_rate_within(rate(&status, shard_id), counted, PAST_THE_WINDOW, longest);
    }
    let processes = status["processes"].as_array().expect("processes");
    assert_eq!(processes.len(), 2, "{status}");
    assert_eq!(processes[0]["process"], "bot-a:1");
    assert_eq!(processes[0]["shard_ids"], json!([0, 1]));
    let busiest = processes[0]["events_per_second"].as_f64().unwrap();
    assert!(
        (busiest - rate(&status, 0).unwrap() - rate(&status, 1).unwrap()).abs() < 0.01,
        "a process carries its shards' events: {status}"
    );
    assert_eq!(processes[1]["shard_ids"], json!([2, 3]));
}

async fn cpu_seconds_become_cores_and_rss_bytes_are_shown_per_process(backend: Backend) {
    let app = app_with(backend, 1, 1).await;
    let session = claim_as(&app, "bot-a:1").await;
    let started = Instant::now();
    beat(
        &app,
        json!({"session_id": session, "cpu_seconds": 10.0, "rss_bytes": 1000}),
    )
    .await;
    let process = &app.status().await["processes"][0];
    assert_eq!(process["cpu"], Value::Null, "one report makes no rate yet");
    assert_eq!(process["rss_bytes"], 1000);

    tokio::time::sleep(PAST_THE_WINDOW).await;
    beat(
        &app,
        json!({"session_id": session, "cpu_seconds": 10.6, "rss_bytes": 2048}),
    )
    .await;

    let status = app.status().await;
    let process = &status["processes"][0];
    assert_eq!(process["process"], "bot-a:1");
    assert_eq!(process["shard_ids"], json!([0]));
    assert_eq!(process["rss_bytes"], 2048);
    assert_rate_within(
        process["cpu"].as_f64(),
        0.6,
        PAST_THE_WINDOW,
        started.elapsed(),
    );
    assert_eq!(
        process["events_per_second"],
        Value::Null,
        "no shard reported events"
    );
}

async fn sessions_with_one_process_label_are_one_process(backend: Backend) {
    let app = app_with(backend, 3, 1).await;
    let first = claim_as(&app, "bot-a:1").await;
    let second = claim_as(&app, "bot-a:1").await;
    let unlabelled = app.claim().await;
    beat(&app, json!({"session_id": first, "rss_bytes": 500})).await;
    beat(&app, json!({"session_id": second, "rss_bytes": 700})).await;
    beat(
        &app,
        json!({"session_id": unlabelled.session_id, "rss_bytes": 9}),
    )
    .await;

    let status = app.status().await;

    assert_eq!(
        status["processes"],
        json!([
            {"process": "bot-a:1", "generation": 1, "shard_ids": [0, 1], "events_per_second": null,
                "cpu": null, "rss_bytes": 700},
            {"process": null, "generation": 1, "shard_ids": [2], "events_per_second": null,
                "cpu": null, "rss_bytes": 9},
        ]),
        "one process's memory is counted once (its sessions report the same)"
    );
    assert_eq!(shard(&status, 2)["process"], Value::Null);
}

async fn the_status_history_holds_a_first_point_from_startup(backend: Backend) {
    let app = app_with(backend, 2, 1).await;

    // The replica samples as it starts, then every 30 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    let history = loop {
        let history = app.status().await["history"].clone();
        if history.as_array().is_some_and(|points| !points.is_empty()) || Instant::now() > deadline
        {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    let point = &history[0];
    assert_eq!(point["held"], 0);
    let idle = point["events_per_second"].as_f64().expect("a number");
    assert!(idle == 0.0 && idle.is_sign_positive(), "{point}");
    assert!(point["at"].is_string(), "{point}");
}

/// A session that reported known load figures; returns it.
async fn app_with_reported_load(backend: Backend) -> (TestApp, String) {
    let app = app_with(backend, 2, 2).await;
    let session = claim_as(&app, "bot-a:1").await;
    beat(
        &app,
        json!({"session_id": session, "guild_count": 1, "events": 10, "cpu_seconds": 1.5,
            "rss_bytes": 1000}),
    )
    .await;
    (app, session)
}

/// What `/status` says of the process and shard 0, minus the beat time.
async fn load_reported(app: &TestApp) -> Value {
    let mut status = app.status().await;
    let mut shard = shard(&status, 0).clone();
    shard.as_object_mut().unwrap().remove("last_beat");
    json!({"shard": shard, "processes": status["processes"].take()})
}

async fn assert_unchanged(app: &TestApp, before: &Value) {
    assert_eq!(
        &load_reported(app).await,
        before,
        "a refused beat changes nothing"
    );
}

async fn negative_load_figures_are_a_422_that_changes_nothing(backend: Backend) {
    let (app, session) = app_with_reported_load(backend).await;
    let before = load_reported(&app).await;

    for (field, value) in [
        ("events", json!(-1)),
        ("cpu_seconds", json!(-0.5)),
        ("rss_bytes", json!(-4096)),
    ] {
        let json = app
            .beat_json(&json!({"session_id": session, "guild_count": 9, field: value}))
            .await;
        let form = app
            .beat_form(&[
                ("session_id", session.as_str()),
                ("guild_count", "9"),
                (field, &value.to_string()),
            ])
            .await;
        for response in [json, form] {
            let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(
                issue_type(&body, &["body", field]),
                Some("value_error.number.not_ge"),
                "{body}"
            );
        }
    }
    assert_unchanged(&app, &before).await;
}

async fn non_numeric_load_figures_are_a_422_that_changes_nothing(backend: Backend) {
    let (app, session) = app_with_reported_load(backend).await;
    let before = load_reported(&app).await;

    let cases = [
        ("events", json!("many"), "type_error.integer"),
        ("events", json!(2.5), "type_error.integer"),
        ("events", json!([3]), "type_error.integer"),
        ("rss_bytes", json!("lots"), "type_error.integer"),
        ("rss_bytes", json!(1.5), "type_error.integer"),
        ("cpu_seconds", json!("busy"), "type_error.float"),
        ("cpu_seconds", json!({"user": 1}), "type_error.float"),
        ("cpu_seconds", json!("inf"), "type_error.float"),
    ];
    for (field, value, kind) in cases {
        let response = app
            .beat_json(&json!({"session_id": session, "guild_count": 9, field: value}))
            .await;
        let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            issue_type(&body, &["body", field]),
            Some(kind),
            "{field}: {value}: {body}"
        );
    }
    let form = app
        .beat_form(&[
            ("session_id", session.as_str()),
            ("events", "x"),
            ("cpu_seconds", "y"),
            ("rss_bytes", "z"),
        ])
        .await;
    let mut locs = expect_validation(form).await;
    locs.sort_by_key(|loc| loc[1].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        locs,
        vec![
            loc(&["body", "cpu_seconds"]),
            loc(&["body", "events"]),
            loc(&["body", "rss_bytes"]),
        ],
        "every bad field at once"
    );
    assert_unchanged(&app, &before).await;
}

async fn bad_load_figures_in_shards_are_a_422_naming_the_entry(backend: Backend) {
    let (app, session) = app_with_reported_load(backend).await;
    let before = load_reported(&app).await;

    let response = app
        .beat_json(&json!({
            "session_id": session,
            "guild_count": 9,
            "shards": [{"shard_id": 0, "events": 12}, {"shard_id": 1, "events": -3}],
        }))
        .await;
    let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let issue = &body["detail"][0];
    assert_eq!(
        issue["loc"],
        json!(["body", "shards", 1, "events"]),
        "{body}"
    );
    assert_eq!(issue["type"], "value_error.number.not_ge");

    let form = app
        .beat_form(&[
            ("session_id", session.as_str()),
            ("shards", r#"[{"shard_id": 1, "events": "lots"}]"#),
        ])
        .await;
    let body = expect_json(form, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "shards", 0, "events"])
    );
    assert_unchanged(&app, &before).await;
}

async fn a_bad_process_label_is_a_422_and_grants_nothing(backend: Backend) {
    let app = app_with(backend, 2, 1).await;
    let longest = "p".repeat(128);

    for (label, kind) in [
        ("p".repeat(129), "value_error.any_str.max_length"),
        (String::new(), "value_error.any_str.min_length"),
        ("bot\n1".to_owned(), "value_error.str.printable"),
        ("bot\u{7f}".to_owned(), "value_error.str.printable"),
    ] {
        let body = expect_json(
            connect_as(&app, &label).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            issue_type(&body, &["query", "process"]),
            Some(kind),
            "{label:?}: {body}"
        );
    }
    assert_eq!(app.status().await["shards"], json!([]), "nothing granted");

    // 128 printable characters, spaces and non-ASCII letters included, are a label.
    claim_as(&app, &longest).await;
    claim_as(&app, "wörker 2:17").await;
    let status = app.status().await;
    assert_eq!(shard(&status, 0)["process"], longest.as_str());
    assert_eq!(shard(&status, 1)["process"], "wörker 2:17");
}

async fn form_beats_carry_load_figures_too(backend: Backend) {
    let app = app_with(backend, 2, 2).await;
    let session = claim_as(&app, "bot-a:1").await;
    let form = |events: &'static str, cpu: &'static str, shards: &'static str| {
        vec![
            ("session_id", session.clone()),
            ("events", events.to_owned()),
            ("cpu_seconds", cpu.to_owned()),
            ("rss_bytes", " 4096 ".to_owned()),
            ("shards", shards.to_owned()),
        ]
    };
    let send = |fields: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let response = app
                .post_form(
                    "/beat",
                    &fields
                        .iter()
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect::<Vec<_>>(),
                )
                .await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
    };
    let started = Instant::now();
    send(form("0", "2", r#"[{"shard_id": 1, "events": 0}]"#)).await;
    tokio::time::sleep(PAST_THE_WINDOW).await;
    send(form("300", "2.3", r#"[{"shard_id": 1, "events": 30}]"#)).await;

    let status = app.status().await;
    let longest = started.elapsed();
    assert_rate_within(rate(&status, 0), 300.0, PAST_THE_WINDOW, longest);
    assert_rate_within(rate(&status, 1), 30.0, PAST_THE_WINDOW, longest);
    let process = &status["processes"][0];
    assert_eq!(process["rss_bytes"], 4096);
    assert_rate_within(process["cpu"].as_f64(), 0.3, PAST_THE_WINDOW, longest);
}

#[tokio::test]
async fn metrics_show_the_load_as_histograms_without_a_series_per_shard_or_process() {
    let app = app_with(Backend::Redis, 3, 1).await;
    let sessions = [
        claim_as(&app, "bot-a:1").await,
        claim_as(&app, "bot-a:1").await,
        claim_as(&app, "bot-b:2").await,
    ];
    let report = |session: &str, events: u64, cpu_seconds: f64, rss_bytes: u64| {
        json!({"session_id": session, "events": events, "cpu_seconds": cpu_seconds,
            "rss_bytes": rss_bytes})
    };
    let mebibytes = 1024 * 1024;
    for session in &sessions {
        beat(&app, report(session, 0, 0.0, 0)).await;
    }
    tokio::time::sleep(PAST_THE_WINDOW).await;
    // bot-a: two shards, 90 MiB; bot-b: one shard, 300 MiB.
    beat(&app, report(&sessions[0], 600, 1.0, 90 * mebibytes)).await;
    beat(&app, report(&sessions[1], 6, 1.0, 90 * mebibytes)).await;
    beat(&app, report(&sessions[2], 60, 0.1, 300 * mebibytes)).await;

    let text = crate::operations::metrics_text(&app).await;
    let sample = |name: &str, labels: &[(&str, &str)]| {
        crate::operations::sample(&text, name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} in:\n{text}"))
    };

    let status = app.status().await;
    let total: f64 = (0..3).filter_map(|id| rate(&status, id)).sum();
    assert!((sample("shardman_events_per_second", &[]) - total).abs() < 0.01);
    assert_eq!(sample("shardman_shard_events_per_second_count", &[]), 3.0);
    // 600, 6 and 60 events over 1.2 s or a little more: one shard per decade.
    for (le, shards) in [("10", 1.0), ("100", 2.0), ("1000", 3.0)] {
        assert_eq!(
            sample("shardman_shard_events_per_second_bucket", &[("le", le)]),
            shards,
            "le {le}"
        );
    }
    // Two processes: bot-a's two sessions are one.
    assert_eq!(sample("shardman_process_cpu_cores_count", &[]), 2.0);
    assert_eq!(
        sample("shardman_process_cpu_cores_bucket", &[("le", "0.1")]),
        1.0
    );
    assert_eq!(
        sample("shardman_process_resident_memory_bytes_count", &[]),
        2.0
    );
    assert_eq!(
        sample(
            "shardman_process_resident_memory_bytes_bucket",
            &[("le", "134217728")]
        ),
        1.0
    );
    assert!(
        !text.contains("process=") && !text.contains("shard_id="),
        "no per-process or per-shard series"
    );
}
