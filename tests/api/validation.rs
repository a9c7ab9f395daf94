//! Bad input: FastAPI-shaped 422s naming the field, 413 for oversize bodies and `extra`, and in
//! every case nothing changes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    Backend, SECRET, TestApp, both_stores, expect_json, expect_validation, issue_type, loc,
    settings, spawn_app,
};

both_stores!(
    a_beat_without_authorization_is_a_422_naming_the_header,
    a_beat_without_session_id_is_a_422_naming_the_body_field_in_both_encodings,
    an_ill_typed_guild_count_is_a_422_naming_guild_count,
    an_ill_typed_latency_is_a_422_naming_latency,
    a_negative_guild_count_is_a_422,
    an_empty_long_or_unprintable_process_label_in_a_beat_is_a_422,
    every_bad_field_is_reported_at_once,
    malformed_json_is_a_422_in_the_body,
    a_json_body_that_is_not_an_object_is_a_422,
    numeric_text_in_a_form_is_accepted_as_pydantic_did,
    a_body_over_64_kib_is_413_and_changes_nothing,
    a_chunked_body_over_64_kib_is_413,
    an_extra_over_max_extra_bytes_is_413_and_changes_nothing,
);

/// A replica with one claimed shard that has beaten once with known values.
async fn app_with_a_beaten_shard(backend: Backend) -> (TestApp, String) {
    let mut settings = settings(backend);
    settings.max_extra_bytes = 64;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    let first = app
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 1, "latency": 0.5, "extra": "before"}))
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    (app, claim.session_id)
}

/// What `/status` says of shard 0, minus the beat time; must not move on a refused beat.
async fn reported(app: &TestApp) -> Value {
    let mut shard = app.shard_status(0).await.expect("shard 0 is held");
    shard.as_object_mut().unwrap().remove("last_beat");
    shard
}

async fn assert_unchanged(app: &TestApp) {
    assert_eq!(
        reported(app).await,
        json!({"shard_id": 0, "guild_count": 1, "latency": 0.5, "events_per_second": null,
            "process": null, "extra": "before"}),
        "a refused beat changes nothing"
    );
}

async fn a_beat_without_authorization_is_a_422_naming_the_header(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let locs = expect_validation(
        app.post_form_anonymous("/beat", &[("session_id", &session), ("guild_count", "9")])
            .await,
    )
    .await;

    assert_eq!(locs, vec![loc(&["header", "authorization"])]);
    assert_unchanged(&app).await;
}

async fn a_beat_without_session_id_is_a_422_naming_the_body_field_in_both_encodings(
    backend: Backend,
) {
    let (app, _) = app_with_a_beaten_shard(backend).await;

    let form = app.beat_form(&[("guild_count", "9")]).await;
    let body = expect_json(form, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        body,
        json!({"detail": [{"loc": ["body", "session_id"], "msg": "field required", "type": "value_error.missing"}]})
    );
    let json = expect_validation(app.beat_json(&json!({"guild_count": 9})).await).await;
    assert_eq!(json, vec![loc(&["body", "session_id"])]);
    let empty =
        expect_validation(app.post_raw("/beat", "application/json", Vec::new()).await).await;
    assert_eq!(empty, vec![loc(&["body", "session_id"])]);
    assert_unchanged(&app).await;
}

async fn an_ill_typed_guild_count_is_a_422_naming_guild_count(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let form = app
        .beat_form(&[("session_id", &session), ("guild_count", "many")])
        .await;
    let json = app
        .beat_json(&json!({"session_id": session, "guild_count": "many"}))
        .await;
    let fraction = app
        .beat_json(&json!({"session_id": session, "guild_count": 2.5}))
        .await;
    let list = app
        .beat_json(&json!({"session_id": session, "guild_count": [2]}))
        .await;

    for response in [form, json, fraction, list] {
        let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            issue_type(&body, &["body", "guild_count"]),
            Some("type_error.integer"),
            "{body}"
        );
    }
    assert_unchanged(&app).await;
}

async fn an_ill_typed_latency_is_a_422_naming_latency(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let form = app
        .beat_form(&[("session_id", &session), ("latency", "fast")])
        .await;
    let json = app
        .beat_json(&json!({"session_id": session, "latency": {"ms": 3}}))
        .await;
    let infinite = app
        .beat_form(&[("session_id", &session), ("latency", "inf")])
        .await;

    for response in [form, json, infinite] {
        let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            issue_type(&body, &["body", "latency"]),
            Some("type_error.float"),
            "{body}"
        );
    }
    assert_unchanged(&app).await;
}

async fn a_negative_guild_count_is_a_422(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let form = app
        .beat_form(&[("session_id", &session), ("guild_count", "-1")])
        .await;
    let json = app
        .beat_json(&json!({"session_id": session, "guild_count": -5}))
        .await;

    for response in [form, json] {
        let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            issue_type(&body, &["body", "guild_count"]),
            Some("value_error.number.not_ge"),
            "{body}"
        );
    }
    assert_unchanged(&app).await;
}

async fn an_empty_long_or_unprintable_process_label_in_a_beat_is_a_422(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;
    let long = "p".repeat(129);
    for (label, kind) in [
        ("", "value_error.any_str.min_length"),
        (long.as_str(), "value_error.any_str.max_length"),
        ("bot\n1", "value_error.str.printable"),
    ] {
        let form = app
            .beat_form(&[("session_id", &session), ("process", label)])
            .await;
        let json = app
            .beat_json(&json!({"session_id": session, "process": label}))
            .await;
        for response in [form, json] {
            let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(
                issue_type(&body, &["body", "process"]),
                Some(kind),
                "{body}"
            );
        }
    }
    let json = app
        .beat_json(&json!({"session_id": session, "process": 7}))
        .await;
    let body = expect_json(json, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(
        issue_type(&body, &["body", "process"]),
        Some("type_error.str"),
        "{body}"
    );
    assert_unchanged(&app).await;
}

async fn every_bad_field_is_reported_at_once(backend: Backend) {
    let (app, _) = app_with_a_beaten_shard(backend).await;

    let mut locs = expect_validation(
        app.beat_form(&[("guild_count", "x"), ("latency", "y")])
            .await,
    )
    .await;
    locs.sort_by_key(|loc| loc[1].as_str().unwrap_or_default().to_owned());

    assert_eq!(
        locs,
        vec![
            loc(&["body", "guild_count"]),
            loc(&["body", "latency"]),
            loc(&["body", "session_id"])
        ]
    );
    assert_unchanged(&app).await;
}

async fn malformed_json_is_a_422_in_the_body(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let truncated = format!(r#"{{"session_id": "{session}", "guild_count": "#);
    for body in [truncated.as_str(), "{not json}", "{\"session_id\": \"a\",}"] {
        let response = app
            .post_raw("/beat", "application/json", body.as_bytes().to_vec())
            .await;
        let reply = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        let issue = &reply["detail"][0];
        assert_eq!(issue["loc"][0], "body", "{reply}");
        assert_eq!(issue["type"], "value_error.jsondecode", "{reply}");
        assert!(issue["msg"].is_string());
    }
    assert_unchanged(&app).await;
}

async fn a_json_body_that_is_not_an_object_is_a_422(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let locs = expect_validation(app.beat_json(&json!([{"session_id": session}])).await).await;

    assert_eq!(locs[0][0], "body");
    assert_unchanged(&app).await;
}

async fn numeric_text_in_a_form_is_accepted_as_pydantic_did(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;

    let response = app
        .beat_form(&[
            ("session_id", &session),
            ("guild_count", " 42 "),
            ("latency", "1e-3"),
        ])
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let shard = app.shard_status(0).await.unwrap();
    assert_eq!(shard["guild_count"], 42);
    assert_eq!(shard["latency"], 0.001);
}

async fn a_body_over_64_kib_is_413_and_changes_nothing(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;
    let padding = "x".repeat(64 * 1024);

    let form = app
        .beat_form(&[
            ("session_id", session.as_str()),
            ("guild_count", "2"),
            ("pad", &padding),
        ])
        .await;
    let json = app
        .beat_json(&json!({"session_id": session, "guild_count": 2, "pad": padding}))
        .await;
    let disconnect = app
        .post_form(
            "/disconnect",
            &[("session_id", session.as_str()), ("pad", &padding)],
        )
        .await;

    for response in [form, json, disconnect] {
        let body = expect_json(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(body["detail"].is_string(), "{body}");
    }
    assert_unchanged(&app).await;
    // A body just under the cap is read normally.
    let fits = "y".repeat(60 * 1024);
    let response = app
        .beat_form(&[("session_id", session.as_str()), ("pad", &fits)])
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// Without `Content-Length` the cap must hold while the body streams in.
async fn a_chunked_body_over_64_kib_is_413(backend: Backend) {
    let (app, session) = app_with_a_beaten_shard(backend).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut request = format!(
        "POST /beat HTTP/1.1\r\nHost: {address}\r\nAuthorization: {SECRET}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let head = format!(r#"{{"session_id": "{session}", "guild_count": 2, "pad": ""#);
    let mut chunks = vec![head.into_bytes()];
    chunks.extend(std::iter::repeat_n(vec![b'z'; 8 * 1024], 9));
    chunks.push(b"\"}".to_vec());
    for chunk in chunks {
        request.extend(format!("{:x}\r\n", chunk.len()).into_bytes());
        request.extend(chunk);
        request.extend(b"\r\n");
    }
    request.extend(b"0\r\n\r\n");

    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // The server may answer and close before reading it all; the answer is what matters.
    let _ = stream.write_all(&request).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply);

    assert!(
        reply.starts_with("HTTP/1.1 413"),
        "expected 413, got: {reply}"
    );
    assert_unchanged(&app).await;
}

async fn an_extra_over_max_extra_bytes_is_413_and_changes_nothing(backend: Backend) {
    // MAX_EXTRA_BYTES is 64 here; the JSON text of extra is what counts.
    let (app, session) = app_with_a_beaten_shard(backend).await;
    let too_big = json!({"blob": "b".repeat(80)});
    let fits = json!("c".repeat(60));
    assert!(too_big.to_string().len() > 64 && fits.to_string().len() <= 64);

    let json = app
        .beat_json(&json!({"session_id": session, "guild_count": 2, "extra": too_big}))
        .await;
    let form = app
        .beat_form(&[
            ("session_id", session.as_str()),
            ("guild_count", "2"),
            ("extra", &"d".repeat(100)),
        ])
        .await;

    for response in [json, form] {
        let body = expect_json(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(
            body["detail"].as_str().unwrap().contains("MAX_EXTRA_BYTES"),
            "{body}"
        );
    }
    assert_unchanged(&app).await;
    let response = app
        .beat_json(&json!({"session_id": session, "extra": fits}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.shard_status(0).await.unwrap()["extra"], fits);
}
