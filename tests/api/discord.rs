//! Discord's gateway info: read by one replica at a time, 429s honoured, shared through Redis.

use std::time::Duration;

use shardman::config::{Secret, Settings};
use shardman::store::Store;

use crate::helpers::{Backend, eventually, settings, spawn_replicas};
use crate::standin::{Reply, StandIn, gateway_bot, rate_limited};

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
