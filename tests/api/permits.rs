//! IDENTIFY pacing by permits: `GET /connect?identify=permit`, `POST /identify/permit` and
//! `POST /identify/confirm`, and how they share each bucket with the slots of the original
//! protocol.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::Settings;
use shardman::domain::GatewayInfo;
use shardman::store::Store;

use crate::helpers::{
    Backend, TestApp, both_stores, expect_detail, expect_json, issue_type, retry_after_seconds,
    settings, spawn_app, spawn_replicas,
};

/// Discord's 5 s and the 0.1 s a confirm takes to arrive.
const CONFIRMED_GAP: Duration = Duration::from_millis(5000);
/// How long an unconfirmed permit holds its bucket.
const UNCONFIRMED_HOLD: Duration = Duration::from_millis(8100);
/// What a replica may add to an opening: a store round trip and a wake-up or two.
const LATENESS: Duration = Duration::from_millis(700);

/// A replica of `max_shards` shards in buckets of `max_concurrency`.
async fn replica(backend: Backend, max_shards: u32, max_concurrency: u32) -> TestApp {
    spawn_app(Settings {
        max_shards,
        max_concurrency,
        ..settings(backend)
    })
    .await
}

/// `GET /connect?identify=permit`, expecting a grant.
async fn connect_by_permits(app: &TestApp) -> Value {
    expect_json(app.get("/connect?identify=permit").await, StatusCode::OK).await
}

fn session(grant: &Value) -> String {
    grant["session_id"].as_str().expect("session_id").to_owned()
}

/// `POST /identify/permit` for the session's first shard, waiting up to `wait` seconds.
async fn ask_permit(app: &TestApp, session_id: &str, wait: &str) -> Value {
    let fields = [("session_id", session_id), ("wait", wait)];
    expect_json(
        app.post_form("/identify/permit", &fields).await,
        StatusCode::OK,
    )
    .await
}

async fn confirm(app: &TestApp, session_id: &str) -> Value {
    expect_json(
        app.post_form("/identify/confirm", &[("session_id", session_id)])
            .await,
        StatusCode::OK,
    )
    .await
}

/// Asks the permit on a task of its own: the answer, and when it arrived.
fn ask_permit_later(app: &TestApp, session_id: &str) -> tokio::task::JoinHandle<(Value, Instant)> {
    let (app, session_id) = (TestApp::at(app.address.clone()), session_id.to_owned());
    tokio::spawn(async move {
        let answer = ask_permit(&app, &session_id, "10").await;
        (answer, Instant::now())
    })
}

fn retry_after(answer: &Value) -> f64 {
    assert_eq!(answer["permit"], false, "{answer}");
    answer["retry_after"].as_f64().expect("retry_after")
}

async fn a_connect_by_permits_books_no_slot_and_every_sleep_is_zero(backend: Backend) {
    // One bucket for all three shards: a booked slot would show in the next one's sleep.
    let app = replica(backend, 3, 1).await;

    for _ in 0..2 {
        let grant = connect_by_permits(&app).await;
        assert_eq!(grant["sleep_duration"], 0.0, "{grant}");
        assert_eq!(grant["sleep_durations"], json!([0.0]), "{grant}");
    }
    let legacy = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(
        legacy["sleep_duration"], 0.0,
        "the permits' connects booked nothing ahead of the slot"
    );
}

async fn the_next_permit_of_a_bucket_is_granted_5_1_s_after_the_previous_one_is_confirmed(
    backend: Backend,
) {
    let app = replica(backend, 2, 1).await;
    let (first, second) = (
        session(&connect_by_permits(&app).await),
        session(&connect_by_permits(&app).await),
    );
    let asked = Instant::now();
    let granted = ask_permit(&app, &first, "10").await;
    assert_eq!(granted, json!({"permit": true, "shard_id": 0}));
    assert!(asked.elapsed() < LATENESS, "an open bucket grants at once");

    let waiting = ask_permit_later(&app, &second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the bucket is held by the first");
    let confirming = Instant::now();
    assert_eq!(confirm(&app, &first).await, json!({"confirmed": true}));

    let (answer, answered) = waiting.await.expect("joins");
    assert_eq!(answer, json!({"permit": true, "shard_id": 1}));
    let after_confirm = answered - confirming;
    assert!(
        after_confirm >= CONFIRMED_GAP && after_confirm < CONFIRMED_GAP + LATENESS,
        "granted {after_confirm:?} after the confirm was sent"
    );
}

/// The waiter learns of a confirm made on another replica by asking again every 0.1 s while the
/// bucket's opening is provisional.
#[tokio::test]
async fn a_confirm_on_another_replica_opens_the_bucket_for_a_permit_waiting_on_this_one() {
    let replicas = spawn_replicas(
        2,
        Settings {
            max_shards: 2,
            max_concurrency: 1,
            ..settings(Backend::Redis)
        },
    )
    .await;
    let (first, second) = (
        session(&connect_by_permits(&replicas[0]).await),
        session(&connect_by_permits(&replicas[1]).await),
    );
    assert_eq!(ask_permit(&replicas[0], &first, "0").await["permit"], true);
    let waiting = ask_permit_later(&replicas[1], &second);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let confirming = Instant::now();
    assert_eq!(confirm(&replicas[0], &first).await["confirmed"], true);

    let (answer, answered) = waiting.await.expect("joins");
    assert_eq!(answer["permit"], true);
    let after_confirm = answered - confirming;
    assert!(
        after_confirm >= CONFIRMED_GAP && after_confirm < CONFIRMED_GAP + LATENESS,
        "granted {after_confirm:?} after the confirm was sent"
    );
}

async fn a_permit_never_confirmed_frees_its_bucket_8_1_s_after_its_grant(backend: Backend) {
    let app = replica(backend, 2, 1).await;
    let (first, second) = (
        session(&connect_by_permits(&app).await),
        session(&connect_by_permits(&app).await),
    );
    let asked = Instant::now();
    assert_eq!(ask_permit(&app, &first, "10").await["permit"], true);

    let (answer, answered) = ask_permit_later(&app, &second).await.expect("joins");

    assert_eq!(answer, json!({"permit": true, "shard_id": 1}));
    let after_grant = answered - asked;
    assert!(
        after_grant >= UNCONFIRMED_HOLD && after_grant < UNCONFIRMED_HOLD + LATENESS,
        "granted {after_grant:?} after the first permit was asked"
    );
}

async fn a_permit_whose_wait_runs_out_answers_permit_false_with_the_time_left(backend: Backend) {
    let app = replica(backend, 2, 1).await;
    let (first, second) = (
        session(&connect_by_permits(&app).await),
        session(&connect_by_permits(&app).await),
    );
    assert_eq!(ask_permit(&app, &first, "10").await["permit"], true);

    let at_once = ask_permit(&app, &second, "0").await;
    assert_eq!(at_once["shard_id"], 1);
    let left = retry_after(&at_once);
    assert!((7.0..=8.1).contains(&left), "retry_after {left}");

    let asked = Instant::now();
    let later = ask_permit(&app, &second, "0.4").await;
    assert!(asked.elapsed() >= Duration::from_millis(400), "it waited");
    assert!(retry_after(&later) < left);
}

async fn permits_of_different_buckets_do_not_wait_for_each_other(backend: Backend) {
    let app = replica(backend, 2, 2).await;
    let (first, second) = (
        session(&connect_by_permits(&app).await),
        session(&connect_by_permits(&app).await),
    );

    assert_eq!(
        ask_permit(&app, &first, "0").await,
        json!({"permit": true, "shard_id": 0})
    );
    assert_eq!(
        ask_permit(&app, &second, "0").await,
        json!({"permit": true, "shard_id": 1})
    );
}

async fn slots_and_permits_share_a_bucket_and_a_confirm_never_moves_a_slot_booked_after_its_permit(
    backend: Backend,
) {
    let app = replica(backend, 4, 1).await;
    // A slot first: a permit waits for it.
    let legacy = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(legacy["sleep_duration"], 0.0);
    let first = session(&connect_by_permits(&app).await);
    let after_slot = retry_after(&ask_permit(&app, &first, "0").await);
    assert!((5.5..=6.0).contains(&after_slot), "{after_slot}");
    let granted = ask_permit(&app, &first, "7").await;
    assert_eq!(granted["permit"], true, "{granted}");

    // A slot booked while the permit holds the bucket comes after the permit's hold.
    let booked = expect_json(app.connect().await, StatusCode::OK).await;
    let sleep = booked["sleep_duration"].as_f64().expect("sleep");
    assert!((7.5..=8.1).contains(&sleep), "slot {sleep} s away");

    // The permit's confirm cannot pull the bucket ahead of that slot: the next permit comes 6 s
    // after it, as the next slot would.
    assert_eq!(confirm(&app, &first).await, json!({"confirmed": true}));
    let third = session(&connect_by_permits(&app).await);
    let after_booked = retry_after(&ask_permit(&app, &third, "0").await);
    assert!(
        (sleep + 5.5..=sleep + 6.0).contains(&after_booked),
        "{after_booked} (slot at {sleep})"
    );
}

async fn a_second_confirm_of_one_permit_answers_confirmed_false(backend: Backend) {
    let app = replica(backend, 1, 1).await;
    let only = session(&connect_by_permits(&app).await);
    assert_eq!(
        confirm(&app, &only).await,
        json!({"confirmed": false}),
        "no permit yet"
    );
    assert_eq!(ask_permit(&app, &only, "0").await["permit"], true);

    let answer = app
        .post_json(
            "/identify/confirm",
            &json!({"session_id": only, "shard_id": 0}),
        )
        .await;
    assert_eq!(
        expect_json(answer, StatusCode::OK).await,
        json!({"confirmed": true})
    );
    assert_eq!(confirm(&app, &only).await, json!({"confirmed": false}));
}

async fn a_shard_outside_the_group_and_an_unknown_session_are_refused_as_identify_refuses_them(
    backend: Backend,
) {
    let app = replica(backend, 2, 1).await;
    let only = session(&connect_by_permits(&app).await);
    let outside = [("session_id", only.as_str()), ("shard_id", "1")];
    let identify = expect_json(
        app.post_form("/identify", &outside).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    for route in ["/identify/permit", "/identify/confirm"] {
        let answer = expect_json(
            app.post_form(route, &outside).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(answer, identify, "{route}");
        assert_eq!(
            issue_type(&answer, &["body", "shard_id"]),
            Some("value_error.shard_id.not_in_group")
        );
        expect_detail(
            app.post_form(route, &[("session_id", "nope")]).await,
            StatusCode::NOT_FOUND,
            "Session Not Found",
        )
        .await;
    }
}

#[tokio::test]
async fn a_wait_that_is_not_a_number_from_0_to_30_and_an_unknown_identify_query_are_422() {
    let app = replica(Backend::Memory, 1, 1).await;
    let only = session(&connect_by_permits(&app).await);
    for (wait, kind) in [
        (json!(-1), "value_error.number.not_ge"),
        (json!(31), "value_error.number.not_le"),
        (json!("30.5"), "value_error.number.not_le"),
        (json!("x"), "type_error.float"),
    ] {
        let answer = expect_json(
            app.post_json(
                "/identify/permit",
                &json!({"session_id": only, "wait": wait}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(issue_type(&answer, &["body", "wait"]), Some(kind), "{wait}");
    }
    let missing = expect_json(
        app.post_form("/identify/permit", &[]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(
        issue_type(&missing, &["body", "session_id"]),
        Some("value_error.missing")
    );

    for query in ["identify=x", "identify=", "identify=PERMIT"] {
        let answer = expect_json(
            app.get(&format!("/connect?{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(
            issue_type(&answer, &["query", "identify"]),
            Some("type_error.enum"),
            "{query}"
        );
    }
    assert_eq!(
        app.status().await["shards"]
            .as_array()
            .expect("shards")
            .len(),
        1,
        "a refused connect claims nothing"
    );
}

/// The identifies left of the budget, as `/connect` and the permits count them.
async fn identifies_left(store: &Store) -> u32 {
    let gateway = store.gateway().await.expect("gateway").expect("known");
    gateway.session_start_remaining
}

#[tokio::test]
async fn permits_spend_the_identify_budget_connects_by_permits_do_not_and_the_reserve_is_429() {
    let settings = Settings {
        max_shards: 3,
        ..settings(Backend::Redis)
    };
    // 7 identifies left of 100, reserve 5%: two to spend. Three buckets.
    let store = Store::open(&settings).await.expect("store");
    store
        .save_gateway(&GatewayInfo {
            shards: 3,
            max_concurrency: 3,
            session_start_total: 100,
            session_start_remaining: 7,
            url: None,
            session_start_reset_after_ms: 3_600_000,
        })
        .await
        .expect("save");
    let app = spawn_app(settings).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(session(&connect_by_permits(&app).await));
    }
    assert_eq!(identifies_left(&store).await, 7, "connects spent nothing");

    for (index, session_id) in sessions[..2].iter().enumerate() {
        assert_eq!(ask_permit(&app, session_id, "0").await["permit"], true);
        assert_eq!(identifies_left(&store).await, 6 - index as u32);
    }
    let refused = app
        .post_form(
            "/identify/permit",
            &[("session_id", sessions[2].as_str()), ("wait", "5")],
        )
        .await;
    assert!(retry_after_seconds(&refused) > 3500);
    expect_detail(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "Identify Budget Exhausted",
    )
    .await;
    assert_eq!(
        identifies_left(&store).await,
        5,
        "the reserve was not spent"
    );

    // Nothing was granted: a fresh budget finds the bucket open.
    store
        .save_gateway(&GatewayInfo {
            session_start_remaining: 1000,
            session_start_total: 1000,
            shards: 3,
            max_concurrency: 3,
            url: None,
            session_start_reset_after_ms: 3_600_000,
        })
        .await
        .expect("save");
    assert_eq!(
        ask_permit(&app, &sessions[2], "0").await,
        json!({"permit": true, "shard_id": 2})
    );
}

both_stores!(
    a_connect_by_permits_books_no_slot_and_every_sleep_is_zero,
    the_next_permit_of_a_bucket_is_granted_5_1_s_after_the_previous_one_is_confirmed,
    a_permit_never_confirmed_frees_its_bucket_8_1_s_after_its_grant,
    a_permit_whose_wait_runs_out_answers_permit_false_with_the_time_left,
    permits_of_different_buckets_do_not_wait_for_each_other,
    slots_and_permits_share_a_bucket_and_a_confirm_never_moves_a_slot_booked_after_its_permit,
    a_second_confirm_of_one_permit_answers_confirmed_false,
    a_shard_outside_the_group_and_an_unknown_session_are_refused_as_identify_refuses_them,
);
