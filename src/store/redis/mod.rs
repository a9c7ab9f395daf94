//! The Redis engine: a bounded connection pool (to one URL, or to the master that Redis Sentinel
//! names), EVALSHA with reload on a lost script cache, and error classification (outage -> 503,
//! anything else -> bug).
//!
//! A connection that failed with an outage (an I/O error, a timeout, `READONLY` from a master that
//! was demoted, ...) is dropped rather than returned to the pool, so the next request connects
//! afresh. Behind Sentinel, a watcher also asks the sentinels for the master's address a few times a
//! second; when it changes (a failover), every connection made before is dropped: the old master may
//! still accept writes for several seconds before the sentinels demote it, and a write there would be
//! lost. While a failover is under way (the sentinels already announce the promoted replica but
//! still list the old master, which is where new connections would go), requests answer 503.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{Object, Pool};
use deadpool_redis::sentinel::{Manager as SentinelManager, SentinelServerType};
use deadpool_redis::{Manager, Runtime};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Script, Value};

use super::{SCHEMA_VERSION, StoreError};
use crate::config::Settings;

/// Most connections one replica opens to Redis.
const POOL_SIZE: usize = 32;

/// How often the sentinels are asked where the master is.
const SENTINEL_POLL: Duration = Duration::from_millis(200);

enum Pools {
    Plain(Pool<Manager>),
    Sentinel(Pool<SentinelManager>),
}

/// A pooled connection of either pool.
enum Pooled {
    Plain(Object<Manager>),
    Sentinel(Object<SentinelManager>),
}

impl Pooled {
    fn redis(&mut self) -> &mut MultiplexedConnection {
        match self {
            Pooled::Plain(object) => object,
            Pooled::Sentinel(object) => object,
        }
    }

    fn created(&self) -> Instant {
        match self {
            Pooled::Plain(object) => Object::metrics(object).created,
            Pooled::Sentinel(object) => Object::metrics(object).created,
        }
    }

    /// Closes the connection instead of returning it to the pool.
    fn discard(self) {
        match self {
            Pooled::Plain(object) => drop(Object::take(object)),
            Pooled::Sentinel(object) => drop(Object::take(object)),
        }
    }
}

/// What the watcher knows of failovers.
#[derive(Default)]
struct Failovers {
    /// When the master last moved (or was moving); connections made before are stale.
    last: Mutex<Option<Instant>>,
    /// A failover is under way: no connection is safe to use.
    under_way: AtomicBool,
    /// How many times the master has moved since the engine started.
    moves: AtomicU64,
}

impl Failovers {
    fn stale(&self, connection: &Pooled) -> bool {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|at| connection.created() <= at)
    }

    fn record(&self, at: Instant) {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(at);
    }
}

pub struct RedisEngine {
    pools: Arc<Pools>,
    failovers: Arc<Failovers>,
    /// Bound on every round trip, on top of the connection's own timeouts.
    timeout: Duration,
}

/// A pool of at most [`POOL_SIZE`] connections in which waiting for a connection, making one and
/// checking one on reuse are each bounded by `timeout`.
fn bounded_pool<M, W>(
    builder: deadpool::managed::PoolBuilder<M, W>,
    timeout: Duration,
) -> Result<deadpool::managed::Pool<M, W>, StoreError>
where
    M: deadpool::managed::Manager,
    W: From<deadpool::managed::Object<M>>,
{
    builder
        .max_size(POOL_SIZE)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|error| StoreError::Internal(error.to_string()))
}

impl RedisEngine {
    /// The engine the settings ask for: through `REDIS_SENTINELS` when set, else on `REDIS_URL`;
    /// `None` when neither is set (the in-process store).
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, StoreError> {
        match (&settings.redis_url, &settings.redis_sentinel_master) {
            _ if !settings.redis_sentinels.is_empty() => Self::open_sentinel(
                &settings.redis_sentinels,
                settings
                    .redis_sentinel_master
                    .as_deref()
                    .unwrap_or_default(),
                settings.redis_timeout_ms,
            )
            .map(Some),
            (Some(url), _) => Self::open(url, settings.redis_timeout_ms).map(Some),
            (None, _) => Ok(None),
        }
    }

    /// Builds the pool; connections are made on first use, each bounded by `timeout_ms`.
    pub fn open(url: &str, timeout_ms: u64) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager = Manager::new_with_config(url, connection)
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_URL: {error}")))?;
        let pool = bounded_pool(Pool::builder(manager), timeout)?;
        Ok(Self {
            pools: Arc::new(Pools::Plain(pool)),
            failovers: Arc::default(),
            timeout,
        })
    }

    /// Builds a pool whose connections go to the master the sentinels (`host:port` each) name
    /// `master`, and starts the watcher that follows a failover.
    pub fn open_sentinel(
        sentinels: &[String],
        master: &str,
        timeout_ms: u64,
    ) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let urls: Vec<String> = sentinels
            .iter()
            .map(|address| format!("redis://{address}"))
            .collect();
        let manager = SentinelManager::new(
            urls.clone(),
            master.into(),
            None,
            SentinelServerType::Master,
        )
        .map_err(|error| StoreError::Internal(format!("invalid REDIS_SENTINELS: {error}")))?;
        let pool = bounded_pool(Pool::builder(manager), timeout)?;
        let engine = Self {
            pools: Arc::new(Pools::Sentinel(pool)),
            failovers: Arc::default(),
            timeout,
        };
        let watcher = follow_master(
            urls,
            master.to_owned(),
            Arc::downgrade(&engine.pools),
            engine.failovers.clone(),
            timeout,
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(watcher)),
            Err(_) => log::warn!("no async runtime: a Sentinel failover is noticed only on errors"),
        }
        Ok(engine)
    }

    /// How many times the Sentinel master has moved since this engine started (0 without Sentinel).
    /// Asynchronous replication may have lost the last writes of the old master, so the store
    /// treats each move like a possible data loss.
    pub fn master_moves(&self) -> u64 {
        self.failovers.moves.load(Ordering::SeqCst)
    }

    /// SCRIPT LOAD: Redis compiles the script, so a broken one fails startup.
    pub async fn load(&self, script: &Script) -> Result<(), StoreError> {
        let mut slot = None;
        let outcome = self
            .bounded(async {
                let conn = slot.insert(self.connection().await?);
                script.load_async(conn.redis()).await.map_err(classify)
            })
            .await;
        self.settle(slot, outcome).map(|_| ())
    }

    /// EVALSHA, falling back to loading the script when Redis lost its script cache (SCRIPT FLUSH,
    /// restart, failover), so callers never notice.
    pub async fn eval(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut call = script.prepare_invoke();
        for key in keys {
            call.key(*key);
        }
        for arg in args {
            call.arg(arg);
        }
        let mut slot = None;
        let outcome = self
            .bounded(async {
                let conn = slot.insert(self.connection().await?);
                call.invoke_async(conn.redis()).await.map_err(classify)
            })
            .await;
        self.settle(slot, outcome)
    }

    pub async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let mut slot = None;
        let outcome = self
            .bounded(async {
                let conn = slot.insert(self.connection().await?);
                command.query_async(conn.redis()).await.map_err(classify)
            })
            .await;
        self.settle(slot, outcome)
    }

    /// A pooled connection made since the last failover.
    async fn connection(&self) -> Result<Pooled, StoreError> {
        let unavailable =
            |error: &dyn std::fmt::Display| StoreError::Unavailable(error.to_string());
        loop {
            let conn = match &*self.pools {
                Pools::Plain(pool) => Pooled::Plain(pool.get().await.map_err(|e| unavailable(&e))?),
                Pools::Sentinel(pool) => {
                    Pooled::Sentinel(pool.get().await.map_err(|e| unavailable(&e))?)
                }
            };
            if self.failovers.under_way.load(Ordering::Relaxed) {
                conn.discard();
                return Err(StoreError::Unavailable(
                    "Redis Sentinel failover under way".into(),
                ));
            }
            if !self.failovers.stale(&conn) {
                return Ok(conn);
            }
            conn.discard();
        }
    }

    /// After an outage-like error the connection is closed, not pooled: it may be broken, stalled
    /// mid-reply, or lead to a master that was demoted. Anything else returns it to the pool.
    fn settle<T>(
        &self,
        connection: Option<Pooled>,
        outcome: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let (Some(conn), Err(StoreError::Unavailable(_))) = (connection, &outcome) {
            conn.discard();
        }
        outcome
    }

    /// One deadline for the whole round trip, pool wait and connecting included, so an
    /// unreachable or stalled Redis turns into a 503 within `REDIS_TIMEOUT_MS`, never a hang.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "Redis did not answer in time".into(),
                ))
            })
    }
}

/// Asks the sentinels where the master is every `SENTINEL_POLL`. While a failover is under way (the
/// promoted replica is announced by `get-master-addr-by-name`, but `SENTINEL MASTER`, which new
/// connections follow, still names the old master), no connection is handed out; when the master
/// has moved, every existing connection is stale and the idle ones are closed. Ends when the engine
/// is dropped.
async fn follow_master(
    sentinels: Vec<String>,
    master: String,
    pools: Weak<Pools>,
    failovers: Arc<Failovers>,
    timeout: Duration,
) {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let clients: Vec<Option<redis::Client>> = sentinels
        .iter()
        .map(|url| redis::Client::open(url.as_str()).ok())
        .collect();
    let mut connections: Vec<Option<MultiplexedConnection>> = vec![None; clients.len()];
    let mut known: Option<(String, String)> = None;
    loop {
        tokio::time::sleep(SENTINEL_POLL).await;
        let Some(pools) = pools.upgrade() else {
            return;
        };
        let mut view = None;
        for (client, connection) in clients.iter().zip(connections.iter_mut()) {
            let Some(client) = client else { continue };
            if connection.is_none() {
                *connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok();
            }
            let Some(conn) = connection else { continue };
            match master_views(conn, &master).await {
                Ok(Some(found)) => {
                    view = Some(found);
                    break;
                }
                Ok(None) => {}
                Err(_) => *connection = None,
            }
        }
        let Some((announced, listed)) = view else {
            continue;
        };
        let under_way = announced != listed;
        if under_way || known.as_ref().is_some_and(|known| *known != announced) {
            let now = Instant::now();
            failovers.record(now);
            match &*pools {
                Pools::Plain(pool) => drop(pool.retain(|_, metrics| metrics.created > now)),
                Pools::Sentinel(pool) => drop(pool.retain(|_, metrics| metrics.created > now)),
            }
        }
        if failovers.under_way.swap(under_way, Ordering::Relaxed) != under_way {
            log::warn!(
                "Redis Sentinel: failover of {master} {}",
                if under_way { "under way" } else { "over" }
            );
        }
        if !under_way {
            if known.as_ref().is_some_and(|known| *known != announced) {
                failovers.moves.fetch_add(1, Ordering::SeqCst);
                log::warn!(
                    "Redis Sentinel: master {master} moved to {}:{}; reconnecting",
                    announced.0,
                    announced.1
                );
            }
            known = Some(announced);
        }
    }
}

/// The master's address as one sentinel announces it (`get-master-addr-by-name`: the promoted
/// replica as soon as a failover promotes it) and as it lists it (`SENTINEL MASTER`: what new
/// connections are made to; it changes only once the failover is over).
async fn master_views(
    conn: &mut MultiplexedConnection,
    master: &str,
) -> redis::RedisResult<Option<((String, String), (String, String))>> {
    let announced: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(conn)
        .await?;
    let Some(announced) = announced else {
        return Ok(None);
    };
    let fields: std::collections::HashMap<String, String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(master)
        .query_async(conn)
        .await?;
    match (fields.get("ip"), fields.get("port")) {
        (Some(ip), Some(port)) => Ok(Some((announced, (ip.clone(), port.clone())))),
        _ => Ok(None),
    }
}

/// Script errors are bugs or known signals; everything else is an outage.
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
