//! Redis loses every key (restart without persistence): no double grant, no bot loses its shard.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shardman::config::{Settings, ShardsPerProcess};

use crate::helpers::{TestApp, expect_json, retry_after_seconds, settings_on, spawn_replicas};
use crate::support::redis::RedisServer;

async fn connect(app: &TestApp) -> Value {
    expect_json(app.connect().await, StatusCode::OK).await
}

fn session(grant: &Value) -> &str {
    grant["session_id"].as_str().expect("session_id")
}

#[tokio::test]
async fn after_redis_loses_its_data_running_bots_keep_their_shards_and_newcomers_wait_a_lease() {
    let mut redis = RedisServer::start();
    let replicas = spawn_replicas(
        2,
        Settings {
            max_shards: 3,
            max_seconds: 5,
            ..settings_on(&redis)
        },
    )
    .await;
    let (first, second) = (&replicas[0], &replicas[1]);
    let bots = [
        connect(first).await,
        connect(second).await,
        connect(first).await,
    ];
    let old_fence_of_two = bots[2]["fence"].as_u64().expect("fence");

    redis.restart();

    // A newcomer is held back: the running bots' shards are unknown to Redis now.
    let refused = second.connect().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = retry_after_seconds(&refused);
    assert!(
        (1..=5).contains(&retry_after),
        "about one lease: {retry_after}"
    );

    // Each running bot's next beat re-establishes its own shard, on either replica.
    for (index, bot) in bots.iter().enumerate() {
        let app = &replicas[index % 2];
        let response = app
            .request(Method::POST, "/beat")
            .header("Prefer", "return=representation")
            .form(&[("session_id", session(bot))])
            .send()
            .await
            .expect("beat");
        let body = expect_json(response, StatusCode::OK).await;
        assert_eq!(body["shard_id"], bot["shard_id"]);
        assert_eq!(body["fence"], bot["fence"]);
        assert_eq!(body["state"], "active");
    }
    let held: Vec<u64> = first.status().await["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["shard_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(held, vec![0, 1, 2]);

    // One bot leaves; once the lease length has passed, a newcomer gets its shard, with a fencing
    // token above every token issued before the loss.
    assert_eq!(
        first.disconnect(session(&bots[2])).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        second.connect().await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        for bot in &bots[..2] {
            assert_eq!(
                first.beat(session(bot)).await.status(),
                StatusCode::NO_CONTENT
            );
        }
    }
    let newcomer = connect(second).await;
    assert_eq!(newcomer["shard_id"], 2);
    assert!(newcomer["fence"].as_u64().expect("fence") > old_fence_of_two);
}

#[tokio::test]
async fn after_a_loss_a_fleet_placed_by_load_keeps_every_process_s_shards_under_its_label() {
    let mut redis = RedisServer::start();
    let replicas = spawn_replicas(
        2,
        Settings {
            max_shards: 4,
            max_seconds: 5,
            shards_per_process: ShardsPerProcess::Auto,
            ..settings_on(&redis)
        },
    )
    .await;
    // Placement by load: a process holds as many one-shard sessions as it was given.
    let mut sessions = Vec::new();
    for label in ["host-a:1", "host-a:1", "host-b:2", "host-a:1"] {
        let grant = expect_json(
            replicas[sessions.len() % 2]
                .get(&format!("/connect?process={label}"))
                .await,
            StatusCode::OK,
        )
        .await;
        sessions.push((label, grant));
    }

    redis.restart();

    // Each session's beat re-establishes its shard and, with the label it sends, its process.
    for (index, (label, grant)) in sessions.iter().enumerate() {
        let response = replicas[(index + 1) % 2]
            .request(Method::POST, "/beat")
            .header("Prefer", "return=representation")
            .json(&json!({"session_id": session(grant), "process": label, "events": 10}))
            .send()
            .await
            .expect("beat");
        let body = expect_json(response, StatusCode::OK).await;
        assert_eq!(body["shard_id"], grant["shard_id"]);
        assert_eq!(body["fence"], grant["fence"]);
    }
    let status = replicas[0].status().await;
    let mut processes: Vec<(String, Vec<u64>)> = status["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|process| {
            let ids = process["shard_ids"]
                .as_array()
                .expect("shard_ids")
                .iter()
                .map(|id| id.as_u64().expect("id"))
                .collect();
            (process["process"].as_str().unwrap_or("").to_owned(), ids)
        })
        .collect();
    processes.sort();
    let expected = |label: &str| -> Vec<u64> {
        sessions
            .iter()
            .filter(|(owner, _)| *owner == label)
            .map(|(_, grant)| grant["shard_id"].as_u64().expect("id"))
            .collect()
    };
    assert_eq!(
        processes,
        vec![
            ("host-a:1".to_owned(), expected("host-a:1")),
            ("host-b:2".to_owned(), expected("host-b:2")),
        ],
        "{status}"
    );
}

#[tokio::test]
async fn after_a_loss_the_first_beat_restores_the_generation_and_shard_count_it_ran_under() {
    let mut redis = RedisServer::start();
    let replicas = spawn_replicas(
        1,
        Settings {
            max_shards: 1,
            max_seconds: 3,
            ..settings_on(&redis)
        },
    )
    .await;
    let app = &replicas[0];
    // Reshard 1 -> 2 and complete it.
    let old = connect(app).await;
    let plan = expect_json(
        app.post_json("/reshard", &json!({"max_shards": 2})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let bots = [connect(app).await, connect(app).await];
    for bot in &bots {
        assert_eq!(
            app.beat(session(bot)).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    assert_eq!(app.status().await["total_shards"], 2);

    redis.restart();

    for bot in &bots {
        assert_eq!(
            app.beat(session(bot)).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    let status = app.status().await;
    assert_eq!(status["total_shards"], 2);
    assert_eq!(status["generation"], plan["generation"]);
    // The retired generation does not come back.
    assert_eq!(
        app.beat(session(&old)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_forged_or_tampered_session_id_is_not_found_and_changes_nothing() {
    let redis = RedisServer::start();
    let app = &spawn_replicas(1, settings_on(&redis)).await[0];
    let grant = connect(app).await;
    let id = session(&grant);
    let tampered = format!("1{id}");
    for forged in [
        tampered.as_str(),
        "0.1.1.1.0.00000000000000000000000000000000.00",
        "x",
    ] {
        assert_eq!(app.beat(forged).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.disconnect(forged).await.status(), StatusCode::NOT_FOUND);
    }
    assert_eq!(app.beat(id).await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_replica_starting_on_a_redis_that_just_lost_its_data_holds_newcomers_back_too() {
    let mut redis = RedisServer::start();
    let lease = Settings {
        max_shards: 2,
        max_seconds: 3,
        ..settings_on(&redis)
    };
    let running = &spawn_replicas(1, lease.clone()).await[0];
    let bot = connect(running).await;

    // Redis comes back empty and a new replica starts before any running one notices.
    redis.restart();
    let starting = &spawn_replicas(
        1,
        Settings {
            quarantine_fresh_redis: true,
            ..lease
        },
    )
    .await[0];
    assert_eq!(
        starting.connect().await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        starting.beat(session(&bot)).await.status(),
        StatusCode::NO_CONTENT
    );
    let held: Vec<u64> = starting.status().await["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["shard_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(held, vec![bot["shard_id"].as_u64().expect("id")]);
}

/// A group session re-establishes its whole group after a loss, with its own group size, even
/// when the re-created plan was made with another one: no id of a running group is granted again.
#[tokio::test]
async fn after_a_loss_groups_come_back_whole_under_their_own_group_size() {
    let mut redis = RedisServer::start();
    let app = &spawn_replicas(
        1,
        Settings {
            max_shards: 4,
            max_seconds: 3,
            max_concurrency: 4,
            ..settings_on(&redis)
        },
    )
    .await[0];
    let plan = app
        .post_json(
            "/reshard",
            &json!({"max_shards": 4, "shards_per_process": 2}),
        )
        .await;
    assert_eq!(plan.status(), StatusCode::ACCEPTED);
    let groups = [connect(app).await, connect(app).await];
    assert_eq!(groups[1]["shard_ids"], json!([2, 3]));

    redis.restart();
    // The group of 2..3 beats first: its re-established lease must not free 0..1 or split 2..3.
    for group in groups.iter().rev() {
        assert_eq!(
            app.beat(session(group)).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    // Past the quarantine, with both groups beating, nothing is free.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for group in &groups {
            assert_eq!(
                app.beat(session(group)).await.status(),
                StatusCode::NO_CONTENT
            );
        }
    }
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);
    let held: Vec<u64> = app.status().await["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["shard_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(held, vec![0, 1, 2, 3]);
}
