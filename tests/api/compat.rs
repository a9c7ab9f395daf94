//! Details of the original FastAPI service that bots may depend on.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    Backend, both_stores, expect_detail, expect_validation, loc, settings, spawn_app,
};

async fn a_known_path_with_another_method_is_405_and_an_unknown_path_404(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let wrong_method = app
        .request(Method::POST, "/connect")
        .send()
        .await
        .expect("request");
    expect_detail(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    )
    .await;
    expect_detail(
        app.get("/nowhere").await,
        StatusCode::NOT_FOUND,
        "Not Found",
    )
    .await;
}

async fn an_integral_float_guild_count_is_accepted_as_pydantic_did(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    let accepted = app
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 1200.0}))
        .await;
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
    let shard = app.shard_status(claim.shard_id).await.expect("held");
    assert_eq!(shard["guild_count"], 1200);

    let fractional = app
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 1200.5}))
        .await;
    assert_eq!(
        expect_validation(fractional).await,
        vec![loc(&["body", "guild_count"])]
    );
}

async fn a_json_body_that_is_not_an_object_is_a_422_on_the_body(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    for body in ["123", "null", "\"text\""] {
        let response = app
            .post_raw("/beat", "application/json", body.as_bytes().to_vec())
            .await;
        assert_eq!(
            expect_validation(response).await,
            vec![loc(&["body"])],
            "{body}"
        );
    }
}

both_stores!(
    a_known_path_with_another_method_is_405_and_an_unknown_path_404,
    an_integral_float_guild_count_is_accepted_as_pydantic_did,
    a_json_body_that_is_not_an_object_is_a_422_on_the_body,
);
