//! Alerts: fleet events delivered to a Discord webhook (`WEBHOOK_URL`).
//!
//! The store's scripts queue an event in Redis in the same atomic step as the change it reports
//! (a claim, a release, a reshard...). Every replica runs a [`Dispatcher`] that claims events one
//! at a time and POSTs each, retrying with exponential backoff (and honouring 429s). Delivery is
//! at least once: a claim lasts one lease length and is renewed while its dispatcher keeps
//! trying, so an event whose replica was killed before it posted is delivered by another replica
//! after that; each carries its id (`Event ID`) for the receiver to drop a duplicate. It runs
//! beside the HTTP server, never inside a request, so a slow or failing webhook cannot slow the
//! API.
//!
//! Expired leases make no request: the [`Reaper`] asks the store every [`REAP_EVERY`] to free
//! leases whose time is up, which queues their `expire` events. Any replica may reap; the store
//! frees each lease once, so each expiry is reported once, within `MAX_SECONDS` + a few seconds.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::config::{Secret, Settings};
use crate::domain::{Event, EventKind};
use crate::outbound;
use crate::store::Store;

/// How often each replica asks the store to reap expired leases.
pub const REAP_EVERY: Duration = Duration::from_secs(2);
/// How often an idle dispatcher looks for new events.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Delivery attempts per event before it is given up (logged as an error).
const MAX_ATTEMPTS: u32 = 8;
/// First wait between attempts; doubles each time up to [`MAX_BACKOFF`]. Eight attempts span
/// about a minute and a half.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Bound on one POST.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// After a store error, look again this soon.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The Discord-webhook message for one event: `content` (`WEBHOOK_CONTENT`, when set) and one
/// embed whose fields name the `Event` and the `Shard ID`, as the original service's alerts did.
pub fn payload(event: &Event, content: Option<&str>) -> Value {
    let shard = event
        .shard_id
        .map_or_else(|| "-".to_owned(), |id| id.to_string());
    let shards = event
        .max_shards
        .map_or_else(|| "-".to_owned(), |count| count.to_string());
    // A receiver drops a redelivered duplicate by this id (delivery is at least once).
    let event_id = event.id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    let title = match event.kind {
        EventKind::Connect => format!("Shard {shard} connected"),
        EventKind::Disconnect => format!("Shard {shard} disconnected"),
        EventKind::Expire => format!("Shard {shard} missed its beats and was freed"),
        EventKind::ReshardStarted => format!("Resharding to {shards} shards"),
        EventKind::ReshardCompleted => format!("Now running {shards} shards"),
        EventKind::IdentifyBudgetLow => "Discord identify budget is low".to_owned(),
        EventKind::ShardSilent => format!("Shard {shard} is silent: no events, reconnecting"),
    };
    let mut message = json!({
        "embeds": [{
            "title": title,
            "color": colour(event.kind),
            "fields": [
                { "name": "Event", "value": event.kind.as_str(), "inline": true },
                { "name": "Shard ID", "value": shard, "inline": true },
                { "name": "Shards", "value": shards, "inline": true },
                { "name": "Generation", "value": event.generation.to_string(), "inline": true },
                { "name": "Event ID", "value": event_id, "inline": true },
            ],
            "timestamp": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }],
    });
    if let Some(content) = content {
        message["content"] = Value::String(content.to_owned());
    }
    message
}

/// Green for good news, orange for changes, red for trouble.
fn colour(kind: EventKind) -> u32 {
    match kind {
        EventKind::Connect | EventKind::ReshardCompleted => 0x2ecc71,
        EventKind::Disconnect | EventKind::ReshardStarted => 0xe67e22,
        EventKind::Expire | EventKind::IdentifyBudgetLow | EventKind::ShardSilent => 0xe74c3c,
    }
}

/// What the dispatcher reads from `Settings`.
pub struct WebhookSettings {
    /// The webhook URL holds the webhook's token: it is kept as a secret and never logged.
    pub url: Secret,
    pub content: Option<String>,
    /// How long an event claimed by a dispatcher waits before another may deliver it: one lease
    /// length (`MAX_SECONDS`), renewed while its dispatcher keeps trying.
    pub redeliver_after: Duration,
}

impl WebhookSettings {
    /// `None` without `WEBHOOK_URL`: there is nowhere to send alerts.
    pub fn from_settings(settings: &Settings) -> Option<Self> {
        let url = settings.webhook_url.as_ref()?;
        Some(Self {
            url: Secret::new(url.clone()),
            content: settings.webhook_content.clone(),
            redeliver_after: Duration::from_millis(settings.lease_ms()),
        })
    }
}

/// Claims events from the store and delivers them, at least once, until `stop`.
pub struct Dispatcher {
    store: Arc<Store>,
    webhook: WebhookSettings,
}

/// How delivering one event ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The webhook refused the message for good (4xx other than 429), or every attempt failed.
    GaveUp,
    /// The replica is stopping.
    Stopped,
}

impl Dispatcher {
    pub fn new(store: Arc<Store>, webhook: WebhookSettings) -> Self {
        Self { store, webhook }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let client = match outbound::client(REQUEST_TIMEOUT) {
            Ok(client) => client,
            Err(error) => {
                log::error!("alerts disabled: cannot build an HTTP client: {error}");
                return;
            }
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let redeliver_ms = self.webhook.redeliver_after.as_millis() as u64;
            let wait = match self.store.claim_events(1, redeliver_ms).await {
                Ok(events) if events.is_empty() => POLL_EVERY,
                Ok(events) => {
                    for queued in &events {
                        self.dispatch(&client, queued, &mut stop).await;
                    }
                    Duration::ZERO
                }
                Err(error) => {
                    log::warn!("alerts: cannot read the event queue: {error}");
                    STORE_RETRY
                }
            };
            if sleep_or_stop(wait, &mut stop).await {
                return;
            }
        }
    }
}

impl Dispatcher {
    /// Delivers one claimed event, renewing the claim while it keeps trying, and settles it
    /// unless the replica stops first (then another replica delivers it once the claim lapses).
    async fn dispatch(
        &self,
        client: &reqwest::Client,
        queued: &str,
        stop: &mut watch::Receiver<bool>,
    ) {
        let Some(event) = Event::parse(queued) else {
            log::error!("alerts: dropping an event this build cannot read");
            let _ = self.store.settle_event(queued, 0).await;
            return;
        };
        let body = payload(&event, self.webhook.content.as_deref());
        let redeliver_ms = self.webhook.redeliver_after.as_millis() as u64;
        let renew = async {
            loop {
                tokio::time::sleep(self.webhook.redeliver_after / 3).await;
                if let Err(error) = self.store.settle_event(queued, redeliver_ms).await {
                    log::warn!("alerts: cannot renew a claim: {error}");
                }
            }
        };
        let outcome = tokio::select! {
            outcome = deliver(client, &self.webhook.url, &body, stop) => outcome,
            never = renew => never,
        };
        if outcome == Delivery::Stopped {
            return;
        }
        if outcome != Delivery::Delivered {
            log::error!(
                "alert {} for shard {:?} not delivered ({outcome:?})",
                event.kind.as_str(),
                event.shard_id
            );
        }
        if let Err(error) = self.store.settle_event(queued, 0).await {
            // The claim lapses by itself; the event may then be delivered twice (same id).
            log::warn!("alerts: cannot settle a delivered event: {error}");
        }
    }
}

/// POSTs `body` to the webhook, retrying transient failures (network, timeouts, 5xx, 429) with
/// exponential backoff; a 429's `Retry-After` replaces the backoff when it is longer.
pub async fn deliver(
    client: &reqwest::Client,
    url: &Secret,
    body: &Value,
    stop: &mut watch::Receiver<bool>,
) -> Delivery {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let wait = match client.post(url.expose()).json(body).send().await {
            Ok(response) if response.status().is_success() => return Delivery::Delivered,
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                let header = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let text = response.bytes().await.unwrap_or_default();
                let after = outbound::retry_after(header.as_deref(), &text).unwrap_or_default();
                log::warn!("webhook rate-limited (attempt {attempt}/{MAX_ATTEMPTS})");
                after.max(backoff)
            }
            Ok(response) if response.status().is_client_error() => {
                log::error!(
                    "webhook refused an alert with {}: check WEBHOOK_URL",
                    response.status()
                );
                return Delivery::GaveUp;
            }
            Ok(response) => {
                log::warn!(
                    "webhook answered {} (attempt {attempt}/{MAX_ATTEMPTS})",
                    response.status()
                );
                backoff
            }
            Err(error) => {
                log::warn!(
                    "webhook: {} (attempt {attempt}/{MAX_ATTEMPTS})",
                    outbound::describe(&error)
                );
                backoff
            }
        };
        if attempt == MAX_ATTEMPTS {
            break;
        }
        if sleep_or_stop(jitter(wait), stop).await {
            return Delivery::Stopped;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Delivery::GaveUp
}

/// Up to 20% more, so replicas that failed together do not retry in lockstep.
fn jitter(wait: Duration) -> Duration {
    use rand::RngExt;
    wait.mul_f64(1.0 + rand::rng().random_range(0.0..0.2))
}

/// Asks the store to free expired leases every [`REAP_EVERY`], until `stop`.
pub struct Reaper {
    store: Arc<Store>,
}

impl Reaper {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.store.reap_expired().await {
                Ok(0) => {}
                Ok(freed) => log::info!("freed {freed} expired lease(s)"),
                Err(error) => log::warn!("cannot reap expired leases: {error}"),
            }
            if sleep_or_stop(REAP_EVERY, &mut stop).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn event(kind: EventKind, shard_id: Option<u32>) -> Event {
        Event {
            id: Some(7),
            kind,
            shard_id,
            generation: 2,
            max_shards: Some(6),
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        }
    }

    fn field<'a>(message: &'a Value, name: &str) -> &'a str {
        message["embeds"][0]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|field| field["name"] == name)
            .and_then(|field| field["value"].as_str())
            .unwrap_or_else(|| panic!("no field {name}"))
    }

    #[test]
    fn an_alert_names_the_event_and_the_shard() {
        let message = payload(&event(EventKind::Expire, Some(3)), Some("<@&42>"));
        assert_eq!(message["content"], "<@&42>");
        assert_eq!(field(&message, "Event"), "expire");
        assert_eq!(field(&message, "Shard ID"), "3");
        assert_eq!(field(&message, "Shards"), "6");
        assert_eq!(
            message["embeds"][0]["timestamp"],
            "2026-01-02T03:04:05.000Z"
        );
    }

    #[test]
    fn an_alert_without_a_shard_has_a_placeholder_and_no_content() {
        let message = payload(&event(EventKind::ReshardStarted, None), None);
        assert!(message.get("content").is_none());
        assert_eq!(field(&message, "Event"), "reshard_started");
        // Discord refuses empty field values.
        assert_eq!(field(&message, "Shard ID"), "-");
    }
}
