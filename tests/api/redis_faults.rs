//! Redis misbehaving: lost script cache, a hung server, a dead server. Each test owns its Redis.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, eventually, held_ids, settings_on, spawn_app};
use crate::support::redis::RedisServer;

/// Asserts a 503 with `Retry-After` and a `{"detail": "..."}` body.
async fn assert_unavailable(response: Response) {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().unwrap().to_owned());
    let body: Value = response.json().await.expect("503 carries a JSON body");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let seconds: u64 = retry_after
        .expect("503 carries Retry-After")
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(seconds >= 1);
    assert!(body["detail"].is_string(), "{body}");
}

/// Until Redis is back, with no restart of the replica: ready, and serving bots.
async fn assert_recovers(app: &TestApp) {
    let ready = eventually(Duration::from_secs(10), || async {
        app.get_anonymous("/readyz").await.status() == StatusCode::OK
    })
    .await;
    assert!(ready, "/readyz is 200 again once Redis is back");
}

#[tokio::test]
async fn a_script_flush_between_requests_is_invisible_to_clients() {
    let redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_shards = 3;
    let app = spawn_app(settings).await;
    let flush = || {
        redis.query(&["SCRIPT", "FLUSH"]);
    };

    flush();
    let first = app.claim().await;
    flush();
    assert_eq!(
        app.beat(&first.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    flush();
    let second = app.claim().await;
    assert_eq!(second.shard_id, 1);
    flush();
    assert_eq!(held_ids(&app.status().await), vec![0, 1]);
    flush();
    assert_eq!(
        app.disconnect(&first.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    flush();
    assert_eq!(app.claim().await.shard_id, 0);
    flush();
    assert_eq!(app.get_anonymous("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_paused_redis_gives_503_with_retry_after_and_the_service_recovers_on_resume() {
    let redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_shards = 8;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    // Generous: the bound under test is the service's ~1-2 s, not this one; it only proves an answer.
    let client = app.with_timeout(Duration::from_secs(5));

    redis.pause();
    assert_unavailable(client.get_anonymous("/readyz").await).await;
    assert_unavailable(client.connect().await).await;
    assert_unavailable(client.beat(&claim.session_id).await).await;
    assert_unavailable(client.get("/status").await).await;
    // Liveness does not depend on Redis.
    assert_eq!(
        client.get_anonymous("/healthz").await.status(),
        StatusCode::OK
    );
    redis.resume();

    assert_recovers(&app).await;
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let status = app.status().await;
    assert!(held_ids(&status).contains(&claim.shard_id));
    let next = app.connect().await;
    assert_eq!(next.status(), StatusCode::OK);
}

/// After a data loss the service may hold new grants back for up to one lease (503 with
/// `Retry-After`, so returning bots can reclaim their ids first); a client retries.
/// `keep_alive` is a session to keep beating meanwhile.
async fn claim_once_granting_resumes(app: &TestApp, keep_alive: Option<&str>) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let response = app.connect().await;
        match response.status() {
            StatusCode::OK => {
                let body: Value = response.json().await.unwrap();
                return body["shard_id"].as_u64().unwrap();
            }
            StatusCode::SERVICE_UNAVAILABLE if std::time::Instant::now() < deadline => {
                assert!(response.headers().contains_key("retry-after"));
                if let Some(session) = keep_alive {
                    assert_eq!(app.beat(session).await.status(), StatusCode::NO_CONTENT);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!(
                "connect after recovery: {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
}

#[tokio::test]
async fn a_stopped_redis_gives_503_and_the_service_heals_when_it_comes_back() {
    let mut redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_shards = 4;
    settings.max_seconds = 2;
    let app = spawn_app(settings).await;
    let claim = app.claim().await;
    let client = app.with_timeout(Duration::from_secs(5));

    redis.stop();
    assert_unavailable(client.get_anonymous("/readyz").await).await;
    assert_unavailable(client.connect().await).await;
    assert_unavailable(client.beat(&claim.session_id).await).await;
    assert_unavailable(client.disconnect(&claim.session_id).await).await;

    // Back, but empty (no persistence): the replica rebuilds the deployment's keys by itself.
    redis.restart();
    assert_recovers(&app).await;
    // The old session either gets its shard back (restored from what the bot knows) or is told
    // to reconnect; either way the ids stay unique and new claims take the lowest free ones.
    let old = app.beat(&claim.session_id).await.status();
    assert!(
        old == StatusCode::NO_CONTENT || old == StatusCode::NOT_FOUND,
        "{old}"
    );
    let mut expected: Vec<u64> = if old == StatusCode::NO_CONTENT {
        vec![claim.shard_id]
    } else {
        vec![]
    };
    let restored = (old == StatusCode::NO_CONTENT).then_some(claim.session_id.as_str());
    for _ in 0..2 {
        let lowest_free = (0..).find(|id| !expected.contains(id)).unwrap();
        assert_eq!(
            claim_once_granting_resumes(&app, restored).await,
            lowest_free
        );
        expected.push(lowest_free);
    }
    expected.sort_unstable();
    let status = app.status().await;
    assert_eq!(status["total_shards"], 4, "the plan is recreated: {status}");
    assert_eq!(held_ids(&status), expected);
}

/// After Redis lost its data, `/status` must not report a fleet of zero shards until some bot
/// happens to call `/connect`: it should re-initialise like the other scripts do on `NOPLAN`.
#[tokio::test]
async fn status_right_after_redis_lost_its_data_reports_the_configured_shard_count() {
    let mut redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_shards = 4;
    let app = spawn_app(settings).await;
    app.claim().await;

    redis.restart();
    assert_recovers(&app).await;

    let status = app.status().await;
    assert_eq!(status["total_shards"], 4, "the plan is recreated: {status}");
    assert_eq!(held_ids(&status), Vec::<u64>::new());
}
