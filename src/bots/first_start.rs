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
        match first_gateway_info(&store, settings, token).await? {
            FirstRead::Info(info) => {
                let policy = jobs::autoscale::AutoscaleSettings::from_settings(settings)
                    .map(|autoscale| autoscale.policy)
                    .expect("autoscale is on");
                first_shards = jobs::autoscale::target_shards(
                    &jobs::autoscale::Load {
                        recommended_shards: Some(info.shards),
                        total_guilds: 0,
                        max_concurrency: info.max_concurrency,
                        // No shard has run yet: no load.
                        shards_for_load: 0,
                    },
                    &policy,
                );
                log::info!(
                    "first start: Discord recommends {} shards at max_concurrency {}; planning {first_shards}",
                    info.shards,
                    info.max_concurrency
                );
            }
            // Another replica created the plan meanwhile: `create_plan` below keeps it.
            FirstRead::Planned => {}
            FirstRead::NoAnswer => {
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

/// How long a first start waits for Discord's `/gateway/bot` (its own read or another replica's)
/// before planning `MIN_SHARDS`.
const FIRST_PLAN_WAIT: Duration = Duration::from_secs(10);
/// How often a replica that waits for another's read looks at the store.
const WAIT_STEP: Duration = Duration::from_millis(100);
/// The reader holds the gateway lock this long at a time and renews it while it reads, so that if
/// it dies another replica reads within this long.
const READ_LOCK: Duration = Duration::from_secs(3);

/// What a first start learnt of Discord's gateway info.
enum FirstRead {
    /// Read now, by this replica or by the one that held the lock (and shared in the store).
    Info(GatewayInfo),
    /// Another replica has created the plan already.
    Planned,
    /// Discord refused or did not answer within [`FIRST_PLAN_WAIT`].
    NoAnswer,
}

/// Reads Discord's gateway info once for every replica that starts together: the replica that
/// takes the poller's lock ([`jobs::discord::LOCK`]) reads and shares the answer in the store; the
/// others wait for it there. A reader that dies stops renewing the lock, and the next replica to
/// find it free reads instead.
async fn first_gateway_info(
    store: &Store,
    settings: &Settings,
    token: &Secret,
) -> Result<FirstRead, StoreError> {
    let Ok(client) = crate::outbound::client(FIRST_PLAN_WAIT) else {
        return Ok(FirstRead::NoAnswer);
    };
    // Not the poller's name: this replica's own poller then finds the lock taken and leaves the
    // next read to the next interval, like every other replica's.
    let owner = format!("first-start-{}", uuid::Uuid::new_v4().simple());
    let interval = Duration::from_secs(settings.gateway_poll_seconds);
    let deadline = Instant::now() + FIRST_PLAN_WAIT;
    while Instant::now() < deadline {
        if let Some(info) = store.gateway_read_within(millis(interval)).await? {
            return Ok(FirstRead::Info(info));
        }
        if store.plan_exists().await? {
            return Ok(FirstRead::Planned);
        }
        if !store
            .try_lock(jobs::discord::LOCK, &owner, millis(READ_LOCK))
            .await?
        {
            tokio::time::sleep(WAIT_STEP).await;
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let fetch = jobs::discord::fetch(&client, &settings.discord_api_base, token);
        let wait = match renewing_lock(store, &owner, tokio::time::timeout(left, fetch)).await {
            Ok(jobs::discord::Fetch::Info(info)) => {
                store.save_gateway(&info).await?;
                // The fleet's next read is one poll interval from now, whoever does it.
                let _ = store
                    .try_lock(jobs::discord::LOCK, &owner, millis(interval))
                    .await;
                return Ok(FirstRead::Info(info));
            }
            Ok(jobs::discord::Fetch::Refused(status)) => {
                log::error!("Discord refused /gateway/bot with {status}: check BOT_TOKEN");
                return Ok(FirstRead::NoAnswer);
            }
            Ok(jobs::discord::Fetch::RateLimited(after)) => {
                // Nobody asks again before Discord allows it.
                let _ = store
                    .try_lock(jobs::discord::LOCK, &owner, millis(after + READ_LOCK))
                    .await;
                after
            }
            Ok(jobs::discord::Fetch::Failed(reason)) => {
                log::warn!("first start: cannot read Discord's gateway info: {reason}");
                Duration::from_secs(1)
            }
            Err(_) => break,
        };
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    Ok(FirstRead::NoAnswer)
}

/// Runs `work` while renewing this replica's hold on the gateway lock, so that other replicas
/// keep waiting for its answer rather than reading themselves.
async fn renewing_lock<T>(store: &Store, owner: &str, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let mut renew = tokio::time::interval(READ_LOCK / 3);
    renew.tick().await; // the lock was just taken
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = renew.tick() => {
                let _ = store.try_lock(jobs::discord::LOCK, owner, millis(READ_LOCK)).await;
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
