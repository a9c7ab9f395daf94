use crate::helpers::{Backend, settings, spawn_app};
use reqwest::StatusCode;

async fn connect_then_beat_then_disconnect(backend: Backend) {
    let app = spawn_app(settings(backend)).await;
    let claim = app.claim().await;
    assert_eq!(claim.shard_id, 0);
    assert_eq!(app.beat(&claim.session_id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.disconnect(&claim.session_id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.beat(&claim.session_id).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bot_connects_beats_and_disconnects_on_redis() {
    connect_then_beat_then_disconnect(Backend::Redis).await;
}

#[tokio::test]
async fn a_bot_connects_beats_and_disconnects_in_process() {
    connect_then_beat_then_disconnect(Backend::Memory).await;
}
