//! Discord's gateway info: `GET {DISCORD_API_BASE}/gateway/bot`, read by one replica at a time.
//!
//! The fleet reads it once per `GATEWAY_POLL_SECONDS`, whatever the number of replicas: a replica
//! reads only while it holds the store's `gateway` lock, which it keeps for a whole poll interval
//! after a read, so other replicas' timers find it held and skip. A first start reads under the
//! same lock (`bots/first_start.rs`): one replica reads, the others wait for its answer in the
//! store, and every poller then finds the lock held until the interval is over. The answer goes
//! to the store, where every replica (the identify scheduler, autoscale, `/status`) reads it. A
//! 429 is honoured: the same replica keeps the lock and asks again only after `Retry-After` (or
//! Discord's JSON `retry_after`).
//!
//! The bot token is sent in `Authorization: Bot <token>` and appears nowhere else: not in URLs,
//! log lines or error texts (see [`crate::outbound::describe`]).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use super::stop::sleep_or_stop;
use crate::config::{Secret, Settings};
use crate::domain::GatewayInfo;
use crate::outbound;
use crate::store::Store;

/// The store lock that elects the replica that polls.
pub const LOCK: &str = "gateway";
/// A poll that fails (Discord unreachable, 5xx) is retried after this, doubling up to the poll
/// interval, by the replica that holds the lock.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Wait after a 429 whose retry time cannot be read.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Bound on one request to Discord.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The lock outlives a retry wait by this much, so no other replica slips in before the retry.
const LOCK_MARGIN: Duration = Duration::from_secs(2);
/// After a store error, try again this soon.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// What one `GET /gateway/bot` came to.
pub enum Fetch {
    Info(GatewayInfo),
    /// 429: ask again after this long.
    RateLimited(Duration),
    /// 401/403 and other 4xx: the token or request is wrong; asking again soon will not help.
    Refused(StatusCode),
    /// Network error, timeout, 5xx or an unreadable body: worth retrying soon.
    Failed(String),
}

/// `GET /gateway/bot` as Discord documents it (fields shardman does not use are ignored).
#[derive(Debug, Deserialize)]
struct GatewayBot {
    #[serde(default)]
    url: Option<String>,
    shards: u32,
    session_start_limit: SessionStartLimit,
}

#[derive(Debug, Deserialize)]
struct SessionStartLimit {
    total: u32,
    remaining: u32,
    /// Milliseconds until `remaining` is reset to `total`.
    reset_after: u64,
    max_concurrency: u32,
}

impl From<GatewayBot> for GatewayInfo {
    fn from(bot: GatewayBot) -> Self {
        GatewayInfo {
            shards: bot.shards.max(1),
            max_concurrency: bot.session_start_limit.max_concurrency.max(1),
            session_start_total: bot.session_start_limit.total,
            session_start_remaining: bot.session_start_limit.remaining,
            session_start_reset_after_ms: bot.session_start_limit.reset_after,
            url: bot
                .url
                .filter(|url| url.starts_with("wss://") || url.starts_with("ws://")),
        }
    }
}

/// Reads `GET {base}/gateway/bot` once.
pub async fn fetch(client: &reqwest::Client, base: &str, token: &Secret) -> Fetch {
    let response = client
        .get(format!("{base}/gateway/bot"))
        .header(reqwest::header::AUTHORIZATION, authorization_header(token))
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Fetch::Failed(outbound::describe(&error)),
    };
    let status = response.status();
    let retry_after_header = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return Fetch::Failed(outbound::describe(&error)),
    };
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Fetch::RateLimited(
            outbound::retry_after(retry_after_header.as_deref(), &body)
                .unwrap_or(DEFAULT_RETRY_AFTER),
        );
    }
    if status.is_client_error() {
        return Fetch::Refused(status);
    }
    if !status.is_success() {
        return Fetch::Failed(format!("Discord answered {status}"));
    }
    match serde_json::from_slice::<GatewayBot>(&body) {
        Ok(bot) => Fetch::Info(bot.into()),
        Err(error) => Fetch::Failed(format!("unreadable /gateway/bot answer: {error}")),
    }
}

/// `Bot <token>`, marked sensitive so that no `Debug` of the request shows it.
fn authorization_header(token: &Secret) -> reqwest::header::HeaderValue {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bot {}", token.expose()))
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bot invalid"));
    value.set_sensitive(true);
    value
}

/// What the poller reads from `Settings`.
pub struct GatewaySettings {
    pub token: Secret,
    /// `DISCORD_API_BASE`.
    pub api_base: String,
    /// `GATEWAY_POLL_SECONDS`.
    pub interval: Duration,
}

impl GatewaySettings {
    /// `None` without `BOT_TOKEN`: Discord answers nothing without it.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        Some(Self {
            token: settings.bot_token.clone()?,
            api_base: settings.discord_api_base.clone(),
            interval: Duration::from_secs(settings.gateway_poll_seconds),
        })
    }
}

/// The poller of one replica. Runs until `stop` turns true.
pub struct GatewayPoller {
    store: Arc<Store>,
    settings: GatewaySettings,
    /// This replica's name for the lock.
    owner: String,
    /// Woken after each successful read, so autoscale can act on a new recommendation at once.
    fetched: Arc<Notify>,
}

impl GatewayPoller {
    pub fn new(
        store: Arc<Store>,
        settings: GatewaySettings,
        owner: String,
        fetched: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            settings,
            owner,
            fetched,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let client = match outbound::client(REQUEST_TIMEOUT) {
            Ok(client) => client,
            Err(error) => {
                log::error!("gateway poller disabled: cannot build an HTTP client: {error}");
                return;
            }
        };
        let interval = self.settings.interval;
        let mut retry = FIRST_RETRY;
        loop {
            let wait = match self.poll_once(&client, interval).await {
                Step::Done => {
                    retry = FIRST_RETRY;
                    interval
                }
                Step::Retry(after) => after,
                Step::Backoff => {
                    let wait = retry.min(interval);
                    retry = (retry * 2).min(interval);
                    wait
                }
            };
            if sleep_or_stop(wait, &mut stop).await {
                return;
            }
        }
    }

    async fn poll_once(&self, client: &reqwest::Client, interval: Duration) -> Step {
        let store = &self.store;
        match store.try_lock(LOCK, &self.owner, millis(interval)).await {
            Ok(true) => {}
            // Another replica polls this interval.
            Ok(false) => return Step::Done,
            Err(error) => {
                log::warn!("gateway poller: cannot take the lock: {error}");
                return Step::Retry(STORE_RETRY);
            }
        }
        match fetch(client, &self.settings.api_base, &self.settings.token).await {
            Fetch::Info(info) => {
                if let Err(error) = store.save_gateway(&info).await {
                    log::warn!("gateway poller: cannot store Discord's gateway info: {error}");
                    return Step::Retry(STORE_RETRY);
                }
                log::info!(
                    "Discord gateway info: {} shards recommended, max_concurrency {}, \
                     identify budget {}/{} (resets in {}s)",
                    info.shards,
                    info.max_concurrency,
                    info.session_start_remaining,
                    info.session_start_total,
                    info.session_start_reset_after_ms / 1000
                );
                // The next read is one interval from now, whoever does it.
                let _ = store.try_lock(LOCK, &self.owner, millis(interval)).await;
                self.fetched.notify_one();
                Step::Done
            }
            Fetch::RateLimited(after) => {
                log::warn!(
                    "Discord rate-limited GET /gateway/bot; asking again in {:.1}s",
                    after.as_secs_f64()
                );
                // Keep the lock through the wait, so no other replica asks before then.
                let hold = (after + LOCK_MARGIN).max(interval);
                let _ = store.try_lock(LOCK, &self.owner, millis(hold)).await;
                Step::Retry(after)
            }
            Fetch::Refused(status) => {
                log::error!(
                    "Discord refused GET /gateway/bot with {status}: check BOT_TOKEN; \
                     asking again in {}s",
                    interval.as_secs()
                );
                Step::Done
            }
            Fetch::Failed(reason) => {
                log::warn!("cannot read Discord's gateway info: {reason}");
                Step::Backoff
            }
        }
    }
}

enum Step {
    /// Read (or skipped because another replica holds the lock): wait one interval.
    Done,
    /// Ask again after exactly this long.
    Retry(Duration),
    /// A transient failure: ask again after a growing delay.
    Backoff,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discords_answer_becomes_gateway_info() {
        let body = r#"{"url":"wss://gateway.discord.gg","shards":9,
            "session_start_limit":{"total":1000,"remaining":997,"reset_after":14400000,"max_concurrency":16}}"#;
        let bot: GatewayBot = serde_json::from_str(body).expect("parses");
        let info = GatewayInfo::from(bot);
        assert_eq!(info.shards, 9);
        assert_eq!(info.max_concurrency, 16);
        assert_eq!(info.session_start_total, 1000);
        assert_eq!(info.session_start_remaining, 997);
        assert_eq!(info.session_start_reset_after_ms, 14_400_000);
    }

    #[test]
    fn the_authorization_header_is_sensitive() {
        let value = authorization_header(&Secret::new("abc.def"));
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().unwrap(), "Bot abc.def");
        assert!(!format!("{value:?}").contains("abc.def"));
    }
}
