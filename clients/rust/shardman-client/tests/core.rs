//! The core client and the lease keeper against a scripted shardman.

#[path = "../../test-support/mod.rs"]
mod support;

use serde_json::json;
use shardman_client::{Client, Error, LeaseKeeper, Release, Resume, ShardReport, State};
use std::sync::Arc;
use std::time::Duration;
use support::{FakeShardman, Reply, beat_answer, claim_answer};

fn client(server: &FakeShardman) -> Client {
    Client::new(&server.url, "the-secret").expect("client")
}

fn no_reports() -> shardman_client::Reports {
    Arc::new(Vec::new)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::test]
async fn claim_waits_out_a_503_for_its_retry_after_then_gets_the_shard() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![
            Reply::json(503, json!({"detail": "Store Unavailable"})).header("retry-after", "1"),
            Reply::json(200, claim_answer(&[2], &[0.0], 6.0, 2.0)),
        ],
    );
    let claim = client(&server).claim().await.expect("claim");
    assert_eq!(claim.shard_ids, [2]);
    assert_eq!(claim.shard_count, 4);
    let tries = server.requests("/connect");
    assert_eq!(tries.len(), 2);
    let gap = tries[1].at - tries[0].at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(2), "retried after {gap:?}");
}

#[tokio::test]
async fn claim_backs_off_exponentially_on_429_without_retry_after() {
    let server = FakeShardman::start().await;
    let busy = Reply::json(429, json!({"detail": "Identify Budget Exhausted"}));
    server.on(
        "/connect",
        vec![
            busy.clone(),
            busy,
            Reply::json(200, claim_answer(&[0], &[0.0], 6.0, 2.0)),
        ],
    );
    client(&server).claim().await.expect("claim");
    let tries = server.requests("/connect");
    assert_eq!(tries.len(), 3);
    let first = tries[1].at - tries[0].at;
    let second = tries[2].at - tries[1].at;
    // 0.5 s, then 1 s (each within 20 % jitter: clients/contract/backoff.json).
    assert!(first >= Duration::from_millis(400), "{first:?}");
    assert!(second >= Duration::from_millis(800), "{second:?}");
    assert!(second > first, "{first:?} then {second:?}");
}

#[tokio::test]
async fn connect_answering_401_is_no_shards_available_and_claim_asks_again_a_second_later() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![
            Reply::json(401, json!({"detail": "No Shards Available"})),
            Reply::json(401, json!({"detail": "No Shards Available"})),
            Reply::json(200, claim_answer(&[0], &[0.0], 6.0, 2.0)),
        ],
    );
    let client = client(&server);
    assert!(matches!(
        client.connect().await,
        Err(Error::NoShardsAvailable)
    ));
    client.claim().await.expect("claim");
    let tries = server.requests("/connect");
    assert_eq!(tries.len(), 3);
    let gap = tries[2].at - tries[1].at;
    assert!(
        gap >= Duration::from_millis(800) && gap < Duration::from_secs(2),
        "asked again after {gap:?}"
    );
}

#[tokio::test]
async fn claim_asks_shardman_to_wait_for_a_free_shard() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[0], &[0.0], 6.0, 2.0))],
    );
    client(&server).claim().await.expect("claim");
    let query = server.requests("/connect")[0].query.clone();
    assert!(query.split('&').any(|pair| pair == "wait=30"), "{query}");
}

#[tokio::test]
async fn claim_asks_again_at_once_after_a_wait_that_ran_out() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![
            // shardman waited the whole wait for a shard
            Reply::json(401, json!({"detail": "No Shards Available"}))
                .after(Duration::from_millis(300)),
            Reply::json(200, claim_answer(&[0], &[0.0], 6.0, 2.0)),
        ],
    );
    let client = client(&server).with_connect_wait(Duration::from_millis(400));
    client.claim().await.expect("claim");
    let tries = server.requests("/connect");
    assert_eq!(tries.len(), 2);
    let gap = tries[1].at - tries[0].at;
    assert!(
        gap < Duration::from_millis(600),
        "asked again after {gap:?}"
    );
}

#[tokio::test]
async fn a_claim_that_waited_counts_its_lease_from_the_send_time_plus_its_wait() {
    let server = FakeShardman::start().await;
    let mut answer = claim_answer(&[0], &[0.0], 6.0, 2.0);
    answer["waited"] = json!(0.5);
    server.on(
        "/connect",
        vec![Reply::json(200, answer).after(Duration::from_millis(500))],
    );
    // Made first: building a client loads TLS roots, which takes a while on a busy machine.
    let client = client(&server);
    let sent_at = std::time::Instant::now();
    let claim = client
        .connect_waiting(Duration::from_secs(1))
        .await
        .expect("claim");
    let query = server.requests("/connect")[0].query.clone();
    assert!(query.split('&').any(|pair| pair == "wait=1"), "{query}");
    let counts_from = claim.requested_at - sent_at;
    assert!(
        counts_from >= Duration::from_millis(500) && counts_from < Duration::from_millis(600),
        "the lease counts from {counts_from:?} after the send"
    );
}

#[tokio::test]
async fn connect_answering_403_is_forbidden_and_claim_gives_up_at_once() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(403, json!({"detail": "Invalid Token"}))],
    );
    assert!(matches!(
        client(&server).claim().await,
        Err(Error::Forbidden)
    ));
    assert_eq!(server.requests("/connect").len(), 1);
}

#[tokio::test]
async fn a_claim_reads_the_group_its_slots_resume_data_and_lease() {
    let server = FakeShardman::start().await;
    let mut answer = claim_answer(&[4, 5], &[0.0, 5.25], 6.0, 2.0);
    answer["resumes"] =
        json!([{"session_id": "abc", "sequence": 42, "resume_gateway_url": "wss://resume"}, null]);
    answer["gateway_url"] = json!("wss://gateway.example");
    server.on("/connect", vec![Reply::json(200, answer)]);
    let claim = client(&server).connect().await.expect("claim");
    assert_eq!(claim.shard_ids, [4, 5]);
    assert_eq!(
        claim.sleep_durations,
        [Duration::ZERO, Duration::from_millis(5250)]
    );
    assert_eq!(
        claim.resumes[0]
            .as_ref()
            .map(|r| (r.session_id.as_str(), r.sequence)),
        Some(("abc", 42))
    );
    assert_eq!(claim.resumes[1], None);
    assert_eq!(claim.lease, Duration::from_secs(6));
    assert_eq!(claim.beat_interval, Duration::from_secs(2));
    assert_eq!(claim.gateway_url.as_deref(), Some("wss://gateway.example"));
    assert_eq!((claim.fence, claim.generation), (7, 1));
    assert_eq!(claim.session_id, "session-1");
    assert_eq!(
        server.requests("/connect")[0].headers["authorization"],
        "the-secret"
    );
}

#[tokio::test]
async fn a_beat_sends_per_shard_reports_and_the_first_shards_as_flat_fields() {
    let server = FakeShardman::start().await;
    server.on("/beat", vec![Reply::json(200, beat_answer("standby"))]);
    let resume = Resume {
        session_id: "discord-session".into(),
        sequence: 9,
        resume_gateway_url: "wss://resume".into(),
    };
    let reports = [
        ShardReport {
            shard_id: 4,
            guild_count: Some(12),
            latency: Some(0.25),
            resume: Some(resume),
            events: Some(9),
        },
        ShardReport {
            shard_id: 5,
            ..ShardReport::default()
        },
    ];
    let ack = client(&server)
        .beat("session-1", &reports)
        .await
        .expect("beat");
    assert_eq!(ack.answer.map(|a| a.state), Some(State::Standby));
    let beat = &server.requests("/beat")[0];
    assert_eq!(beat.headers["prefer"], "return=representation");
    let resume = json!({"session_id": "discord-session", "sequence": 9, "resume_gateway_url": "wss://resume"});
    let mut body = beat.json();
    // The process's label, CPU time and resident memory ride along.
    let usage = body.as_object_mut().expect("an object");
    assert_eq!(
        usage.remove("process"),
        Some(json!(shardman_client::default_process_label()))
    );
    let cpu = usage.remove("cpu_seconds").and_then(|cpu| cpu.as_f64());
    let rss = usage.remove("rss_bytes").and_then(|rss| rss.as_u64());
    assert!(cpu.is_some_and(|cpu| cpu >= 0.0), "cpu_seconds {cpu:?}");
    assert!(
        rss.is_some_and(|rss| rss > 1024 * 1024),
        "rss_bytes {rss:?}"
    );
    assert_eq!(
        body,
        json!({
            "session_id": "session-1",
            "guild_count": 12,
            "latency": 0.25,
            "resume": resume,
            "events": 9,
            "shards": [
                {"shard_id": 4, "guild_count": 12, "latency": 0.25, "resume": resume, "events": 9},
                {"shard_id": 5},
            ],
            "ready": false,
        })
    );
}

#[tokio::test]
async fn connect_files_the_process_under_host_and_pid_unless_the_bot_names_it() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[0], &[0.0], 60.0, 20.0))],
    );
    client(&server).connect().await.expect("claim");
    client(&server)
        .with_process("worker 3")
        .connect()
        .await
        .expect("claim");
    let targets: Vec<String> = server
        .requests("/connect")
        .iter()
        .map(|request| request.target.clone())
        .collect();
    let default = shardman_client::default_process_label();
    assert!(default.ends_with(&format!(":{}", std::process::id())));
    let encoded: String = default
        .chars()
        .map(|c| {
            if c == ':' {
                "%3A".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect();
    assert_eq!(
        targets,
        [
            format!("/connect?process={encoded}&identify=permit"),
            "/connect?process=worker+3&identify=permit".to_owned()
        ]
    );
}

#[tokio::test]
async fn a_session_id_shardman_resigned_is_sent_from_the_next_request_on() {
    let server = FakeShardman::start().await;
    server.on(
        "/beat",
        vec![
            Reply::empty(204).header("session-id", "s-resigned"),
            Reply::empty(204),
        ],
    );
    server.on(
        "/identify/permit",
        vec![Reply::json(200, json!({"permit": true, "shard_id": 0}))],
    );
    server.on(
        "/identify/confirm",
        vec![Reply::json(200, json!({"confirmed": true}))],
    );
    server.on("/disconnect", vec![Reply::empty(204)]);
    let client = client(&server);
    client.beat("s", &[]).await.expect("ack");
    client.beat("s", &[]).await.expect("ack");
    client
        .identify_permit("s", 0, Duration::ZERO)
        .await
        .expect("permit");
    client.identify_confirm("s", 0).await.expect("confirmed");
    client.disconnect("s").await.expect("released");
    let sent = |path: &str| -> Vec<serde_json::Value> {
        server
            .requests(path)
            .iter()
            .map(|request| request.json()["session_id"].clone())
            .collect()
    };
    assert_eq!(sent("/beat"), [json!("s"), json!("s-resigned")]);
    assert_eq!(sent("/identify/permit"), [json!("s-resigned")]);
    assert_eq!(sent("/identify/confirm"), [json!("s-resigned")]);
    assert_eq!(sent("/disconnect"), [json!("s-resigned")]);
}

#[tokio::test]
async fn a_beat_answering_401_is_retired_404_is_lost_and_204_is_an_ack_without_answer() {
    let server = FakeShardman::start().await;
    server.on(
        "/beat",
        vec![
            Reply::json(401, json!({"detail": "No Shards Available"})),
            Reply::json(404, json!({"detail": "Session Not Found"})),
            Reply::empty(204),
        ],
    );
    let client = client(&server);
    assert!(matches!(client.beat("s", &[]).await, Err(Error::Retired)));
    assert!(matches!(
        client.beat("s", &[]).await,
        Err(Error::SessionLost)
    ));
    assert!(client.beat("s", &[]).await.expect("ack").answer.is_none());
}

#[tokio::test]
async fn a_keeper_whose_beats_fail_lapses_at_connect_time_plus_the_longest_wait_plus_the_lease() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(
            200,
            claim_answer(&[0, 1], &[0.0, 1.0], 1.0, 0.3),
        )],
    );
    server.on(
        "/beat",
        vec![Reply::json(503, json!({"detail": "Store Unavailable"})).header("retry-after", "0")],
    );
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client, &claim, no_reports());
    assert_eq!(
        keeper.view().deadline(),
        claim.requested_at + Duration::from_secs(2)
    );
    assert_eq!(keeper.ended().await, Release::Lapsed);
    let lapsed_after = claim.requested_at.elapsed();
    assert!(
        (2.0..2.6).contains(&secs(lapsed_after)),
        "lapsed after {lapsed_after:?}"
    );
    let beats = server.requests("/beat");
    assert!(beats.len() >= 2, "kept trying: {} beats", beats.len());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = server.requests("/beat");
    assert_eq!(after.len(), beats.len(), "beat after the lapse");
    // None sent after the deadline (the server records a beat a moment after it was sent).
    let deadline = claim.requested_at + Duration::from_secs(2);
    let margin = Duration::from_millis(100);
    assert!(after.iter().all(|b| b.at < deadline + margin));
}

#[tokio::test]
async fn acknowledged_beats_carry_the_lease_past_its_first_deadline_until_a_404_ends_it_as_lost() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[0], &[0.0], 1.0, 0.3))],
    );
    let mut beats = vec![Reply::json(200, beat_answer("standby"))];
    beats.extend(std::iter::repeat_n(
        Reply::json(200, beat_answer("active")),
        6,
    ));
    beats.push(Reply::json(404, json!({"detail": "Session Not Found"})));
    server.on("/beat", beats);
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let keeper = LeaseKeeper::start(client, &claim, no_reports());
    assert_eq!(keeper.ended().await, Release::Lost);
    let lost_after = claim.requested_at.elapsed();
    assert!(lost_after > Duration::from_secs(2), "{lost_after:?}");
    assert_eq!(keeper.state(), State::Active);
    let beats = server.requests("/beat");
    assert_eq!(beats.len(), 8);
    // The first beat goes out with the claim, the others every beat_interval.
    assert!(beats[0].at - claim.requested_at < Duration::from_millis(200));
    let gap = beats[2].at - beats[1].at;
    assert!((0.28..0.6).contains(&secs(gap)), "beats {gap:?} apart");
}

#[tokio::test]
async fn a_beat_answering_401_retires_the_claim_and_stops_the_beats() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[0], &[0.0], 1.0, 0.2))],
    );
    server.on(
        "/beat",
        vec![
            Reply::json(200, beat_answer("active")),
            Reply::json(401, json!({"detail": "No Shards Available"})),
        ],
    );
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let mut keeper = LeaseKeeper::start(client, &claim, no_reports());
    assert_eq!(keeper.ended().await, Release::Retired);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.requests("/beat").len(), 2);
    // A retired session is not disconnected: shardman retired it already.
    assert_eq!(keeper.shutdown(Vec::new()).await, Release::Retired);
    assert!(server.requests("/disconnect").is_empty());
}

#[tokio::test]
async fn shutdown_beats_the_last_reports_then_disconnects() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[3], &[0.0], 6.0, 2.0))],
    );
    server.on("/beat", vec![Reply::json(200, beat_answer("active"))]);
    server.on("/disconnect", vec![Reply::empty(204)]);
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let mut keeper = LeaseKeeper::start(client, &claim, no_reports());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let last = ShardReport {
        shard_id: 3,
        guild_count: Some(1),
        ..ShardReport::default()
    };
    assert_eq!(keeper.shutdown(vec![last]).await, Release::Shutdown);
    let beats = server.requests("/beat");
    assert_eq!(beats.last().expect("beats").json()["guild_count"], 1);
    let disconnect = &server.requests("/disconnect")[0];
    assert_eq!(disconnect.json(), json!({"session_id": "session-1"}));
    assert!(disconnect.at >= beats.last().expect("beats").at);
}

#[tokio::test]
async fn a_beat_answering_hand_over_ends_the_claim_as_handed_over_which_gives_it_back() {
    let server = FakeShardman::start().await;
    server.on(
        "/connect",
        vec![Reply::json(200, claim_answer(&[3], &[0.0], 6.0, 0.2))],
    );
    let mut moving = beat_answer("active");
    moving["hand_over"] = json!(true);
    server.on(
        "/beat",
        vec![
            Reply::json(200, beat_answer("active")),
            Reply::json(200, moving),
            Reply::empty(204),
        ],
    );
    server.on("/disconnect", vec![Reply::empty(204)]);
    let client = client(&server);
    let claim = client.connect().await.expect("claim");
    let mut keeper = LeaseKeeper::start(client, &claim, no_reports());
    assert_eq!(keeper.ended().await, Release::HandedOver);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.requests("/beat").len(), 2, "no beat after hand_over");
    let report = shardman_client::ShardReport {
        shard_id: 3,
        resume: Some(shardman_client::Resume {
            session_id: "discord-3".into(),
            sequence: 12,
            resume_gateway_url: "wss://resume".into(),
        }),
        ..Default::default()
    };
    // Given back as on shutdown: a last beat with the resume data, then /disconnect.
    assert_eq!(keeper.close(vec![report]).await, Release::HandedOver);
    let beats = server.requests("/beat");
    assert_eq!(beats.len(), 3);
    assert_eq!(beats[2].json()["shards"][0]["resume"]["sequence"], 12);
    let disconnects = server.requests("/disconnect");
    assert_eq!(disconnects.len(), 1);
    assert!(disconnects[0].at >= beats[2].at);
}
