//! The store owns all shared state: leases, sessions, the shard plan, identify slots and events.
//!
//! Every state change is one Lua script from `migrations-lua/`, run by one of two engines:
//! Redis (any number of replicas) or the embedded engine (one process, no Redis), which runs the
//! very same scripts on an in-process keyspace. This module owns the key names and turns script
//! replies into domain types; the engines only run scripts and commands.

mod embedded;
mod overview;
// Not `mod redis`: that name would shadow the `redis` crate in this module's paths.
#[path = "redis/mod.rs"]
mod redis_engine;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use redis::Value;

use self::embedded::EmbeddedEngine;
use self::redis_engine::RedisEngine;
use crate::config::Settings;
use crate::domain::{
    BeatOutcome, BeatReport, ConnectOutcome, Event, GatewayInfo, Grant, IdentifyOutcome, Lease,
    ReshardPlan, SessionState,
};
use crate::session_token::{SessionClaims, SessionSigner, new_nonce};

/// Version of the key schema this build reads and writes. Bump it when keys change meaning; a
/// replica refuses to start against a newer one (see README, "Upgrades").
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
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

/// One Lua script: its file name (for errors) and source.
pub struct LuaScript {
    pub name: &'static str,
    pub source: &'static str,
    sha: redis::Script,
}

impl LuaScript {
    fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            sha: redis::Script::new(source),
        }
    }
}

macro_rules! scripts {
    ($($field:ident),* $(,)?) => {
        /// The scripts, compiled into the binary and loaded into the engine at startup.
        struct Scripts { $($field: LuaScript,)* }
        impl Scripts {
            fn new() -> Self {
                Self { $($field: LuaScript::new(
                    concat!(stringify!($field), ".lua"),
                    // The shared helpers go in front of every script (see includes/common.lua).
                    concat!(
                        include_str!("../../migrations-lua/includes/common.lua"),
                        include_str!(concat!("../../migrations-lua/", stringify!($field), ".lua")),
                    ),
                ),)* }
            }
            fn all(&self) -> Vec<&LuaScript> { vec![$(&self.$field),*] }
        }
    };
}

scripts!(
    init, connect, beat, disconnect, identify, reshard, reap, lock, fleet_page
);

/// Key names of one deployment. All share the hash tag `{KEY_PREFIX}`, so they live in one Redis
/// Cluster slot and scripts may touch any of them.
struct Keys {
    /// `{prefix}:`; the scripts derive per-generation, per-shard and per-session keys from it.
    base: String,
    schema: String,
    plan: String,
    fence: String,
    gateway: String,
    identify: String,
    events: String,
    meta: String,
    quarantine: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}}}:");
        let key = |name: &str| format!("{base}{name}");
        Self {
            schema: key("schema"),
            plan: key("plan"),
            fence: key("fence"),
            gateway: key("gateway"),
            identify: key("identify"),
            events: key("events"),
            meta: key("meta"),
            quarantine: key("quarantine"),
            base,
        }
    }

    fn lock(&self, name: &str) -> String {
        format!("{}lock:{name}", self.base)
    }
}

enum Engine {
    Redis(RedisEngine),
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
            Engine::Embedded(engine) => engine.eval(script, keys, args),
        }
    }

    async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        match self {
            Engine::Redis(engine) => engine.command(args).await,
            Engine::Embedded(engine) => engine.command(args),
        }
    }

    async fn load(&self, script: &LuaScript) -> Result<(), StoreError> {
        match self {
            Engine::Redis(engine) => engine.load(&script.sha).await,
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
    initial_shards: u32,
    default_concurrency: u32,
    /// -1 means "5% of Discord's daily total" (the scripts' convention).
    identify_reserve: i64,
    /// Queue events for the webhook only when one is configured, so the queue never grows unread.
    events: bool,
    signer: SessionSigner,
    /// `QUARANTINE_FRESH_REDIS`: see [`Store::fresh_redis_hold_ms`].
    quarantine_fresh_redis: bool,
    /// Sentinel master moves already answered with a new epoch (see [`Store::follow_failover`]).
    master_moves_seen: AtomicU64,
}

impl Store {
    /// Opens the store the settings ask for, loads every script (a broken one fails here, not on
    /// the first request) and creates the deployment's keys, refusing a newer key schema.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let engine = match RedisEngine::from_settings(settings)? {
            Some(redis) => Engine::Redis(redis),
            None => Engine::Embedded(EmbeddedEngine::new()),
        };
        let store = Self {
            engine,
            scripts: Scripts::new(),
            keys: Keys::new(&settings.key_prefix),
            lease_ms: settings.lease_ms(),
            resume_window_ms: settings.resume_window_ms(),
            initial_shards: settings.max_shards,
            default_concurrency: settings.max_concurrency,
            identify_reserve: settings.identify_reserve.map_or(-1, i64::from),
            events: settings.webhook_url.is_some(),
            signer: SessionSigner::new(
                settings
                    .secret
                    .as_ref()
                    .map(|secret| secret.expose())
                    .unwrap_or_default(),
                &settings.key_prefix,
            ),
            quarantine_fresh_redis: settings.quarantine_fresh_redis,
            master_moves_seen: AtomicU64::new(0),
        };
        for script in store.scripts.all() {
            store.engine.load(script).await?;
        }
        store.init(Init::Startup).await?;
        Ok(store)
    }

    pub fn kind(&self) -> &'static str {
        match self.engine {
            Engine::Redis(_) => "redis",
            Engine::Embedded(_) => "in-process",
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.engine, Engine::Embedded(_))
    }

    fn events_flag(&self) -> String {
        u8::from(self.events).to_string()
    }

    /// Runs `init.lua`: idempotent, so it also repairs a Redis that lost its data.
    pub(super) async fn init(&self, when: Init) -> Result<(), StoreError> {
        let (quarantine_ms, quarantine_if_created_ms, new_epoch) = match when {
            Init::Startup => (0, self.fresh_redis_hold_ms().await?, false),
            Init::AfterLoss => (self.lease_ms, 0, false),
            Init::AfterFailover => (self.lease_ms, 0, true),
        };
        let reply = self
            .engine
            .eval(
                &self.scripts.init,
                &[&self.keys.schema, &self.keys.plan, &self.keys.quarantine],
                &[
                    SCHEMA_VERSION.to_string(),
                    self.initial_shards.to_string(),
                    quarantine_ms.to_string(),
                    quarantine_if_created_ms.to_string(),
                    u8::from(new_epoch).to_string(),
                ],
            )
            .await?;
        match integers(&reply, "init")?[..] {
            [version, ..] if version as u64 == SCHEMA_VERSION => Ok(()),
            _ => Err(unexpected("init", &reply)),
        }
    }

    /// At startup: how much of one lease length is left since Redis itself started. A Redis that
    /// restarted less than a lease ago and holds no plan may have lost one while bots still run,
    /// so a plan created now waits that long before granting (see init.lua). Zero when the
    /// setting is off, and for the embedded store (it starts with this very process).
    async fn fresh_redis_hold_ms(&self) -> Result<u64, StoreError> {
        if !self.quarantine_fresh_redis || self.is_embedded() {
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
        let Engine::Redis(engine) = &self.engine else {
            return Ok(());
        };
        let moves = engine.master_moves();
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

    /// Runs a script that answers `NOPLAN` when Redis lost its data: re-initialise, then retry once.
    /// The plan was there when this replica started, so a missing plan now means a loss.
    async fn eval_planned(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        self.follow_failover().await?;
        match self.engine.eval(script, keys, args).await {
            Err(StoreError::Internal(message)) if message.contains("NOPLAN") => {
                log::warn!(
                    "the shard plan is gone from the store: Redis lost its data; re-creating it and \
                     holding new grants back for one lease length"
                );
                self.init(Init::AfterLoss).await?;
                self.engine.eval(script, keys, args).await
            }
            other => other,
        }
    }

    /// Claims the lowest free shard id for a new session and books its IDENTIFY slot.
    pub async fn connect(&self) -> Result<ConnectOutcome, StoreError> {
        let nonce = new_nonce();
        let keys = &self.keys;
        let reply = self
            .eval_planned(
                &self.scripts.connect,
                &[
                    &keys.plan,
                    &keys.fence,
                    &keys.gateway,
                    &keys.identify,
                    &keys.events,
                    &keys.quarantine,
                    &keys.schema,
                ],
                &[
                    keys.base.clone(),
                    nonce.clone(),
                    self.lease_ms.to_string(),
                    self.default_concurrency.to_string(),
                    self.identify_reserve.to_string(),
                    self.events_flag(),
                    SCHEMA_VERSION.to_string(),
                ],
            )
            .await?;
        let fields = array(&reply, "connect")?;
        match text(fields.first()).as_deref() {
            Some("granted") if fields.len() == 9 => {
                let state = text(fields.get(6))
                    .and_then(|state| SessionState::parse(&state))
                    .ok_or_else(|| unexpected("connect", &reply))?;
                let lease = Lease {
                    shard_id: integer(&fields[1], "connect")? as u32,
                    max_shards: integer(&fields[2], "connect")? as u32,
                    generation: integer(&fields[3], "connect")? as u64,
                    fence: integer(&fields[4], "connect")? as u64,
                    state,
                };
                let session_id = self.signer.sign(&SessionClaims {
                    shard_id: lease.shard_id,
                    generation: lease.generation,
                    max_shards: lease.max_shards,
                    fence: lease.fence,
                    epoch: integer(&fields[8], "connect")?.max(0) as u64,
                    nonce,
                });
                Ok(ConnectOutcome::Granted(Grant {
                    session_id,
                    lease,
                    sleep_ms: integer(&fields[5], "connect")?.max(0) as u64,
                    resume: text(fields.get(7)).and_then(|json| serde_json::from_str(&json).ok()),
                }))
            }
            Some("recovering") if fields.len() == 2 => Ok(ConnectOutcome::Recovering {
                retry_after_ms: integer(&fields[1], "connect")?.max(0) as u64,
            }),
            Some("full") => Ok(ConnectOutcome::Full),
            Some("budget") if fields.len() == 2 => Ok(ConnectOutcome::BudgetExhausted {
                retry_after_ms: integer(&fields[1], "connect")?.max(0) as u64,
            }),
            _ => Err(unexpected("connect", &reply)),
        }
    }

    pub async fn beat(&self, report: &BeatReport) -> Result<BeatOutcome, StoreError> {
        // A session id this deployment did not sign names no session: no need to ask the store.
        let Some(claims) = self.signer.verify(&report.session_id) else {
            return Ok(BeatOutcome::NotFound);
        };
        let reply = self
            .eval_planned(
                &self.scripts.beat,
                &[
                    &self.keys.plan,
                    &self.keys.events,
                    &self.keys.quarantine,
                    &self.keys.fence,
                    &self.keys.schema,
                ],
                &[
                    self.keys.base.clone(),
                    claims.nonce,
                    self.lease_ms.to_string(),
                    report
                        .guild_count
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    report.latency.map(|s| s.to_string()).unwrap_or_default(),
                    report.extra.clone().unwrap_or_default(),
                    report.resume.clone().unwrap_or_default(),
                    self.resume_window_ms.to_string(),
                    self.events_flag(),
                    claims.shard_id.to_string(),
                    claims.generation.to_string(),
                    claims.max_shards.to_string(),
                    claims.fence.to_string(),
                    claims.epoch.to_string(),
                    SCHEMA_VERSION.to_string(),
                ],
            )
            .await?;
        let fields = array(&reply, "beat")?;
        let [status, shard_id, max_shards, generation, fence, state] = fields else {
            return Err(unexpected("beat", &reply));
        };
        let status = integer(status, "beat")?;
        if status == 0 {
            return Ok(BeatOutcome::NotFound);
        }
        let lease = Lease {
            shard_id: integer(shard_id, "beat")?.max(0) as u32,
            max_shards: integer(max_shards, "beat")?.max(0) as u32,
            generation: integer(generation, "beat")?.max(0) as u64,
            fence: integer(fence, "beat")?.max(0) as u64,
            state: text(Some(state))
                .and_then(|state| SessionState::parse(&state))
                .unwrap_or(SessionState::Retired),
        };
        Ok(if status == 1 {
            BeatOutcome::Alive(lease)
        } else {
            BeatOutcome::Retired(lease)
        })
    }

    /// Frees the session's shard at once; `false` when there was no such session.
    pub async fn disconnect(&self, session_id: &str) -> Result<bool, StoreError> {
        let Some(claims) = self.signer.verify(session_id) else {
            return Ok(false);
        };
        let reply = self
            .engine
            .eval(
                &self.scripts.disconnect,
                &[&self.keys.events, &self.keys.schema],
                &[
                    self.keys.base.clone(),
                    claims.nonce,
                    self.resume_window_ms.to_string(),
                    self.events_flag(),
                    claims.shard_id.to_string(),
                    claims.generation.to_string(),
                    SCHEMA_VERSION.to_string(),
                ],
            )
            .await?;
        Ok(integer(&reply, "disconnect")? == 1)
    }

    /// Books the next IDENTIFY slot for a session that must identify again.
    pub async fn identify(&self, session_id: &str) -> Result<IdentifyOutcome, StoreError> {
        let Some(claims) = self.signer.verify(session_id) else {
            return Ok(IdentifyOutcome::NotFound);
        };
        let keys = &self.keys;
        let reply = self
            .eval_planned(
                &self.scripts.identify,
                &[
                    &keys.plan,
                    &keys.gateway,
                    &keys.identify,
                    &keys.events,
                    &keys.schema,
                    &keys.quarantine,
                ],
                &[
                    keys.base.clone(),
                    claims.nonce,
                    self.default_concurrency.to_string(),
                    self.identify_reserve.to_string(),
                    self.events_flag(),
                    claims.shard_id.to_string(),
                    claims.generation.to_string(),
                    SCHEMA_VERSION.to_string(),
                ],
            )
            .await?;
        let fields = array(&reply, "identify")?;
        let milliseconds = |index: usize| -> Result<u64, StoreError> {
            let value = fields
                .get(index)
                .ok_or_else(|| unexpected("identify", &reply))?;
            Ok(integer(value, "identify")?.max(0) as u64)
        };
        match text(fields.first()).as_deref() {
            Some("slot") => Ok(IdentifyOutcome::Slot {
                sleep_ms: milliseconds(1)?,
            }),
            Some("unknown") => Ok(IdentifyOutcome::NotFound),
            Some("recovering") => Ok(IdentifyOutcome::Recovering {
                retry_after_ms: milliseconds(1)?,
            }),
            Some("retired") => Ok(IdentifyOutcome::Retired),
            Some("budget") => Ok(IdentifyOutcome::BudgetExhausted {
                retry_after_ms: milliseconds(1)?,
            }),
            _ => Err(unexpected("identify", &reply)),
        }
    }

    /// Starts a pending generation with `max_shards` (or changes nothing if that is the plan).
    pub async fn reshard(&self, max_shards: u32) -> Result<ReshardPlan, StoreError> {
        let reply = self
            .eval_planned(
                &self.scripts.reshard,
                &[&self.keys.plan, &self.keys.events, &self.keys.schema],
                &[
                    max_shards.to_string(),
                    self.events_flag(),
                    SCHEMA_VERSION.to_string(),
                    self.lease_ms.to_string(),
                    self.keys.base.clone(),
                ],
            )
            .await?;
        let [
            started,
            from_generation,
            from_max_shards,
            pending_generation,
            pending_max_shards,
        ] = integers(&reply, "reshard")?[..]
        else {
            return Err(unexpected("reshard", &reply));
        };
        let pending = pending_generation > 0;
        Ok(ReshardPlan {
            started: started == 1,
            from_generation: from_generation as u64,
            from_max_shards: from_max_shards as u32,
            generation: if pending {
                pending_generation
            } else {
                from_generation
            } as u64,
            max_shards: if pending {
                pending_max_shards
            } else {
                from_max_shards
            } as u32,
        })
    }

    /// Frees expired leases and queues an `expire` event for each; returns how many.
    pub async fn reap_expired(&self) -> Result<usize, StoreError> {
        let reply = self
            .engine
            .eval(
                &self.scripts.reap,
                &[&self.keys.plan, &self.keys.events, &self.keys.schema],
                &[
                    self.keys.base.clone(),
                    self.events_flag(),
                    SCHEMA_VERSION.to_string(),
                ],
            )
            .await?;
        Ok(integer(&reply, "reap")?.max(0) as usize)
    }

    /// Takes or renews the lock `name` for `owner`; false when another owner holds it.
    pub async fn try_lock(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let reply = self
            .engine
            .eval(
                &self.scripts.lock,
                &[&self.keys.lock(name)],
                &[owner.to_owned(), ttl_ms.to_string()],
            )
            .await?;
        Ok(integer(&reply, "lock")? == 1)
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
        }))
    }

    /// Takes up to `max` queued events, oldest first; each event is taken by exactly one caller.
    pub async fn pop_events(&self, max: usize) -> Result<Vec<Event>, StoreError> {
        let count = max.max(1).to_string();
        let reply = self
            .engine
            .command(&["RPOP", &self.keys.events, &count])
            .await?;
        let items = match reply {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        Ok(items
            .iter()
            .filter_map(|item| text(Some(item)))
            .filter_map(|line| Event::parse(&line))
            .collect())
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

fn array<'a>(reply: &'a Value, script: &str) -> Result<&'a [Value], StoreError> {
    match reply {
        Value::Array(items) => Ok(items),
        other => Err(unexpected(script, other)),
    }
}

fn integer(value: &Value, script: &str) -> Result<i64, StoreError> {
    match value {
        Value::Int(number) => Ok(*number),
        Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| unexpected(script, value)),
        other => Err(unexpected(script, other)),
    }
}

fn integers(reply: &Value, script: &str) -> Result<Vec<i64>, StoreError> {
    array(reply, script)?
        .iter()
        .map(|value| integer(value, script))
        .collect()
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::Int(number) => Some(number.to_string()),
        _ => None,
    }
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
