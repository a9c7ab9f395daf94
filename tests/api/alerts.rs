//! Webhook alerts: exactly one call per event across replicas, expiries reported in time, and a
//! failing webhook retried in the background.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use shardman::config::Settings;

use crate::helpers::{Backend, eventually, settings, spawn_app, spawn_replicas};
use crate::standin::{Reply, StandIn, alert_of};

fn with_webhook(webhook: &StandIn) -> Settings {
    let mut settings = settings(Backend::Redis);
    settings.webhook_url = Some(format!("{}/api/webhooks/1/webhook-token", webhook.base));
    settings.webhook_content = Some("<@&1234>".into());
    settings
}

/// How many webhook calls reported each `(event, shard id)`.
fn alert_counts(webhook: &StandIn) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for request in webhook.requests() {
        *counts.entry(alert_of(&request.body)).or_default() += 1;
    }
    counts
}

fn alert(event: &str, shard: u64) -> (String, String) {
    (event.to_owned(), shard.to_string())
}

#[tokio::test]
async fn each_event_reaches_the_webhook_exactly_once_with_three_replicas() {
    let webhook = StandIn::start(|_, _| Reply::no_content()).await;
    let mut settings = with_webhook(&webhook);
    settings.max_shards = 3;
    let replicas = spawn_replicas(3, settings).await;

    let mut claims = Vec::new();
    for replica in &replicas {
        claims.push(replica.claim().await);
    }
    let leaving = &claims[1];
    assert_eq!(
        replicas[2].disconnect(&leaving.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let mut expected = HashMap::new();
    for claim in &claims {
        expected.insert(alert("connect", claim.shard_id), 1);
    }
    expected.insert(alert("disconnect", leaving.shard_id), 1);
    let all_arrived = eventually(Duration::from_secs(10), || async {
        alert_counts(&webhook).len() >= expected.len()
    })
    .await;
    assert!(all_arrived, "alerts missing: {:?}", alert_counts(&webhook));
    // Time for a duplicate from another replica to show up, if there were one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(alert_counts(&webhook), expected);

    let message = &webhook.requests()[0];
    assert_eq!(message.method, "POST");
    assert_eq!(message.path, "/api/webhooks/1/webhook-token");
    assert_eq!(message.body["content"], "<@&1234>");
}

#[tokio::test]
async fn an_expiry_is_reported_within_max_seconds_plus_ten() {
    let webhook = StandIn::start(|_, _| Reply::no_content()).await;
    let mut settings = with_webhook(&webhook);
    settings.max_seconds = 2;
    let app = spawn_app(settings).await;

    let claim = app.claim().await;
    // `eventually` gives up after MAX_SECONDS + 10 s: an alert that comes later fails the test.
    let reported = eventually(Duration::from_secs(2 + 10), || async {
        alert_counts(&webhook).contains_key(&alert("expire", claim.shard_id))
    })
    .await;
    assert!(reported, "no expire alert: {:?}", alert_counts(&webhook));
    // The lease really was freed: the next process gets the same shard id.
    assert_eq!(app.claim().await.shard_id, claim.shard_id);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_it_succeeds_while_requests_go_on() {
    // The first call hangs for 3 s and fails, the second fails at once, the third succeeds.
    let webhook = StandIn::start(|n, _| match n {
        0 => Reply::json(500, serde_json::json!({})).after(Duration::from_secs(3)),
        1 => Reply::json(503, serde_json::json!({})),
        _ => Reply::no_content(),
    })
    .await;
    let app = spawn_app(with_webhook(&webhook)).await;
    let claim = app.claim().await;

    // While the webhook hangs, the API answers as usual (a client that gives up after 1 s).
    assert!(
        eventually(Duration::from_secs(5), || async {
            !webhook.requests().is_empty()
        })
        .await
    );
    let impatient = app.with_timeout(Duration::from_secs(1));
    for _ in 0..5 {
        let beat = impatient
            .request(Method::POST, "/beat")
            .form(&[("session_id", claim.session_id.as_str())])
            .send()
            .await
            .expect("a beat is answered while the webhook hangs");
        assert_eq!(beat.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(
        webhook.requests().len(),
        1,
        "the first webhook call is still hanging"
    );

    let delivered = eventually(Duration::from_secs(10), || async {
        webhook.requests().len() >= 3
    })
    .await;
    assert!(delivered, "the alert was not retried until it succeeded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = webhook.requests();
    assert_eq!(calls.len(), 3, "no call after the success");
    for call in &calls {
        assert_eq!(alert_of(&call.body), alert("connect", claim.shard_id));
    }
}
