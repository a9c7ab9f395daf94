//! The core client and the lease keeper against the real shardman binary (embedded store), see
//! tests/support/shardman.rs for which binary.

#[path = "../../test-support/mod.rs"]
mod support;

use shardman_client::{Client, Error, LeaseKeeper, Resume, ShardReport, State};
use std::sync::Arc;
use std::time::Duration;
use support::shardman::{SECRET, start as start_shardman};

#[tokio::test]
async fn against_the_real_shardman_a_claim_beats_takes_identify_permits_and_hands_resume_data_on() {
    let shardman = start_shardman(2, 3).await;
    let client = Client::new(&shardman.url, SECRET).expect("client");

    let first = client.claim().await.expect("first claim");
    assert_eq!((first.shard_ids.clone(), first.shard_count), (vec![0], 2));
    assert_eq!(first.lease, Duration::from_secs(3));
    assert_eq!(first.beat_interval, Duration::from_secs(1));
    assert_eq!(first.state, State::Active);

    let resume = Resume {
        session_id: "discord-session-0".into(),
        sequence: 77,
        resume_gateway_url: "ws://127.0.0.1:1/resume".into(),
    };
    let report = ShardReport {
        shard_id: 0,
        guild_count: Some(3),
        latency: Some(0.05),
        resume: Some(resume.clone()),
        events: Some(77),
    };
    let ack = client
        .beat(&first.session_id, &[report])
        .await
        .expect("beat");
    let answer = ack.answer.expect("a representation");
    assert_eq!(
        (answer.shard_id, answer.shard_count, answer.state),
        (0, 2, State::Active)
    );

    // Claims IDENTIFY by permits: the first is granted at once, confirmed, and the bucket is
    // closed for about 5 s after the confirm.
    assert_eq!(first.sleep_durations, [Duration::ZERO]);
    let permit = client
        .identify_permit(&first.session_id, 0, Duration::ZERO)
        .await
        .expect("permit");
    assert!(permit.granted && permit.shard_id == 0, "{permit:?}");
    assert!(
        client
            .identify_confirm(&first.session_id, 0)
            .await
            .expect("confirm")
    );
    let refused = client
        .identify_permit(&first.session_id, 0, Duration::ZERO)
        .await
        .expect("permit");
    assert!(!refused.granted, "{refused:?}");
    let retry_after = refused.retry_after.expect("retry_after");
    assert!(
        retry_after > Duration::from_secs(4) && retry_after <= Duration::from_millis(5000),
        "{retry_after:?}"
    );

    let second = client.claim().await.expect("second claim");
    assert_eq!(second.shard_ids, [1]);
    assert!(matches!(
        client.connect().await,
        Err(Error::NoShardsAvailable)
    ));

    client
        .disconnect(&first.session_id)
        .await
        .expect("disconnect");
    assert!(matches!(
        client.beat(&first.session_id, &[]).await,
        Err(Error::SessionLost)
    ));
    assert!(matches!(
        client
            .identify_permit(&first.session_id, 0, Duration::ZERO)
            .await,
        Err(Error::SessionLost)
    ));

    let next = client.claim().await.expect("shard 0 again");
    assert_eq!(next.shard_ids, [0]);
    assert_eq!(next.resumes, [Some(resume)]);
    assert_eq!(next.sleep_durations, [Duration::ZERO]);
}

#[tokio::test]
async fn against_the_real_shardman_a_lease_keeper_holds_the_shard_past_its_lease_and_gives_it_back()
{
    let shardman = start_shardman(1, 2).await;
    let client = Client::new(&shardman.url, SECRET).expect("client");
    let claim = client.claim().await.expect("claim");
    let mut keeper = LeaseKeeper::start(client.clone(), &claim, Arc::new(Vec::new));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(keeper.released(), None, "the keeper let the lease go");
    assert!(matches!(
        client.connect().await,
        Err(Error::NoShardsAvailable)
    ));
    keeper.shutdown(Vec::new()).await;
    let again = client.connect().await.expect("the shard is free again");
    assert_eq!(again.shard_ids, [0]);
}

#[tokio::test]
async fn against_the_real_shardman_a_waiting_claim_gets_the_shard_given_back_at_once() {
    let shardman = start_shardman(1, 10).await;
    let client = Client::new(&shardman.url, SECRET).expect("client");
    let held = client.claim().await.expect("claim");
    let started = std::time::Instant::now();
    assert!(matches!(
        client.connect_waiting(Duration::from_millis(500)).await,
        Err(Error::NoShardsAvailable)
    ));
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "shardman waited before its 401"
    );

    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.claim().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = std::time::Instant::now();
    client
        .disconnect(&held.session_id)
        .await
        .expect("disconnect");
    let claim = waiting.await.expect("joins").expect("claim");

    assert!(
        released_at.elapsed() < Duration::from_secs(1),
        "answered {:?} after the release",
        released_at.elapsed()
    );
    assert_eq!(claim.shard_ids, [0]);
}
