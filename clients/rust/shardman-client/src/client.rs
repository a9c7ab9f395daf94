//! The HTTP client for shardman's API: connect, beat, identify, disconnect, with retries.

use crate::answers::{
    Answer, BeatAck, Claim, Resume, decode_beat, decode_connect, decode_disconnect, decode_identify,
};
use crate::backoff::{Backoff, CONNECT_WAIT, no_shards_available_delay};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long one request may take before it counts as a network error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// 429 or a 5xx: try again, not before `retry_after`.
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

/// A client for one shardman service.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// How long [`Client::claim`] asks `/connect` to wait for a shard to become free.
    connect_wait: Duration,
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
            connect_wait: CONNECT_WAIT,
        })
    }

    /// How long [`Client::claim`] asks `/connect` to wait for a shard to become free (30 s by
    /// default; zero: ask without waiting).
    pub fn with_connect_wait(mut self, wait: Duration) -> Self {
        self.connect_wait = wait;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One `GET /connect`.
    pub async fn connect(&self) -> Result<Claim, Error> {
        let requested_at = Instant::now();
        let answer = read(self.http.get(self.url("/connect"))).await?;
        decode_connect(&answer, requested_at, Instant::now())
    }

    /// One `GET /connect?wait=<wait>`: while every shard is held, shardman answers as soon as one
    /// is free (first come first served), or 401 once `wait` (up to 60 s) has passed.
    pub async fn connect_waiting(&self, wait: Duration) -> Result<Claim, Error> {
        let requested_at = Instant::now();
        let url = self.url(&format!("/connect?wait={}", wait.as_secs_f64()));
        let answer = read(self.http.get(url).timeout(wait + REQUEST_TIMEOUT)).await?;
        decode_connect(&answer, requested_at, Instant::now())
    }

    /// `GET /connect?wait=30` until it grants a claim: after a 401 that came after the whole wait
    /// at once, after one that came back sooner (a shardman without `wait`, a replica shutting
    /// down) about a second later, after 429/5xx/network errors with exponential backoff (capped
    /// at 30 s) but never before the server's `Retry-After`. Returns the errors retrying cannot
    /// fix (403, other answers).
    pub async fn claim(&self) -> Result<Claim, Error> {
        let mut backoff = Backoff::default();
        loop {
            let asked_at = Instant::now();
            let attempt = if self.connect_wait.is_zero() {
                self.connect().await
            } else {
                self.connect_waiting(self.connect_wait).await
            };
            match attempt {
                Ok(claim) => return Ok(claim),
                Err(Error::NoShardsAvailable) => {
                    backoff.reset();
                    let waited_out =
                        !self.connect_wait.is_zero() && asked_at.elapsed() >= self.connect_wait / 2;
                    if !waited_out {
                        tracing::debug!("no shards available; asking again in about a second");
                        tokio::time::sleep(no_shards_available_delay()).await;
                    }
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
        let body = BeatBody {
            session_id,
            guild_count: first.and_then(|r| r.guild_count),
            latency: first.and_then(|r| r.latency),
            resume: first.and_then(|r| r.resume.as_ref()),
            shards: reports,
            ready: (!reports.is_empty()).then(|| reports.iter().all(|r| r.resume.is_some())),
        };
        let sent_at = Instant::now();
        let request = self
            .http
            .post(self.url("/beat"))
            .header("prefer", "return=representation")
            .json(&body);
        let answer = read(request).await?;
        decode_beat(&answer, sent_at, Instant::now())
    }

    /// One `POST /identify` for `shard_id` of the session's group: how long to wait before its
    /// next IDENTIFY.
    pub async fn identify(&self, session_id: &str, shard_id: u32) -> Result<Duration, Error> {
        let body = SessionBody {
            session_id,
            shard_id: Some(shard_id),
        };
        let answer = read(self.http.post(self.url("/identify")).json(&body)).await?;
        decode_identify(&answer)
    }

    /// `POST /identify` until it answers, retrying 429/5xx/network errors (and 403/other answers,
    /// which a misconfigured proxy can give for a while) with backoff; the lease view decides when
    /// to give up. 404 and 401 are returned.
    pub async fn identify_retrying(
        &self,
        session_id: &str,
        shard_id: u32,
    ) -> Result<Duration, Error> {
        let mut backoff = Backoff::default();
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
        let body = SessionBody {
            session_id,
            shard_id: None,
        };
        let answer = read(self.http.post(self.url("/disconnect")).json(&body)).await?;
        decode_disconnect(&answer)
    }
}

/// Sends the request and reads its answer, whatever the status.
async fn read(request: reqwest::RequestBuilder) -> Result<Answer, Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}
