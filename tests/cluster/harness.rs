#![allow(dead_code)] // each scenario uses its own part of the harness

//! Replicas of the service in this test process (on port 0, as tests/api runs them) and requests
//! to them (the `shardman-load` runs come from tests/support).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::AUTHORIZATION;
use serde_json::Value;
use shardman::bots::Reloader;
use shardman::config::{Secret, Settings};
use shardman::startup::Application;
use tokio::sync::Mutex;

pub const SECRET: &str = "cluster-secret";

/// One scenario at a time: each starts a cluster of six nodes, and the machine is small. (An async
/// mutex: each test holds it across its awaits, on a runtime of its own.)
static SERIAL: Mutex<()> = Mutex::const_new(());

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Settings of a bot on the cluster `seeds` under `prefix`.
pub fn settings(seeds: &str, prefix: &str, max_shards: u32, max_seconds: u64) -> Settings {
    shardman::outbound::install_crypto_provider();
    Settings {
        secret: Some(Secret::new(SECRET)),
        host: "127.0.0.1".into(),
        port: 0,
        key_prefix: prefix.into(),
        redis_cluster: seeds.split(',').map(str::to_owned).collect(),
        redis_timeout_ms: 500,
        max_shards,
        max_seconds,
        // The cluster was just created: its youth is no data loss.
        quarantine_fresh_redis: false,
        ..Settings::default()
    }
}

/// A replica serving in this process, and a client for it.
#[derive(Clone)]
pub struct App {
    pub url: String,
    client: reqwest::Client,
}

impl App {
    pub async fn spawn(settings: Settings) -> App {
        Self::spawn_reloadable(settings).await.0
    }

    /// A replica, and what reloads its `BOTS_FILE` (as SIGHUP would).
    pub async fn spawn_reloadable(settings: Settings) -> (App, Reloader) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let application = Application::build_with_listener(settings, listener)
            .await
            .expect("build app");
        let url = format!("http://127.0.0.1:{}", application.port());
        let reloader = application.reloader();
        tokio::spawn(application.run_until_stopped());
        let app = App {
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        (app, reloader)
    }

    pub async fn many(count: usize, settings: Settings) -> Vec<App> {
        let mut apps = Vec::new();
        for _ in 0..count {
            apps.push(App::spawn(settings.clone()).await);
        }
        apps
    }

    /// `GET path` with the secret: the status and the JSON body (`Null` when there is none).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .header(AUTHORIZATION, SECRET)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn disconnect(&self, session_id: &str) -> u16 {
        self.post_session("/disconnect", session_id).await
    }

    pub async fn beat(&self, session_id: &str) -> u16 {
        self.post_session("/beat", session_id).await
    }

    /// `POST path` with the secret and a form naming the session: the status.
    async fn post_session(&self, path: &str, session_id: &str) -> u16 {
        self.client
            .post(format!("{}{path}", self.url))
            .header(AUTHORIZATION, SECRET)
            .form(&[("session_id", session_id)])
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }
}
