//! Redis store: every state change is one Lua script from `migrations-lua/`.

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, FromRedisValue, Script, Value};

use super::{SCHEMA_VERSION, StoreError};
use crate::config::Settings;
use crate::domain::{
    BeatOutcome, BeatReport, FleetStatus, Grant, Lease, ShardStatus, timestamp_from_millis,
};

/// The scripts, compiled into the binary and loaded into Redis at startup.
struct Scripts {
    init: Script,
    connect: Script,
    beat: Script,
    disconnect: Script,
    status: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            init: Script::new(include_str!("../../migrations-lua/init.lua")),
            connect: Script::new(include_str!("../../migrations-lua/connect.lua")),
            beat: Script::new(include_str!("../../migrations-lua/beat.lua")),
            disconnect: Script::new(include_str!("../../migrations-lua/disconnect.lua")),
            status: Script::new(include_str!("../../migrations-lua/status.lua")),
        }
    }

    fn all(&self) -> [(&'static str, &Script); 5] {
        [
            ("init", &self.init),
            ("connect", &self.connect),
            ("beat", &self.beat),
            ("disconnect", &self.disconnect),
            ("status", &self.status),
        ]
    }
}

/// Key names of one deployment. All share the hash tag `{KEY_PREFIX}`, so they live in one Redis
/// Cluster slot and scripts may touch any of them.
struct Keys {
    /// `{prefix}:`; the scripts derive per-shard and per-session keys from it.
    base: String,
    schema: String,
    plan: String,
    fences: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let base = format!("{{{prefix}}}:");
        Self {
            schema: format!("{base}schema"),
            plan: format!("{base}plan"),
            fences: format!("{base}fences"),
            base,
        }
    }
}

pub struct RedisStore {
    pool: Pool,
    scripts: Scripts,
    keys: Keys,
    /// Bound on every round trip, on top of the connection's own timeouts.
    timeout: Duration,
    lease_ms: u64,
    initial_shards: u32,
}

impl RedisStore {
    /// Connects, loads every script (a broken script fails here, not on the first request) and
    /// creates the deployment's keys, refusing a schema newer than this build's.
    pub async fn open(url: &str, settings: &Settings) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(settings.redis_timeout_ms);
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager = Manager::new_with_config(url, connection)
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_URL: {error}")))?;
        let pool = Pool::builder(manager)
            .max_size(32)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        let store = Self {
            pool,
            scripts: Scripts::new(),
            keys: Keys::new(&settings.key_prefix),
            timeout,
            lease_ms: settings.lease_ms(),
            initial_shards: settings.max_shards,
        };
        store.load_scripts().await?;
        store.init().await?;
        Ok(store)
    }

    async fn load_scripts(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        for (name, script) in self.scripts.all() {
            self.bounded(script.load_async(&mut conn))
                .await
                .map_err(|error| match error {
                    StoreError::Unavailable(_) => error,
                    other => StoreError::Internal(format!("script {name}.lua: {other}")),
                })?;
        }
        Ok(())
    }

    /// Runs `init.lua`: idempotent, so it also repairs a Redis that lost its data.
    async fn init(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let mut call = self.scripts.init.prepare_invoke();
        call.key(&self.keys.schema)
            .key(&self.keys.plan)
            .arg(SCHEMA_VERSION)
            .arg(self.initial_shards);
        let _: Value = self.bounded(call.invoke_async(&mut conn)).await?;
        Ok(())
    }

    pub async fn connect(&self, session_id: String) -> Result<Option<Grant>, StoreError> {
        let mut call = self.scripts.connect.prepare_invoke();
        call.key(&self.keys.plan)
            .key(&self.keys.fences)
            .arg(&self.keys.base)
            .arg(&session_id)
            .arg(self.lease_ms);
        let reply: Vec<i64> = match self.invoke(&call).await {
            Err(StoreError::Internal(message)) if message.contains("NOPLAN") => {
                self.init().await?;
                self.invoke(&call).await?
            }
            other => other?,
        };
        let [shard_id, max_shards, generation, fence] = reply[..] else {
            return Err(unexpected("connect", &reply));
        };
        if shard_id < 0 {
            return Ok(None);
        }
        Ok(Some(Grant {
            session_id,
            lease: Lease {
                shard_id: shard_id as u32,
                max_shards: max_shards as u32,
                generation: generation as u64,
                fence: fence as u64,
            },
        }))
    }

    pub async fn beat(&self, report: &BeatReport) -> Result<BeatOutcome, StoreError> {
        let mut call = self.scripts.beat.prepare_invoke();
        call.key(&self.keys.plan)
            .arg(&self.keys.base)
            .arg(&report.session_id)
            .arg(self.lease_ms)
            .arg(report.guild_count.map(|n| n.to_string()).unwrap_or_default())
            .arg(report.latency.map(|s| s.to_string()).unwrap_or_default())
            .arg(report.extra.as_deref().unwrap_or_default());
        let reply: Vec<i64> = self.invoke(&call).await?;
        let [status, shard_id, max_shards, generation, fence] = reply[..] else {
            return Err(unexpected("beat", &reply));
        };
        let lease = Lease {
            shard_id: shard_id.max(0) as u32,
            max_shards: max_shards.max(0) as u32,
            generation: generation.max(0) as u64,
            fence: fence.max(0) as u64,
        };
        Ok(match status {
            1 => BeatOutcome::Alive(lease),
            -1 => BeatOutcome::Retired(lease),
            _ => BeatOutcome::NotFound,
        })
    }

    pub async fn disconnect(&self, session_id: &str) -> Result<bool, StoreError> {
        let mut call = self.scripts.disconnect.prepare_invoke();
        call.key(&self.keys.plan)
            .arg(&self.keys.base)
            .arg(session_id);
        let released: i64 = self.invoke(&call).await?;
        Ok(released == 1)
    }

    pub async fn status(&self) -> Result<FleetStatus, StoreError> {
        let mut call = self.scripts.status.prepare_invoke();
        call.key(&self.keys.plan).arg(&self.keys.base);
        let reply: Vec<Value> = self.invoke(&call).await?;
        parse_status(reply)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let _: String = self
            .bounded(redis::cmd("PING").query_async(&mut conn))
            .await?;
        Ok(())
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))
    }

    /// EVALSHA, falling back to EVAL when Redis lost its script cache (flush, restart, failover).
    async fn invoke<T: FromRedisValue>(
        &self,
        call: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection().await?;
        self.bounded(call.invoke_async(&mut conn)).await
    }

    async fn bounded<T>(
        &self,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Err(StoreError::Unavailable("Redis did not answer in time".into())),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(classify(error)),
        }
    }
}

/// Server-side script errors are bugs or known signals; everything else is an outage.
fn classify(error: redis::RedisError) -> StoreError {
    let text = error.to_string();
    if let Some(rest) = text.split("SCHEMA_TOO_NEW").nth(1) {
        let found = rest
            .split(|c: char| !c.is_ascii_digit())
            .find_map(|word| word.parse().ok())
            .unwrap_or(u64::MAX);
        return StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        };
    }
    let outage = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.code(),
            Some("BUSY" | "LOADING" | "MASTERDOWN" | "READONLY" | "TRYAGAIN" | "CLUSTERDOWN")
        );
    if outage {
        StoreError::Unavailable(text)
    } else {
        StoreError::Internal(text)
    }
}

fn unexpected(script: &str, reply: &impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("unexpected reply from {script}.lua: {reply:?}"))
}

fn parse_status(reply: Vec<Value>) -> Result<FleetStatus, StoreError> {
    let mut values = reply.into_iter();
    let (Some(max_shards), Some(generation)) = (values.next(), values.next()) else {
        return Err(StoreError::Internal("status.lua replied with no plan".into()));
    };
    let integer = |value: Value| i64::from_redis_value(value).map_err(|e| unexpected("status", &e));
    let mut shards = Vec::new();
    for row in values {
        let (shard_id, last_beat, guild_count, latency, extra): (
            i64,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        ) = FromRedisValue::from_redis_value(row).map_err(|e| unexpected("status", &e))?;
        shards.push(ShardStatus {
            shard_id: shard_id as u32,
            last_beat: timestamp_from_millis(last_beat),
            guild_count: guild_count.and_then(|text| text.parse().ok()),
            latency: latency.and_then(|text| text.parse().ok()),
            extra: extra.and_then(|text| serde_json::from_str(&text).ok()),
        });
    }
    shards.sort_by_key(|shard| shard.shard_id);
    Ok(FleetStatus {
        total_shards: integer(max_shards)? as u32,
        generation: integer(generation)? as u64,
        shards,
    })
}
