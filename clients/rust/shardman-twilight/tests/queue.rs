//! The IDENTIFY queue (twilight's `Queue`, paced by shardman) against a scripted shardman.

#[path = "../../test-support/mod.rs"]
mod support;

use serde_json::json;
use shardman_twilight::twilight_gateway::queue::Queue;
use shardman_twilight::{Client, LeaseKeeper, Release, ShardmanQueue};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{FakeShardman, Reply, beat_answer, claim_answer};

fn client(server: &FakeShardman) -> Client {
    Client::new(&server.url, "the-secret").expect("client")
}

fn no_reports() -> shardman_twilight::Reports {
    Arc::new(Vec::new)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test]
async fn the_queue_grants_a_first_identify_at_its_slot_and_asks_identify_for_later_ones() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(
            200,
            claim_answer(&[0, 1], &[0.0, 0.6], 6.0, 2.0),
        )],
    );
    server.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    server.on(
        "/identify",
        vec![Reply::json(200, json!({"sleep_duration": 0.4}))],
    );
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client.clone(), &claim, no_reports());
    let queue = ShardmanQueue::for_claim(client, &claim, &keeper);

    queue.enqueue(1).await.expect("first identify of shard 1");
    let waited = claim.received_at.elapsed();
    assert!((0.6..1.0).contains(&secs(waited)), "waited {waited:?}");
    assert!(server.requests("/identify").is_empty());

    let asked = Instant::now();
    queue.enqueue(1).await.expect("second identify of shard 1");
    let waited = asked.elapsed();
    assert!((0.4..0.8).contains(&secs(waited)), "waited {waited:?}");
    let identify = server.requests("/identify");
    assert_eq!(identify.len(), 1);
    assert_eq!(
        identify[0].json(),
        json!({"session_id": "session-1", "shard_id": 1})
    );
}

#[tokio::test]
async fn a_shard_that_inherits_resume_data_has_no_first_slot_and_asks_identify() {
    let server = FakeShardman::start().await;
    let mut answer = claim_answer(&[0], &[0.0], 6.0, 2.0);
    answer["resumes"] =
        json!([{"session_id": "abc", "sequence": 1, "resume_gateway_url": "wss://resume"}]);
    server.on("/connect", vec![Reply::json(200, answer)]);
    server.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    server.on(
        "/identify",
        vec![Reply::json(200, json!({"sleep_duration": 0.0}))],
    );
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client.clone(), &claim, no_reports());
    let queue = ShardmanQueue::for_claim(client, &claim, &keeper);
    queue
        .enqueue(0)
        .await
        .expect("identify after a failed resume");
    assert_eq!(server.requests("/identify").len(), 1);
}

#[tokio::test]
async fn identify_answering_404_ends_the_claim_as_lost_and_never_grants_the_identify() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[0], &[0.0], 6.0, 2.0))],
    );
    server.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    server.on(
        "/identify",
        vec![Reply::json(404, json!({"detail": "Session Not Found"}))],
    );
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client.clone(), &claim, no_reports());
    let queue = ShardmanQueue::for_claim(client, &claim, &keeper);
    queue.enqueue(0).await.expect("the first identify");
    let permit = queue.enqueue(0);
    assert_eq!(keeper.ended().await, Release::Lost);
    // Neither granted nor cancelled (a cancelled permit makes twilight ask again at once).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), permit)
            .await
            .is_err()
    );
}
