//! The twilight adapter: real twilight-gateway shards against a small fake gateway, with a
//! scripted shardman.

mod fake_gateway;
#[path = "../../test-support/mod.rs"]
mod support;

use fake_gateway::{FakeGateway, Seen};
use serde_json::{Value, json};
use shardman_twilight::twilight_gateway::{Event, Intents};
use shardman_twilight::{Claimed, Client, Fleet, Release, Step};
use std::time::{Duration, Instant};
use support::{FakeShardman, Reply, beat_answer, claim_answer};

struct Setup {
    shardman: FakeShardman,
    gateway: FakeGateway,
    fleet: Fleet,
}

async fn setup(answer: Value) -> Setup {
    setup_with_token(answer, "token").await
}

async fn setup_with_token(mut answer: Value, token: &str) -> Setup {
    let shardman = FakeShardman::start().await;
    let gateway = FakeGateway::start().await;
    answer["gateway_url"] = json!(gateway.url);
    shardman.on("/connect", vec![Reply::json(200, answer)]);
    shardman.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    shardman.on("/disconnect", vec![Reply::empty(204)]);
    shardman.on(
        "/identify/permit",
        vec![Reply::json(200, json!({"permit": true, "shard_id": 0}))],
    );
    shardman.on(
        "/identify/confirm",
        vec![Reply::json(200, json!({"confirmed": true}))],
    );
    let client = Client::new(&shardman.url, "secret").expect("client");
    let fleet = Fleet::new(client, token.into(), Intents::GUILDS);
    Setup {
        shardman,
        gateway,
        fleet,
    }
}

/// Drives the claim's events until `done` holds for what the gateway saw, or fails after `limit`.
async fn run_until(claimed: &mut Claimed, gateway: &FakeGateway, done: impl Fn(&[Seen]) -> bool) {
    let limit = Duration::from_secs(10);
    let started = Instant::now();
    while !done(&gateway.seen()) {
        assert!(
            started.elapsed() < limit,
            "gateway saw {:?}",
            gateway.seen()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), claimed.next()).await;
    }
}

fn identifies(seen: &[Seen]) -> Vec<[u32; 2]> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Identify { shard } => Some(*shard),
            _ => None,
        })
        .collect()
}

/// When `path`'s requests for `shard` arrived.
fn asked_for(shardman: &FakeShardman, path: &str, shard: u32) -> Vec<Instant> {
    shardman
        .requests(path)
        .into_iter()
        .filter(|request| request.json()["shard_id"] == shard)
        .map(|request| request.at)
        .collect()
}

#[tokio::test]
async fn a_group_runs_one_shard_per_id_each_identifying_on_its_permit_and_confirming_it_on_ready() {
    let setup = setup(claim_answer(&[2, 3], &[0.0, 0.0], 6.0, 0.3)).await;
    // The replica holds each permit a while (the bucket is closed); READY comes late.
    setup.shardman.on(
        "/identify/permit",
        vec![
            Reply::json(200, json!({"permit": true, "shard_id": 2}))
                .after(Duration::from_millis(300)),
        ],
    );
    setup.gateway.hold_ready(Duration::from_millis(600));
    let mut claimed = setup.fleet.claim().await.expect("claim");
    let mut ready = Vec::new();
    while ready.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), claimed.next()).await {
            Ok(Step::Event(shard, Event::Ready(_))) => ready.push(shard.number()),
            Ok(Step::Event(..)) => {}
            Ok(Step::Released(r)) => panic!("released: {r:?}"),
            Err(_) => panic!("no READY; gateway saw {:?}", setup.gateway.seen()),
        }
    }
    ready.sort_unstable();
    assert_eq!(ready, [2, 3]);
    // The confirms go out on READY, in the background.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = setup.gateway.records();
    for shard in [2, 3] {
        let identified = records
            .iter()
            .find(|r| r.seen == Seen::Identify { shard: [shard, 4] })
            .expect("identified")
            .at;
        let permits = asked_for(&setup.shardman, "/identify/permit", shard);
        assert_eq!(permits.len(), 1, "shard {shard}");
        assert!(
            identified - permits[0] >= Duration::from_millis(300),
            "shard {shard} identified {:?} after asking",
            identified - permits[0]
        );
        // Confirmed once, when Discord answered its IDENTIFY (READY came 600 ms after it).
        let confirms = asked_for(&setup.shardman, "/identify/confirm", shard);
        assert_eq!(confirms.len(), 1, "shard {shard}");
        assert!(
            confirms[0] - identified >= Duration::from_millis(600),
            "shard {shard} confirmed {:?} after its IDENTIFY",
            confirms[0] - identified
        );
    }
    assert!(setup.shardman.requests("/identify").is_empty());

    // The next beats carry each shard's READY session as resume data and its guild count.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let beat = setup
        .shardman
        .requests("/beat")
        .pop()
        .expect("beats")
        .json();
    let shards = beat["shards"].as_array().expect("per-shard reports");
    assert_eq!(shards.len(), 2);
    for report in shards {
        assert_eq!(report["guild_count"], 2, "{report}");
        let resume = &report["resume"];
        assert!(
            resume["session_id"]
                .as_str()
                .is_some_and(|s| s.starts_with("session-")),
            "{report}"
        );
        assert_eq!(resume["sequence"], 1);
        assert_eq!(
            resume["resume_gateway_url"],
            format!("{}/resume", setup.gateway.url)
        );
        // The session's dispatches so far: its sequence, one per dispatch (READY).
        assert_eq!(report["events"], 1, "{report}");
    }
    assert_eq!(beat["resume"], shards[0]["resume"]);
    assert_eq!(beat["events"], 1);
    assert!(
        beat["cpu_seconds"].is_number() && beat["rss_bytes"].is_u64(),
        "{beat}"
    );
    assert_eq!(claimed.shutdown().await, Release::Shutdown);
}

#[tokio::test]
async fn a_shard_that_inherits_resume_data_resumes_at_the_resume_url_instead_of_identifying() {
    let mut answer = claim_answer(&[0], &[0.0], 6.0, 2.0);
    let setup = setup(answer.clone()).await;
    setup.gateway.known_session("inherited");
    answer["gateway_url"] = json!(setup.gateway.url);
    answer["resumes"] = json!([{"session_id": "inherited", "sequence": 41,
                                "resume_gateway_url": format!("{}/resume", setup.gateway.url)}]);
    setup
        .shardman
        .on("/connect", vec![Reply::json(200, answer)]);
    let mut claimed = setup.fleet.claim().await.expect("claim");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), claimed.next()).await {
            Ok(Step::Event(_, Event::Resumed)) => break,
            Ok(Step::Event(..)) => {}
            other => panic!("{other:?}; gateway saw {:?}", setup.gateway.seen()),
        }
    }
    let seen = setup.gateway.seen();
    assert_eq!(
        seen[..2],
        [
            Seen::Connected {
                path: "/resume/".into()
            },
            Seen::Resume {
                session_id: "inherited".into(),
                sequence: 41
            },
        ]
    );
    assert!(identifies(&seen).is_empty());
    claimed.shutdown().await;
}

#[tokio::test]
async fn a_refused_resume_asks_a_permit_and_identifies_only_once_it_is_granted() {
    let mut answer = claim_answer(&[0], &[0.0], 6.0, 2.0);
    answer["resumes"] = json!([{"session_id": "forgotten", "sequence": 5,
                                "resume_gateway_url": "ws://127.0.0.1:1"}]);
    let setup = setup(answer.clone()).await;
    answer["gateway_url"] = json!(setup.gateway.url);
    answer["resumes"][0]["resume_gateway_url"] = json!(setup.gateway.url);
    setup
        .shardman
        .on("/connect", vec![Reply::json(200, answer)]);
    setup.shardman.on(
        "/identify/permit",
        vec![
            Reply::json(200, json!({"permit": true, "shard_id": 0}))
                .after(Duration::from_millis(500)),
        ],
    );
    let mut claimed = setup.fleet.claim().await.expect("claim");
    run_until(&mut claimed, &setup.gateway, |seen| {
        !identifies(seen).is_empty()
    })
    .await;
    let asked = setup.shardman.requests("/identify/permit");
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].json()["shard_id"], 0);
    let identified = setup
        .gateway
        .records()
        .into_iter()
        .find(|r| matches!(r.seen, Seen::Identify { .. }))
        .expect("identify")
        .at;
    assert!(identified - asked[0].at >= Duration::from_millis(500));
    assert!(setup.gateway.seen().contains(&Seen::Resume {
        session_id: "forgotten".into(),
        sequence: 5
    }));
    claimed.shutdown().await;
}

#[tokio::test]
async fn a_lapsed_lease_closes_the_gateway_connection_at_once_keeping_the_session_resumable() {
    let setup = setup(claim_answer(&[0], &[0.0], 1.0, 0.3)).await;
    setup.shardman.on(
        "/beat",
        vec![Reply::json(503, json!({"detail": "Store Unavailable"}))],
    );
    let mut claimed = setup.fleet.claim().await.expect("claim");
    let deadline = claimed.lease().deadline();
    let release = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Step::Released(release) = claimed.next().await {
                break release;
            }
        }
    })
    .await
    .expect("released");
    assert_eq!(release, Release::Lapsed);
    let closed = setup
        .gateway
        .records()
        .into_iter()
        .find(|r| r.seen == Seen::Closed { code: 4000 })
        .expect("a close frame with 4000");
    assert!(closed.at >= deadline);
    assert!(
        closed.at - deadline < Duration::from_millis(600),
        "{:?}",
        closed.at - deadline
    );
    // Lapsed: neither beaten nor disconnected again.
    let beats = setup.shardman.requests("/beat").len();
    assert_eq!(claimed.shutdown().await, Release::Lapsed);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(setup.shardman.requests("/beat").len(), beats);
    assert!(setup.shardman.requests("/disconnect").is_empty());
}

#[tokio::test]
async fn a_beat_answering_401_closes_the_shard_for_good_and_releases_it_as_retired() {
    let setup = setup(claim_answer(&[0], &[0.0], 6.0, 0.3)).await;
    let mut claimed = setup.fleet.claim().await.expect("claim");
    run_until(&mut claimed, &setup.gateway, |seen| {
        !identifies(seen).is_empty()
    })
    .await;
    setup.shardman.on(
        "/beat",
        vec![Reply::json(401, json!({"detail": "No Shards Available"}))],
    );
    let release = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Step::Released(release) = claimed.next().await {
                break release;
            }
        }
    })
    .await
    .expect("released");
    assert_eq!(release, Release::Retired);
    assert!(setup.gateway.seen().contains(&Seen::Closed { code: 1000 }));
}

#[tokio::test]
async fn shutdown_closes_the_shards_then_beats_their_resume_data_then_disconnects() {
    let setup = setup(claim_answer(&[0], &[0.0], 6.0, 2.0)).await;
    let mut claimed = setup.fleet.claim().await.expect("claim");
    run_until(&mut claimed, &setup.gateway, |seen| {
        !identifies(seen).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(claimed.shutdown().await, Release::Shutdown);
    let closed = setup
        .gateway
        .records()
        .into_iter()
        .find(|r| r.seen == Seen::Closed { code: 4000 })
        .expect("closed with 4000")
        .at;
    let last_beat = setup.shardman.requests("/beat").pop().expect("beats");
    assert!(last_beat.at >= closed);
    assert_eq!(last_beat.json()["resume"]["session_id"], "session-1");
    let disconnect = setup.shardman.requests("/disconnect");
    assert_eq!(disconnect.len(), 1);
    assert!(disconnect[0].at >= last_beat.at);
}

#[tokio::test]
async fn a_shard_closed_for_good_gives_the_group_back_and_releases_it_as_failed() {
    let setup = setup_with_token(claim_answer(&[0, 1], &[0.0, 0.0], 6.0, 2.0), "wrong").await;
    let mut claimed = setup.fleet.claim().await.expect("claim");
    let release = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Step::Released(release) = claimed.next().await {
                break release;
            }
        }
    })
    .await
    .expect("released");
    assert_eq!(release, Release::Failed);
    assert!(setup.gateway.seen().contains(&Seen::Rejected));
    assert_eq!(setup.shardman.requests("/disconnect").len(), 1);
}

#[tokio::test]
async fn the_resume_data_handed_over_names_the_last_dispatch_the_bot_got_not_the_last_received() {
    let setup = setup(claim_answer(&[0], &[0.0], 6.0, 2.0)).await;
    setup.gateway.dispatch_after_ready(3);
    let mut claimed = setup.fleet.claim().await.expect("claim");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), claimed.next()).await {
            Ok(Step::Event(_, Event::Ready(_))) => break,
            Ok(Step::Event(..)) => {}
            other => panic!("{other:?}; gateway saw {:?}", setup.gateway.seen()),
        }
    }
    // The shard receives three more dispatches; the bot takes none of them before it stops.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(claimed.shutdown().await, Release::Shutdown);
    let last_beat = setup
        .shardman
        .requests("/beat")
        .pop()
        .expect("beats")
        .json();
    assert_eq!(
        last_beat["events"], 4,
        "the shard received them: {last_beat}"
    );
    assert_eq!(
        last_beat["resume"]["sequence"], 1,
        "Discord replays what the bot did not get: {last_beat}"
    );

    // A bot that takes every dispatch hands over the last one.
    let setup = setup_with_token(claim_answer(&[0], &[0.0], 6.0, 2.0), "token").await;
    setup.gateway.dispatch_after_ready(3);
    let mut claimed = setup.fleet.claim().await.expect("claim");
    let mut dispatches = 0;
    while dispatches < 4 {
        match tokio::time::timeout(Duration::from_secs(5), claimed.next()).await {
            Ok(Step::Event(_, Event::Ready(_) | Event::GuildDelete(_))) => dispatches += 1,
            Ok(Step::Event(..)) => {}
            other => panic!("{other:?}; gateway saw {:?}", setup.gateway.seen()),
        }
    }
    claimed.shutdown().await;
    let last_beat = setup
        .shardman
        .requests("/beat")
        .pop()
        .expect("beats")
        .json();
    assert_eq!(last_beat["resume"]["sequence"], 4, "{last_beat}");
}
