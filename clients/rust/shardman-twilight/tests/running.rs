//! `Fleet::run`: every claim a process is given, with real twilight shards against the small fake
//! gateway and a scripted shardman. By load: claims side by side, a waiting claim kept open, a
//! claim handed over alone, a shard reconnected on a beat's request; with groups: one at a time.

mod fake_gateway;
#[path = "../../test-support/mod.rs"]
mod support;

use fake_gateway::{FakeGateway, Seen};
use serde_json::{Value, json};
use shardman_twilight::twilight_gateway::{Event, Intents};
use shardman_twilight::{Client, Fleet, Notice, Release, Running};
use std::time::{Duration, Instant};
use support::{FakeShardman, Reply, beat_answer, claim_answer};

struct Setup {
    shardman: FakeShardman,
    gateway: FakeGateway,
    running: Running,
}

/// A claim of `shard` alone, its session `s-<shard>`, placed `placement`.
fn claim_of(shard: u32, placement: &str, gateway: &FakeGateway) -> Value {
    let mut answer = claim_answer(&[shard], &[0.0], 6.0, 0.3);
    answer["session_id"] = json!(format!("s-{shard}"));
    answer["placement"] = json!(placement);
    answer["gateway_url"] = json!(gateway.url);
    answer
}

/// A shardman that grants `claims` in order, then holds every further `/connect` for 2 s and
/// answers 401 (every shard is held).
async fn setup(claims: impl Fn(&FakeGateway) -> Vec<Value>) -> Setup {
    let shardman = FakeShardman::start().await;
    let gateway = FakeGateway::start().await;
    let mut connects: Vec<Reply> = claims(&gateway)
        .into_iter()
        .map(|claim| Reply::json(200, claim))
        .collect();
    connects.push(
        Reply::json(401, json!({"detail": "No Shards Available"})).after(Duration::from_secs(2)),
    );
    shardman.on("/connect", connects);
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
    let client = Client::new(&shardman.url, "secret")
        .expect("client")
        .with_connect_wait(Duration::from_secs(2));
    let running = Fleet::new(client, "token".into(), Intents::GUILDS).run();
    Setup {
        shardman,
        gateway,
        running,
    }
}

/// Notices until `done` holds for those collected, or fails after 10 s.
async fn notices_until(running: &mut Running, done: impl Fn(&[Notice]) -> bool) -> Vec<Notice> {
    let started = Instant::now();
    let mut notices = Vec::new();
    while !done(&notices) {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, running.next()).await {
            Ok(notice) => notices.push(notice.expect("no error")),
            Err(_) => panic!("only {notices:?}"),
        }
    }
    notices
}

fn readies(notices: &[Notice]) -> usize {
    notices
        .iter()
        .filter(|notice| matches!(notice, Notice::Event(_, Event::Ready(_))))
        .count()
}

/// Beats of session `session_id`, as sent.
fn beats_of(shardman: &FakeShardman, session_id: &str) -> Vec<(Instant, Value)> {
    shardman
        .requests("/beat")
        .into_iter()
        .map(|request| (request.at, request.json()))
        .filter(|(_, beat)| beat["session_id"] == session_id)
        .collect()
}

#[tokio::test]
async fn by_load_every_claim_runs_side_by_side_and_a_hand_over_ends_only_its_own() {
    let mut setup =
        setup(|gateway| vec![claim_of(0, "load", gateway), claim_of(1, "load", gateway)]).await;
    let notices = notices_until(&mut setup.running, |notices| readies(notices) == 2).await;
    let claimed: Vec<u32> = notices
        .iter()
        .filter_map(|notice| match notice {
            Notice::Claimed(claim) => Some(claim.shard_ids[0]),
            _ => None,
        })
        .collect();
    assert_eq!(claimed, [0, 1]);
    // The third /connect, asked while both claims run, is the waiting one kept open.
    tokio::time::timeout(Duration::from_secs(1), async {
        while setup.shardman.requests("/connect").len() < 3 {
            let _ = tokio::time::timeout(Duration::from_millis(50), setup.running.next()).await;
        }
    })
    .await
    .expect("a waiting claim");

    let mut moving = beat_answer("active");
    moving["hand_over"] = json!(true);
    setup.shardman.on_session(
        "/beat",
        "s-1",
        vec![Reply::json(200, moving), Reply::empty(204)],
    );
    let notices = notices_until(&mut setup.running, |notices| {
        notices
            .iter()
            .any(|notice| matches!(notice, Notice::Released(..)))
    })
    .await;
    let Some(Notice::Released(claim, release)) = notices.last() else {
        panic!("{notices:?}");
    };
    assert_eq!(
        (claim.shard_ids.as_slice(), *release),
        ([1].as_slice(), Release::HandedOver)
    );

    // Handed over as on shutdown: closed resumably, then a last beat with the sequence the bot
    // got (READY's), then /disconnect.
    let records = setup.gateway.records();
    let connection_of = |shard: u32| {
        records
            .iter()
            .find(|r| r.seen == Seen::Identify { shard: [shard, 4] })
            .expect("identified")
            .connection
    };
    let closed = records
        .iter()
        .find(|r| r.connection == connection_of(1) && r.seen == Seen::Closed { code: 4000 })
        .expect("shard 1 closed with 4000")
        .at;
    let (last_beat_at, last_beat) = beats_of(&setup.shardman, "s-1").pop().expect("beats");
    assert!(last_beat_at >= closed);
    assert_eq!(
        last_beat["shards"][0]["resume"]["sequence"], 1,
        "{last_beat}"
    );
    let disconnects = setup.shardman.requests("/disconnect");
    assert_eq!(disconnects.len(), 1);
    assert_eq!(disconnects[0].json()["session_id"], "s-1");
    assert!(disconnects[0].at >= last_beat_at);

    // Shard 0 goes on: its connection stays open and its session beats.
    let beats_before = beats_of(&setup.shardman, "s-0").len();
    // A beat interval or so; up to 5 s on a loaded machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while beats_of(&setup.shardman, "s-0").len() <= beats_before
        && tokio::time::Instant::now() < deadline
    {
        let _ = tokio::time::timeout(Duration::from_millis(200), setup.running.next()).await;
    }
    assert!(beats_of(&setup.shardman, "s-0").len() > beats_before);
    assert!(
        !setup
            .gateway
            .records()
            .iter()
            .any(|r| r.connection == connection_of(0) && matches!(r.seen, Seen::Closed { .. })),
        "{:?}",
        setup.gateway.seen()
    );
    let released = setup.running.shutdown().await;
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].1, Release::Shutdown);
}

#[tokio::test]
async fn a_beat_asking_to_reconnect_a_shard_closes_it_resumably_and_twilight_resumes_it() {
    let mut setup = setup(|gateway| vec![claim_of(2, "load", gateway)]).await;
    notices_until(&mut setup.running, |notices| readies(notices) == 1).await;
    let mut reconnect = beat_answer("active");
    reconnect["reconnect"] = json!([2]);
    setup.shardman.on(
        "/beat",
        vec![
            Reply::json(200, reconnect),
            Reply::json(200, beat_answer("active")),
        ],
    );
    notices_until(&mut setup.running, |notices| {
        notices
            .iter()
            .any(|notice| matches!(notice, Notice::Event(_, Event::Resumed)))
    })
    .await;
    let seen = setup.gateway.seen();
    let identified_session = seen.iter().position(|s| matches!(s, Seen::Identify { .. }));
    let closed = seen.iter().position(|s| *s == Seen::Closed { code: 4000 });
    let resumed = seen.iter().position(|s| {
        matches!(s, Seen::Resume { session_id, sequence: 1 } if session_id.starts_with("session-"))
    });
    assert!(
        identified_session < closed && closed < resumed && resumed.is_some(),
        "{seen:?}"
    );
    // One IDENTIFY: the reconnect RESUMEd.
    assert_eq!(
        seen.iter()
            .filter(|s| matches!(s, Seen::Identify { .. }))
            .count(),
        1
    );
    setup.running.shutdown().await;
}

#[tokio::test]
async fn with_groups_a_process_runs_one_claim_and_asks_no_other_while_it_runs() {
    let mut setup = setup(|gateway| vec![claim_of(0, "groups", gateway)]).await;
    notices_until(&mut setup.running, |notices| readies(notices) == 1).await;
    let _ = tokio::time::timeout(Duration::from_millis(800), setup.running.next()).await;
    assert_eq!(setup.shardman.requests("/connect").len(), 1);
    // A hand-over ends the claim; the process goes on and claims again.
    let mut moving = beat_answer("active");
    moving["hand_over"] = json!(true);
    setup.shardman.on("/beat", vec![Reply::json(200, moving)]);
    let notices = notices_until(&mut setup.running, |notices| {
        notices
            .iter()
            .any(|notice| matches!(notice, Notice::Released(..)))
    })
    .await;
    let Some(Notice::Released(_, release)) = notices.last() else {
        panic!("{notices:?}");
    };
    assert_eq!(*release, Release::HandedOver);
    assert_eq!(setup.running.exit_code(*release), None);
    let _ = tokio::time::timeout(Duration::from_millis(300), setup.running.next()).await;
    assert_eq!(setup.shardman.requests("/connect").len(), 2);
}
