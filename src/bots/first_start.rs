//! Opening a bot's store: waiting for Redis while it may still be starting, and planning the
//! fleet the first time a deployment starts.

use std::time::{Duration, Instant};

use crate::config::{Secret, Settings};
use crate::domain::GatewayInfo;
use crate::jobs;
use crate::store::{Store, StoreError};

/// How long a starting replica waits for Redis to come up before it gives up.
const STORE_STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Waits for Redis while it is merely unreachable (it may still be starting); any other error, such
/// as a broken script or a newer schema, stops startup at once.
pub(super) async fn open_store(settings: &Settings) -> Result<Store, StoreError> {
    let started = Instant::now();
    loop {
        match open_store_once(settings).await {
            Err(StoreError::Unavailable(reason)) if started.elapsed() < STORE_STARTUP_WAIT => {
                log::warn!("waiting for Redis: {reason}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Opens the store and creates the plan if there is none. A first start with `BOT_TOKEN` and no
/// `MAX_SHARDS` plans the count Discord recommends (as autoscale would round it), so the fleet
/// does not start at one shard and reshard at once.
async fn open_store_once(settings: &Settings) -> Result<Store, StoreError> {
    let store = Store::open_without_plan(settings).await?;
    let mut first_shards = settings.max_shards;
    if settings.autoscale
        && let Some(token) = &settings.bot_token
        && !store.plan_exists().await?
    {
        match first_gateway_info(settings, token).await {
            Some(info) => {
                let policy = jobs::autoscale::AutoscaleSettings::from_settings(settings)
                    .map(|autoscale| autoscale.policy)
                    .expect("autoscale is on");
                first_shards = jobs::autoscale::target_shards(
                    &jobs::autoscale::Load {
                        recommended_shards: Some(info.shards),
                        total_guilds: 0,
                        max_concurrency: info.max_concurrency,
                    },
                    &policy,
                );
                log::info!(
                    "first start: Discord recommends {} shards at max_concurrency {}; planning {first_shards}",
                    info.shards,
                    info.max_concurrency
                );
                store.save_gateway(&info).await?;
            }
            None => {
                first_shards = settings.min_shards.max(1);
                log::warn!(
                    "first start: no answer from Discord's /gateway/bot within {}s; planning \
                     MIN_SHARDS ({first_shards}) and leaving the count to autoscale",
                    FIRST_PLAN_WAIT.as_secs()
                );
            }
        }
    }
    store.create_plan(first_shards).await?;
    Ok(store)
}

/// How long a first start waits for Discord's `/gateway/bot` before planning `MIN_SHARDS`.
const FIRST_PLAN_WAIT: Duration = Duration::from_secs(10);

async fn first_gateway_info(settings: &Settings, token: &Secret) -> Option<GatewayInfo> {
    let client = crate::outbound::client(FIRST_PLAN_WAIT).ok()?;
    let deadline = Instant::now() + FIRST_PLAN_WAIT;
    while Instant::now() < deadline {
        let wait = match jobs::discord::fetch(&client, &settings.discord_api_base, token).await {
            jobs::discord::Fetch::Info(info) => return Some(info),
            jobs::discord::Fetch::Refused(status) => {
                log::error!("Discord refused /gateway/bot with {status}: check BOT_TOKEN");
                return None;
            }
            jobs::discord::Fetch::RateLimited(after) => after,
            jobs::discord::Fetch::Failed(_) => Duration::from_secs(1),
        };
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    None
}
