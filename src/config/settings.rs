//! The settings table, and the loader it generates.
//!
//! Each setting is declared once, as one row of the `settings!` table below: who it belongs to
//! (the replica, or each bot), the variable, the field it fills, the field's type, the default
//! (what unset or empty means) and the parser. The table generates the [`Settings`] struct, its
//! `Default`, the loader, the per-bot settings a `BOTS_FILE` table may set and what a bot's
//! fingerprint covers. Ranges and relations between values are checked afterwards by
//! [`Settings::validate`], which also serves `Settings` built in code.

use ipnet::IpNet;

use super::parse::{
    LogFormat, Secret, ShardsPerProcess, boolean, parse_cluster_seeds, parse_origins,
    parse_sentinels, parse_trusted_proxies, parsed, positive_number, secret, share, some, text,
    without_trailing_slash,
};

/// Who a setting belongs to: the first word of its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `per_replica`: one value for the whole replica (listening, logging, the Redis connection,
    /// CORS, rate limits), from the environment.
    PerReplica,
    /// `per_bot`: a `[[bot]]` table of `BOTS_FILE` may set it, and a bot that does not takes the
    /// environment's value.
    PerBot,
    /// `per_bot_not_inherited`: a `[[bot]]` table may set it, and a bot that does not has the
    /// default, since the environment's value would be shared by every bot (a secret selects one
    /// bot).
    PerBotNotInherited,
}

impl Scope {
    pub fn is_per_bot(self) -> bool {
        self != Scope::PerReplica
    }
}

/// A row's first word as its [`Scope`]; any other word does not compile.
macro_rules! scope {
    (per_replica) => {
        Scope::PerReplica
    };
    (per_bot) => {
        Scope::PerBot
    };
    (per_bot_not_inherited) => {
        Scope::PerBotNotInherited
    };
}

/// `code` for a per-bot row, nothing for a per-replica one: only per-bot values take part in a
/// bot's fingerprint, so only their types need [`FingerprintText`].
macro_rules! if_per_bot {
    (per_replica, $($code:tt)*) => {};
    (per_bot, $($code:tt)*) => { $($code)* };
    (per_bot_not_inherited, $($code:tt)*) => { $($code)* };
}

/// Generates [`Settings`] from its table. A row reads
///
/// ```text
/// /// What the setting does.
/// scope "VARIABLE" => field: Type = default, parser;
/// ```
///
/// When `VARIABLE` is unset, or empty once trimmed, `field` is `default`; otherwise it is
/// `parser(trimmed value)`, and a parser's `Err(reason)` stops the loader with
/// `invalid VARIABLE="value": reason`. Rows are parsed in table order, so with several invalid
/// variables the first row's is reported. `scope` is one of [`Scope`]'s words.
///
/// A `derived` row has no variable of its own: `flag = unset("VARIABLE")` is true when the
/// environment leaves `VARIABLE` unset, false in `Settings::default()` and once something sets
/// `VARIABLE` (a `[[bot]]` table, say).
macro_rules! settings {
    (
        $(#[$struct_meta:meta])*
        pub struct Settings {
            $(
                $(#[$meta:meta])*
                $scope:ident $variable:literal => $field:ident: $ty:ty = $default:expr, $parse:expr;
            )*
        }
        derived {
            $(
                $(#[$derived_meta:meta])*
                $derived:ident = unset($unset:literal);
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
                pub $derived: bool,
            )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                    $($derived: false,)*
                }
            }
        }

        impl Settings {
            /// Every setting's variable and scope, in table order.
            pub const TABLE: &'static [(&'static str, Scope)] = &[$(($variable, scope!($scope))),*];

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
                    $($derived: variables.get($unset).is_none(),)*
                })
            }

            /// Sets `variable`'s setting from its trimmed, non-empty `value` with the parser of
            /// its row, as the environment would; a derived flag that reads `variable` follows.
            pub(super) fn set(&mut self, variable: &str, value: &str) -> Result<(), String> {
                match variable {
                    $($variable => self.$field = ($parse)(value)?,)*
                    _ => return Err(format!("{variable} is not a setting")),
                }
                $(
                    if variable == $unset {
                        self.$derived = false;
                    }
                )*
                Ok(())
            }

            /// Puts every `per_bot_not_inherited` setting back to its default.
            pub(super) fn forget_not_inherited(&mut self) {
                $(
                    if scope!($scope) == Scope::PerBotNotInherited {
                        self.$field = $default;
                    }
                )*
            }

            /// Hands `visit` the name and [`FingerprintText`] of every per-bot setting and every
            /// derived flag: all that may differ between two loads of one bot's table.
            pub(super) fn visit_per_bot_values(&self, mut visit: impl FnMut(&str, String)) {
                $(if_per_bot!($scope, visit($variable, self.$field.fingerprint_text()););)*
                $(visit(stringify!($derived), self.$derived.fingerprint_text());)*
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
        per_bot_not_inherited "SECRET" => secret: Option<Secret> = None, some(secret);
        /// the secret a rotation moves away from (or towards): accepted in `Authorization` and
        /// for session ids, never used to sign one (README, "Rotating the secret").
        per_bot_not_inherited "SECRET_PREVIOUS" => secret_previous: Option<Secret> = None,
            some(secret);
        /// lease length; a shard that does not beat within it is freed.
        per_bot "MAX_SECONDS" => max_seconds: u64 = 60, parsed;
        /// the shard count a fresh deployment starts with.
        per_bot "MAX_SHARDS" => max_shards: u32 = 1, parsed;
        /// shard ids per bot process: a number (a group of consecutive ids under one session), or
        /// `auto` (the fleet is sized by load: `LOAD_TARGET`, `CPU_TARGET`).
        per_bot "SHARDS_PER_PROCESS" => shards_per_process: ShardsPerProcess =
            ShardsPerProcess::Fixed(1), parsed;
        /// `None` (and no `REDIS_SENTINELS` or `REDIS_CLUSTER`) runs the in-process store (one
        /// replica only); see [`Settings::store_backend`].
        per_replica "REDIS_URL" => redis_url: Option<String> = None, some(text);
        /// `host:port` of each Redis Sentinel; when set, the master is found through them (and
        /// followed after a failover) instead of `REDIS_URL`.
        per_replica "REDIS_SENTINELS" => redis_sentinels: Vec<String> = Vec::new(), parse_sentinels;
        /// the name the sentinels monitor the master under.
        per_replica "REDIS_SENTINEL_MASTER" => redis_sentinel_master: Option<String> = None,
            some(text);
        /// with `REDIS_SENTINELS`: the password of the master (and replicas) the sentinels name.
        per_replica "REDIS_SENTINEL_MASTER_PASSWORD" => redis_sentinel_master_password:
            Option<Secret> = None, some(secret);
        /// with `REDIS_SENTINELS`: the password of the sentinels themselves (their `requirepass`).
        per_replica "REDIS_SENTINEL_PASSWORD" => redis_sentinel_password: Option<Secret> = None,
            some(secret);
        /// seed nodes of a Redis Cluster (`host:port`, or URLs carrying the password and TLS
        /// scheme); when set, the cluster client is used instead of `REDIS_URL`.
        per_replica "REDIS_CLUSTER" => redis_cluster: Vec<String> = Vec::new(), parse_cluster_seeds;
        /// namespaces this deployment's keys; it is also the Redis Cluster hash tag.
        per_bot "KEY_PREFIX" => key_prefix: String = "shardman".into(), text;
        /// the listening address.
        per_replica "HOST" => host: String = "0.0.0.0".into(), text;
        /// the listening port.
        per_replica "PORT" => port: u16 = 8000, parsed;
        /// serve `/status` (without `extra`) to callers without the secret.
        per_bot "PUBLIC_STATUS" => public_status: bool = false, boolean;
        /// largest `extra` a beat may store, as JSON text.
        per_replica "MAX_EXTRA_BYTES" => max_extra_bytes: usize = 16 * 1024, parsed;
        /// bound on connecting to Redis, waiting for a pooled connection, and on each reply. A
        /// request that hits it answers 503.
        per_replica "REDIS_TIMEOUT_MS" => redis_timeout_ms: u64 = 1000, parsed;
        /// how often, in ms, a `/connect?wait=` claim tries again when no wake-up came: the
        /// longest it takes to see a lease that expired (a release on any replica wakes it at
        /// once). Each waiting request costs one script call per poll.
        per_replica "WAITER_POLL_MS" => waiter_poll_ms: u64 = 200, parsed;
        /// wrong secrets one client address may send per minute before it gets 429 (0: no limit).
        per_replica "FAILED_AUTH_PER_MINUTE" => failed_auth_per_minute: u32 = 20, parsed;
        /// load balancers (addresses or CIDR networks) whose `X-Forwarded-For` names the client
        /// address; from anyone else the header is ignored.
        per_replica "TRUSTED_PROXIES" => trusted_proxies: Vec<IpNet> = Vec::new(),
            parse_trusted_proxies;
        /// serve `/metrics` and `/autoscale` to callers without the secret.
        per_replica "PUBLIC_METRICS" => public_metrics: bool = false, boolean;
        /// `text` (default) or `json`, one object per line.
        per_replica "LOG_FORMAT" => log_format: LogFormat = LogFormat::Text, parsed;
        /// after SIGTERM, how long `/readyz` fails while requests are still served, so load
        /// balancers stop sending traffic before the listener closes.
        per_replica "DRAIN_SECONDS" => drain_seconds: u64 = 5, parsed;
        /// Discord's identify buckets, when Discord's own value is not known.
        per_bot "MAX_CONCURRENCY" => max_concurrency: u32 = 1, parsed;
        /// identifies of the daily budget kept back; `None` means 5% of the total.
        per_bot "IDENTIFY_RESERVE" => identify_reserve: Option<u32> = None, some(parsed);
        /// seconds after a holder disappears during which its resume data is handed on.
        per_bot "RESUME_WINDOW" => resume_window_seconds: u64 = 60, parsed;
        /// where alerts go. Events are queued in the store only when it is set.
        per_bot "WEBHOOK_URL" => webhook_url: Option<String> = None, some(text);
        /// a replica that finds no plan in a Redis that started less than `MAX_SECONDS` ago
        /// treats it as a possible data loss and grants nothing until a lease length has passed
        /// since Redis started (running bots re-establish their leases meanwhile).
        per_replica "QUARANTINE_FRESH_REDIS" => quarantine_fresh_redis: bool = true, boolean;
        /// the plain-text `content` of every alert (a role mention, say).
        per_bot "WEBHOOK_CONTENT" => webhook_content: Option<String> = None, some(text);
        /// with it, Discord's `GET /gateway/bot` is read for the recommended shard count,
        /// `max_concurrency` and the identify budget.
        per_bot "BOT_TOKEN" => bot_token: Option<Secret> = None, some(secret);
        /// Discord's REST API, without a trailing slash.
        per_replica "DISCORD_API_BASE" => discord_api_base: String =
            "https://discord.com/api/v10".into(), without_trailing_slash;
        /// how often the fleet (one replica at a time) reads `/gateway/bot`.
        per_bot "GATEWAY_POLL_SECONDS" => gateway_poll_seconds: u64 = 600, parsed;
        /// autoscale aims for at most this many guilds per shard.
        per_bot "GUILDS_PER_SHARD" => guilds_per_shard: u32 = 1000, parsed;
        /// autoscale never plans fewer shards.
        per_bot "MIN_SHARDS" => min_shards: u32 = 1, parsed;
        /// autoscale may lower the shard count (after `SHRINK_AFTER`).
        per_bot "ALLOW_SHRINK" => allow_shrink: bool = false, boolean;
        /// seconds a lower target must hold before autoscale shrinks.
        per_bot "SHRINK_AFTER" => shrink_after_seconds: u64 = 3600, parsed;
        /// seconds between autoscale evaluations.
        per_bot "AUTOSCALE_INTERVAL" => autoscale_interval_seconds: u64 = 30, parsed;
        /// gateway events per second one bot process should carry: `/autoscale` sizes the fleet
        /// by load (needs `SHARDS_PER_PROCESS=auto`). `None`: one process per shard group.
        per_bot "LOAD_TARGET" => load_target: Option<f64> = None, some(positive_number);
        /// CPU cores one bot process should use, like `LOAD_TARGET` (with both, the larger
        /// answer).
        per_bot "CPU_TARGET" => cpu_target: Option<f64> = None, some(positive_number);
        /// seconds a lower load must hold before `/autoscale` asks for fewer processes.
        per_bot "SCALE_IN_AFTER" => scale_in_after_seconds: u64 = 300, parsed;
        /// the share of `LOAD_TARGET` one shard may carry, in (0, 1]: a busier shard makes
        /// autoscale raise the shard count (`MAX_SHARDS` unset). `None`: no load-driven reshard.
        per_bot "SHARD_LOAD_MAX" => shard_load_max: Option<f64> = None, some(share);
        /// seconds the busiest shard must stay over `SHARD_LOAD_MAX` before the count goes up.
        per_bot "SHARD_LOAD_AFTER" => shard_load_after_seconds: u64 = 300, parsed;
        /// seconds a held shard's `events` counter may stay still, while the fleet has traffic,
        /// before it is silent (`/status`, the `shard_silent` alert, a reconnect told in its
        /// holder's beat answer); 0: never. Never less than `MAX_SECONDS`: counters move only
        /// with beats.
        per_bot "SHARD_SILENT_AFTER" => shard_silent_after_seconds: u64 = 600, parsed;
        /// seconds between two placements by load (`SHARDS_PER_PROCESS=auto`).
        per_bot "PLACEMENT_INTERVAL" => placement_interval_seconds: u64 = 10, parsed;
        /// seconds a shard that arrived by a move stays where it is.
        per_bot "MOVE_SETTLE" => move_settle_seconds: u64 = 120, parsed;
        /// shard moves under way at once, at most.
        per_bot "MAX_MOVES" => max_moves: u32 = 4, parsed;
        /// seconds `shardman drain` keeps a process drained (its shards moved away, none given
        /// to it) unless undone: long enough to stop it, short enough that a label used again
        /// later (a StatefulSet pod) is not drained for good.
        per_bot "PROCESS_DRAIN_SECONDS" => process_drain_seconds: u64 = 3600, parsed;
        /// origins browsers may call the API from (`*` for any); empty: no CORS.
        per_replica "CORS_ORIGINS" => cors_origins: Vec<String> = Vec::new(), parse_origins;
        /// a TOML file with one `[[bot]]` per bot this fleet serves (see [`Settings::bots`]);
        /// `None`: the environment describes one bot.
        per_replica "BOTS_FILE" => bots_file: Option<String> = None, some(text);
        /// a secret that may read every bot's `/status`, `/autoscale` and `/metrics`.
        per_replica "ADMIN_SECRET" => admin_secret: Option<Secret> = None, some(secret);
    }
    derived {
        /// True when `MAX_SHARDS` is unset: the shard count then follows Discord and the bot's
        /// load.
        autoscale = unset("MAX_SHARDS");
    }
}

impl Settings {
    /// Reads the process environment. Unset and empty variables take their defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_environment(config::Environment::default())
    }

    /// Reads `environment` (the process environment, or a map in tests), then validates.
    pub(super) fn from_environment(environment: config::Environment) -> Result<Self, ConfigError> {
        let settings = Self::read(&Variables::collect(environment)?)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The settings a `[[bot]]` table may set, as their variables, in table order.
    pub fn per_bot_variables() -> impl Iterator<Item = &'static str> {
        Self::TABLE
            .iter()
            .filter(|(_, scope)| scope.is_per_bot())
            .map(|(variable, _)| *variable)
    }

    /// The scope of `variable`'s row; `None` when no row reads it.
    pub fn scope_of(variable: &str) -> Option<Scope> {
        Self::TABLE
            .iter()
            .find(|(name, _)| *name == variable)
            .map(|(_, scope)| *scope)
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

/// A variable that is set but cannot be used. The message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

/// A per-bot value as text for a bot's fingerprint: its whole content, secrets included (only the
/// digest is kept), never for display. Text values are quoted, so no value reads as two.
pub(super) trait FingerprintText {
    fn fingerprint_text(&self) -> String;
}

macro_rules! fingerprint_as_display {
    ($($ty:ty),*) => {
        $(impl FingerprintText for $ty {
            fn fingerprint_text(&self) -> String {
                self.to_string()
            }
        })*
    };
}
fingerprint_as_display!(bool, u32, u64, f64, ShardsPerProcess);

impl FingerprintText for String {
    fn fingerprint_text(&self) -> String {
        format!("{self:?}")
    }
}

impl FingerprintText for Secret {
    fn fingerprint_text(&self) -> String {
        format!("{:?}", self.expose())
    }
}

impl<T: FingerprintText> FingerprintText for Option<T> {
    fn fingerprint_text(&self) -> String {
        match self {
            None => "None".into(),
            Some(value) => format!("Some({})", value.fingerprint_text()),
        }
    }
}

/// Loading an environment of the test's own, for the config modules' tests.
#[cfg(test)]
pub(super) mod testing {
    use super::{ConfigError, Settings};

    /// Settings from exactly `variables`, as if they were the whole environment.
    pub fn load(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let source = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Settings::from_environment(config::Environment::default().source(Some(source)))
    }

    /// The message that loading `variables` stops with.
    pub fn error(variables: &[(&str, &str)]) -> String {
        match load(variables) {
            Ok(_) => panic!("{variables:?} must be rejected"),
            Err(error) => error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{error, load};
    use super::*;

    fn variables() -> Vec<&'static str> {
        Settings::TABLE
            .iter()
            .map(|(variable, _)| *variable)
            .collect()
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
            let variables: Vec<(&str, &str)> = variables()
                .into_iter()
                .map(|variable| (variable, blank))
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
                "WAITER_POLL_MS",
                "5",
                r#"invalid WAITER_POLL_MS="5": must be from 10 to 10000"#,
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
        let mut variables = variables();
        documented.sort_unstable();
        variables.sort_unstable();
        assert_eq!(documented, variables);
        assert!(load(&example).is_ok(), "the example's values are valid");
    }

    /// The README's list of per-bot settings is a copy of the table's per-bot rows.
    #[test]
    fn the_readme_lists_exactly_the_per_bot_settings() {
        // Read at run time, as `.env.example` is: the file is no input of the build.
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("read README.md");
        let list = readme
            .split_once("Per-bot settings:")
            .and_then(|(_, rest)| rest.split_once("Everything else"))
            .map(|(list, _)| list)
            .expect("README.md lists the per-bot settings after \"Per-bot settings:\"");
        // The names are the list's code spans: every second piece between backticks.
        let mut listed: Vec<String> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        let mut per_bot: Vec<String> = Settings::per_bot_variables()
            .map(str::to_ascii_lowercase)
            .collect();
        listed.sort_unstable();
        per_bot.sort_unstable();
        assert_eq!(listed, per_bot);
    }

    #[test]
    fn load_targets_size_the_fleet_with_shards_per_process_auto() {
        let defaults = load(&[]).expect("valid");
        assert_eq!(defaults.shards_per_process, ShardsPerProcess::Fixed(1));
        assert_eq!((defaults.load_target, defaults.cpu_target), (None, None));
        assert_eq!(defaults.scale_in_after_seconds, 300);

        let sized = load(&[
            ("SHARDS_PER_PROCESS", " AUTO "),
            ("LOAD_TARGET", "60"),
            ("CPU_TARGET", "0.75"),
            ("SCALE_IN_AFTER", "0"),
        ])
        .expect("valid");
        assert_eq!(sized.shards_per_process, ShardsPerProcess::Auto);
        assert_eq!(sized.shards_per_process.group_size(), 1);
        assert_eq!(
            (sized.load_target, sized.cpu_target),
            (Some(60.0), Some(0.75))
        );
        assert_eq!(sized.scale_in_after_seconds, 0);

        let bounded = load(&[
            ("SHARDS_PER_PROCESS", "auto"),
            ("LOAD_TARGET", "60"),
            ("SHARD_LOAD_MAX", "1"),
            ("SHARD_LOAD_AFTER", "0"),
            ("SHARD_SILENT_AFTER", "0"),
        ])
        .expect("valid");
        assert_eq!(bounded.shard_load_max, Some(1.0));
        assert_eq!(bounded.shard_load_after_seconds, 0);
        assert_eq!(bounded.shard_silent_after_seconds, 0);
        assert_eq!(
            (defaults.shard_load_max, defaults.shard_silent_after_seconds),
            (None, 600)
        );
        let auto_alone = load(&[("SHARDS_PER_PROCESS", "auto")]).expect("auto needs no target");
        assert_eq!(auto_alone.load_target, None);
        let fixed = load(&[("SHARDS_PER_PROCESS", "4")]).expect("valid");
        assert_eq!(fixed.shards_per_process.group_size(), 4);
    }

    #[test]
    fn bad_load_settings_are_reported_with_their_variable() {
        for (variables, message) in [
            (
                &[("SHARDS_PER_PROCESS", "auto"), ("LOAD_TARGET", "lots")][..],
                r#"invalid LOAD_TARGET="lots": must be a number above 0"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "auto"), ("LOAD_TARGET", "0")][..],
                r#"invalid LOAD_TARGET="0": must be a number above 0"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "auto"), ("CPU_TARGET", "-1.5")][..],
                r#"invalid CPU_TARGET="-1.5": must be a number above 0"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "auto"), ("CPU_TARGET", "inf")][..],
                r#"invalid CPU_TARGET="inf": must be a number above 0"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "auto"), ("SHARD_LOAD_MAX", "0.5")][..],
                r#"invalid SHARD_LOAD_MAX="0.5": needs LOAD_TARGET (the bound is a share of it)"#,
            ),
            (
                &[
                    ("SHARDS_PER_PROCESS", "auto"),
                    ("LOAD_TARGET", "60"),
                    ("SHARD_LOAD_MAX", "1.5"),
                ][..],
                r#"invalid SHARD_LOAD_MAX="1.5": must be a number above 0 and at most 1"#,
            ),
            (
                &[
                    ("SHARDS_PER_PROCESS", "auto"),
                    ("LOAD_TARGET", "60"),
                    ("SHARD_LOAD_MAX", "0"),
                ][..],
                r#"invalid SHARD_LOAD_MAX="0": must be a number above 0 and at most 1"#,
            ),
            (
                &[("SHARD_SILENT_AFTER", "later")][..],
                r#"invalid SHARD_SILENT_AFTER="later": invalid digit found in string"#,
            ),
            (
                &[("SCALE_IN_AFTER", "soon")][..],
                r#"invalid SCALE_IN_AFTER="soon": invalid digit found in string"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "some")][..],
                r#"invalid SHARDS_PER_PROCESS="some": invalid digit found in string (expected a number of shard ids or auto)"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "0")][..],
                r#"invalid SHARDS_PER_PROCESS="0": must be between 1 and 65536 (or auto)"#,
            ),
            (
                &[("LOAD_TARGET", "60")][..],
                r#"invalid LOAD_TARGET="60": needs SHARDS_PER_PROCESS=auto (with fixed shard groups the process count is the group count)"#,
            ),
            (
                &[("SHARDS_PER_PROCESS", "2"), ("CPU_TARGET", "0.5")][..],
                r#"invalid CPU_TARGET="0.5": needs SHARDS_PER_PROCESS=auto (with fixed shard groups the process count is the group count)"#,
            ),
        ] {
            assert_eq!(error(variables), message);
        }
    }

    #[test]
    fn secret_previous_needs_its_own_secret_and_admin_secret_differs_from_both() {
        let rotating = load(&[("SECRET", "new"), ("SECRET_PREVIOUS", "old")]).expect("valid");
        assert_eq!(
            rotating.secret_previous.as_ref().map(Secret::expose),
            Some("old")
        );
        for (variables, message) in [
            (
                &[("SECRET_PREVIOUS", "old")][..],
                r#"invalid SECRET_PREVIOUS="***": needs SECRET (the secret being rotated to or from)"#,
            ),
            (
                &[("SECRET", "same"), ("SECRET_PREVIOUS", "same")][..],
                r#"invalid SECRET_PREVIOUS="***": must differ from SECRET"#,
            ),
            (
                &[("SECRET", "admin"), ("ADMIN_SECRET", "admin")][..],
                r#"invalid SECRET="***": must differ from ADMIN_SECRET (a secret selects one bot)"#,
            ),
            (
                &[
                    ("SECRET", "new"),
                    ("SECRET_PREVIOUS", "admin"),
                    ("ADMIN_SECRET", "admin"),
                ][..],
                r#"invalid SECRET_PREVIOUS="***": must differ from ADMIN_SECRET (a secret selects one bot)"#,
            ),
        ] {
            assert_eq!(error(variables), message);
        }
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
