//! Settings, read from the environment (and `.env`, loaded by `main`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Everything a replica needs to know at startup. Every field comes from one environment variable.
/// Not `Debug`: `REDIS_URL` may carry a password and `WEBHOOK_URL` a token.
#[derive(Clone)]
pub struct Settings {
    /// `SECRET`: the shared secret bots send in `Authorization`. `None` means "generate one".
    pub secret: Option<Secret>,
    /// `MAX_SECONDS`: lease length; a shard that does not beat within it is freed.
    pub max_seconds: u64,
    /// `MAX_SHARDS`: the shard count a fresh deployment starts with.
    pub max_shards: u32,
    /// `REDIS_URL`: `None` (and no `REDIS_SENTINELS`) runs the in-process store (one replica only).
    pub redis_url: Option<String>,
    /// `REDIS_SENTINELS`: `host:port` of each Redis Sentinel; when set, the master is found through
    /// them (and followed after a failover) instead of `REDIS_URL`.
    pub redis_sentinels: Vec<String>,
    /// `REDIS_SENTINEL_MASTER`: the name the sentinels monitor the master under.
    pub redis_sentinel_master: Option<String>,
    /// `KEY_PREFIX`: namespaces this deployment's keys; it is also the Redis Cluster hash tag.
    pub key_prefix: String,
    pub host: String,
    pub port: u16,
    /// `PUBLIC_STATUS`: serve `/status` (without `extra`) to callers without the secret.
    pub public_status: bool,
    /// `MAX_EXTRA_BYTES`: largest `extra` a beat may store, as JSON text.
    pub max_extra_bytes: usize,
    /// `REDIS_TIMEOUT_MS`: bound on connecting to Redis, waiting for a pooled connection, and on
    /// each reply. A request that hits it answers 503.
    pub redis_timeout_ms: u64,
    /// `FAILED_AUTH_PER_MINUTE`: wrong secrets one client address may send per minute before it
    /// gets 429 (0: no limit).
    pub failed_auth_per_minute: u32,
    /// `TRUSTED_PROXIES`: load balancers (addresses or CIDR networks) whose `X-Forwarded-For` names
    /// the client address; from anyone else the header is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// True when `MAX_SHARDS` is unset: the shard count then follows Discord and the bot's load.
    pub autoscale: bool,
    /// `MAX_CONCURRENCY`: Discord's identify buckets, when Discord's own value is not known.
    pub max_concurrency: u32,
    /// `IDENTIFY_RESERVE`: identifies of the daily budget kept back; `None` means 5% of the total.
    pub identify_reserve: Option<u32>,
    /// `RESUME_WINDOW`: seconds after a holder disappears during which its resume data is handed on.
    pub resume_window_seconds: u64,
    /// `QUARANTINE_FRESH_REDIS`: a replica that finds no plan in a Redis that started less than
    /// `MAX_SECONDS` ago treats it as a possible data loss and grants nothing until a lease length
    /// has passed since Redis started (running bots re-establish their leases meanwhile).
    pub quarantine_fresh_redis: bool,
    /// `WEBHOOK_URL`: where alerts go. Events are queued in the store only when it is set.
    pub webhook_url: Option<String>,
    /// `WEBHOOK_CONTENT`: the plain-text `content` of every alert (a role mention, say).
    pub webhook_content: Option<String>,
    /// `BOT_TOKEN`: with it, Discord's `GET /gateway/bot` is read for the recommended shard count,
    /// `max_concurrency` and the identify budget.
    pub bot_token: Option<Secret>,
    /// `DISCORD_API_BASE`: Discord's REST API, without a trailing slash.
    pub discord_api_base: String,
    /// `GATEWAY_POLL_SECONDS`: how often the fleet (one replica at a time) reads `/gateway/bot`.
    pub gateway_poll_seconds: u64,
    /// `GUILDS_PER_SHARD`: autoscale aims for at most this many guilds per shard.
    pub guilds_per_shard: u32,
    /// `MIN_SHARDS`: autoscale never plans fewer shards.
    pub min_shards: u32,
    /// `ALLOW_SHRINK`: autoscale may lower the shard count (after `SHRINK_AFTER`).
    pub allow_shrink: bool,
    /// `SHRINK_AFTER`: seconds a lower target must hold before autoscale shrinks.
    pub shrink_after_seconds: u64,
    /// `AUTOSCALE_INTERVAL`: seconds between autoscale evaluations.
    pub autoscale_interval_seconds: u64,
    /// `CORS_ORIGINS`: origins browsers may call the API from (`*` for any); empty: no CORS.
    pub cors_origins: Vec<String>,
    /// `PUBLIC_METRICS`: serve `/metrics` and `/autoscale` to callers without the secret.
    pub public_metrics: bool,
    /// `LOG_FORMAT`: `text` (default) or `json`, one object per line.
    pub log_format: LogFormat,
    /// `DRAIN_SECONDS`: after SIGTERM, how long `/readyz` fails while requests are still served,
    /// so load balancers stop sending traffic before the listener closes.
    pub drain_seconds: u64,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            secret: None,
            max_seconds: 60,
            max_shards: 1,
            redis_url: None,
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
            key_prefix: "shardman".into(),
            host: "0.0.0.0".into(),
            port: 8000,
            public_status: false,
            max_extra_bytes: 16 * 1024,
            redis_timeout_ms: 1000,
            failed_auth_per_minute: 20,
            trusted_proxies: Vec::new(),
            autoscale: false,
            max_concurrency: 1,
            identify_reserve: None,
            resume_window_seconds: 60,
            webhook_url: None,
            quarantine_fresh_redis: true,
            webhook_content: None,
            bot_token: None,
            discord_api_base: "https://discord.com/api/v10".into(),
            gateway_poll_seconds: 600,
            guilds_per_shard: 1000,
            min_shards: 1,
            allow_shrink: false,
            shrink_after_seconds: 3600,
            autoscale_interval_seconds: 30,
            cors_origins: Vec::new(),
            public_metrics: false,
            log_format: LogFormat::Text,
            drain_seconds: 5,
        }
    }
}

/// A secret that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A variable that is set but cannot be used. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl Settings {
    /// Reads the process environment. Unset and empty variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let source = config::Config::builder()
            .add_source(config::Environment::default())
            .build()
            .map_err(|error| ConfigError {
                variable: "environment",
                value: String::new(),
                reason: error.to_string(),
            })?;
        let raw = |name: &'static str| -> Option<String> {
            source
                .get_string(&name.to_ascii_lowercase())
                .ok()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let defaults = Settings::default();
        let settings = Settings {
            secret: raw("SECRET").map(Secret::new),
            max_seconds: parse(&raw, "MAX_SECONDS", defaults.max_seconds)?,
            max_shards: parse(&raw, "MAX_SHARDS", defaults.max_shards)?,
            redis_url: raw("REDIS_URL"),
            redis_sentinels: raw("REDIS_SENTINELS")
                .map(|value| parse_sentinels(&value))
                .transpose()?
                .unwrap_or_default(),
            redis_sentinel_master: raw("REDIS_SENTINEL_MASTER"),
            key_prefix: raw("KEY_PREFIX").unwrap_or(defaults.key_prefix),
            host: raw("HOST").unwrap_or(defaults.host),
            port: parse(&raw, "PORT", defaults.port)?,
            public_status: parse_bool(&raw, "PUBLIC_STATUS", defaults.public_status)?,
            max_extra_bytes: parse(&raw, "MAX_EXTRA_BYTES", defaults.max_extra_bytes)?,
            redis_timeout_ms: parse(&raw, "REDIS_TIMEOUT_MS", defaults.redis_timeout_ms)?,
            failed_auth_per_minute: parse(
                &raw,
                "FAILED_AUTH_PER_MINUTE",
                defaults.failed_auth_per_minute,
            )?,
            trusted_proxies: match raw("TRUSTED_PROXIES") {
                None => defaults.trusted_proxies,
                Some(value) => parse_trusted_proxies(&value).map_err(|reason| ConfigError {
                    variable: "TRUSTED_PROXIES",
                    value,
                    reason,
                })?,
            },
            public_metrics: parse_bool(&raw, "PUBLIC_METRICS", defaults.public_metrics)?,
            log_format: parse(&raw, "LOG_FORMAT", defaults.log_format)?,
            drain_seconds: parse(&raw, "DRAIN_SECONDS", defaults.drain_seconds)?,
            autoscale: raw("MAX_SHARDS").is_none(),
            max_concurrency: parse(&raw, "MAX_CONCURRENCY", defaults.max_concurrency)?,
            identify_reserve: raw("IDENTIFY_RESERVE")
                .map(|_| parse(&raw, "IDENTIFY_RESERVE", 0))
                .transpose()?,
            resume_window_seconds: parse(&raw, "RESUME_WINDOW", defaults.resume_window_seconds)?,
            webhook_url: raw("WEBHOOK_URL"),
            quarantine_fresh_redis: parse_bool(
                &raw,
                "QUARANTINE_FRESH_REDIS",
                defaults.quarantine_fresh_redis,
            )?,
            webhook_content: raw("WEBHOOK_CONTENT"),
            bot_token: raw("BOT_TOKEN").map(Secret::new),
            discord_api_base: raw("DISCORD_API_BASE")
                .map(|base| base.trim_end_matches('/').to_owned())
                .unwrap_or(defaults.discord_api_base),
            gateway_poll_seconds: parse(
                &raw,
                "GATEWAY_POLL_SECONDS",
                defaults.gateway_poll_seconds,
            )?,
            guilds_per_shard: parse(&raw, "GUILDS_PER_SHARD", defaults.guilds_per_shard)?,
            min_shards: parse(&raw, "MIN_SHARDS", defaults.min_shards)?,
            allow_shrink: parse_bool(&raw, "ALLOW_SHRINK", defaults.allow_shrink)?,
            shrink_after_seconds: parse(&raw, "SHRINK_AFTER", defaults.shrink_after_seconds)?,
            autoscale_interval_seconds: parse(
                &raw,
                "AUTOSCALE_INTERVAL",
                defaults.autoscale_interval_seconds,
            )?,
            cors_origins: raw("CORS_ORIGINS")
                .map(|origins| parse_origins(&origins))
                .transpose()?
                .unwrap_or_default(),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the relations between values that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |variable: &'static str, value: String, reason: &str| ConfigError {
            variable,
            value,
            reason: reason.into(),
        };
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
        if self.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "KEY_PREFIX",
                self.key_prefix.clone(),
                "must not contain '{' or '}' (it becomes the Redis hash tag)",
            ));
        }
        if !self.redis_sentinels.is_empty() {
            if self.redis_sentinel_master.is_none() {
                return Err(invalid(
                    "REDIS_SENTINEL_MASTER",
                    String::new(),
                    "must name the monitored master when REDIS_SENTINELS is set",
                ));
            }
            if self.redis_url.is_some() {
                // The URL may carry a password: never echo it.
                return Err(invalid(
                    "REDIS_URL",
                    "***".into(),
                    "set either REDIS_URL or REDIS_SENTINELS, not both",
                ));
            }
        } else if let Some(master) = &self.redis_sentinel_master {
            return Err(invalid(
                "REDIS_SENTINEL_MASTER",
                master.clone(),
                "needs REDIS_SENTINELS (host:port of each sentinel)",
            ));
        }
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

    pub fn lease_ms(&self) -> u64 {
        self.max_seconds * 1000
    }

    pub fn resume_window_ms(&self) -> u64 {
        self.resume_window_seconds * 1000
    }
}

/// `CORS_ORIGINS`: comma-separated origins such as `https://dash.example.com`, or `*` for any.
/// A trailing slash is dropped, since browsers send origins without one.
fn parse_origins(value: &str) -> Result<Vec<String>, ConfigError> {
    let mut origins = Vec::new();
    for origin in value
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
    {
        let origin = origin.trim_end_matches('/');
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let valid = origin == "*"
            || rest.is_some_and(|host| !host.is_empty() && !host.contains(['/', ' ', '*']));
        if !valid {
            return Err(ConfigError {
                variable: "CORS_ORIGINS",
                value: value.into(),
                reason: format!("{origin:?} is not an origin like https://example.com (or *)"),
            });
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}

/// `REDIS_SENTINELS`: comma-separated `host:port` addresses (an IPv6 host in brackets).
fn parse_sentinels(value: &str) -> Result<Vec<String>, ConfigError> {
    let mut sentinels = Vec::new();
    for address in value
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
    {
        let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(['/', ' ', '@'])
                && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if !valid {
            return Err(ConfigError {
                variable: "REDIS_SENTINELS",
                value: value.into(),
                reason: format!("{address:?} is not a host:port address like 10.0.0.5:26379"),
            });
        }
        sentinels.push(address.to_owned());
    }
    Ok(sentinels)
}

/// `TRUSTED_PROXIES`: comma-separated addresses or CIDR networks.
pub fn parse_trusted_proxies(value: &str) -> Result<Vec<IpNet>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{entry:?} is not an IP address or CIDR network"))
        })
        .collect()
}

/// Discord's largest shard count that shardman plans for.
pub const MAX_SHARD_COUNT: u32 = 65_536;

fn parse<T>(
    raw: &impl Fn(&'static str) -> Option<String>,
    variable: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match raw(variable) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|error: T::Err| ConfigError {
            variable,
            reason: error.to_string(),
            value,
        }),
    }
}

fn parse_bool(
    raw: &impl Fn(&'static str) -> Option<String>,
    variable: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match raw(variable) {
        None => Ok(default),
        Some(value) => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError {
                variable,
                value,
                reason: "expected true or false".into(),
            }),
        },
    }
}
