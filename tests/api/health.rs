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

/// A connection idle for longer than a short beat interval is still open: a client's next beat
/// on its pooled connection must not meet a connection shardman is closing (actix's default
/// keep-alive of 5 s made beats 5 s apart fail now and then, a hand-over's last beat among them).
#[tokio::test]
async fn an_idle_connection_stays_open_longer_than_a_beat_interval() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app(settings(Backend::Memory)).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n");
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        }
        connection
            .write_all(request.as_bytes())
            .await
            .expect("the connection is open");
        let mut answer = vec![0; 1024];
        let read = connection.read(&mut answer).await.expect("read");
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "round {round}: {answer:?}"
        );
    }
}
