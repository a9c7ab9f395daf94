//! `GET /disconnect?session_id=` and `POST /disconnect` (form or JSON).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, both_stores, expect_detail, expect_validation, held_ids, loc, settings, spawn_app,
};

both_stores!(
    a_get_disconnect_frees_the_shard_at_once,
    a_form_post_disconnect_frees_the_shard_at_once,
    a_json_post_disconnect_frees_the_shard_at_once,
    disconnecting_an_unknown_or_released_session_is_404,
    a_get_disconnect_without_session_id_is_a_422_naming_the_query_field,
    a_get_disconnect_with_session_id_twice_takes_the_last_one,
    a_post_disconnect_without_session_id_is_a_422_naming_the_body_field,
    disconnect_needs_the_secret,
);

async fn a_get_disconnect_frees_the_shard_at_once(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);

    let response = app.disconnect(&claim.session_id).await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(held_ids(&app.status().await).is_empty());
    assert_eq!(
        app.claim().await.shard_id,
        0,
        "the freed id is granted at once"
    );
}

async fn a_form_post_disconnect_frees_the_shard_at_once(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;

    let response = app
        .post_form("/disconnect", &[("session_id", &claim.session_id)])
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.claim().await.shard_id, 0);
}

async fn a_json_post_disconnect_frees_the_shard_at_once(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;

    let response = app
        .post_json("/disconnect", &json!({"session_id": claim.session_id}))
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.claim().await.shard_id, 0);
}

async fn disconnecting_an_unknown_or_released_session_is_404(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    let bystander = app.claim().await;

    expect_detail(
        app.disconnect("no-such-session").await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
    assert_eq!(
        app.disconnect(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_detail(
        app.disconnect(&claim.session_id).await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
    expect_detail(
        app.post_form("/disconnect", &[("session_id", &claim.session_id)])
            .await,
        StatusCode::NOT_FOUND,
        "Session Not Found",
    )
    .await;
    // The other session was not touched by any of it.
    assert_eq!(
        app.beat(&bystander.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(held_ids(&app.status().await), vec![1]);
}

async fn a_get_disconnect_without_session_id_is_a_422_naming_the_query_field(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    app.claim().await;

    let locs = expect_validation(app.get("/disconnect").await).await;

    assert_eq!(locs, vec![loc(&["query", "session_id"])]);
    assert_eq!(held_ids(&app.status().await), vec![0]);
}

async fn a_get_disconnect_with_session_id_twice_takes_the_last_one(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;

    let response = app
        .get(&format!(
            "/disconnect?session_id=not-a-session&session_id={}",
            claim.session_id
        ))
        .await;

    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(held_ids(&app.status().await).is_empty());
}

async fn a_post_disconnect_without_session_id_is_a_422_naming_the_body_field(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    app.claim().await;

    let form = expect_validation(app.post_form("/disconnect", &[("other", "x")]).await).await;
    let json = expect_validation(app.post_json("/disconnect", &json!({})).await).await;

    assert_eq!(form, vec![loc(&["body", "session_id"])]);
    assert_eq!(json, vec![loc(&["body", "session_id"])]);
    assert_eq!(held_ids(&app.status().await), vec![0]);
}

async fn disconnect_needs_the_secret(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    let path = format!("/disconnect?session_id={}", claim.session_id);

    let missing = expect_validation(app.get_anonymous(&path).await).await;
    assert_eq!(missing, vec![loc(&["header", "authorization"])]);
    let missing_post = expect_validation(
        app.post_form_anonymous("/disconnect", &[("session_id", &claim.session_id)])
            .await,
    )
    .await;
    assert_eq!(missing_post, vec![loc(&["header", "authorization"])]);
    expect_detail(
        app.get_as(&path, "wrong").await,
        StatusCode::FORBIDDEN,
        "Invalid Token",
    )
    .await;

    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT,
        "still held"
    );
}
