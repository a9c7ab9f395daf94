//! Property tests of request parsing and session-id decoding: whatever arrives, the service answers
//! with a deliberate status (never 500, never a panic) and a `{"detail": ...}` body.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, settings, spawn_app};

const CASES: u32 = 96;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Checks one answer: a deliberate status, and a JSON `detail` when it is an error.
async fn deliberate(response: reqwest::Response) -> Result<(), TestCaseError> {
    let status = response.status();
    prop_assert!(
        status != StatusCode::INTERNAL_SERVER_ERROR && status.as_u16() < 600,
        "status {status}"
    );
    if !status.is_success() {
        let body: Value = response
            .json()
            .await
            .map_err(|error| TestCaseError::fail(format!("{status}: body is not JSON: {error}")))?;
        prop_assert!(body.get("detail").is_some(), "{status}: {body}");
    }
    Ok(())
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("application/json"),
        Just("application/x-www-form-urlencoded"),
        Just("text/plain"),
        Just("application/json; charset=utf-8"),
        Just(""),
    ]
}

/// Session ids as a client might garble them: any text, base64-ish, hex, huge.
fn session_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_.=-]{0,200}",
        "[0-9a-f]{0,64}",
        "[A-Za-z0-9+/_-]{40,120}\\.[A-Za-z0-9+/_-]{0,64}",
        proptest::collection::vec(any::<char>(), 0..2000)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|number| serde_json::Number::from_f64(number)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn run(backend: Backend, test: impl Fn(&tokio::runtime::Runtime, &TestApp, &mut TestRunner)) {
    let runtime = runtime();
    let app = runtime.block_on(spawn_app(settings(backend)));
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    test(&runtime, &app, &mut runner);
}

fn arbitrary_bodies_never_break_beat(backend: Backend) {
    run(backend, |runtime, app, runner| {
        runner
            .run(
                &(
                    proptest::collection::vec(any::<u8>(), 0..512),
                    content_type(),
                ),
                |(body, kind)| {
                    runtime.block_on(async {
                        let mut request = app.request(Method::POST, "/beat").body(body);
                        if !kind.is_empty() {
                            request = request.header("Content-Type", kind);
                        }
                        deliberate(request.send().await.expect("request")).await
                    })
                },
            )
            .expect("no input makes /beat fail");
    });
}

fn garbled_session_ids_are_not_found_or_invalid(backend: Backend) {
    run(backend, |runtime, app, runner| {
        runner
            .run(&(session_id(), 0..3u8), |(session, route)| {
                runtime.block_on(async {
                    let request = match route {
                        0 => app
                            .request(Method::POST, "/beat")
                            .form(&[("session_id", session.as_str()), ("guild_count", "1")]),
                        1 => app
                            .request(Method::POST, "/disconnect")
                            .json(&serde_json::json!({ "session_id": session })),
                        _ => app.request(
                            Method::GET,
                            &format!(
                                "/disconnect?{}",
                                serde_urlencoded::to_string([("session_id", session.as_str())])
                                    .expect("encodable")
                            ),
                        ),
                    };
                    let response = request.send().await.expect("request");
                    let status = response.status();
                    prop_assert!(
                        [
                            StatusCode::NOT_FOUND,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            StatusCode::PAYLOAD_TOO_LARGE
                        ]
                        .contains(&status),
                        "a made-up session id is never accepted: {status}"
                    );
                    deliberate(response).await
                })
            })
            .expect("no session id makes the service fail");
    });
}

fn arbitrary_json_fields_never_break_beat(backend: Backend) {
    run(backend, |runtime, app, runner| {
        let claim = runtime.block_on(app.claim());
        runner
            .run(
                &(json_value(), json_value(), json_value()),
                |(guild_count, latency, extra)| {
                    runtime.block_on(async {
                        let body = serde_json::json!({
                            "session_id": claim.session_id,
                            "guild_count": guild_count,
                            "latency": latency,
                            "extra": extra,
                        });
                        deliberate(app.beat_json(&body).await).await
                    })
                },
            )
            .expect("no field value makes /beat fail");
    });
}

#[test]
fn arbitrary_bodies_never_break_beat_on_redis() {
    arbitrary_bodies_never_break_beat(Backend::Redis);
}

#[test]
fn arbitrary_bodies_never_break_beat_in_process() {
    arbitrary_bodies_never_break_beat(Backend::Memory);
}

#[test]
fn garbled_session_ids_are_not_found_or_invalid_on_redis() {
    garbled_session_ids_are_not_found_or_invalid(Backend::Redis);
}

#[test]
fn garbled_session_ids_are_not_found_or_invalid_in_process() {
    garbled_session_ids_are_not_found_or_invalid(Backend::Memory);
}

#[test]
fn arbitrary_json_fields_never_break_beat_on_redis() {
    arbitrary_json_fields_never_break_beat(Backend::Redis);
}

#[test]
fn arbitrary_json_fields_never_break_beat_in_process() {
    arbitrary_json_fields_never_break_beat(Backend::Memory);
}
