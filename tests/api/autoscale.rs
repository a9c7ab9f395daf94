//! The shard count follows load when `MAX_SHARDS` is unset.

use std::time::Duration;

use serde_json::json;
use shardman::config::{Secret, Settings};
use shardman::store::Store;

use crate::helpers::{Backend, eventually, settings, spawn_app, spawn_replicas};
use crate::standin::discord;

fn autoscaling() -> Settings {
    let mut settings = settings(Backend::Redis);
    settings.autoscale = true;
    settings.max_shards = 1;
    settings.guilds_per_shard = 100;
    settings.autoscale_interval_seconds = 1;
    settings
}

/// The count the fleet is heading for: the pending generation's during a reshard.
async fn planned(store: &Store) -> u32 {
    let status = store.status().await.expect("status");
    status
        .pending
        .as_ref()
        .map_or(status.total_shards, |pending| pending.max_shards)
}

async fn plans(store: &Store, count: u32, within: Duration) -> bool {
    eventually(within, || async { planned(store).await == count }).await
}

#[tokio::test]
async fn autoscale_grows_the_shard_count_from_reported_guild_counts() {
    let settings = autoscaling();
    let replicas = spawn_replicas(3, settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    let claim = replicas[0].claim().await;

    let beat = replicas[1]
        .beat_json(&json!({"session_id": claim.session_id, "guild_count": 250}))
        .await;
    assert!(beat.status().is_success(), "beat: {}", beat.status());

    assert!(
        plans(&store, 3, Duration::from_secs(5)).await,
        "250 guilds at 100 per shard call for 3 shards; planned {}",
        planned(&store).await
    );
}

#[tokio::test]
async fn autoscale_follows_discords_recommendation_rounded_to_max_concurrency() {
    let discord = discord(5, 2).await;
    let mut settings = autoscaling();
    settings.bot_token = Some(Secret::new("token"));
    settings.discord_api_base = discord.base.clone();
    let _app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");

    assert!(
        plans(&store, 6, Duration::from_secs(5)).await,
        "5 recommended with max_concurrency 2 make 6; planned {}",
        planned(&store).await
    );
}

#[tokio::test]
async fn a_set_max_shards_is_never_changed_by_load() {
    let mut settings = autoscaling();
    settings.autoscale = false;
    settings.max_shards = 2;
    let app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");
    let claim = app.claim().await;
    app.beat_json(&json!({"session_id": claim.session_id, "guild_count": 5000}))
        .await;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(planned(&store).await, 2);
}

#[tokio::test]
async fn a_lower_target_shrinks_only_after_shrink_after() {
    let mut settings = autoscaling();
    settings.max_shards = 4;
    settings.allow_shrink = true;
    settings.shrink_after_seconds = 2;
    let _app = spawn_app(settings.clone()).await;
    let store = Store::open(&settings).await.expect("store");

    // The first evaluation sees the lower target and only starts the wait.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(planned(&store).await, 4, "shrank before SHRINK_AFTER");
    assert!(
        store
            .get_meta(shardman::jobs::autoscale::SHRINK_HOLD_FIELD)
            .await
            .expect("meta")
            .is_some(),
        "the wait is kept in the store"
    );
    assert!(
        plans(&store, 1, Duration::from_secs(5)).await,
        "no shrink to MIN_SHARDS after SHRINK_AFTER; planned {}",
        planned(&store).await
    );
}
