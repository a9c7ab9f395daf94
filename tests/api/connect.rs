//! `GET /connect`: lowest free id, fencing tokens, auth.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};

use crate::helpers::{
    Backend, SECRET, both_stores, expect_detail, expect_json, expect_validation, loc, settings,
    spawn_app,
};

both_stores!(
    a_first_connect_is_granted_shard_zero_with_a_session_and_a_fence,
    connect_answers_401_when_every_shard_is_held,
    connect_refuses_a_wrong_secret_with_403,
    connect_without_authorization_is_a_422_naming_the_header,
    a_bearer_secret_is_accepted_like_the_bare_secret,
    connect_hands_out_ids_in_order_and_never_twice,
    the_lowest_free_id_is_reused_after_a_disconnect,
    the_fence_grows_with_every_grant_of_the_same_id,
);

async fn a_first_connect_is_granted_shard_zero_with_a_session_and_a_fence(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 4;
    let app = spawn_app(settings).await;

    let body = expect_json(app.connect().await, StatusCode::OK).await;

    assert_eq!(body["shard_id"], 0);
    assert_eq!(body["max_shards"], 4);
    let session_id = body["session_id"].as_str().expect("session_id is a string");
    assert!(
        session_id.len() >= 16,
        "session ids are long enough not to be guessed: {session_id}"
    );
    assert!(body["fence"].as_u64().expect("fence is an integer") >= 1);
}

async fn connect_answers_401_when_every_shard_is_held(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;
    app.claim().await;
    app.claim().await;

    expect_detail(
        app.connect().await,
        StatusCode::UNAUTHORIZED,
        "No Shards Available",
    )
    .await;
    // Refusing changes nothing: both shards are still held, no third appeared.
    assert_eq!(crate::helpers::held_ids(&app.status().await), vec![0, 1]);
}

async fn connect_refuses_a_wrong_secret_with_403(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    for wrong in [
        "nope",
        "Bearer nope",
        "test-secret-but-longer",
        "TEST-SECRET",
    ] {
        expect_detail(
            app.get_as("/connect", wrong).await,
            StatusCode::FORBIDDEN,
            "Invalid Token",
        )
        .await;
    }
    // No shard was handed out by the refused calls.
    assert_eq!(app.claim().await.shard_id, 0);
}

async fn connect_without_authorization_is_a_422_naming_the_header(backend: Backend) {
    let app = spawn_app(settings(backend)).await;

    let body = expect_json(
        app.get_anonymous("/connect").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    assert_eq!(
        body,
        serde_json::json!({"detail": [{
            "loc": ["header", "authorization"],
            "msg": "field required",
            "type": "value_error.missing",
        }]})
    );
}

async fn a_bearer_secret_is_accepted_like_the_bare_secret(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;

    let bare = expect_json(app.get_as("/connect", SECRET).await, StatusCode::OK).await;
    let bearer = expect_json(
        app.get_as("/connect", &format!("Bearer {SECRET}")).await,
        StatusCode::OK,
    )
    .await;

    assert_eq!(bare["shard_id"], 0);
    assert_eq!(bearer["shard_id"], 1);
    // The Bearer form works on the other routes too.
    let session = bearer["session_id"].as_str().unwrap();
    let response = app
        .request_as(Method::POST, "/beat", &format!("Bearer {SECRET}"))
        .form(&[("session_id", session)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let loc_of_missing = expect_validation(app.get_anonymous("/status").await).await;
    assert_eq!(loc_of_missing, vec![loc(&["header", "authorization"])]);
    assert_eq!(
        app.get_as("/status", &format!("Bearer {SECRET}"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn connect_hands_out_ids_in_order_and_never_twice(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 5;
    let app = spawn_app(settings).await;

    let mut sessions = HashSet::new();
    for expected in 0..5 {
        let claim = app.claim().await;
        assert_eq!(claim.shard_id, expected);
        assert_eq!(claim.max_shards, 5);
        assert!(sessions.insert(claim.session_id), "session ids are unique");
    }
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);
}

async fn the_lowest_free_id_is_reused_after_a_disconnect(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 4;
    let app = spawn_app(settings).await;
    let claims = [app.claim().await, app.claim().await, app.claim().await];

    assert_eq!(
        app.disconnect(&claims[2].session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.disconnect(&claims[0].session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    // 0 and 2 are free, 3 was never used: the lowest comes first, then the next lowest.
    assert_eq!(app.claim().await.shard_id, 0);
    assert_eq!(app.claim().await.shard_id, 2);
    assert_eq!(app.claim().await.shard_id, 3);
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);
}

async fn the_fence_grows_with_every_grant_of_the_same_id(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;
    let held_one = app.claim().await;
    assert_eq!(held_one.shard_id, 0);

    let mut fences = vec![held_one.fence];
    let mut session = held_one.session_id;
    for _ in 0..3 {
        assert_eq!(
            app.disconnect(&session).await.status(),
            StatusCode::NO_CONTENT
        );
        let again = app.claim().await;
        assert_eq!(again.shard_id, 0, "the freed id is granted again");
        fences.push(again.fence);
        session = again.session_id;
    }

    assert!(
        fences.windows(2).all(|pair| pair[1] > pair[0]),
        "each grant of shard 0 carries a larger fence: {fences:?}"
    );
    // Another id's grants do not disturb shard 0's sequence, and vice versa.
    let other = app.claim().await;
    assert_eq!(other.shard_id, 1);
    app.disconnect(&session).await;
    assert!(app.claim().await.fence > *fences.last().unwrap());
}
