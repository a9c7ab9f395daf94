//! The IDENTIFY queue (twilight's `Queue`, paced by shardman's permits) against a scripted
//! shardman.

#[path = "../../test-support/mod.rs"]
mod support;

use serde_json::json;
use shardman_twilight::twilight_gateway::queue::Queue;
use shardman_twilight::{Claim, Client, LeaseKeeper, Release, ShardmanQueue};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{FakeShardman, Reply, beat_answer, claim_answer};

fn no_reports() -> shardman_twilight::Reports {
    Arc::new(Vec::new)
}

/// A claim of `shard_ids` from `server`, its keeper beating, and its queue.
async fn queue_of(server: &FakeShardman, shard_ids: &[u32]) -> (Claim, LeaseKeeper, ShardmanQueue) {
    let sleeps = vec![0.0; shard_ids.len()];
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(shard_ids, &sleeps, 6.0, 2.0))],
    );
    server.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    let client = Client::new(&server.url, "the-secret").expect("client");
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client.clone(), &claim, no_reports());
    let queue = ShardmanQueue::for_claim(client, &claim, &keeper);
    (claim, keeper, queue)
}

#[tokio::test]
async fn the_queue_lets_a_shard_identify_once_its_permit_is_granted_and_confirms_it_once_answered()
{
    let server = FakeShardman::start().await;
    server.on(
        "/identify/permit",
        vec![
            Reply::json(
                200,
                json!({"permit": false, "shard_id": 1, "retry_after": 0.3}),
            ),
            Reply::json(200, json!({"permit": true, "shard_id": 1}))
                .after(Duration::from_millis(200)),
        ],
    );
    server.on(
        "/identify/confirm",
        vec![Reply::json(200, json!({"confirmed": true}))],
    );
    let (_claim, _keeper, queue) = queue_of(&server, &[0, 1]).await;
    let claim_query = server.requests("/connect")[0].query.clone();
    assert!(
        claim_query.split('&').any(|pair| pair == "identify=permit"),
        "{claim_query}"
    );

    let asked = Instant::now();
    queue.enqueue(1).await.expect("shard 1 may identify");
    let granted = Instant::now();
    let permits = server.requests("/identify/permit");
    assert_eq!(permits.len(), 2);
    for permit in &permits {
        assert_eq!(
            permit.json(),
            json!({"session_id": "session-1", "shard_id": 1, "wait": 10.0})
        );
    }
    // Asked again after the server's retry_after, and let through only with the grant.
    assert!(permits[1].at - permits[0].at >= Duration::from_millis(300));
    assert!(granted - asked >= Duration::from_millis(500));
    assert!(server.requests("/identify/confirm").is_empty());

    queue.identify_answered(1);
    queue.identify_answered(1);
    queue.identify_answered(0); // no permit of shard 0 awaits confirming
    tokio::time::sleep(Duration::from_millis(200)).await;
    let confirms = server.requests("/identify/confirm");
    assert_eq!(confirms.len(), 1);
    assert_eq!(
        confirms[0].json(),
        json!({"session_id": "session-1", "shard_id": 1})
    );
}

#[tokio::test]
async fn a_permit_answering_429_is_asked_again_no_sooner_than_its_retry_after() {
    let server = FakeShardman::start().await;
    server.on(
        "/identify/permit",
        vec![
            Reply::json(429, json!({"detail": "Identify Budget Exhausted"}))
                .header("retry-after", "1"),
            Reply::json(200, json!({"permit": true, "shard_id": 0})),
        ],
    );
    let (_claim, keeper, queue) = queue_of(&server, &[0]).await;
    queue.enqueue(0).await.expect("granted after the wait");
    let permits = server.requests("/identify/permit");
    assert_eq!(permits.len(), 2);
    assert!(permits[1].at - permits[0].at >= Duration::from_secs(1));
    assert_eq!(keeper.released(), None);
}

#[tokio::test]
async fn a_permit_answering_404_ends_the_claim_as_lost_and_never_lets_the_shard_identify() {
    let server = FakeShardman::start().await;
    server.on(
        "/identify/permit",
        vec![Reply::json(404, json!({"detail": "Session Not Found"}))],
    );
    let (_claim, keeper, queue) = queue_of(&server, &[0]).await;
    let permit = queue.enqueue(0);
    assert_eq!(keeper.ended().await, Release::Lost);
    // Neither granted nor cancelled (a cancelled permit makes twilight ask again at once).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), permit)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_permit_answering_401_ends_the_claim_as_retired() {
    let server = FakeShardman::start().await;
    server.on(
        "/identify/permit",
        vec![Reply::json(401, json!({"detail": "No Shards Available"}))],
    );
    let (_claim, keeper, queue) = queue_of(&server, &[0]).await;
    let _permit = queue.enqueue(0);
    assert_eq!(keeper.ended().await, Release::Retired);
}

#[tokio::test]
async fn a_shard_that_stops_waiting_for_its_permit_stops_the_asking() {
    let server = FakeShardman::start().await;
    server.on(
        "/identify/permit",
        vec![
            Reply::json(
                200,
                json!({"permit": false, "shard_id": 0, "retry_after": 0.1}),
            )
            .after(Duration::from_millis(100)),
        ],
    );
    let (_claim, _keeper, queue) = queue_of(&server, &[0]).await;
    let permit = queue.enqueue(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // twilight drops the receiver when the shard loses its connection.
    drop(permit);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.requests("/identify/permit").len(), 1);
}
