//! Settings, read from the environment (and `.env`, which `main` loads into it) through the
//! `config` crate.
//!
//! Each setting is declared once, as one row of the `settings!` table below: the variable, the
//! field it fills, the field's type, the default (what unset or empty means) and the parser. The
//! table generates the [`Settings`] struct, its `Default` and the loader. Ranges and relations
//! between values are checked afterwards by [`Settings::validate`], which also serves `Settings`
//! built in code.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

pub mod bots;

/// Generates [`Settings`] from its table. A row reads
///
/// ```text
/// /// What the setting does.
/// "VARIABLE" => field: Type = default, parser;
/// ```
///
/// When `VARIABLE` is unset, or empty once trimmed, `field` is `default`; otherwise it is
/// `parser(trimmed value)`, and a parser's `Err(reason)` stops the loader with
/// `invalid VARIABLE="value": reason`. Rows are parsed in table order, so with several invalid
/// variables the first row's is reported. A `derived` row has no variable of its own: its value is
/// computed from the variables, and is `default` in `Settings::default()`.
macro_rules! settings {
    (
        $(#[$struct_meta:meta])*
        pub struct Settings {
            $(
                $(#[$meta:meta])*
                $variable:literal => $field:ident: $ty:ty = $default:expr, $parse:expr;
            )*
        }
        derived {
            $(
                $(#[$derived_meta:meta])*
                $derived:ident: $derived_ty:ty = $derived_default:expr, $derive:expr;
            )*
        }
    ) => {
        $(#[$struct_meta])*
        pub struct Settings {
            $(
                #[doc = concat!("`", $variable, "`:")]
                $(#[$meta])*
                pub $field: $ty,
            )*
            $(
                $(#[$derived_meta])*
                pub $derived: $derived_ty,
            )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    $($derived: $derived_default,)*
                }
            }
        }

        impl Settings {
            /// Every variable of the table, in table order.
            #[cfg(test)]
            const VARIABLES: &[&str] = &[$($variable),*];

            /// Each row's value, parsed in table order (struct expressions evaluate their fields
            /// in the order written); not yet validated.
            fn read(variables: &Variables) -> Result<Self, ConfigError> {
                Ok(Self {
                    $(
                        $field: match variables.get($variable) {
                            None => $default,
                            Some(value) => ($parse)(value.as_str()).map_err(|reason| {
                                ConfigError { variable: $variable, value, reason }
                            })?,
                        },
                    )*
                    $($derived: ($derive)(variables),)*
                })
            }
        }
    };
}

settings! {
    /// Everything a replica needs to know at startup. Every field but `autoscale` comes from one
    /// environment variable, named first in its documentation.
    /// Not `Debug`: `REDIS_URL` may carry a password and `WEBHOOK_URL` a token.
    #[derive(Clone)]
    pub struct Settings {
        /// the shared secret bots send in `Authorization`. `None` means "generate one".
        "SECRET" => secret: Option<Secret> = None, some(secret);
        /// lease length; a shard that does not beat within it is freed.
        "MAX_SECONDS" => max_seconds: u64 = 60, parsed;
        /// the shard count a fresh deployment starts with.
        "MAX_SHARDS" => max_shards: u32 = 1, parsed;
        /// shard ids per bot process (a group of consecutive ids under one session).
        "SHARDS_PER_PROCESS" => shards_per_process: u32 = 1, parsed;
        /// `None` (and no `REDIS_SENTINELS`) runs the in-process store (one replica only).
        "REDIS_URL" => redis_url: Option<String> = None, some(text);
        /// `host:port` of each Redis Sentinel; when set, the master is found through them (and
        /// followed after a failover) instead of `REDIS_URL`.
        "REDIS_SENTINELS" => redis_sentinels: Vec<String> = Vec::new(), parse_sentinels;
        /// the name the sentinels monitor the master under.
        "REDIS_SENTINEL_MASTER" => redis_sentinel_master: Option<String> = None, some(text);
        /// seed nodes of a Redis Cluster (`host:port`, or URLs carrying the password and TLS
        /// scheme); when set, the cluster client is used instead of `REDIS_URL`.
        "REDIS_CLUSTER" => redis_cluster: Vec<String> = Vec::new(), parse_cluster_seeds;
        /// namespaces this deployment's keys; it is also the Redis Cluster hash tag.
        "KEY_PREFIX" => key_prefix: String = "shardman".into(), text;
        /// the listening address.
        "HOST" => host: String = "0.0.0.0".into(), text;
        /// the listening port.
        "PORT" => port: u16 = 8000, parsed;
        /// serve `/status` (without `extra`) to callers without the secret.
        "PUBLIC_STATUS" => public_status: bool = false, boolean;
        /// largest `extra` a beat may store, as JSON text.
        "MAX_EXTRA_BYTES" => max_extra_bytes: usize = 16 * 1024, parsed;
        /// bound on connecting to Redis, waiting for a pooled connection, and on each reply. A
        /// request that hits it answers 503.
        "REDIS_TIMEOUT_MS" => redis_timeout_ms: u64 = 1000, parsed;
        /// wrong secrets one client address may send per minute before it gets 429 (0: no limit).
        "FAILED_AUTH_PER_MINUTE" => failed_auth_per_minute: u32 = 20, parsed;
        /// load balancers (addresses or CIDR networks) whose `X-Forwarded-For` names the client
        /// address; from anyone else the header is ignored.
        "TRUSTED_PROXIES" => trusted_proxies: Vec<IpNet> = Vec::new(), parse_trusted_proxies;
        /// serve `/metrics` and `/autoscale` to callers without the secret.
        "PUBLIC_METRICS" => public_metrics: bool = false, boolean;
        /// `text` (default) or `json`, one object per line.
        "LOG_FORMAT" => log_format: LogFormat = LogFormat::Text, parsed;
        /// after SIGTERM, how long `/readyz` fails while requests are still served, so load
        /// balancers stop sending traffic before the listener closes.
        "DRAIN_SECONDS" => drain_seconds: u64 = 5, parsed;
        /// Discord's identify buckets, when Discord's own value is not known.
        "MAX_CONCURRENCY" => max_concurrency: u32 = 1, parsed;
        /// identifies of the daily budget kept back; `None` means 5% of the total.
        "IDENTIFY_RESERVE" => identify_reserve: Option<u32> = None, some(parsed);
        /// seconds after a holder disappears during which its resume data is handed on.
        "RESUME_WINDOW" => resume_window_seconds: u64 = 60, parsed;
        /// where alerts go. Events are queued in the store only when it is set.
        "WEBHOOK_URL" => webhook_url: Option<String> = None, some(text);
        /// a replica that finds no plan in a Redis that started less than `MAX_SECONDS` ago
        /// treats it as a possible data loss and grants nothing until a lease length has passed
        /// since Redis started (running bots re-establish their leases meanwhile).
        "QUARANTINE_FRESH_REDIS" => quarantine_fresh_redis: bool = true, boolean;
        /// the plain-text `content` of every alert (a role mention, say).
        "WEBHOOK_CONTENT" => webhook_content: Option<String> = None, some(text);
        /// with it, Discord's `GET /gateway/bot` is read for the recommended shard count,
        /// `max_concurrency` and the identify budget.
        "BOT_TOKEN" => bot_token: Option<Secret> = None, some(secret);
        /// Discord's REST API, without a trailing slash.
        "DISCORD_API_BASE" => discord_api_base: String = "https://discord.com/api/v10".into(),
            without_trailing_slash;
        /// how often the fleet (one replica at a time) reads `/gateway/bot`.
        "GATEWAY_POLL_SECONDS" => gateway_poll_seconds: u64 = 600, parsed;
        /// autoscale aims for at most this many guilds per shard.
        "GUILDS_PER_SHARD" => guilds_per_shard: u32 = 1000, parsed;
        /// autoscale never plans fewer shards.
        "MIN_SHARDS" => min_shards: u32 = 1, parsed;
        /// autoscale may lower the shard count (after `SHRINK_AFTER`).
        "ALLOW_SHRINK" => allow_shrink: bool = false, boolean;
        /// seconds a lower target must hold before autoscale shrinks.
        "SHRINK_AFTER" => shrink_after_seconds: u64 = 3600, parsed;
        /// seconds between autoscale evaluations.
        "AUTOSCALE_INTERVAL" => autoscale_interval_seconds: u64 = 30, parsed;
        /// origins browsers may call the API from (`*` for any); empty: no CORS.
        "CORS_ORIGINS" => cors_origins: Vec<String> = Vec::new(), parse_origins;
        /// a TOML file with one `[[bot]]` per bot this fleet serves (see [`Settings::bots`]);
        /// `None`: the environment describes one bot.
        "BOTS_FILE" => bots_file: Option<String> = None, some(text);
        /// a secret that may read every bot's `/status`, `/autoscale` and `/metrics`.
        "ADMIN_SECRET" => admin_secret: Option<Secret> = None, some(secret);
    }
    derived {
        /// True when `MAX_SHARDS` is unset: the shard count then follows Discord and the bot's
        /// load.
        autoscale: bool = false, |variables: &Variables| variables.get("MAX_SHARDS").is_none();
    }
}

/// The process environment as the `config` crate collects it: every variable, its name compared in
/// lowercase, its value as text (no `try_parsing`: the parsers see what the operator wrote).
struct Variables(config::Config);

impl Variables {
    fn collect(environment: config::Environment) -> Result<Self, ConfigError> {
        config::Config::builder()
            .add_source(environment)
            .build()
            .map(Self)
            .map_err(|error| ConfigError {
                variable: "environment",
                value: String::new(),
                reason: error.to_string(),
            })
    }

    /// The trimmed value; `None` when unset or empty, blanks included (which `config`'s
    /// `ignore_empty` would keep): unset and empty mean the default.
    fn get(&self, variable: &str) -> Option<String> {
        self.0
            .get_string(&variable.to_ascii_lowercase())
            .ok()
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }
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
        Self::from_environment(config::Environment::default())
    }

    /// Reads `environment` (the process environment, or a map in tests), then validates.
    fn from_environment(environment: config::Environment) -> Result<Self, ConfigError> {
        let settings = Self::read(&Variables::collect(environment)?)?;
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
        if self.shards_per_process == 0 || self.shards_per_process > MAX_SHARD_COUNT {
            return Err(invalid(
                "SHARDS_PER_PROCESS",
                self.shards_per_process.to_string(),
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
        if let Some(reason) = self
            .redis_cluster
            .iter()
            .find_map(|seed| invalid_cluster_seed(seed))
        {
            return Err(invalid("REDIS_CLUSTER", "***".into(), &reason));
        }
        if !self.redis_cluster.is_empty()
            && (self.redis_url.is_some() || !self.redis_sentinels.is_empty())
        {
            // The seeds may carry a password: never echo them.
            return Err(invalid(
                "REDIS_CLUSTER",
                "***".into(),
                "set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER",
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

// The parsers of the table: the trimmed, non-empty value in, the setting or the reason it is
// invalid out.

/// Any `FromStr` type (numbers, `LogFormat`); the reason is its error's text.
fn parsed<T>(value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value.parse().map_err(|error: T::Err| error.to_string())
}

/// `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// The value as it is.
fn text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// `Some` of what `parse` makes of the value, for a setting whose default is `None`.
fn some<T>(parse: fn(&str) -> Result<T, String>) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |value| parse(value).map(Some)
}

/// A base URL: the trailing slashes are dropped, since paths are appended with their own.
fn without_trailing_slash(value: &str) -> Result<String, String> {
    Ok(value.trim_end_matches('/').to_owned())
}

/// `CORS_ORIGINS`: comma-separated origins such as `https://dash.example.com`, or `*` for any.
/// A trailing slash is dropped, since browsers send origins without one.
fn parse_origins(value: &str) -> Result<Vec<String>, String> {
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
            return Err(format!(
                "{origin:?} is not an origin like https://example.com (or *)"
            ));
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}

/// `REDIS_SENTINELS`: comma-separated `host:port` addresses (an IPv6 host in brackets).
fn parse_sentinels(value: &str) -> Result<Vec<String>, String> {
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
            return Err(format!(
                "{address:?} is not a host:port address like 10.0.0.5:26379"
            ));
        }
        sentinels.push(address.to_owned());
    }
    Ok(sentinels)
}

/// `REDIS_CLUSTER`: comma-separated `host:port` addresses or `redis://` / `rediss://` URLs. Never
/// fails: URLs may carry a password, so [`Settings::validate`] checks the entries without echoing
/// the value.
fn parse_cluster_seeds(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Why a `REDIS_CLUSTER` entry cannot be used. Names a bare address (it holds no password), never
/// a URL.
fn invalid_cluster_seed(seed: &str) -> Option<String> {
    match seed.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() => None,
        Some(_) => Some("each node is host:port or a redis:// or rediss:// URL".into()),
        None => parse_sentinels(seed)
            .err()
            .map(|_| format!("{seed:?} is not a host:port address like 10.0.0.5:6379")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from exactly `variables`, as if they were the whole environment.
    fn load(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let source = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Settings::from_environment(config::Environment::default().source(Some(source)))
    }

    fn error(variables: &[(&str, &str)]) -> String {
        match load(variables) {
            Ok(_) => panic!("{variables:?} must be rejected"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn an_empty_environment_gives_the_defaults_and_autoscale() {
        let settings = load(&[]).expect("the defaults are valid");
        let defaults = Settings::default();
        assert!(settings.secret.is_none());
        assert_eq!(settings.max_seconds, 60);
        assert_eq!(settings.max_shards, 1);
        assert!(settings.redis_url.is_none());
        assert_eq!(settings.key_prefix, "shardman");
        assert_eq!((settings.host.as_str(), settings.port), ("0.0.0.0", 8000));
        assert_eq!(settings.max_extra_bytes, 16 * 1024);
        assert_eq!(settings.redis_timeout_ms, 1000);
        assert_eq!(settings.failed_auth_per_minute, 20);
        assert!(settings.quarantine_fresh_redis);
        assert_eq!(settings.discord_api_base, "https://discord.com/api/v10");
        assert_eq!(settings.log_format, LogFormat::Text);
        assert_eq!(settings.drain_seconds, defaults.drain_seconds);
        assert_eq!(settings.identify_reserve, None);
        assert!(settings.autoscale, "MAX_SHARDS unset: autoscale");
        assert!(
            !defaults.autoscale,
            "Settings::default() keeps the count fixed"
        );
    }

    #[test]
    fn unset_empty_and_blank_mean_the_default() {
        for blank in ["", "   ", "\t"] {
            let variables: Vec<(&str, &str)> = Settings::VARIABLES
                .iter()
                .map(|variable| (*variable, blank))
                .collect();
            let settings = load(&variables).unwrap_or_else(|error| panic!("{blank:?}: {error}"));
            assert!(settings.secret.is_none() && settings.bot_token.is_none());
            assert_eq!(settings.max_seconds, 60);
            assert_eq!(settings.key_prefix, "shardman");
            assert!(settings.quarantine_fresh_redis);
            assert!(settings.redis_sentinels.is_empty() && settings.cors_origins.is_empty());
            assert!(settings.autoscale, "a blank MAX_SHARDS is unset too");
        }
    }

    #[test]
    fn values_are_trimmed_and_parsed() {
        let settings = load(&[
            ("SECRET", "  s3cret "),
            ("MAX_SHARDS", "4"),
            ("PORT", " 9000"),
            ("LOG_FORMAT", "JSON"),
            ("IDENTIFY_RESERVE", "7"),
            ("DISCORD_API_BASE", "http://127.0.0.1:1234/api//"),
            (
                "CORS_ORIGINS",
                "https://dash.example.com/, ,http://localhost:3000",
            ),
            ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1"),
            ("REDIS_SENTINELS", "10.0.0.5:26379,[::1]:26380"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("WEBHOOK_URL", "https://discord.com/api/webhooks/1/token"),
        ])
        .expect("valid");
        assert_eq!(settings.secret.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(settings.max_shards, 4);
        assert!(!settings.autoscale, "MAX_SHARDS set: a fixed count");
        assert_eq!(settings.port, 9000);
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.identify_reserve, Some(7));
        assert_eq!(settings.discord_api_base, "http://127.0.0.1:1234/api");
        assert_eq!(
            settings.cors_origins,
            ["https://dash.example.com", "http://localhost:3000"]
        );
        assert_eq!(settings.trusted_proxies.len(), 3);
        assert_eq!(settings.redis_sentinels, ["10.0.0.5:26379", "[::1]:26380"]);
        assert_eq!(settings.redis_sentinel_master.as_deref(), Some("mymaster"));
        assert!(settings.webhook_url.is_some());
    }

    #[test]
    fn booleans_accept_the_usual_spellings_in_any_case() {
        for (value, expected) in [
            ("true", true),
            ("1", true),
            ("yes", true),
            ("On", true),
            ("TRUE", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("OFF", false),
        ] {
            let settings = load(&[("PUBLIC_STATUS", value), ("ALLOW_SHRINK", value)]).unwrap();
            assert_eq!(settings.public_status, expected, "{value}");
            assert_eq!(settings.allow_shrink, expected, "{value}");
        }
        assert_eq!(
            error(&[("QUARANTINE_FRESH_REDIS", "maybe")]),
            r#"invalid QUARANTINE_FRESH_REDIS="maybe": expected true or false"#
        );
    }

    #[test]
    fn an_invalid_value_is_reported_with_its_variable() {
        for (variable, value, message) in [
            (
                "MAX_SECONDS",
                " soon ",
                r#"invalid MAX_SECONDS="soon": invalid digit found in string"#,
            ),
            (
                "MAX_SECONDS",
                "0",
                r#"invalid MAX_SECONDS="0": must be at least 1"#,
            ),
            (
                "MAX_SHARDS",
                "70000",
                r#"invalid MAX_SHARDS="70000": must be between 1 and 65536"#,
            ),
            (
                "PORT",
                "99999",
                r#"invalid PORT="99999": number too large to fit in target type"#,
            ),
            (
                "LOG_FORMAT",
                "xml",
                r#"invalid LOG_FORMAT="xml": expected text or json"#,
            ),
            (
                "IDENTIFY_RESERVE",
                "-1",
                r#"invalid IDENTIFY_RESERVE="-1": invalid digit found in string"#,
            ),
            (
                "TRUSTED_PROXIES",
                "10.0.0.0/8,nonsense",
                r#"invalid TRUSTED_PROXIES="10.0.0.0/8,nonsense": "nonsense" is not an IP address or CIDR network"#,
            ),
            (
                "CORS_ORIGINS",
                "https://a.com/, ftp://x",
                r#"invalid CORS_ORIGINS="https://a.com/, ftp://x": "ftp://x" is not an origin like https://example.com (or *)"#,
            ),
            (
                "REDIS_SENTINELS",
                "127.0.0.1",
                r#"invalid REDIS_SENTINELS="127.0.0.1": "127.0.0.1" is not a host:port address like 10.0.0.5:26379"#,
            ),
            (
                "REDIS_CLUSTER",
                "10.0.0.1:7000,nowhere",
                r#"invalid REDIS_CLUSTER="***": "nowhere" is not a host:port address like 10.0.0.5:6379"#,
            ),
            (
                "DISCORD_API_BASE",
                "/",
                r#"invalid DISCORD_API_BASE="": must be an http:// or https:// URL"#,
            ),
            (
                "WEBHOOK_URL",
                "discord.com/token",
                r#"invalid WEBHOOK_URL="***": must be an http:// or https:// URL"#,
            ),
        ] {
            assert_eq!(error(&[(variable, value)]), message);
        }
    }

    #[test]
    fn the_first_invalid_row_is_reported_and_validation_comes_after_parsing() {
        assert_eq!(
            error(&[("MAX_CONCURRENCY", "x"), ("REDIS_TIMEOUT_MS", "y")]),
            r#"invalid REDIS_TIMEOUT_MS="y": invalid digit found in string"#
        );
        assert_eq!(
            error(&[("MAX_SECONDS", "0"), ("CORS_ORIGINS", "bad")]),
            r#"invalid CORS_ORIGINS="bad": "bad" is not an origin like https://example.com (or *)"#
        );
    }

    /// `.env.example` documents every variable, with values that load.
    #[test]
    fn env_example_lists_every_variable() {
        // Read at run time, not with `include_str!`: the file is no input of the build (the
        // Dockerfile does not copy it).
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
            .expect("read .env.example");
        let example: Vec<(&str, &str)> = example
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        let mut documented: Vec<&str> = example
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| *name != "RUST_LOG")
            .collect();
        let mut variables = Settings::VARIABLES.to_vec();
        documented.sort_unstable();
        variables.sort_unstable();
        assert_eq!(documented, variables);
        assert!(load(&example).is_ok(), "the example's values are valid");
    }

    #[test]
    fn redis_cluster_takes_seed_addresses_or_urls_and_excludes_the_other_redis_settings() {
        let settings = load(&[(
            "REDIS_CLUSTER",
            "rediss://:pw@10.0.0.1:7000, 10.0.0.2:7000,[::1]:7001",
        )])
        .expect("valid");
        assert_eq!(
            settings.redis_cluster,
            ["rediss://:pw@10.0.0.1:7000", "10.0.0.2:7000", "[::1]:7001"]
        );
        assert_eq!(
            error(&[
                ("REDIS_CLUSTER", "10.0.0.1:7000"),
                ("REDIS_URL", "redis://:pw@10.0.0.9")
            ]),
            r#"invalid REDIS_CLUSTER="***": set only one of REDIS_URL, REDIS_SENTINELS and REDIS_CLUSTER"#
        );
        let wrong_scheme = error(&[("REDIS_CLUSTER", "http://:pw@10.0.0.1:7000")]);
        assert!(wrong_scheme.contains("redis://"), "{wrong_scheme}");
        assert!(
            !wrong_scheme.contains("pw"),
            "the password is never echoed: {wrong_scheme}"
        );
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
