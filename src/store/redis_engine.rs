//! The Redis engine: a bounded connection pool, EVALSHA with reload on a lost script cache, and
//! error classification (outage -> 503, anything else -> bug).

use std::time::Duration;

use deadpool_redis::{Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, Script, Value};

use super::{SCHEMA_VERSION, StoreError};

/// Most connections one replica opens to Redis.
const POOL_SIZE: usize = 32;

pub struct RedisEngine {
    pool: Pool,
    /// Bound on every round trip, on top of the connection's own timeouts.
    timeout: Duration,
}

impl RedisEngine {
    /// Builds the pool; connections are made on first use, each bounded by `timeout_ms`.
    pub fn open(url: &str, timeout_ms: u64) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let connection = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager = Manager::new_with_config(url, connection)
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_URL: {error}")))?;
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        Ok(Self { pool, timeout })
    }

    /// SCRIPT LOAD: Redis compiles the script, so a broken one fails startup.
    pub async fn load(&self, script: &Script) -> Result<(), StoreError> {
        self.bounded(async {
            let mut conn = self.connection().await?;
            script.load_async(&mut conn).await.map_err(classify)
        })
        .await
        .map(|_| ())
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
        self.bounded(async {
            let mut conn = self.connection().await?;
            call.invoke_async(&mut conn).await.map_err(classify)
        })
        .await
    }

    pub async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        self.bounded(async {
            let mut conn = self.connection().await?;
            command.query_async(&mut conn).await.map_err(classify)
        })
        .await
    }

    async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))
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
