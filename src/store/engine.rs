//! The engines and the scripts they run: one [`Engine`] (Redis, Redis Cluster or the embedded
//! one) behind every store operation, and the [`Scripts`] each engine loads at startup.

use ::redis::Value;

use super::StoreError;
use super::embedded::EmbeddedEngine;
use super::redis::{ClusterEngine, RedisEngine};
use super::scripts::{LuaScript, ScriptCall, every_script};

/// Every script, compiled into the binary and loaded into the engine at startup.
pub(super) struct Scripts(Vec<LuaScript>);

impl Scripts {
    pub(super) fn new() -> Self {
        Self(every_script())
    }

    pub(super) fn all(&self) -> &[LuaScript] {
        &self.0
    }

    pub(super) fn get<C: ScriptCall>(&self) -> Result<&LuaScript, StoreError> {
        self.0
            .iter()
            .find(|script| script.name == C::FILE)
            .ok_or_else(|| StoreError::Internal(format!("{} is not among the scripts", C::FILE)))
    }
}

pub(super) enum Engine {
    Redis(RedisEngine),
    Cluster(ClusterEngine),
    Embedded(EmbeddedEngine),
}

impl Engine {
    pub(super) async fn eval(
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

    pub(super) async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        match self {
            Engine::Redis(engine) => engine.command(args).await,
            Engine::Cluster(engine) => engine.command(args).await,
            Engine::Embedded(engine) => engine.command(args),
        }
    }

    /// Loads (compiles) one script, so a broken one fails at startup, not on first use.
    pub(super) async fn load_script(&self, script: &LuaScript) -> Result<(), StoreError> {
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

    /// How many times the Redis master has moved so far; `None` for the embedded engine, which
    /// has no master to lose.
    pub(super) fn master_moves(&self) -> Option<u64> {
        match self {
            Engine::Redis(engine) => Some(engine.master_moves()),
            Engine::Cluster(engine) => Some(engine.master_moves()),
            Engine::Embedded(_) => None,
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Engine::Redis(_) => "redis",
            Engine::Cluster(_) => "redis-cluster",
            Engine::Embedded(_) => "in-process",
        }
    }
}
