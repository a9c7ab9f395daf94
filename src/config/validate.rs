//! The checks of relations between values that parsing alone cannot make, for the environment's
//! settings and for `Settings` built in code.

use super::parse::{Secret, ShardsPerProcess};
use super::settings::{ConfigError, Settings};

/// Discord's largest shard count that shardman plans for.
pub const MAX_SHARD_COUNT: u32 = 65_536;

impl Settings {
    /// Checks the relations between values that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |variable: &'static str, value: String, reason: &str| ConfigError {
            variable,
            value,
            reason: reason.into(),
        };
        self.validate_secrets()?;
        if self.max_seconds == 0 {
            return Err(invalid("MAX_SECONDS", "0".into(), "must be at least 1"));
        }
        if self.max_shards == 0 || self.max_shards > MAX_SHARD_COUNT {
            return Err(invalid(
                "MAX_SHARDS",
                self.max_shards.to_string(),
                "must be between 1 and 65536",
            ));
        }
        if let ShardsPerProcess::Fixed(size) = self.shards_per_process
            && (size == 0 || size > MAX_SHARD_COUNT)
        {
            return Err(invalid(
                "SHARDS_PER_PROCESS",
                size.to_string(),
                "must be between 1 and 65536 (or auto)",
            ));
        }
        self.validate_load_targets()?;
        if self.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "KEY_PREFIX",
                self.key_prefix.clone(),
                "must not contain '{' or '}' (it becomes the Redis hash tag)",
            ));
        }
        // The Redis settings choose one store engine.
        self.store_backend()?;
        if self.max_concurrency == 0 {
            return Err(invalid("MAX_CONCURRENCY", "0".into(), "must be at least 1"));
        }
        if self.redis_timeout_ms == 0 {
            return Err(invalid(
                "REDIS_TIMEOUT_MS",
                "0".into(),
                "must be at least 1",
            ));
        }
        if !(10..=10_000).contains(&self.waiter_poll_ms) {
            return Err(invalid(
                "WAITER_POLL_MS",
                self.waiter_poll_ms.to_string(),
                "must be from 10 to 10000",
            ));
        }
        for (variable, value) in [
            ("GATEWAY_POLL_SECONDS", self.gateway_poll_seconds),
            ("GUILDS_PER_SHARD", self.guilds_per_shard.into()),
            ("AUTOSCALE_INTERVAL", self.autoscale_interval_seconds),
        ] {
            if value == 0 {
                return Err(invalid(variable, "0".into(), "must be at least 1"));
            }
        }
        if self.min_shards == 0 || self.min_shards > MAX_SHARD_COUNT {
            return Err(invalid(
                "MIN_SHARDS",
                self.min_shards.to_string(),
                "must be between 1 and 65536",
            ));
        }
        if !self.discord_api_base.starts_with("http://")
            && !self.discord_api_base.starts_with("https://")
        {
            return Err(invalid(
                "DISCORD_API_BASE",
                self.discord_api_base.clone(),
                "must be an http:// or https:// URL",
            ));
        }
        if let Some(url) = &self.webhook_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            // The URL carries the webhook's token: never echo it.
            return Err(invalid(
                "WEBHOOK_URL",
                "***".into(),
                "must be an http:// or https:// URL",
            ));
        }
        Ok(())
    }

    /// `LOAD_TARGET` and `CPU_TARGET` are numbers above 0, and size a fleet whose processes take
    /// shards by load: with fixed groups the process count is the group count.
    fn validate_load_targets(&self) -> Result<(), ConfigError> {
        for (variable, target) in [
            ("LOAD_TARGET", self.load_target),
            ("CPU_TARGET", self.cpu_target),
        ] {
            let Some(target) = target else { continue };
            let reason = if !target.is_finite() || target <= 0.0 {
                "must be a number above 0"
            } else if !self.shards_per_process.is_auto() {
                "needs SHARDS_PER_PROCESS=auto (with fixed shard groups the process count is the \
                 group count)"
            } else {
                continue;
            };
            return Err(ConfigError {
                variable,
                value: target.to_string(),
                reason: reason.into(),
            });
        }
        if let Some(share) = self.shard_load_max
            && self.load_target.is_none()
        {
            return Err(ConfigError {
                variable: "SHARD_LOAD_MAX",
                value: share.to_string(),
                reason: "needs LOAD_TARGET (the bound is a share of it)".into(),
            });
        }
        Ok(())
    }

    /// `SECRET_PREVIOUS` goes with a `SECRET` of its own, and `ADMIN_SECRET` selects no bot. The
    /// values are never echoed.
    fn validate_secrets(&self) -> Result<(), ConfigError> {
        let invalid = |variable: &'static str, reason: &str| ConfigError {
            variable,
            value: "***".into(),
            reason: reason.into(),
        };
        let same = |one: &Option<Secret>, other: &Option<Secret>| match (one, other) {
            (Some(one), Some(other)) => one.expose() == other.expose(),
            _ => false,
        };
        if self.secret_previous.is_some() && self.secret.is_none() {
            return Err(invalid(
                "SECRET_PREVIOUS",
                "needs SECRET (the secret being rotated to or from)",
            ));
        }
        if same(&self.secret_previous, &self.secret) {
            return Err(invalid("SECRET_PREVIOUS", "must differ from SECRET"));
        }
        for (variable, secret) in [
            ("SECRET", &self.secret),
            ("SECRET_PREVIOUS", &self.secret_previous),
        ] {
            if same(secret, &self.admin_secret) {
                return Err(invalid(
                    variable,
                    "must differ from ADMIN_SECRET (a secret selects one bot)",
                ));
            }
        }
        Ok(())
    }

    pub fn lease_ms(&self) -> u64 {
        self.max_seconds * 1000
    }

    pub fn resume_window_ms(&self) -> u64 {
        self.resume_window_seconds * 1000
    }
}
