//! Real bot fleets: a client that follows the seed's protocol (connect, sleep `sleep_duration`,
//! IDENTIFY, then beat) keeps its shard; first starts and idle generations need no reshard.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shardman::config::{Secret, Settings, ShardsPerProcess};

use crate::helpers::{
    Backend, both_stores, eventually, expect_json, expect_validation, loc, settings, settings_on,
    spawn_app, spawn_replicas,
};
use crate::standin::{Reply, StandIn, embed_field, gateway_bot};
use crate::support::redis::{RedisOptions, RedisServer};

both_stores!(
    a_session_keeps_its_shard_when_it_beats_only_after_a_long_identify_wait,
    a_reshard_of_a_generation_nobody_holds_replaces_it_at_once,
    a_group_beats_for_each_of_its_shards_and_status_shows_every_shard,
    resume_data_of_each_shard_of_a_group_goes_to_the_next_holder_of_the_group,
);

async fn a_session_keeps_its_shard_when_it_beats_only_after_a_long_identify_wait(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 1;
    settings.max_shards = 2;
    settings.max_concurrency = 1;
    let app = spawn_app(settings).await;
    let first = expect_json(app.connect().await, StatusCode::OK).await;
    let second = expect_json(app.connect().await, StatusCode::OK).await;
    let sleep = second["sleep_duration"].as_f64().expect("sleep_duration");
    assert!(
        sleep > 5.0,
        "one bucket: the second shard waits for its slot ({sleep} s), over 5 leases"
    );

    // Follow the seed exactly: sleep, (identify), and only then beat.
    tokio::time::sleep(Duration::from_secs_f64(sleep + 0.3)).await;
    assert_eq!(
        app.beat(second["session_id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::NO_CONTENT,
        "the lease covers the wait for the identify slot"
    );
    assert_eq!(
        app.beat(first["session_id"].as_str().unwrap())
            .await
            .status(),
        StatusCode::NOT_FOUND,
        "a shard with no wait that never beat lost its lease after MAX_SECONDS"
    );
}

async fn a_reshard_of_a_generation_nobody_holds_replaces_it_at_once(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_shards = 4;
    let app = spawn_app(settings).await;

    let plan = expect_json(
        app.post_json("/reshard", &json!({"max_shards": 6})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        (plan["generation"].clone(), plan["max_shards"].clone()),
        (json!(2), json!(6))
    );

    let grant = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(
        grant["state"], "active",
        "no standby phase: nobody ran generation 1"
    );
    assert_eq!(grant["max_shards"], 6);
    assert_eq!(grant["generation"], 2);
    let status = app.status().await;
    assert_eq!(status["total_shards"], 6);
    assert_eq!(status["generation"], 2);
    assert!(status["pending"].is_null(), "nothing pending: {status}");
}

#[tokio::test]
async fn a_brand_new_deployment_on_a_redis_with_aof_grants_at_once() {
    let redis = RedisServer::start_with(RedisOptions {
        append_only: true,
        ..RedisOptions::default()
    });
    let mut settings = settings_on(&redis);
    settings.max_seconds = 60;
    settings.quarantine_fresh_redis = true;
    let app = spawn_app(settings).await;
    assert_eq!(app.connect().await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_brand_new_deployment_on_a_redis_without_persistence_waits_out_the_quarantine() {
    let redis = RedisServer::start();
    let mut settings = settings_on(&redis);
    settings.max_seconds = 60;
    settings.quarantine_fresh_redis = true;
    let app = spawn_app(settings).await;
    assert_eq!(
        app.connect().await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "this Redis may have just lost a plan: no grant for one lease"
    );
}

fn grouped(max_shards: u32, shards_per_process: u32, max_concurrency: u32) -> Settings {
    grouped_on(
        Backend::Redis,
        max_shards,
        shards_per_process,
        max_concurrency,
    )
}

fn grouped_on(
    backend: Backend,
    max_shards: u32,
    shards_per_process: u32,
    max_concurrency: u32,
) -> Settings {
    let mut settings = settings(backend);
    settings.max_shards = max_shards;
    settings.shards_per_process = ShardsPerProcess::Fixed(shards_per_process);
    settings.max_concurrency = max_concurrency;
    settings
}

#[tokio::test]
async fn groups_of_four_over_ten_shards_are_each_claimed_once_by_eight_racing_processes() {
    let replicas = spawn_replicas(3, grouped(10, 4, 16)).await;
    let connects = (0..8).map(|index| {
        let app = &replicas[index % 3];
        async move { app.connect().await }
    });
    let mut groups = Vec::new();
    let mut refused = 0;
    for response in futures_util::future::join_all(connects).await {
        match response.status() {
            StatusCode::OK => {
                let body: Value = response.json().await.expect("json");
                assert_eq!(body["shard_id"], body["shard_ids"][0]);
                assert_eq!(body["lease_seconds"], 60);
                groups.push(body["shard_ids"].clone());
            }
            StatusCode::UNAUTHORIZED => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    groups.sort_by_key(|ids| ids[0].as_u64());
    assert_eq!(
        groups,
        vec![json!([0, 1, 2, 3]), json!([4, 5, 6, 7]), json!([8, 9])]
    );
    assert_eq!(
        refused, 5,
        "the other processes get 401 No Shards Available"
    );
    let autoscale = expect_json(replicas[0].get("/autoscale").await, StatusCode::OK).await;
    assert_eq!(
        (
            autoscale["desired_processes"].clone(),
            autoscale["held"].clone()
        ),
        (json!(3), json!(3))
    );
}

#[tokio::test]
async fn per_shard_sleeps_of_groups_never_put_two_identifies_of_a_bucket_under_five_seconds_apart()
{
    let replicas = spawn_replicas(3, grouped(8, 4, 2)).await;
    let mut identifies: Vec<(u64, f64)> = Vec::new();
    for app in replicas.iter().take(2) {
        let body = expect_json(app.connect().await, StatusCode::OK).await;
        let ids = body["shard_ids"].as_array().expect("shard_ids").clone();
        let sleeps = body["sleep_durations"].as_array().expect("sleeps").clone();
        assert_eq!(ids.len(), sleeps.len());
        for (id, sleep) in ids.iter().zip(&sleeps) {
            identifies.push((id.as_u64().unwrap(), sleep.as_f64().unwrap()));
        }
    }
    assert_eq!(identifies.len(), 8);
    for bucket in 0..2 {
        let mut slots: Vec<f64> = identifies
            .iter()
            .filter(|(id, _)| id % 2 == bucket)
            .map(|(_, sleep)| *sleep)
            .collect();
        slots.sort_by(f64::total_cmp);
        for pair in slots.windows(2) {
            assert!(
                pair[1] - pair[0] >= 5.0,
                "bucket {bucket}: identifies at {slots:?}"
            );
        }
    }
    // A group of max_concurrency consecutive ids identifies at once.
    assert_eq!(identifies[0].1, identifies[1].1);
}

async fn a_group_beats_for_each_of_its_shards_and_status_shows_every_shard(backend: Backend) {
    let app = spawn_app(grouped_on(backend, 3, 2, 2)).await;
    let body = expect_json(app.connect().await, StatusCode::OK).await;
    let session_id = body["session_id"].as_str().unwrap();
    assert_eq!(body["shard_ids"], json!([0, 1]));
    assert_eq!(
        app.beat_json(&json!({
            "session_id": session_id,
            "shards": [
                {"shard_id": 0, "guild_count": 10, "latency": 0.1},
                {"shard_id": 1, "guild_count": 20},
            ],
        }))
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let status = app.status().await;
    let guilds: Vec<(Value, Value)> = status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shard| (shard["shard_id"].clone(), shard["guild_count"].clone()))
        .collect();
    assert_eq!(guilds, vec![(json!(0), json!(10)), (json!(1), json!(20))]);

    let bad = app
        .beat_json(&json!({"session_id": session_id, "shards": [{"guild_count": 1}]}))
        .await;
    let issues = expect_validation(bad).await;
    assert!(
        issues.contains(
            &loc(&["body", "shards"])
                .into_iter()
                .chain([json!(0), json!("shard_id")])
                .collect()
        ),
        "{issues:?}"
    );
    let identify = app
        .post_json(
            "/identify",
            &json!({"session_id": session_id, "shard_id": 2}),
        )
        .await;
    assert_eq!(
        identify.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "shard 2 is the next group's"
    );
}

#[tokio::test]
async fn a_first_start_plans_what_discord_recommends_rounded_up_without_a_reshard_alert() {
    let discord = StandIn::start(|_, _| Reply::json(200, gateway_bot(3, 2, 990))).await;
    let webhook = StandIn::start(|_, _| Reply::no_content()).await;
    let mut settings = settings(Backend::Redis);
    settings.autoscale = true;
    settings.bot_token = Some(Secret::new("MTIz.first-start.xyz"));
    settings.discord_api_base = discord.base.clone();
    settings.webhook_url = Some(format!("{}/webhook", webhook.base));
    let app = spawn_app(settings).await;

    let status = app.status().await;
    assert_eq!(
        status["total_shards"], 4,
        "3 recommended, rounded to max_concurrency 2"
    );
    let grant = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(grant["state"], "active");
    assert_eq!(grant["gateway_url"], "wss://gateway.discord.gg");
    assert!(
        eventually(Duration::from_secs(5), || async {
            webhook
                .requests()
                .iter()
                .any(|request| embed_field(&request.body, "Event").as_deref() == Some("connect"))
        })
        .await
    );
    // An autoscale round has run by now (it runs right after the gateway info arrives).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reshard_alerts: Vec<_> = webhook
        .requests()
        .iter()
        .filter_map(|request| embed_field(&request.body, "Event"))
        .filter(|event| event.starts_with("reshard"))
        .collect();
    assert!(reshard_alerts.is_empty(), "{reshard_alerts:?}");
    assert!(app.status().await["pending"].is_null());
}

#[tokio::test]
async fn a_reshard_may_change_the_group_size_as_a_new_generation() {
    let app = spawn_app(grouped(4, 1, 4)).await;
    let held = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(held["shard_ids"], json!([0]));

    let refused = app
        .post_json(
            "/reshard",
            &json!({"max_shards": 4, "shards_per_process": 0}),
        )
        .await;
    let issues = expect_validation(refused).await;
    assert!(
        issues.contains(&loc(&["body", "shards_per_process"])),
        "{issues:?}"
    );

    let plan = expect_json(
        app.post_json(
            "/reshard",
            &json!({"max_shards": 4, "shards_per_process": 2}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        plan["started"], true,
        "same count, new group size: a new generation"
    );
    let grant = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(grant["state"], "standby", "generation 1 still runs shard 0");
    assert_eq!(grant["shard_ids"], json!([0, 1]));
    assert_eq!(grant["generation"], plan["generation"]);
}

async fn resume_data_of_each_shard_of_a_group_goes_to_the_next_holder_of_the_group(
    backend: Backend,
) {
    let app = spawn_app(grouped_on(backend, 2, 2, 1)).await;
    let first = expect_json(app.connect().await, StatusCode::OK).await;
    let session_id = first["session_id"].as_str().unwrap();
    let resume =
        json!({"session_id": "discord-1", "sequence": 7, "resume_gateway_url": "wss://r.example"});
    assert_eq!(
        app.beat_json(
            &json!({"session_id": session_id, "shards": [{"shard_id": 1, "resume": resume}]})
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.disconnect(session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let next = expect_json(app.connect().await, StatusCode::OK).await;
    assert_eq!(next["shard_ids"], json!([0, 1]));
    assert_eq!(next["resumes"], json!([null, resume]));
    let sleeps = next["sleep_durations"].as_array().unwrap();
    assert_eq!(sleeps[1], 0.0, "shard 1 resumes: no identify slot");
    assert!(
        sleeps[0].as_f64().unwrap() > 0.0,
        "shard 0 identifies again, in its bucket's next slot"
    );
}
