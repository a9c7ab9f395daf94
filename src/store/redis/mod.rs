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
//!
//! Concurrent requests share a few multiplexed connections ([`SHARED_CONNECTIONS`], taken from the
//! pool and kept; a thread keeps to one, see `lanes.rs`) instead of each holding one for its round
//! trip: their commands are pipelined on the same socket, and no request pays the pool's
//! check-on-reuse round trip (`PING`). A shared
//! connection that fails with an outage is dropped from its slot (every request that shares it
//! sees its error and answers 503), and the next request takes a fresh one from the pool.
//!
//! This file holds the engine: the pools, the shared connections ([`RedisEngine::connection`], the
//! one place that hands out a connection), and `load` / `eval` / `command`. The Sentinel watcher is
//! in `sentinel.rs`, the error classification in `errors.rs`.

mod cluster;
mod errors;
mod sentinel;
mod subscription;

pub(super) use self::cluster::{ClusterEngine, ClusterLink};
pub(super) use self::subscription::Subscription;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{Object, Pool};
use deadpool_redis::sentinel::{Manager as SentinelManager, SentinelServerType};
use deadpool_redis::{Manager, Runtime};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, Script, Value};

use self::errors::classify;
use self::sentinel::{Failovers, follow_master};
use super::{StoreError, lanes};

/// Most connections one replica opens to Redis.
const POOL_SIZE: usize = 32;
/// Connections that concurrent requests share, round robin.
pub(super) const SHARED_CONNECTIONS: usize = 4;

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

pub(super) struct RedisEngine {
    pools: Arc<Pools>,
    /// Where a subscription connects (see [`RedisEngine::subscribe`]).
    subscribe_to: Box<SubscribeTo>,
    failovers: Arc<Failovers>,
    /// Bound on every round trip, on top of the connection's own timeouts.
    timeout: Duration,
    shared: Box<Shared>,
}

enum SubscribeTo {
    Node(redis::Client),
    /// The master the sentinels name, reached as `node` says.
    Master {
        sentinels: Vec<ConnectionInfo>,
        name: String,
        node: redis::sentinel::SentinelNodeConnectionInfo,
    },
}

/// The passwords behind `REDIS_SENTINELS`: the sentinels' own, and the master's (and replicas').
pub(in crate::store) struct SentinelPasswords {
    pub sentinels: Option<String>,
    pub master: Option<String>,
}

impl SentinelPasswords {
    /// How to reach the sentinel at `address` (`host:port`).
    fn sentinel(&self, address: &str) -> Result<ConnectionInfo, StoreError> {
        let info = format!("redis://{address}")
            .into_connection_info()
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_SENTINELS: {error}")))?;
        Ok(match &self.sentinels {
            Some(password) => {
                let redis = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(redis)
            }
            None => info,
        })
    }

    /// How connections to the master authenticate (the pool's and the subscription's).
    fn master_connection(&self) -> Option<deadpool_redis::sentinel::SentinelNodeConnectionInfo> {
        let password = self.master.clone()?;
        Some(deadpool_redis::sentinel::SentinelNodeConnectionInfo {
            tls_mode: None,
            redis_connection_info: Some(deadpool_redis::RedisConnectionInfo {
                password: Some(password),
                ..Default::default()
            }),
        })
    }
}

/// The connections requests share: a slot each, filled from the pool on first use and emptied
/// when its connection fails or a failover made it stale.
#[derive(Default)]
struct Shared {
    /// One per lane (see `lanes.rs`): a thread's requests use its lane's connection.
    slots: [Mutex<Option<Slot>>; SHARED_CONNECTIONS],
    /// Numbers the connections put in slots, so a failed one is dropped only once.
    made: AtomicU64,
}

struct Slot {
    pooled: Pooled,
    id: u64,
}

/// A connection handed out for one round trip: a handle on a shared connection (or, when its slot
/// was filled meanwhile, one of its own from the pool).
pub(super) struct Handout {
    redis: MultiplexedConnection,
    origin: Origin,
}

enum Origin {
    Shared { slot: usize, id: u64 },
    Own(Pooled),
}

impl Handout {
    fn redis(&mut self) -> &mut MultiplexedConnection {
        &mut self.redis
    }
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
    /// Builds the pool; connections are made on first use, each bounded by `timeout_ms`.
    pub(super) fn open(url: &str, timeout_ms: u64) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager = Manager::new_with_config(url, connection)
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_URL: {error}")))?;
        let pool = bounded_pool(Pool::builder(manager), timeout)?;
        let node = redis::Client::open(url)
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_URL: {error}")))?;
        Ok(Self {
            pools: Arc::new(Pools::Plain(pool)),
            subscribe_to: Box::new(SubscribeTo::Node(node)),
            failovers: Arc::default(),
            timeout,
            shared: Box::default(),
        })
    }

    /// Builds a pool whose connections go to the master the sentinels (`host:port` each) name
    /// `master`, and starts the watcher that follows a failover.
    pub(super) fn open_sentinel(
        sentinels: &[String],
        master: &str,
        passwords: SentinelPasswords,
        timeout_ms: u64,
    ) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let sentinels: Vec<ConnectionInfo> = sentinels
            .iter()
            .map(|address| passwords.sentinel(address))
            .collect::<Result<_, _>>()?;
        let master_connection = passwords.master_connection();
        let manager = SentinelManager::new(
            sentinels.clone(),
            master.into(),
            master_connection.clone(),
            SentinelServerType::Master,
        )
        .map_err(|error| StoreError::Internal(format!("invalid REDIS_SENTINELS: {error}")))?;
        let pool = bounded_pool(Pool::builder(manager), timeout)?;
        let engine = Self {
            pools: Arc::new(Pools::Sentinel(pool)),
            subscribe_to: Box::new(SubscribeTo::Master {
                sentinels: sentinels.clone(),
                name: master.to_owned(),
                node: master_connection.map(Into::into).unwrap_or_default(),
            }),
            failovers: Arc::default(),
            timeout,
            shared: Box::default(),
        };
        let watcher = follow_master(
            sentinels,
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
    pub(super) fn master_moves(&self) -> u64 {
        self.failovers.moves.load(Ordering::SeqCst)
    }

    /// A subscription to `channel` on a connection of its own, to the master the sentinels name
    /// now behind Sentinel (a `PUBLISH` reaches its replicas too, so a demoted master still
    /// hears it).
    pub(super) async fn subscribe(&self, channel: &str) -> Result<Subscription, StoreError> {
        match &*self.subscribe_to {
            SubscribeTo::Node(client) => Subscription::open(client, channel, self.timeout).await,
            SubscribeTo::Master {
                sentinels,
                name,
                node,
            } => {
                let mut sentinel = redis::sentinel::Sentinel::build(sentinels.clone())
                    .map_err(|error| StoreError::Internal(error.to_string()))?;
                let master = sentinel.async_master_for(name, Some(node));
                let master = tokio::time::timeout(self.timeout, master)
                    .await
                    .map_err(|_| StoreError::Unavailable("the sentinels did not answer".into()))?
                    .map_err(classify)?;
                Subscription::open(&master, channel, self.timeout).await
            }
        }
    }

    /// SCRIPT LOAD: Redis compiles the script, so a broken one fails startup.
    pub(super) async fn load(&self, script: &Script) -> Result<(), StoreError> {
        self.round_trip(|mut conn| async move { script.load_async(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// EVALSHA, falling back to loading the script when Redis lost its script cache (SCRIPT FLUSH,
    /// restart, failover), so callers never notice.
    pub(super) async fn eval(
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
        let call = &call;
        self.round_trip(|mut conn| async move { call.invoke_async(&mut conn).await })
            .await
    }

    pub(super) async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let command = &command;
        self.round_trip(|mut conn| async move { command.query_async(&mut conn).await })
            .await
    }

    /// One request on a shared connection, within one deadline. A connection that Redis dropped
    /// (a restart, a closed socket) is replaced and the request sent once more on a fresh one, as
    /// the pool's check on reuse used to catch it before use: every script is safe to repeat
    /// (a beat is idempotent; a repeated grant leaves at most an unused lease, which expires).
    async fn round_trip<T, F, Fut>(&self, request: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let mut current = None;
        let outcome = self
            .bounded(async {
                let mut retried = false;
                loop {
                    // The retry takes a connection the pool checks (the other shared ones may
                    // have been dropped by the same restart).
                    let handout = current.insert(if retried {
                        self.own_connection().await?
                    } else {
                        self.connection().await?
                    });
                    match request(handout.redis().clone()).await {
                        Ok(value) => return Ok(value),
                        Err(error) if error.is_connection_dropped() && !retried => {
                            retried = true;
                            let failed = current.take();
                            self.settle::<()>(failed, Err(classify(error))).ok();
                        }
                        Err(error) => return Err(classify(error)),
                    }
                }
            })
            .await;
        self.settle(current, outcome)
    }

    /// A connection for one round trip: a shared one, made since the last failover. The one place
    /// that hands out connections.
    async fn connection(&self) -> Result<Handout, StoreError> {
        if self.failovers.under_way.load(Ordering::Relaxed) {
            return Err(StoreError::Unavailable(
                "Redis Sentinel failover under way".into(),
            ));
        }
        let slot = lanes::of_this_thread(SHARED_CONNECTIONS);
        {
            let mut held = self.lock_slot(slot);
            if let Some(current) = held.as_mut() {
                if !self.failovers.stale(&current.pooled) {
                    return Ok(Handout {
                        redis: current.pooled.redis().clone(),
                        origin: Origin::Shared {
                            slot,
                            id: current.id,
                        },
                    });
                }
                if let Some(stale) = held.take() {
                    stale.pooled.discard();
                }
            }
        }
        let mut pooled = self.pooled().await?;
        let mut held = self.lock_slot(slot);
        if held.is_some() {
            // Another request filled the slot meanwhile: use this one once, then give it back.
            return Ok(Handout {
                redis: pooled.redis().clone(),
                origin: Origin::Own(pooled),
            });
        }
        let id = self.shared.made.fetch_add(1, Ordering::Relaxed);
        let redis = pooled.redis().clone();
        *held = Some(Slot { pooled, id });
        Ok(Handout {
            redis,
            origin: Origin::Shared { slot, id },
        })
    }

    /// A connection of its own from the pool, for one round trip.
    async fn own_connection(&self) -> Result<Handout, StoreError> {
        let mut pooled = self.pooled().await?;
        Ok(Handout {
            redis: pooled.redis().clone(),
            origin: Origin::Own(pooled),
        })
    }

    fn lock_slot(&self, slot: usize) -> std::sync::MutexGuard<'_, Option<Slot>> {
        self.shared.slots[slot]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection from the pool, made since the last failover.
    async fn pooled(&self) -> Result<Pooled, StoreError> {
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

    /// After an outage-like error the connection is closed, not shared or pooled again: it may be
    /// broken, stalled mid-reply, or lead to a master that was demoted. Anything else keeps it.
    fn settle<T>(
        &self,
        connection: Option<Handout>,
        outcome: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let (Some(handout), Err(StoreError::Unavailable(_))) = (connection, &outcome) {
            match handout.origin {
                Origin::Own(pooled) => pooled.discard(),
                Origin::Shared { slot, id } => {
                    let mut held = self.lock_slot(slot);
                    if held.as_ref().is_some_and(|current| current.id == id)
                        && let Some(failed) = held.take()
                    {
                        failed.pooled.discard();
                    }
                }
            }
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
