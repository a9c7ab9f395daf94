//! The HTTP client for shardman's API: connect, beat, identify, disconnect, with retries.

use crate::answers::{
    Answer, BeatAck, Claim, Permit, Resume, decode_beat, decode_connect, decode_disconnect,
    decode_identify, decode_identify_confirm, decode_identify_permit,
};
use crate::backoff::{Backoff, CONNECT_WAIT, no_shards_available_delay};
use crate::usage::{ProcessUsage, default_process_label};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use crate::error::Error;

/// How long one request may take before it counts as a network error (a request that asks the
/// server to wait gets its wait on top).
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
    /// Gateway dispatches the shard's current session has received so far: its sequence number,
    /// which Discord raises by one with every dispatch (shardman turns it into events per second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<u64>,
    shards: &'a [ShardReport],
    /// Connected to Discord once every shard has a session: only then may this holder complete a
    /// reshard (shardman retires the old generation on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_bytes: Option<u64>,
    /// The label the session was claimed with: shardman keeps it only where a lease has none (one
    /// re-established after a Redis data loss).
    process: &'a str,
}

#[derive(Serialize)]
struct SessionBody<'a> {
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<u32>,
}

#[derive(Serialize)]
struct PermitBody<'a> {
    session_id: &'a str,
    shard_id: u32,
    /// Seconds the replica may hold the request until the shard's bucket opens.
    wait: f64,
}

/// A client for one shardman service.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The label `/connect` files this process's sessions under in shardman's `/status`.
    process: String,
    /// How long [`Client::claim`] asks `/connect` to wait for a shard to become free.
    connect_wait: Duration,
    /// Session ids shardman re-signed during a secret rotation (README "Rotating the secret"), by
    /// the id the caller knows: sent instead of it from then on. Shared by the client's clones.
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
            process: default_process_label(),
            connect_wait: CONNECT_WAIT,
            resigned: Arc::default(),
        })
    }

    /// The same client, filing this process's sessions under `label` (at most 128 printable
    /// characters) instead of `<hostname>:<pid>`.
    pub fn with_process(mut self, label: impl Into<String>) -> Self {
        self.process = label.into();
        self
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

    fn resigned(&self) -> MutexGuard<'_, HashMap<String, String>> {
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
        let answer = read(self.http.get(self.connect_url(None)?)).await?;
        decode_connect(&answer, requested_at, Instant::now())
    }

    /// `/connect` with this process's label, and `wait` when the claim may wait. Every claim
    /// IDENTIFYs by permits (`identify=permit`): no slot is booked at `/connect`, each IDENTIFY
    /// asks its permit right before it goes out ([`crate::IdentifyPacer`]).
    fn connect_url(&self, wait: Option<Duration>) -> Result<reqwest::Url, Error> {
        let mut url = reqwest::Url::parse(&self.url("/connect"))
            .map_err(|e| Error::Config(format!("url: {e}")))?;
        url.query_pairs_mut()
            .append_pair("process", &self.process)
            .append_pair("identify", "permit");
        if let Some(wait) = wait {
            url.query_pairs_mut()
                .append_pair("wait", &wait.as_secs_f64().to_string());
        }
        Ok(url)
    }

    /// One `GET /connect?wait=<wait>`: while every shard is held, shardman answers as soon as one
    /// is free (first come first served), or 401 once `wait` (up to 60 s) has passed.
    pub async fn connect_waiting(&self, wait: Duration) -> Result<Claim, Error> {
        let requested_at = Instant::now();
        let url = self.connect_url(Some(wait))?;
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
    /// the group, the first one also sent as flat fields; the process's CPU time, resident memory
    /// and label go with it.
    pub async fn beat(&self, session_id: &str, reports: &[ShardReport]) -> Result<BeatAck, Error> {
        let first = reports.first();
        let usage = ProcessUsage::now();
        let sent = self.current_id(session_id);
        let body = BeatBody {
            session_id: &sent,
            guild_count: first.and_then(|r| r.guild_count),
            latency: first.and_then(|r| r.latency),
            resume: first.and_then(|r| r.resume.as_ref()),
            events: first.and_then(|r| r.events),
            shards: reports,
            ready: (!reports.is_empty()).then(|| reports.iter().all(|r| r.resume.is_some())),
            cpu_seconds: usage.cpu_seconds,
            rss_bytes: usage.rss_bytes,
            process: &self.process,
        };
        let sent_at = Instant::now();
        let request = self
            .http
            .post(self.url("/beat"))
            .header("prefer", "return=representation")
            .json(&body);
        let (answer, resigned) = read_with_session_id(request).await?;
        let ack = decode_beat(&answer, sent_at, Instant::now())?;
        // Re-signed during a secret rotation: the new id is sent from now on.
        if let Some(resigned) = resigned {
            self.resigned().insert(session_id.to_owned(), resigned);
        }
        Ok(ack)
    }

    /// One `POST /identify` for `shard_id` of the session's group: how long to wait before its
    /// next IDENTIFY.
    pub async fn identify(&self, session_id: &str, shard_id: u32) -> Result<Duration, Error> {
        let sent = self.current_id(session_id);
        let body = SessionBody {
            session_id: &sent,
            shard_id: Some(shard_id),
        };
        let answer = read(self.http.post(self.url("/identify")).json(&body)).await?;
        decode_identify(&answer)
    }

    /// One `POST /identify/permit` for `shard_id` of the session's group: the replica holds it
    /// up to `wait` (at most 30 s) until the shard's bucket is open.
    pub async fn identify_permit(
        &self,
        session_id: &str,
        shard_id: u32,
        wait: Duration,
    ) -> Result<Permit, Error> {
        let sent = self.current_id(session_id);
        let body = PermitBody {
            session_id: &sent,
            shard_id,
            wait: wait.as_secs_f64(),
        };
        let request = self
            .http
            .post(self.url("/identify/permit"))
            .timeout(wait + REQUEST_TIMEOUT)
            .json(&body);
        decode_identify_permit(&read(request).await?)
    }

    /// One `POST /identify/confirm`: `shard_id`'s IDENTIFY was answered with READY, so its bucket opens
    /// 5 s from now rather than 8.1 s after the grant. Answers whether it moved the opening.
    pub async fn identify_confirm(&self, session_id: &str, shard_id: u32) -> Result<bool, Error> {
        let sent = self.current_id(session_id);
        let body = SessionBody {
            session_id: &sent,
            shard_id: Some(shard_id),
        };
        let answer = read(self.http.post(self.url("/identify/confirm")).json(&body)).await?;
        decode_identify_confirm(&answer)
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
        let answer = read(self.http.post(self.url("/disconnect")).json(&body)).await?;
        decode_disconnect(&answer)
    }
}

/// Sends the request and reads its answer, whatever the status.
async fn read(request: reqwest::RequestBuilder) -> Result<Answer, Error> {
    Ok(read_with_session_id(request).await?.0)
}

/// [`read`], and the `Session-Id` header: the session re-signed during a secret rotation.
async fn read_with_session_id(
    request: reqwest::RequestBuilder,
) -> Result<(Answer, Option<String>), Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let session_id = response
        .headers()
        .get("session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await?;
    let answer = Answer {
        status,
        retry_after,
        body,
    };
    Ok((answer, session_id))
}
