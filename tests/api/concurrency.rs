//! Racing clients: every shard id is granted once, however many replicas share the store.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, TestApp, held_ids, settings, spawn_app, spawn_replicas};

/// Fires `clients` `/connect` calls at once, spread round-robin over `replicas`; returns the
/// granted shard ids (sorted) and how many calls were refused with 401.
async fn race(replicas: Vec<TestApp>, clients: usize) -> (Vec<u64>, usize) {
    let replicas = Arc::new(replicas);
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let replicas = replicas.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let replica = &replicas[client % replicas.len()];
                start.wait().await;
                let response = replica.connect().await;
                let status = response.status();
                let body: Value = response.json().await.expect("json");
                (status, body)
            })
        })
        .collect();
    let mut granted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (status, body) = task.await.expect("client task");
        match status {
            StatusCode::OK => granted.push(body["shard_id"].as_u64().expect("shard_id")),
            StatusCode::UNAUTHORIZED => {
                assert_eq!(body["detail"], "No Shards Available");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    granted.sort_unstable();
    (granted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ninety_six_clients_racing_through_three_replicas_get_each_of_32_ids_exactly_once() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 32;
    let replicas = spawn_replicas(3, settings).await;
    let observer = TestApp {
        address: replicas[2].address.clone(),
        client: replicas[2].client.clone(),
    };

    let (granted, refused) = race(replicas, 96).await;

    assert_eq!(
        granted,
        (0..32).collect::<Vec<u64>>(),
        "ids 0..31, each exactly once"
    );
    assert_eq!(refused, 64);
    let status = observer.status().await;
    assert_eq!(held_ids(&status), (0..32).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ninety_six_clients_racing_on_the_in_process_store_get_each_of_32_ids_exactly_once() {
    let mut settings = settings(Backend::Memory);
    settings.max_shards = 32;
    let app = spawn_app(settings).await;
    let observer = TestApp {
        address: app.address.clone(),
        client: app.client.clone(),
    };

    let (granted, refused) = race(vec![app], 96).await;

    assert_eq!(
        granted,
        (0..32).collect::<Vec<u64>>(),
        "ids 0..31, each exactly once"
    );
    assert_eq!(refused, 64);
    assert_eq!(
        held_ids(&observer.status().await),
        (0..32).collect::<Vec<u64>>()
    );
}

/// Replicas share nothing but Redis: a session granted by one is beaten and released via another.
#[tokio::test]
async fn any_replica_serves_any_session() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 2;
    let replicas = spawn_replicas(3, settings).await;

    let claim = replicas[0].claim().await;
    assert_eq!(
        replicas[1].beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(held_ids(&replicas[2].status().await), vec![0]);
    assert_eq!(
        replicas[2].disconnect(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        replicas[1].beat(&claim.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(replicas[0].claim().await.shard_id, 0);
}
