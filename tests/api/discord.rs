//! Discord's gateway info: read by one replica at a time, 429s honoured, shared through Redis.

use std::time::Duration;

use shardman::config::{Secret, Settings};
use shardman::store::Store;

use crate::helpers::{Backend, eventually, settings, spawn_app, spawn_replicas};
use crate::standin::{Reply, StandIn, gateway_bot, rate_limited};
use crate::support::redis::shared_redis;
use crate::support::replicas::{Deployment, SECRET};

const TOKEN: &str = "MTIz.test-bot-token.xyz";

fn with_discord(discord: &StandIn) -> Settings {
    let mut settings = settings(Backend::Redis);
    settings.bot_token = Some(Secret::new(TOKEN));
    settings.discord_api_base = discord.base.clone();
    settings.max_shards = 4;
    settings
}

#[tokio::test]
async fn one_replica_of_three_reads_the_gateway_and_waits_out_a_429() {
    let discord = StandIn::start(|n, _| match n {
        0 => rate_limited(1.0),
        _ => Reply::json(200, gateway_bot(6, 2, 990)),
    })
    .await;
    let settings = with_discord(&discord);
    let _replicas = spawn_replicas(3, settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");

    let shared = eventually(Duration::from_secs(10), || async {
        store.gateway().await.expect("gateway").is_some()
    })
    .await;
    assert!(shared, "Discord's gateway info never reached the store");
    // Time for any other replica that would (wrongly) poll too.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let requests = discord.requests();
    assert_eq!(
        requests.len(),
        2,
        "one 429 then one read, by one replica: {requests:?}"
    );
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "the retry came before Retry-After"
    );
    for request in &requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/gateway/bot");
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bot {TOKEN}"))
        );
    }
    let info = store.gateway().await.expect("gateway").expect("info");
    assert_eq!(info.shards, 6);
    assert_eq!(info.max_concurrency, 2);
    assert_eq!(info.session_start_total, 1000);
}

#[tokio::test]
async fn a_replica_that_starts_later_reuses_the_shared_gateway_info() {
    let discord = StandIn::start(|_, _| Reply::json(200, gateway_bot(3, 1, 1000))).await;
    let settings = with_discord(&discord);
    let _first = spawn_replicas(1, settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    assert!(
        eventually(Duration::from_secs(5), || async {
            store.gateway().await.expect("gateway").is_some()
        })
        .await
    );

    let _second = spawn_replicas(1, settings.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        discord.requests().len(),
        1,
        "within one GATEWAY_POLL_SECONDS the fleet reads Discord once"
    );
}

#[tokio::test]
async fn a_refused_token_leaves_the_gateway_info_unset_and_is_not_retried_at_once() {
    let discord = StandIn::start(|_, _| {
        Reply::json(
            401,
            serde_json::json!({"message": "401: Unauthorized", "code": 0}),
        )
    })
    .await;
    let settings = with_discord(&discord);
    let _replicas = spawn_replicas(1, settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    assert!(
        eventually(Duration::from_secs(5), || async {
            !discord.requests().is_empty()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.gateway().await.expect("gateway").is_none());
    assert_eq!(discord.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_starting_together_on_a_new_deployment_read_the_gateway_once() {
    // Slow enough that all three reach their first start while the first read is under way.
    let discord = StandIn::start(|_, _| {
        Reply::json(200, gateway_bot(6, 2, 990)).after(Duration::from_millis(700))
    })
    .await;
    let deployment = Deployment::new(&shared_redis().url(), 60, 1)
        .without("MAX_SHARDS")
        .set("BOT_TOKEN", TOKEN)
        .set("DISCORD_API_BASE", &discord.base);
    // On this thread: the replicas die with the thread that spawned them.
    let replicas = tokio::task::block_in_place(|| deployment.start_together(3));
    // Time for any replica's poller that would (wrongly) read again at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let requests = discord.requests();
    assert_eq!(
        requests.len(),
        1,
        "one /gateway/bot read for the whole fleet: {requests:?}"
    );
    for replica in &replicas {
        let status: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/status", replica.url()))
            .header("authorization", SECRET)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        assert_eq!(
            status["total_shards"], 6,
            "every replica planned with the one answer"
        );
    }
}

#[tokio::test]
async fn a_first_start_reads_the_gateway_itself_once_a_dead_readers_lock_runs_out() {
    let discord = StandIn::start(|_, _| Reply::json(200, gateway_bot(6, 2, 990))).await;
    let mut settings = with_discord(&discord);
    settings.autoscale = true;
    // A replica that took the lock to read, then died: nobody renews it.
    let store = Store::open_without_plan(&settings).await.expect("store");
    assert!(
        store
            .try_lock("gateway", "a-replica-that-died", 1500)
            .await
            .expect("lock")
    );

    let app = spawn_app(settings).await;
    let requests = discord.requests();
    assert_eq!(
        requests.len(),
        1,
        "read once the lock ran out: {requests:?}"
    );
    assert_eq!(app.status().await["total_shards"], 6);
}
