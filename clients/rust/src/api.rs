//! The core client for shardman's HTTP API: typed answers, typed errors, retries.

use crate::backoff::Backoff;
use reqwest::{
    StatusCode,
    header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one request may take before it counts as a network error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `/connect` answering 401 "No Shards Available" is retried after about this long.
const NO_SHARDS_RETRY: Duration = Duration::from_secs(1);
/// Exponential backoff on 503/429/network errors never waits longer than this (unless the server's
/// `Retry-After` asks for more).
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(30);
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(500);

/// Discord resume data, as a beat reports it and as `/connect` hands it to the next holder.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct Resume {
    /// Discord's session id (from READY).
    pub session_id: String,
    /// The last sequence number received.
    pub sequence: u64,
    /// Where to RESUME (READY's `resume_gateway_url`).
    pub resume_gateway_url: String,
}

/// Whether a generation is serving (`active`) or waiting to take over in a reshard (`standby`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Active,
    Standby,
    /// A state this client does not know (a newer shardman).
    #[serde(other)]
    Unknown,
}

/// The answer of `GET /connect`: the shard group this process now holds.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The claimed shard ids (one per shard of the group; `[shard_id]` without groups).
    pub shard_ids: Vec<u32>,
    /// The shard count to identify with (shardman's `max_shards`).
    pub shard_count: u32,
    /// The shardman session; send it with every beat, identify and disconnect.
    pub session_id: String,
    /// The generation of the shard plan this claim belongs to.
    pub generation: u64,
    /// `standby` while a reshard is under way, else `active`.
    pub state: State,
    /// Per shard: how long after the answer its first IDENTIFY may be sent.
    pub sleep_durations: Vec<Duration>,
    /// Per shard: the previous holder's resume data, if it can be RESUMEd.
    pub resumes: Vec<Option<Resume>>,
    /// The lease length (`MAX_SECONDS`).
    pub lease: Duration,
    /// How often to beat.
    pub beat_interval: Duration,
    /// Discord's gateway URL as shardman read it (`null` without `BOT_TOKEN`).
    pub gateway_url: Option<String>,
    /// The fencing token of this grant.
    pub fence: u64,
    /// When the `/connect` request was sent (the lease view counts from here).
    pub requested_at: Instant,
    /// When its answer arrived (the IDENTIFY slots count from here).
    pub received_at: Instant,
}

impl Claim {
    /// The longest wait for an IDENTIFY slot in this group.
    pub fn longest_sleep(&self) -> Duration {
        self.sleep_durations
            .iter()
            .copied()
            .max()
            .unwrap_or(Duration::ZERO)
    }
}

/// `/connect`'s JSON, including the fields older shardman versions left out.
#[derive(Deserialize)]
struct ConnectAnswer {
    shard_id: u32,
    max_shards: u32,
    session_id: String,
    #[serde(default)]
    fence: u64,
    #[serde(default)]
    generation: u64,
    #[serde(default)]
    state: State,
    #[serde(default)]
    sleep_duration: f64,
    #[serde(default)]
    resume: Option<Resume>,
    shard_ids: Option<Vec<u32>>,
    sleep_durations: Option<Vec<f64>>,
    resumes: Option<Vec<Option<Resume>>>,
    lease_seconds: Option<f64>,
    beat_interval: Option<f64>,
    #[serde(default)]
    gateway_url: Option<String>,
}

impl ConnectAnswer {
    fn into_claim(self, requested_at: Instant, received_at: Instant) -> Claim {
        // shardman's default MAX_SECONDS, for servers that do not say.
        let lease = self.lease_seconds.unwrap_or(60.0);
        let shard_ids = self.shard_ids.unwrap_or_else(|| vec![self.shard_id]);
        let sleeps = self
            .sleep_durations
            .unwrap_or_else(|| vec![self.sleep_duration]);
        let mut resumes = self.resumes.unwrap_or_else(|| vec![self.resume]);
        resumes.resize(shard_ids.len(), None);
        let mut sleep_durations: Vec<Duration> = sleeps.into_iter().map(seconds).collect();
        sleep_durations.resize(shard_ids.len(), Duration::ZERO);
        Claim {
            shard_ids,
            shard_count: self.max_shards,
            session_id: self.session_id,
            generation: self.generation,
            state: self.state,
            sleep_durations,
            resumes,
            lease: seconds(lease),
            beat_interval: seconds(self.beat_interval.unwrap_or(lease / 3.0)),
            gateway_url: self.gateway_url,
            fence: self.fence,
            requested_at,
            received_at,
        }
    }
}

/// The answer of a beat sent with `Prefer: return=representation`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
pub struct BeatAnswer {
    /// The group's first shard id.
    pub shard_id: u32,
    /// The shard count of the session's generation.
    #[serde(rename = "max_shards")]
    pub shard_count: u32,
    /// The session's generation.
    #[serde(default)]
    pub generation: u64,
    /// `active` or `standby`.
    #[serde(default)]
    pub state: State,
    /// The fencing token.
    #[serde(default)]
    pub fence: u64,
}

/// An acknowledged beat.
#[derive(Clone, Debug)]
pub struct BeatAck {
    /// When the beat was sent: the lease view runs `lease` from here.
    pub sent_at: Instant,
    /// The representation (`None` from a server that answers 204).
    pub answer: Option<BeatAnswer>,
}

/// What a beat reports for one shard.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShardReport {
    /// The reporting shard.
    pub shard_id: u32,
    /// Guilds the shard sees (left out until known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guild_count: Option<u64>,
    /// Gateway latency in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    /// The shard's Discord session, once it has one: the next holder RESUMEs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// The JSON body of `POST /beat`: per-shard reports, and the first shard's as flat fields (for
/// servers without shard groups).
#[derive(Serialize)]
struct BeatBody<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    guild_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<&'a Resume>,
    shards: &'a [ShardReport],
    /// Connected to Discord once every shard has a session: only then may this holder complete a
    /// reshard (shardman retires the old generation on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
}

#[derive(Serialize)]
struct SessionBody<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<u32>,
}

#[derive(Deserialize)]
struct IdentifyAnswer {
    sleep_duration: f64,
}

/// Why a request to shardman failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/connect` answered 401: every shard id is held. Retry later.
    #[error("no shards available (401)")]
    NoShardsAvailable,
    /// A beat or `/identify` answered 401: the session's generation was retired; stop and exit.
    #[error("session retired (401): its generation was replaced")]
    Retired,
    /// 404: the session is unknown, expired or released; stop its shards.
    #[error("session not found (404)")]
    SessionLost,
    /// 403: shardman refused the secret.
    #[error("forbidden (403): shardman refused the secret")]
    Forbidden,
    /// 503 or 429 (or another 5xx): try again, not before `retry_after`.
    #[error("shardman unavailable ({status}), retry after {retry_after:?}")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (connection refused, timeout, bad body).
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// Any other answer.
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// The client could not be set up (a secret that is not a valid header value).
    #[error("bad configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later can succeed (503/429/5xx, network errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Transport(_))
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Route {
    Connect,
    Session,
}

/// A client for one shardman service.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Session ids shardman re-signed during a secret rotation (README "Rotating the secret"), by
    /// the id the caller knows: sent instead of it from then on.
    resigned: Arc<Mutex<HashMap<String, String>>>,
}

impl Client {
    /// A client for the shardman at `base_url` (e.g. `http://shardman:8000`) with its `SECRET`.
    pub fn new(base_url: &str, secret: &str) -> Result<Self, Error> {
        crate::install_crypto_provider();
        let mut auth =
            HeaderValue::from_str(secret).map_err(|e| Error::Config(format!("secret: {e}")))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert("accept", HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            resigned: Arc::default(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn resigned(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.resigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id to send for the session the caller knows as `session_id`.
    fn current_id(&self, session_id: &str) -> String {
        self.resigned()
            .get(session_id)
            .cloned()
            .unwrap_or_else(|| session_id.to_owned())
    }

    /// One `GET /connect`.
    pub async fn connect(&self) -> Result<Claim, Error> {
        let requested_at = Instant::now();
        let response = self.http.get(self.url("/connect")).send().await?;
        let answer: ConnectAnswer = parse(response, Route::Connect).await?;
        Ok(answer.into_claim(requested_at, Instant::now()))
    }

    /// `GET /connect` until it grants a claim: after a 401 (every shard held) about a second later,
    /// after 503/429/network errors with exponential backoff (capped at 30 s) but never before the
    /// server's `Retry-After`. Returns the errors retrying cannot fix (403, other answers).
    pub async fn claim(&self) -> Result<Claim, Error> {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        loop {
            match self.connect().await {
                Ok(claim) => return Ok(claim),
                Err(Error::NoShardsAvailable) => {
                    backoff.reset();
                    tracing::debug!("no shards available; asking again in about a second");
                    tokio::time::sleep(crate::backoff::jittered(NO_SHARDS_RETRY)).await;
                }
                Err(e) if e.is_retryable() => {
                    let wait = backoff.next(e.retry_after());
                    tracing::warn!(error = %e, ?wait, "connect failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One `POST /beat` with `Prefer: return=representation`; `reports` has one entry per shard of
    /// the group, the first one also sent as flat fields.
    pub async fn beat(&self, session_id: &str, reports: &[ShardReport]) -> Result<BeatAck, Error> {
        let first = reports.first();
        let sent = self.current_id(session_id);
        let body = BeatBody {
            session_id: &sent,
            guild_count: first.and_then(|r| r.guild_count),
            latency: first.and_then(|r| r.latency),
            resume: first.and_then(|r| r.resume.as_ref()),
            shards: reports,
            ready: (!reports.is_empty()).then(|| reports.iter().all(|r| r.resume.is_some())),
        };
        let sent_at = Instant::now();
        let response = self
            .http
            .post(self.url("/beat"))
            .header("prefer", "return=representation")
            .json(&body)
            .send()
            .await?;
        let resigned = response
            .headers()
            .get("session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let answer = parse_optional(response, Route::Session).await?;
        if let Some(resigned) = resigned {
            self.resigned().insert(session_id.to_owned(), resigned);
        }
        Ok(BeatAck { sent_at, answer })
    }

    /// One `POST /identify` for `shard_id` of the session's group: how long to wait before its
    /// next IDENTIFY.
    pub async fn identify(&self, session_id: &str, shard_id: u32) -> Result<Duration, Error> {
        let sent = self.current_id(session_id);
        let body = SessionBody {
            session_id: &sent,
            shard_id: Some(shard_id),
        };
        let response = self
            .http
            .post(self.url("/identify"))
            .json(&body)
            .send()
            .await?;
        let answer: IdentifyAnswer = parse(response, Route::Session).await?;
        Ok(seconds(answer.sleep_duration))
    }

    /// `POST /identify` until it answers, retrying 503/429/network errors (and 403/other answers,
    /// which a misconfigured proxy can give for a while) with backoff; the lease view decides when
    /// to give up. 404 and 401 are returned.
    pub async fn identify_retrying(
        &self,
        session_id: &str,
        shard_id: u32,
    ) -> Result<Duration, Error> {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        loop {
            match self.identify(session_id, shard_id).await {
                Ok(sleep) => return Ok(sleep),
                Err(e @ (Error::SessionLost | Error::Retired)) => return Err(e),
                Err(e) => {
                    let wait = backoff.next(e.retry_after());
                    tracing::warn!(error = %e, shard_id, ?wait, "identify failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One `POST /disconnect`: gives the session's shards back at once.
    pub async fn disconnect(&self, session_id: &str) -> Result<(), Error> {
        let sent = self
            .resigned()
            .remove(session_id)
            .unwrap_or_else(|| session_id.to_owned());
        let body = SessionBody {
            session_id: &sent,
            shard_id: None,
        };
        let response = self
            .http
            .post(self.url("/disconnect"))
            .json(&body)
            .send()
            .await?;
        parse_optional::<serde_json::Value>(response, Route::Session)
            .await
            .map(drop)
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

async fn parse<T: DeserializeOwned>(response: reqwest::Response, route: Route) -> Result<T, Error> {
    let response = check(response, route).await?;
    Ok(response.json().await?)
}

async fn parse_optional<T: DeserializeOwned>(
    response: reqwest::Response,
    route: Route,
) -> Result<Option<T>, Error> {
    let response = check(response, route).await?;
    if response.status() == StatusCode::NO_CONTENT {
        return Ok(None);
    }
    let text = response.text().await?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Unexpected {
            status: 200,
            body: format!("{e}: {text}"),
        })
}

async fn check(response: reqwest::Response, route: Route) -> Result<reqwest::Response, Error> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let error = match status.as_u16() {
        401 => match route {
            Route::Connect => Error::NoShardsAvailable,
            Route::Session => Error::Retired,
        },
        403 => Error::Forbidden,
        404 if matches!(route, Route::Session) => Error::SessionLost,
        429 | 500..=599 => Error::Unavailable {
            status: status.as_u16(),
            retry_after: retry_after(response.headers()),
        },
        code => Error::Unexpected {
            status: code,
            body: response.text().await.unwrap_or_default(),
        },
    };
    Err(error)
}

/// `Retry-After` in seconds (shardman sends whole seconds; fractions are accepted too).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
}
