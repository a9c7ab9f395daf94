//! The store owns all shared state: leases, sessions, the shard plan, identify slots and events.
//!
//! Every state change is one Lua script from `migrations-lua/`, run by one of two engines:
//! Redis (any number of replicas) or the embedded engine (one process, no Redis), which runs the
//! very same scripts on an in-process keyspace. This module owns the key names and turns script
//! replies into domain types; the engines only run scripts and commands.

mod embedded;
mod group_commit;
mod keys;
mod lanes;
mod overview;
mod redis;
mod scripts;
mod secrets;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use ::redis::Value;

use self::embedded::EmbeddedEngine;
use self::group_commit::BeatQueue;
use self::keys::Keys;
use self::redis::{ClusterEngine, ClusterLink, RedisEngine};
use self::scripts::claim_events::Claimed;
use self::scripts::connect::Claim;
use self::scripts::disconnect::Released;
use self::scripts::lock::Held;
use self::scripts::reap::Freed;
use self::scripts::settle_event::StillClaimed;
use self::scripts::{Envelope, ScriptCall, ScriptReply};
use crate::config::{Settings, StoreBackend};
use crate::domain::{
    BeatOutcome, BeatReport, ConnectOutcome, GatewayInfo, Grant, GrantedShard, IdentifyOutcome,
    ReshardPlan,
};
use crate::session_token::{SessionClaims, SessionSigner, new_nonce};
pub use scripts::secret_fingerprint::Verdict as SecretVerdict;
pub use secrets::PreviousSecretUses;

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

/// One Lua script as the engines load it: its file name (for errors) and its source.
pub struct LuaScript {
    pub name: &'static str,
    pub source: &'static str,
    sha: ::redis::Script,
}

impl LuaScript {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha: ::redis::Script::new(source),
        }
    }

    fn of<C: ScriptCall>() -> Self {
        Self::new(C::FILE, C::SOURCE)
    }
}

/// Every script, compiled into the binary and loaded into the engine at startup.
struct Scripts(Vec<LuaScript>);

impl Scripts {
    fn new() -> Self {
        Self(vec![
            LuaScript::of::<scripts::init::Init>(),
            LuaScript::of::<scripts::connect::Connect>(),
            LuaScript::of::<scripts::beat::Beat>(),
            LuaScript::of::<scripts::disconnect::Disconnect>(),
            LuaScript::of::<scripts::identify::Identify>(),
            LuaScript::of::<scripts::reshard::Reshard>(),
            LuaScript::of::<scripts::reap::Reap>(),
            LuaScript::of::<scripts::lock::Lock>(),
            LuaScript::of::<scripts::fleet_page::FleetPage>(),
            LuaScript::of::<scripts::claim_events::ClaimEvents>(),
            LuaScript::of::<scripts::settle_event::SettleEvent>(),
            LuaScript::of::<scripts::secret_fingerprint::SecretFingerprint>(),
        ])
    }

    fn get<C: ScriptCall>(&self) -> Result<&LuaScript, StoreError> {
        self.0
            .iter()
            .find(|script| script.name == C::FILE)
            .ok_or_else(|| StoreError::Internal(format!("{} is not among the scripts", C::FILE)))
    }
}

enum Engine {
    Redis(RedisEngine),
    Cluster(ClusterEngine),
    Embedded(EmbeddedEngine),
}

impl Engine {
    async fn eval(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        match self {
            Engine::Redis(engine) => engine.eval(&script.sha, keys, args).await,
            Engine::Cluster(engine) => engine.eval(script, keys, args).await,
            Engine::Embedded(engine) => engine.eval(script, keys, args),
        }
    }

    async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        match self {
            Engine::Redis(engine) => engine.command(args).await,
            Engine::Cluster(engine) => engine.command(args).await,
            Engine::Embedded(engine) => engine.command(args),
        }
    }

    async fn load(&self, script: &LuaScript) -> Result<(), StoreError> {
        match self {
            Engine::Redis(engine) => engine.load(&script.sha).await,
            Engine::Cluster(engine) => engine.load(script).await,
            Engine::Embedded(engine) => engine.load(script),
        }
        .map_err(|error| match error {
            StoreError::Internal(reason) => {
                StoreError::Internal(format!("{} does not load: {reason}", script.name))
            }
            other => other,
        })
    }
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
}

impl Store {
    /// Opens the store the settings ask for, loads every script (a broken one fails here, not on
    /// the first request) and creates the deployment's keys, refusing a newer key schema.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let store = Self::load(settings).await?;
        store.init(Init::Startup).await?;
        Ok(store)
    }

    /// Opens the store and loads every script, writing nothing yet: [`Store::create_plan`] (or
    /// [`Store::open`]) finishes opening. Between the two, a replica may ask Discord how many
    /// shards a deployment's first plan should have.
    pub async fn load(settings: &Settings) -> Result<Self, StoreError> {
        let keys = Keys::new(&settings.key_prefix);
        let timeout_ms = settings.redis_timeout_ms;
        // Validated settings always choose an engine; an invalid mix can only be built in code.
        let backend = settings
            .store_backend()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let engine = match backend {
            StoreBackend::InProcess => Engine::Embedded(EmbeddedEngine::new()),
            StoreBackend::Redis { url } => Engine::Redis(RedisEngine::open(&url, timeout_ms)?),
            StoreBackend::Sentinel { sentinels, master } => {
                Engine::Redis(RedisEngine::open_sentinel(&sentinels, &master, timeout_ms)?)
            }
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
            initial_shards_per_process: settings.shards_per_process,
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
        };
        for script in &store.scripts.0 {
            store.engine.load(script).await?;
        }
        Ok(store)
    }

    /// Whether the deployment has a shard plan already (it is not a first start).
    pub async fn plan_exists(&self) -> Result<bool, StoreError> {
        let reply = self.engine.command(&["EXISTS", &self.keys.plan]).await?;
        Ok(integer(&reply, "EXISTS")? == 1)
    }

    /// Finishes [`Store::load`]: checks the schema and creates the plan, with `first_shards`
    /// shards if there is none yet (and after a data loss).
    pub async fn create_plan(&self, first_shards: u32) -> Result<(), StoreError> {
        self.initial_shards.store(first_shards, Ordering::SeqCst);
        self.init(Init::Startup).await
    }

    pub fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Redis(_) => "redis",
            Engine::Cluster(_) => "redis-cluster",
            Engine::Embedded(_) => "in-process",
        }
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

    /// Runs a script that answers `NOPLAN` when Redis lost its data: re-initialise, then retry once.
    /// The plan was there when this replica started, so a missing plan now means a loss.
    async fn run_planned<C: ScriptCall>(&self, call: &C) -> Result<C::Reply, StoreError> {
        self.follow_failover().await?;
        match self.run(call).await {
            Err(StoreError::Internal(message)) if message.contains("NOPLAN") => {
                log::warn!(
                    "the shard plan is gone from the store: Redis lost its data; re-creating it and \
                     holding new grants back for one lease length"
                );
                self.init(Init::AfterLoss).await?;
                self.run(call).await
            }
            other => other,
        }
    }

    /// Runs `init.lua`: idempotent, so it also repairs a Redis that lost its data.
    pub(super) async fn init(&self, when: Init) -> Result<(), StoreError> {
        let (quarantine_ms, quarantine_if_created_ms, new_epoch) = match when {
            Init::Startup => (0, self.fresh_redis_hold_ms().await?, false),
            Init::AfterLoss => (self.lease_ms, 0, false),
            Init::AfterFailover => (self.lease_ms, 0, true),
        };
        let initialized = self
            .run(&scripts::init::Init {
                initial_shards: self.initial_shards.load(Ordering::SeqCst),
                quarantine_ms,
                quarantine_if_created_ms,
                new_epoch,
                initial_shards_per_process: self.initial_shards_per_process,
            })
            .await?;
        if initialized.schema_version == SCHEMA_VERSION {
            Ok(())
        } else {
            Err(unexpected("init.lua", &initialized.schema_version))
        }
    }

    /// At startup: how much of one lease length is left since Redis itself started. A Redis that
    /// restarted less than a lease ago without persistence and holds no plan may have lost one
    /// while bots still run, so a plan created now waits that long before granting (see
    /// init.lua). Zero when the setting is off, for a Redis with AOF on, and for the embedded
    /// store (it starts with this very process).
    async fn fresh_redis_hold_ms(&self) -> Result<u64, StoreError> {
        if !self.quarantine_fresh_redis || self.is_embedded() {
            return Ok(0);
        }
        // With AOF on, a restarted Redis reloads what it had: no plan there means a new
        // deployment, which should grant at once. (A flush or a failover is still caught later.)
        let persistence = self.engine.command(&["INFO", "persistence"]).await?;
        let aof_enabled = text(Some(&persistence))
            .is_some_and(|info| info.lines().any(|line| line.trim() == "aof_enabled:1"));
        if aof_enabled {
            return Ok(0);
        }
        let info = self.engine.command(&["INFO", "server"]).await?;
        let uptime_ms = text(Some(&info))
            .and_then(|info| {
                info.lines()
                    .find_map(|line| line.strip_prefix("uptime_in_seconds:"))
                    .and_then(|seconds| seconds.trim().parse::<u64>().ok())
            })
            .map_or(u64::MAX, |seconds| seconds.saturating_mul(1000));
        Ok(self.lease_ms.saturating_sub(uptime_ms))
    }

    /// After a Sentinel failover, before anything else is written: start a new epoch with a
    /// quarantine, as after a loss, since asynchronous replication may have dropped grants the old
    /// master acknowledged (a grant lost that way must not be handed out again while its bot runs).
    async fn follow_failover(&self) -> Result<(), StoreError> {
        let moves = match &self.engine {
            Engine::Redis(engine) => engine.master_moves(),
            Engine::Cluster(engine) => engine.master_moves(),
            Engine::Embedded(_) => return Ok(()),
        };
        let seen = self.master_moves_seen.load(Ordering::SeqCst);
        if moves != seen
            && self
                .master_moves_seen
                .compare_exchange(seen, moves, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            log::warn!("the Redis master moved: new grants wait one lease while bots re-beat");
            if let Err(error) = self.init(Init::AfterFailover).await {
                // Try again on the next request.
                self.master_moves_seen.store(seen, Ordering::SeqCst);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Claims the lowest free shard id for a new session and books its IDENTIFY slot.
    pub async fn connect(&self) -> Result<ConnectOutcome, StoreError> {
        let nonce = new_nonce();
        let claim = self
            .run_planned(&scripts::connect::Connect {
                nonce: &nonce,
                default_concurrency: self.default_concurrency,
                identify_reserve: self.identify_reserve,
            })
            .await?;
        Ok(match claim {
            Claim::Granted {
                lease,
                epoch,
                gateway_url,
                shards,
                shards_per_process,
            } => {
                let session_id = self.signer.sign(&SessionClaims {
                    shard_id: lease.shard_id,
                    generation: lease.generation,
                    max_shards: lease.max_shards,
                    fence: lease.fence,
                    epoch,
                    nonce,
                    shards_per_process,
                });
                ConnectOutcome::Granted(Grant {
                    session_id,
                    lease,
                    gateway_url,
                    shards: shards
                        .into_iter()
                        .map(|shard| GrantedShard {
                            shard_id: shard.shard_id,
                            sleep_ms: shard.sleep_ms,
                            resume: shard
                                .resume
                                .and_then(|json| serde_json::from_str(&json).ok()),
                        })
                        .collect(),
                })
            }
            Claim::Full => ConnectOutcome::Full,
            Claim::Recovering { retry_after_ms } => ConnectOutcome::Recovering { retry_after_ms },
            Claim::BudgetExhausted { retry_after_ms } => {
                ConnectOutcome::BudgetExhausted { retry_after_ms }
            }
        })
    }

    /// Whether this deployment signed `session_id` (one HMAC, no store round trip; says nothing
    /// about whether the session still holds its shard). The brute-force block lets these in.
    pub fn signed(&self, session_id: &str) -> bool {
        self.signer.verify(session_id).is_some()
    }

    /// Refreshes the session's lease and stores its report. Beats go to the store in batches
    /// (group commit, see `group_commit.rs`); the answer is this beat's own.
    pub async fn beat(self: &Arc<Self>, report: &BeatReport) -> Result<BeatOutcome, StoreError> {
        // A session id this deployment did not sign names no session: no need to ask the store.
        let Some(claims) = self.verify_session(&report.session_id) else {
            return Ok(BeatOutcome::NotFound);
        };
        self.commit_beat(scripts::beat::OneBeat::from_claims(claims, report))
            .await
    }

    /// Frees the session's shard at once; `false` when there was no such session.
    pub async fn disconnect(&self, session_id: &str) -> Result<bool, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(false);
        };
        let Released(released) = self
            .run(&scripts::disconnect::Disconnect {
                nonce: &claims.nonce,
                resume_window_ms: self.resume_window_ms,
                shard_id: claims.shard_id,
                generation: claims.generation,
            })
            .await?;
        Ok(released)
    }

    /// Books the next IDENTIFY slot for a session that must identify again.
    /// `shard_id`: the shard of the session's group that must identify (`None`: its first).
    pub async fn identify(
        &self,
        session_id: &str,
        shard_id: Option<u32>,
    ) -> Result<IdentifyOutcome, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(IdentifyOutcome::NotFound);
        };
        self.run_planned(&scripts::identify::Identify {
            nonce: &claims.nonce,
            default_concurrency: self.default_concurrency,
            identify_reserve: self.identify_reserve,
            shard_id: claims.shard_id,
            generation: claims.generation,
            identify_shard_id: shard_id,
        })
        .await
    }

    /// Starts a pending generation with `max_shards` (or changes nothing if that is the plan).
    /// `shards_per_process`: the new generation's group size (`None`: the planned one).
    pub async fn reshard(
        &self,
        max_shards: u32,
        shards_per_process: Option<u32>,
    ) -> Result<ReshardPlan, StoreError> {
        self.run_planned(&scripts::reshard::Reshard {
            new_max_shards: max_shards,
            new_shards_per_process: shards_per_process,
        })
        .await
    }

    /// Frees expired leases and queues an `expire` event for each; returns how many.
    pub async fn reap_expired(&self) -> Result<usize, StoreError> {
        let Freed(freed) = self.run(&scripts::reap::Reap {}).await?;
        Ok(freed)
    }

    /// Takes or renews the lock `name` for `owner`; false when another owner holds it.
    pub async fn try_lock(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let Held(held) = self
            .run(&scripts::lock::Lock {
                lock_name: name,
                owner,
                ttl_ms,
            })
            .await?;
        Ok(held)
    }

    /// Shares Discord's gateway info; resets the count of identifies granted against its budget.
    pub async fn save_gateway(&self, info: &GatewayInfo) -> Result<(), StoreError> {
        let time = self.now_ms().await?;
        let reset_at = time + info.session_start_reset_after_ms;
        let fields = [
            ("shards", info.shards.to_string()),
            ("max_concurrency", info.max_concurrency.max(1).to_string()),
            ("total", info.session_start_total.to_string()),
            ("remaining", info.session_start_remaining.to_string()),
            ("reset_at", reset_at.to_string()),
            ("used", "0".to_owned()),
        ];
        let mut args = vec!["HSET", &self.keys.gateway];
        for (name, value) in &fields {
            args.push(name);
            args.push(value);
        }
        if let Some(url) = &info.url {
            args.extend(["url", url.as_str()]);
        }
        self.engine.command(&args).await?;
        // A fresh budget above the reserve may alert again when it runs low.
        self.engine
            .command(&["HDEL", &self.keys.gateway, "low_alerted"])
            .await?;
        Ok(())
    }

    pub async fn gateway(&self) -> Result<Option<GatewayInfo>, StoreError> {
        let reply = self
            .engine
            .command(&["HGETALL", &self.keys.gateway])
            .await?;
        let fields = hash(&reply);
        let number = |name: &str| fields.get(name).and_then(|value| value.parse::<u64>().ok());
        let (Some(shards), Some(max_concurrency)) = (number("shards"), number("max_concurrency"))
        else {
            return Ok(None);
        };
        let now = self.now_ms().await?;
        Ok(Some(GatewayInfo {
            shards: shards as u32,
            max_concurrency: max_concurrency as u32,
            session_start_total: number("total").unwrap_or(0) as u32,
            session_start_remaining: number("remaining")
                .unwrap_or(0)
                .saturating_sub(number("used").unwrap_or(0))
                as u32,
            session_start_reset_after_ms: number("reset_at").unwrap_or(0).saturating_sub(now),
            url: fields.get("url").cloned(),
        }))
    }

    /// Claims up to `max` alert events for `redeliver_ms`, as queued text (see claim_events.lua):
    /// overdue claims of a replica that died first, then the oldest queued.
    pub async fn claim_events(
        &self,
        max: u64,
        redeliver_ms: u64,
    ) -> Result<Vec<String>, StoreError> {
        let Claimed(events) = self
            .run(&scripts::claim_events::ClaimEvents {
                max_events: max.max(1),
                redeliver_ms,
            })
            .await?;
        Ok(events)
    }

    /// Ends a claim (`redeliver_ms` 0: delivered or given up) or renews it; false when the claim
    /// had lapsed and the event was handed out again.
    pub async fn settle_event(&self, event: &str, redeliver_ms: u64) -> Result<bool, StoreError> {
        let StillClaimed(still) = self
            .run(&scripts::settle_event::SettleEvent {
                event,
                redeliver_ms,
            })
            .await?;
        Ok(still)
    }

    /// A small shared value (such as when the autoscaler's lower target was first seen).
    pub async fn get_meta(&self, field: &str) -> Result<Option<String>, StoreError> {
        let reply = self
            .engine
            .command(&["HGET", &self.keys.meta, field])
            .await?;
        Ok(text(Some(&reply)))
    }

    pub async fn set_meta(&self, field: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(value) => {
                self.engine
                    .command(&["HSET", &self.keys.meta, field, value])
                    .await?
            }
            None => {
                self.engine
                    .command(&["HDEL", &self.keys.meta, field])
                    .await?
            }
        };
        Ok(())
    }

    /// The store's clock (Redis `TIME`), in ms since the epoch: the one clock all replicas share.
    pub async fn now_ms(&self) -> Result<u64, StoreError> {
        let reply = self.engine.command(&["TIME"]).await?;
        match integers(&reply, "TIME")?[..] {
            [seconds, micros] => Ok(seconds as u64 * 1000 + micros as u64 / 1000),
            _ => Err(unexpected("TIME", &reply)),
        }
    }

    /// Succeeds when the store answers and no newer build has taken over the deployment's data.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.engine.command(&["GET", &self.keys.schema]).await?;
        match text(Some(&reply)).and_then(|version| version.parse::<u64>().ok()) {
            Some(found) if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            }),
            _ => Ok(()),
        }
    }
}

/// Why `init.lua` runs.
#[derive(Clone, Copy)]
pub(super) enum Init {
    /// A replica starts: create what is missing, nothing more.
    Startup,
    /// The plan vanished while this replica was running: Redis lost its data.
    AfterLoss,
    /// The Sentinel master moved: the new master may lack the old one's last writes.
    AfterFailover,
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

/// HGETALL's reply (a flat array in RESP2, a map in RESP3) as a map.
fn hash(reply: &Value) -> HashMap<String, String> {
    match reply {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| Some((text(pair.first())?, text(pair.get(1))?)))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(name, value)| Some((text(Some(name))?, text(Some(value))?)))
            .collect(),
        _ => HashMap::new(),
    }
}
