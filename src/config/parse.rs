//! The value types of the settings table and its parsers: the trimmed, non-empty value in, the
//! setting or the reason it is invalid out.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

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

/// `SHARDS_PER_PROCESS`: shard ids per bot process, a fixed number or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardsPerProcess {
    /// Groups of this many consecutive shard ids, one per process; the process count is the
    /// group count.
    Fixed(u32),
    /// The fleet is sized by load (`LOAD_TARGET`, `CPU_TARGET`) and a process's shards are
    /// chosen by load.
    Auto,
}

impl ShardsPerProcess {
    /// The group size the shard plan is written with (`shards_per_process` of the plan): the
    /// fixed number, or 1 for `auto`.
    ///
    /// With `auto` a session is one shard, and a process holds as many sessions as placement
    /// gives it (README, "Scaling on load"): a session's shard set never changes, so a session id
    /// stays verifiable after a data loss as it is. This is the only place that turns `auto`
    /// into a group size.
    pub fn group_size(self) -> u32 {
        match self {
            ShardsPerProcess::Fixed(size) => size,
            ShardsPerProcess::Auto => 1,
        }
    }

    pub fn is_auto(self) -> bool {
        self == ShardsPerProcess::Auto
    }
}

impl Default for ShardsPerProcess {
    fn default() -> Self {
        ShardsPerProcess::Fixed(1)
    }
}

impl FromStr for ShardsPerProcess {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        if value.eq_ignore_ascii_case("auto") {
            return Ok(ShardsPerProcess::Auto);
        }
        value
            .parse()
            .map(ShardsPerProcess::Fixed)
            .map_err(|error| format!("{error} (expected a number of shard ids or auto)"))
    }
}

impl fmt::Display for ShardsPerProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardsPerProcess::Fixed(size) => write!(f, "{size}"),
            ShardsPerProcess::Auto => f.write_str("auto"),
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

/// Any `FromStr` type (numbers, `LogFormat`); the reason is its error's text.
pub(super) fn parsed<T>(value: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    value.parse().map_err(|error: T::Err| error.to_string())
}

/// A finite number above 0 (`LOAD_TARGET`, `CPU_TARGET`).
pub(super) fn positive_number(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(number) if number.is_finite() && number > 0.0 => Ok(number),
        _ => Err("must be a number above 0".into()),
    }
}

/// A share: a number above 0 and at most 1 (`SHARD_LOAD_MAX`).
pub(super) fn share(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(number) if number > 0.0 && number <= 1.0 => Ok(number),
        _ => Err("must be a number above 0 and at most 1".into()),
    }
}

/// `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
pub(super) fn boolean(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// The value as it is.
pub(super) fn text(value: &str) -> Result<String, String> {
    Ok(value.to_owned())
}

pub(super) fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// `Some` of what `parse` makes of the value, for a setting whose default is `None`.
pub(super) fn some<T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Option<T>, String> {
    move |value| parse(value).map(Some)
}

/// A base URL: the trailing slashes are dropped, since paths are appended with their own.
pub(super) fn without_trailing_slash(value: &str) -> Result<String, String> {
    Ok(value.trim_end_matches('/').to_owned())
}

/// `CORS_ORIGINS`: comma-separated origins such as `https://dash.example.com`, or `*` for any.
/// A trailing slash is dropped, since browsers send origins without one.
pub(super) fn parse_origins(value: &str) -> Result<Vec<String>, String> {
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
pub(super) fn parse_sentinels(value: &str) -> Result<Vec<String>, String> {
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
/// fails: URLs may carry a password, so [`Settings::store_backend`] checks the entries (with
/// [`invalid_cluster_seed`]) without echoing the value.
///
/// [`Settings::store_backend`]: super::Settings::store_backend
pub(super) fn parse_cluster_seeds(value: &str) -> Result<Vec<String>, String> {
    Ok(value
        .split(',')
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Why a `REDIS_CLUSTER` entry cannot be used. Names a bare address (it holds no password), never
/// a URL.
pub(super) fn invalid_cluster_seed(seed: &str) -> Option<String> {
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
