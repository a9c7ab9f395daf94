//! Following a Redis Sentinel failover. A watcher asks the sentinels where the master is a few
//! times a second and records in [`Failovers`] when it moves (so connections made before are
//! dropped: the old master may accept writes that will be lost) and while a move is under way (so
//! no connection is handed out, and requests answer 503). Apart from the pool because it is the
//! one piece of the engine with its own task and its own view of Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::{Pooled, Pools};

/// How often the sentinels are asked where the master is.
const SENTINEL_POLL: Duration = Duration::from_millis(200);

/// What the watcher knows of failovers.
#[derive(Default)]
pub(super) struct Failovers {
    /// When the master last moved (or was moving); connections made before are stale.
    last: Mutex<Option<Instant>>,
    /// A failover is under way: no connection is safe to use.
    pub(super) under_way: AtomicBool,
    /// How many times the master has moved since the engine started.
    pub(super) moves: AtomicU64,
}

impl Failovers {
    pub(super) fn stale(&self, connection: &Pooled) -> bool {
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

/// Asks the sentinels where the master is every `SENTINEL_POLL`. While a failover is under way (the
/// promoted replica is announced by `get-master-addr-by-name`, but `SENTINEL MASTER`, which new
/// connections follow, still names the old master), no connection is handed out; when the master
/// has moved, every existing connection is stale and the idle ones are closed. Ends when the engine
/// is dropped.
pub(super) async fn follow_master(
    sentinels: Vec<redis::ConnectionInfo>,
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
        .map(|sentinel| redis::Client::open(sentinel.clone()).ok())
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
