//! Many bots in one fleet (`BOTS_FILE`) on the cluster: the secret selects the bot, a bot's
//! sessions mean nothing to another, and the admin secret reads every bot but writes nothing.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use serde_json::Value;

use crate::harness::{App, serial, settings};
use crate::support::process::Scratch;
use crate::support::redis::RedisCluster;

const ADMIN: &str = "admin-secret";

async fn call(
    app: &App,
    method: reqwest::Method,
    path: &str,
    secret: Option<&str>,
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut request = client.request(method, format!("{}{path}", app.url));
    if let Some(secret) = secret {
        request = request.header(AUTHORIZATION, secret);
    }
    let response = request.send().await.expect("request");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

async fn get(app: &App, path: &str, secret: &str) -> (u16, Value) {
    let (status, text) = call(app, reqwest::Method::GET, path, Some(secret)).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn beat(app: &App, session: &str, secret: &str) -> u16 {
    let client = reqwest::Client::new();
    client
        .post(format!("{}/beat", app.url))
        .header(AUTHORIZATION, secret)
        .form(&[("session_id", session)])
        .send()
        .await
        .expect("beat")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fleet_serves_each_bot_by_its_secret_and_the_admin_reads_them_all() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    let masters = cluster.masters();
    let (music, moderation) = (
        cluster.prefix_on(masters[0], "music"),
        cluster.prefix_on(masters[1], "moderation"),
    );
    let dir = Scratch::new("bots");
    let file = dir.0.join("bots.toml");
    std::fs::write(
        &file,
        format!(
            "[[bot]]\nname = \"music\"\nsecret = \"music-secret\"\nkey_prefix = \"{music}\"\nmax_shards = 3\n\n\
             [[bot]]\nname = \"moderation\"\nsecret = \"moderation-secret\"\nkey_prefix = \"{moderation}\"\nmax_shards = 5\n"
        ),
    )
    .expect("bots file");
    let mut fleet = settings(&cluster.seeds(), "unused", 1, 60);
    fleet.secret = None;
    fleet.bots_file = Some(file.display().to_string());
    fleet.admin_secret = Some(shardman::config::Secret::new(ADMIN));
    let apps = App::many(2, fleet).await;

    // The secret selects the bot, through any replica.
    let (status, first) = get(&apps[0], "/connect", "music-secret").await;
    assert_eq!(
        (status, first["max_shards"].as_u64()),
        (200, Some(3)),
        "{first}"
    );
    let (status, other) = get(&apps[1], "/connect", "Bearer moderation-secret").await;
    assert_eq!(
        (status, other["max_shards"].as_u64()),
        (200, Some(5)),
        "{other}"
    );
    assert_eq!(first["shard_id"], 0);
    assert_eq!(other["shard_id"], 0, "each bot has its own shards");

    // A session of one bot is unknown to the other, even though both hold shard 0.
    let music_session = first["session_id"].as_str().expect("session");
    assert_eq!(
        beat(&apps[1], music_session, "moderation-secret").await,
        404
    );
    assert_eq!(beat(&apps[1], music_session, "music-secret").await, 204);

    // Wrong or missing secrets are refused as before.
    assert_eq!(get(&apps[0], "/connect", "nobody").await.0, 403);
    assert_eq!(
        call(&apps[0], reqwest::Method::GET, "/connect", None)
            .await
            .0,
        422
    );

    // /status answers for the caller's bot.
    let (_, status) = get(&apps[0], "/status", "moderation-secret").await;
    assert_eq!(status["total_shards"], 5, "{status}");

    // The admin reads any bot, and every bot's metrics at once; it cannot claim or change.
    let (code, status) = get(&apps[0], "/status?bot=music", ADMIN).await;
    assert_eq!(
        (code, status["total_shards"].as_u64()),
        (200, Some(3)),
        "{status}"
    );
    let (code, autoscale) = get(&apps[1], "/autoscale?bot=moderation", ADMIN).await;
    assert_eq!((code, autoscale["total_shards"].as_u64()), (200, Some(5)));
    let (code, metrics) = call(&apps[0], reqwest::Method::GET, "/metrics", Some(ADMIN)).await;
    assert_eq!(code, 200);
    for series in [
        "shardman_shards_total{bot=\"music\"} 3",
        "shardman_shards_total{bot=\"moderation\"} 5",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    assert_eq!(
        metrics
            .matches("# TYPE shardman_shards_total gauge")
            .count(),
        1,
        "one family, a series per bot"
    );
    let (_, own) = call(
        &apps[0],
        reqwest::Method::GET,
        "/metrics",
        Some("music-secret"),
    )
    .await;
    assert!(
        own.contains("shardman_shards_total{bot=\"music\"} 3"),
        "{own}"
    );
    assert!(
        !own.contains("bot=\"moderation\""),
        "a bot sees its own series only"
    );
    assert_eq!(
        get(&apps[0], "/connect", ADMIN).await.0,
        403,
        "the admin claims nothing"
    );
    let (code, _) = call(&apps[0], reqwest::Method::POST, "/reshard", Some(ADMIN)).await;
    assert_eq!(code, 403, "nor reshards");
}

fn bots_file(bots: &[(&str, &str, u32)]) -> String {
    bots.iter()
        .map(|(name, prefix, shards)| {
            format!(
                "[[bot]]\nname = \"{name}\"\nsecret = \"{name}-secret\"\nkey_prefix = \"{prefix}\"\nmax_shards = {shards}\n\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_and_removes_bots_while_the_others_keep_beating() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    let masters = cluster.masters();
    let (kept, removed, added) = (
        cluster.prefix_on(masters[0], "kept"),
        cluster.prefix_on(masters[1], "removed"),
        cluster.prefix_on(masters[2], "added"),
    );
    let dir = Scratch::new("reload");
    let file = dir.0.join("bots.toml");
    std::fs::write(
        &file,
        bots_file(&[("kept", &kept, 2), ("removed", &removed, 2)]),
    )
    .unwrap();
    let mut fleet = settings(&cluster.seeds(), "unused", 1, 60);
    fleet.secret = None;
    fleet.bots_file = Some(file.display().to_string());
    let (app, reloader) = crate::harness::App::spawn_reloadable(fleet).await;
    let app = std::sync::Arc::new(app);

    let (status, claim) = get(&app, "/connect", "kept-secret").await;
    assert_eq!(status, 200, "{claim}");
    let session = claim["session_id"].as_str().expect("session").to_owned();
    let beating = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..40 {
                statuses.push(beat(&app, &session, "kept-secret").await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            statuses
        })
    };

    // An invalid file changes nothing.
    std::fs::write(&file, "[[bot]]\nname = \"nameless secret\"\n").unwrap();
    assert!(
        reloader.reload().await.is_err(),
        "an invalid file is refused"
    );
    assert_eq!(get(&app, "/connect", "removed-secret").await.0, 200);

    std::fs::write(
        &file,
        bots_file(&[("kept", &kept, 2), ("added", &added, 4)]),
    )
    .unwrap();
    reloader.reload().await.expect("reload");
    let (status, body) = get(&app, "/connect", "added-secret").await;
    assert_eq!(
        (status, body["max_shards"].as_u64()),
        (200, Some(4)),
        "the new bot serves"
    );
    assert_eq!(
        get(&app, "/connect", "removed-secret").await.0,
        403,
        "the removed bot is gone"
    );

    let statuses = beating.await.expect("beats");
    assert!(
        statuses.iter().all(|status| *status == 204),
        "the kept bot beat throughout: {statuses:?}"
    );
}
