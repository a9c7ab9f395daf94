//! `/healthz`, `/readyz` and unknown routes. (Readiness while Redis is down: redis_faults.rs.)

use reqwest::StatusCode;

use crate::helpers::{Backend, both_stores, expect_detail, expect_json, settings, spawn_app};

both_stores!(
    healthz_answers_200_without_a_secret,
    readyz_answers_200_when_the_store_answers,
    an_unknown_route_is_404_with_a_detail,
);

async fn healthz_answers_200_without_a_secret(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    let response = app.get_anonymous("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
    // A wrong secret does not matter either: health checks carry none.
    assert_eq!(
        app.get_as("/healthz", "wrong").await.status(),
        StatusCode::OK
    );
}

async fn readyz_answers_200_when_the_store_answers(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    expect_json(app.get_anonymous("/readyz").await, StatusCode::OK).await;
}

async fn an_unknown_route_is_404_with_a_detail(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    expect_detail(
        app.get("/no-such-route").await,
        StatusCode::NOT_FOUND,
        "Not Found",
    )
    .await;
}
