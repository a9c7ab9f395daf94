//! The store owns all shared state: leases, sessions, the shard plan, identify slots and events.
//!
//! Every state change is one Lua script from `migrations-lua/`, run by one of two engines:
//! Redis (any number of replicas) or the embedded engine (one process, no Redis), which runs the
//! very same scripts on an in-process keyspace. This module owns the key names and turns script
//! replies into domain types; the engines only run scripts and commands.
//!
//! Here: [`Store`], opening it and running one script call. Around it: `engine.rs` (the engines
//! and the scripts they load), `recovery.rs` (after Redis lost its data or its master moved),
//! `operations.rs` (what the service asks of the store), `overview.rs` (paged fleet reads),
//! `group_commit.rs` (beats batched into one call), `waiting.rs` (claims that wait for a free
//! shard), `permits.rs` (IDENTIFY permits that wait for their bucket), `secrets.rs` (session ids under a rotating secret, and the secret-drift check), and
//! `scripts/`, one typed call per script.

mod embedded;
mod engine;
mod group_commit;
mod keys;
mod lanes;
mod operations;
mod overview;
mod permits;
mod placement;
mod recovery;
mod redis;
mod scripts;
mod secrets;
#[cfg(test)]
mod test_support;
mod waiting;
mod wakeups;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::Value;
use tokio::sync::Notify;

use self::embedded::EmbeddedEngine;
use self::engine::{Engine, Scripts};
use self::group_commit::BeatQueue;
use self::keys::Keys;
use self::recovery::InitReason;
use self::redis::{ClusterEngine, ClusterLink, RedisEngine, SentinelPasswords};
use self::scripts::{Envelope, ScriptCall, ScriptReply};
use crate::config::{Settings, StoreBackend};
use crate::session_token::SessionSigner;
pub use operations::{PROCESSES_FIELD, ProcessSizing, SCALE_IN_HOLD_FIELD};
pub use scripts::secret_fingerprint::Verdict as SecretVerdict;
pub use scripts::waiting_processes::WaitingLabels;
pub use secrets::PreviousSecretUses;

pub use self::permits::PROVISIONAL_POLL;
pub use self::waiting::WaitedClaim;
pub use self::wakeups::{Heard, Wakeup, WakeupListener};

/// Version of the key schema this build reads and writes. Bump it when keys change meaning; a
/// replica refuses to start against a newer one (see README, "Upgrades").
pub const SCHEMA_VERSION: u64 = 2;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer in time or could not be reached. Callers answer 503; it heals by itself.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The data was written by a newer shardman: this replica must not touch it.
    #[error("the key schema in Redis is version {found}, newer than this build's {known}")]
    SchemaTooNew { found: u64, known: u64 },
    /// A reply that the scripts never produce, or a script that does not compile: a bug.
    #[error("store error: {0}")]
    Internal(String),
}

pub struct Store {
    engine: Engine,
    scripts: Scripts,
    keys: Keys,
    lease_ms: u64,
    resume_window_ms: u64,
    /// The shard count of a plan this replica creates (`MAX_SHARDS`, or Discord's at a first start).
    initial_shards: AtomicU32,
    /// `SHARDS_PER_PROCESS`: the group size of a plan created by this replica.
    initial_shards_per_process: u32,
    default_concurrency: u32,
    /// -1 means "5% of Discord's daily total" (the scripts' convention).
    identify_reserve: i64,
    /// Queue events for the webhook only when one is configured, so the queue never grows unread.
    events: bool,
    signer: SessionSigner,
    /// Uses of `SECRET_PREVIOUS`, and whether this replica's secret is the deployment's (see
    /// `secrets.rs`).
    previous_secret_uses: Arc<PreviousSecretUses>,
    secret_drift: secrets::SecretDrift,
    /// `QUARANTINE_FRESH_REDIS`: see [`Store::fresh_redis_hold_ms`].
    quarantine_fresh_redis: bool,
    /// Sentinel master moves already answered with a new epoch (see [`Store::follow_failover`]).
    master_moves_seen: AtomicU64,
    /// Beats waiting for their batch (see `group_commit.rs`).
    beats: BeatQueue,
    /// Woken whenever shards are freed (here, or on a replica that said so, see `wakeups.rs`), so
    /// that claims that wait try again at once rather than at their next poll (see `waiting.rs`).
    freed: Notify,
    /// Woken whenever an IDENTIFY permit is confirmed (likewise), so that permits waiting for that
    /// bucket learn its new opening at once (see `permits.rs`).
    confirmed: Notify,
    /// This replica's name in its wake-ups, so that it skips its own.
    replica: String,
    /// Wake-ups for the other replicas, waiting for the relay job to publish them.
    marked_wakeups: wakeups::MarkedWakeups,
    /// Whether the relay job hears the other replicas' wake-ups now.
    wakeups_heard: std::sync::atomic::AtomicBool,
    /// `WAITER_POLL_MS`: how often a claim that waits tries again when nothing woke it.
    waiter_poll: Duration,
}

impl Store {
    /// Opens the store the settings ask for, loads every script (a broken one fails here, not on
    /// the first request) and creates the deployment's keys, refusing a newer key schema.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let store = Self::open_without_plan(settings).await?;
        store.init(InitReason::Startup).await?;
        Ok(store)
    }

    /// Opens the store and loads every script, writing nothing yet: [`Store::create_plan`] (or
    /// [`Store::open`]) finishes opening. Between the two, a replica may ask Discord how many
    /// shards a deployment's first plan should have.
    pub async fn open_without_plan(settings: &Settings) -> Result<Self, StoreError> {
        let keys = Keys::new(&settings.key_prefix);
        let timeout_ms = settings.redis_timeout_ms;
        // Validated settings always choose an engine; an invalid mix can only be built in code.
        let backend = settings
            .store_backend()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let engine = match backend {
            StoreBackend::InProcess => Engine::Embedded(EmbeddedEngine::new()),
            StoreBackend::Redis { url } => Engine::Redis(RedisEngine::open(&url, timeout_ms)?),
            StoreBackend::Sentinel {
                sentinels,
                master,
                sentinel_password,
                master_password,
            } => Engine::Redis(RedisEngine::open_sentinel(
                &sentinels,
                &master,
                SentinelPasswords {
                    sentinels: sentinel_password,
                    master: master_password,
                },
                timeout_ms,
            )?),
            StoreBackend::Cluster { seeds } => {
                let link = ClusterLink::shared(&seeds, timeout_ms)?;
                Engine::Cluster(ClusterEngine::new(link, &keys.base))
            }
        };
        // A Redis round trip is bounded by REDIS_TIMEOUT_MS; so is a beat's wait for its batch.
        // The embedded store runs a batch on the calling thread: a second batch would only wait
        // for the engine's lock there, holding up that thread's requests.
        let beats = match engine {
            Engine::Redis(_) | Engine::Cluster(_) => BeatQueue::new(
                group_commit::REDIS_LANES,
                group_commit::BATCHES_IN_FLIGHT,
                Some(Duration::from_millis(settings.redis_timeout_ms)),
            ),
            Engine::Embedded(_) => BeatQueue::new(1, 1, None),
        };
        let store = Self {
            engine,
            scripts: Scripts::new(),
            keys,
            lease_ms: settings.lease_ms(),
            resume_window_ms: settings.resume_window_ms(),
            initial_shards: AtomicU32::new(settings.max_shards),
            initial_shards_per_process: settings.shards_per_process.group_size(),
            default_concurrency: settings.max_concurrency,
            identify_reserve: settings.identify_reserve.map_or(-1, i64::from),
            events: settings.webhook_url.is_some(),
            signer: SessionSigner::rotating(
                settings
                    .secret
                    .as_ref()
                    .map(|secret| secret.expose())
                    .unwrap_or_default(),
                settings
                    .secret_previous
                    .as_ref()
                    .map(|secret| secret.expose()),
                &settings.key_prefix,
            ),
            previous_secret_uses: Arc::default(),
            secret_drift: secrets::SecretDrift::new(settings),
            quarantine_fresh_redis: settings.quarantine_fresh_redis,
            master_moves_seen: AtomicU64::new(0),
            beats,
            freed: Notify::new(),
            confirmed: Notify::new(),
            replica: crate::session_token::new_nonce(),
            marked_wakeups: wakeups::MarkedWakeups::default(),
            wakeups_heard: std::sync::atomic::AtomicBool::new(false),
            waiter_poll: Duration::from_millis(settings.waiter_poll_ms),
        };
        for script in store.scripts.all() {
            store.engine.load_script(script).await?;
        }
        Ok(store)
    }

    /// Whether the deployment has a shard plan already (it is not a first start).
    pub async fn plan_exists(&self) -> Result<bool, StoreError> {
        let reply = self.engine.command(&["EXISTS", &self.keys.plan]).await?;
        Ok(integer(&reply, "EXISTS")? == 1)
    }

    /// Finishes [`Store::open_without_plan`]: checks the schema and creates the plan, with
    /// `first_shards` shards if there is none yet (and after a data loss).
    pub async fn create_plan(&self, first_shards: u32) -> Result<(), StoreError> {
        self.initial_shards.store(first_shards, Ordering::SeqCst);
        self.init(InitReason::Startup).await
    }

    pub fn kind(&self) -> &'static str {
        self.engine.kind()
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.engine, Engine::Embedded(_))
    }

    /// The first key and arguments of every script (see `scripts`).
    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            keys: &self.keys,
            schema_version: SCHEMA_VERSION,
            events: self.events,
            lease_ms: self.lease_ms,
        }
    }

    /// Runs one script call and decodes its reply.
    async fn run<C: ScriptCall>(&self, call: &C) -> Result<C::Reply, StoreError> {
        let envelope = self.envelope();
        let (keys, argv) = envelope.vectors(call);
        debug_assert!(
            C::EACH.is_empty() || (argv.len() - 4 - C::ARGV.len()) % C::EACH.len() == 0,
            "{}: a whole number of items",
            C::FILE
        );
        let reply = self
            .engine
            .eval(self.scripts.get::<C>()?, &keys, &argv)
            .await?;
        C::Reply::decode(&reply).ok_or_else(|| unexpected(C::FILE, &reply))
    }
}

fn unexpected(script: &str, reply: &impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("unexpected reply from {script}: {reply:?}"))
}

// Command replies read as the script replies are (scripts::reply), with the command named in the
// error when a reply has an unexpected shape.
fn array<'a>(reply: &'a Value, script: &str) -> Result<&'a [Value], StoreError> {
    scripts::reply::array(reply).ok_or_else(|| unexpected(script, reply))
}

fn integer(value: &Value, script: &str) -> Result<i64, StoreError> {
    scripts::reply::integer(value).ok_or_else(|| unexpected(script, value))
}

fn integers(reply: &Value, script: &str) -> Result<Vec<i64>, StoreError> {
    array(reply, script)?
        .iter()
        .map(|value| integer(value, script))
        .collect()
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(scripts::reply::text)
}
