//! `GET /connect?wait=<seconds>`: claims that wait for a free shard, first come first served
//! across replicas, and never hold a shard for a client that has gone.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, both_stores, eventually, expect_detail, expect_json, redis_key, settings,
    spawn_app, spawn_replicas,
};
use crate::support::redis::shared_redis;

both_stores!(
    a_waiting_connect_gets_a_shard_released_meanwhile_at_once,
    a_waiting_connect_gets_an_expired_shard_within_a_second_of_its_expiry,
    a_waiting_connect_gets_a_shard_a_reshard_adds_at_once,
    a_waiting_connect_answers_401_when_its_wait_runs_out,
    a_waiting_connect_whose_client_hangs_up_leaves_the_shard_free,
    a_connect_without_wait_answers_as_before,
    a_wait_that_is_not_a_number_from_0_to_60_is_a_422_naming_it,
    a_connect_that_does_not_wait_cannot_take_a_shard_a_waiter_is_owed,
);

/// `GET /connect?wait=<wait>` on its own task, through a client that outlasts the wait.
fn connect_waiting(app: &TestApp, wait: &str) -> tokio::task::JoinHandle<(Response, Instant)> {
    let app = app.with_timeout(Duration::from_secs(90));
    let path = format!("/connect?wait={wait}");
    tokio::spawn(async move {
        let response = app.get(&path).await;
        (response, Instant::now())
    })
}

/// Time for a request to reach its replica and queue there.
async fn queued() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn granted_shard(response: Response) -> (u64, Value) {
    let body = expect_json(response, StatusCode::OK).await;
    (body["shard_id"].as_u64().expect("shard_id"), body)
}

async fn a_waiting_connect_gets_a_shard_released_meanwhile_at_once(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    let holder = app.claim().await;
    let waiting = connect_waiting(&app, "30");
    queued().await;

    let released_at = Instant::now();
    assert_eq!(
        app.disconnect(&holder.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let (response, answered_at) = waiting.await.expect("the waiting request");

    let (shard_id, body) = granted_shard(response).await;
    assert_eq!(shard_id, 0);
    assert!(
        answered_at - released_at < Duration::from_millis(500),
        "answered {:?} after the release",
        answered_at - released_at
    );
    let waited = body["waited"].as_f64().expect("waited is a number");
    assert!(
        (0.2..5.0).contains(&waited),
        "waited {waited} s before the granting claim"
    );
}

async fn a_waiting_connect_gets_an_expired_shard_within_a_second_of_its_expiry(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    settings.max_seconds = 1;
    let app = spawn_app(settings).await;
    let claimed_at = Instant::now();
    let holder = app.claim().await;

    // The holder never beats: its lease ends by its TTL one second after the claim.
    let (response, answered_at) = connect_waiting(&app, "10").await.expect("request");

    let (shard_id, body) = granted_shard(response).await;
    assert_eq!(shard_id, holder.shard_id);
    assert_ne!(body["session_id"], holder.session_id.as_str());
    let after_claim = answered_at - claimed_at;
    assert!(
        after_claim >= Duration::from_millis(900) && after_claim < Duration::from_secs(2),
        "answered {after_claim:?} after a claim whose lease lasted 1 s"
    );
}

async fn a_waiting_connect_gets_a_shard_a_reshard_adds_at_once(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    app.claim().await;
    let waiting = connect_waiting(&app, "30");
    queued().await;

    let resharded_at = Instant::now();
    let plan = expect_json(
        app.post_json("/reshard", &json!({"max_shards": 2})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let (response, answered_at) = waiting.await.expect("the waiting request");

    let (_, body) = granted_shard(response).await;
    assert_eq!(body["generation"], plan["generation"]);
    assert_eq!(body["state"], "standby");
    assert!(
        answered_at - resharded_at < Duration::from_millis(500),
        "answered {:?} after the reshard",
        answered_at - resharded_at
    );
}

async fn a_waiting_connect_answers_401_when_its_wait_runs_out(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    app.claim().await;
    let sent_at = Instant::now();

    let (response, answered_at) = connect_waiting(&app, "1.5").await.expect("request");

    expect_detail(response, StatusCode::UNAUTHORIZED, "No Shards Available").await;
    let waited = answered_at - sent_at;
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
}

async fn a_waiting_connect_whose_client_hangs_up_leaves_the_shard_free(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    let holder = app.claim().await;

    // The client gives up after half a second and closes its connection.
    let impatient = app.with_timeout(Duration::from_millis(500));
    assert!(
        impatient
            .request(Method::GET, "/connect?wait=30")
            .send()
            .await
            .is_err(),
        "the impatient client timed out"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.disconnect(&holder.session_id).await;

    // Neither granted to the gone waiter nor kept for it: the next claim gets the shard at once.
    assert_eq!(app.claim().await.shard_id, 0);
}

async fn a_connect_without_wait_answers_as_before(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;

    let body = expect_json(app.connect().await, StatusCode::OK).await;
    assert!(body.get("waited").is_none(), "no new field: {body}");

    let sent_at = Instant::now();
    expect_detail(
        app.connect().await,
        StatusCode::UNAUTHORIZED,
        "No Shards Available",
    )
    .await;
    assert!(
        sent_at.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
}

async fn a_wait_that_is_not_a_number_from_0_to_60_is_a_422_naming_it(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 2;
    let app = spawn_app(settings).await;

    for (wait, kind) in [
        ("abc", "type_error.float"),
        ("", "type_error.float"),
        ("nan", "type_error.float"),
        ("inf", "type_error.float"),
        ("-1", "value_error.number.not_ge"),
        ("60.5", "value_error.number.not_le"),
        ("3600", "value_error.number.not_le"),
    ] {
        let body = expect_json(
            app.get(&format!("/connect?wait={wait}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            crate::helpers::issue_type(&body, &["query", "wait"]),
            Some(kind),
            "wait={wait}: {body}"
        );
    }
    // Nothing was claimed by the refused requests; the bounds themselves are accepted.
    let (shard_id, body) = granted_shard(app.get("/connect?wait=60").await).await;
    assert_eq!(shard_id, 0);
    let waited = body["waited"].as_f64().expect("waited is a number");
    assert!(
        waited < 0.1,
        "granted at the first attempt, not after {waited} s"
    );
    let (shard_id, _) = granted_shard(app.get("/connect?wait=0").await).await;
    assert_eq!(shard_id, 1);
}

async fn a_connect_that_does_not_wait_cannot_take_a_shard_a_waiter_is_owed(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    let holder = app.claim().await;
    let waiting = connect_waiting(&app, "30");
    queued().await;

    app.disconnect(&holder.session_id).await;
    let (response, _) = waiting.await.expect("the waiting request");
    assert_eq!(granted_shard(response).await.0, 0);
    expect_detail(
        app.connect().await,
        StatusCode::UNAUTHORIZED,
        "No Shards Available",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_connects_are_served_in_the_order_they_arrived_across_replicas() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 1;
    let replicas = spawn_replicas(2, settings).await;
    let mut holder = replicas[0].claim().await.session_id;
    // Three waiters, arriving in turn on alternating replicas.
    let mut waiting = Vec::new();
    for arrival in 0..3 {
        waiting.push(connect_waiting(&replicas[arrival % 2], "30"));
        queued().await;
    }

    for (arrival, waiter) in waiting.into_iter().enumerate() {
        // Released on the other replica than the waiter's, whose own waiters it wakes first.
        let releasing = &replicas[(arrival + 1) % 2];
        let released_at = Instant::now();
        assert_eq!(
            releasing.disconnect(&holder).await.status(),
            StatusCode::NO_CONTENT
        );
        let (response, answered_at) = waiter.await.expect("the waiting request");
        let (shard_id, body) = granted_shard(response).await;
        assert_eq!(shard_id, 0, "waiter {arrival}");
        assert!(
            answered_at - released_at < Duration::from_secs(1),
            "waiter {arrival} answered {:?} after the release on another replica",
            answered_at - released_at
        );
        holder = body["session_id"].as_str().expect("session_id").to_owned();
    }
}

/// Subscribers of the bot's wake-up channel (`PUBSUB NUMSUB`).
fn wakeup_subscribers(prefix: &str) -> i64 {
    let channel = redis_key(prefix, "wakeups");
    let reply =
        tokio::task::block_in_place(|| shared_redis().query(&["PUBSUB", "NUMSUB", &channel]));
    let (_, count): (String, i64) = redis::from_redis_value(reply).expect("PUBSUB NUMSUB reply");
    count
}

async fn wait_for_wakeup_subscribers(prefix: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while wakeup_subscribers(prefix) != count {
        assert!(
            Instant::now() < deadline,
            "{count} subscribers of the wake-ups (have {})",
            wakeup_subscribers(prefix)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Releases the shard `holder` holds on `releasing` while a request waits for it on `waiting`, and
/// returns the waiter's new session once it got the shard, failing if that took long enough to
/// be the waiter's poll rather than a wake-up.
async fn release_and_watch_a_waiter_on_another_replica(
    releasing: &TestApp,
    waiting: &TestApp,
    holder: &str,
) -> String {
    let waiter = connect_waiting(waiting, "30");
    queued().await;
    let released_at = Instant::now();
    assert_eq!(
        releasing.disconnect(holder).await.status(),
        StatusCode::NO_CONTENT
    );
    let (response, answered_at) = waiter.await.expect("the waiting request");
    let (shard_id, body) = granted_shard(response).await;
    assert_eq!(shard_id, 0);
    assert!(
        answered_at - released_at < Duration::from_secs(5),
        "answered {:?} after the release on the other replica: by its poll, not a wake-up",
        answered_at - released_at
    );
    body["session_id"].as_str().expect("session_id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_a_connect_waiting_on_another_long_before_its_poll() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 1;
    // A poll this slow cannot be what answers the waiter.
    settings.waiter_poll_ms = 10_000;
    let prefix = settings.key_prefix.clone();
    let replicas = spawn_replicas(2, settings).await;
    wait_for_wakeup_subscribers(&prefix, 2).await;
    for replica in &replicas {
        let hears_the_others = || async {
            let metrics = replica
                .get("/metrics")
                .await
                .text()
                .await
                .unwrap_or_default();
            metrics
                .lines()
                .any(|line| line.starts_with("shardman_wakeups_heard{") && line.ends_with(" 1"))
        };
        assert!(
            eventually(Duration::from_secs(5), hears_the_others).await,
            "each replica's /metrics says it hears the others"
        );
    }
    let holder = replicas[0].claim().await.session_id;
    let holder =
        release_and_watch_a_waiter_on_another_replica(&replicas[0], &replicas[1], &holder).await;

    // Subscriptions cut by Redis (a restart, a failover, a proxy) are made again.
    tokio::task::block_in_place(|| {
        shared_redis().query(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    });
    wait_for_wakeup_subscribers(&prefix, 2).await;
    release_and_watch_a_waiter_on_another_replica(&replicas[1], &replicas[0], &holder).await;
}
