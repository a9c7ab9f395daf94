//! The HTTP side of a simulated bot process: the three routes, measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::report::{Outcome, Recorder, Route};

/// What `/connect` grants.
#[derive(Clone, Debug, Deserialize)]
pub struct Grant {
    pub shard_id: u64,
    pub session_id: String,
    #[serde(default)]
    pub fence: u64,
    #[serde(default)]
    pub generation: u64,
}

/// The answer to one request and when it was sent.
pub struct Answer<T> {
    pub sent: Instant,
    pub outcome: Outcome,
    pub value: Option<T>,
}

pub struct Client {
    http: reqwest::Client,
    targets: Vec<String>,
    secret: String,
    recorder: Arc<Recorder>,
    /// Bounds the requests in flight, so 10,000 processes do not open 10,000 sockets.
    in_flight: Semaphore,
}

impl Client {
    pub fn new(
        targets: Vec<String>,
        secret: String,
        recorder: Arc<Recorder>,
        concurrency: usize,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(concurrency)
            .build()?;
        Ok(Self {
            http,
            targets: targets
                .into_iter()
                .map(|target| target.trim_end_matches('/').to_owned())
                .collect(),
            secret,
            recorder,
            in_flight: Semaphore::new(concurrency.max(1)),
        })
    }

    pub fn targets(&self) -> usize {
        self.targets.len()
    }

    fn url(&self, target: usize, path: &str) -> String {
        format!("{}{}", self.targets[target % self.targets.len()], path)
    }

    async fn send<T>(
        &self,
        route: Route,
        request: reqwest::RequestBuilder,
        read: impl AsyncFnOnce(reqwest::Response) -> Option<T>,
    ) -> Answer<T> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("semaphore never closes");
        let sent = Instant::now();
        let (outcome, value) = match request.header("Authorization", &self.secret).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let value = if response.status().is_success() {
                    read(response).await
                } else {
                    // Drain the body so the connection goes back to the pool.
                    let _ = response.bytes().await;
                    None
                };
                (Outcome::Status(status), value)
            }
            Err(_) => (Outcome::Transport, None),
        };
        self.recorder.request(route, sent, outcome);
        Answer {
            sent,
            outcome,
            value,
        }
    }

    pub async fn connect(&self, target: usize) -> Answer<Grant> {
        let request = self.http.get(self.url(target, "/connect"));
        self.send(Route::Connect, request, async |response| {
            response.json::<Grant>().await.ok()
        })
        .await
    }

    pub async fn beat(&self, target: usize, session_id: &str, guild_count: u64) -> Answer<()> {
        let guilds = guild_count.to_string();
        let request = self.http.post(self.url(target, "/beat")).form(&[
            ("session_id", session_id),
            ("guild_count", guilds.as_str()),
            ("latency", "0.042"),
        ]);
        self.send(Route::Beat, request, async |_| Some(())).await
    }

    pub async fn disconnect(&self, target: usize, session_id: &str) -> Answer<()> {
        let request = self
            .http
            .post(self.url(target, "/disconnect"))
            .form(&[("session_id", session_id)]);
        self.send(Route::Disconnect, request, async |_| Some(()))
            .await
    }
}
