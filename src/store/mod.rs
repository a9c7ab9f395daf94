//! The store owns all shared state: leases, sessions and the shard plan.
//!
//! Two implementations share one contract (the conformance tests run against both):
//! [`RedisStore`] for any number of replicas, and [`MemoryStore`] for a single process with no Redis.

mod memory;
mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

use crate::config::Settings;
use crate::domain::{BeatOutcome, BeatReport, FleetStatus, Grant};

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
    /// A reply that the scripts never produce: a bug, not an outage.
    #[error("store error: {0}")]
    Internal(String),
}

pub enum Store {
    Redis(RedisStore),
    Memory(MemoryStore),
}

impl Store {
    /// Opens the store the settings ask for; for Redis this loads every script and checks the schema.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        match &settings.redis_url {
            Some(url) => Ok(Store::Redis(RedisStore::open(url, settings).await?)),
            None => Ok(Store::Memory(MemoryStore::new(settings))),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "in-process",
        }
    }

    /// Claims the lowest free shard id for a new session; `Ok(None)` when every id is held.
    pub async fn connect(&self) -> Result<Option<Grant>, StoreError> {
        let session_id = new_session_id();
        match self {
            Store::Redis(store) => store.connect(session_id).await,
            Store::Memory(store) => Ok(store.connect(session_id)),
        }
    }

    pub async fn beat(&self, report: &BeatReport) -> Result<BeatOutcome, StoreError> {
        match self {
            Store::Redis(store) => store.beat(report).await,
            Store::Memory(store) => Ok(store.beat(report)),
        }
    }

    /// Frees the session's shard at once; `false` when there was no such session.
    pub async fn disconnect(&self, session_id: &str) -> Result<bool, StoreError> {
        match self {
            Store::Redis(store) => store.disconnect(session_id).await,
            Store::Memory(store) => Ok(store.disconnect(session_id)),
        }
    }

    pub async fn status(&self) -> Result<FleetStatus, StoreError> {
        match self {
            Store::Redis(store) => store.status().await,
            Store::Memory(store) => Ok(store.status()),
        }
    }

    /// Succeeds when the store can serve requests now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Redis(store) => store.ping().await,
            Store::Memory(_) => Ok(()),
        }
    }
}

/// 128 bits from the operating system's CSPRNG (UUID v4), so session ids cannot be guessed.
fn new_session_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
