#![allow(dead_code)] // each scenario uses its own part of the harness

//! Replicas of the service in this test process (on port 0, as tests/api runs them), requests to
//! them, and `shardman-load` runs for the safety checker.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::AUTHORIZATION;
use serde_json::Value;
use shardman::config::{Secret, Settings};
use shardman::startup::{Application, Reloader};
use tokio::sync::Mutex;

use crate::support::process::{Scratch, die_with_parent};

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

    pub async fn beat(&self, session_id: &str) -> u16 {
        self.client
            .post(format!("{}/beat", self.url))
            .header(AUTHORIZATION, SECRET)
            .form(&[("session_id", session_id)])
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }
}

/// A `shardman-load` run in the background against `urls`.
pub struct Load {
    child: Child,
    json: PathBuf,
    dir: Scratch,
}

impl Load {
    pub fn start(urls: &[String], args: &[&str]) -> Self {
        let dir = Scratch::new("load");
        let json = dir.0.join("report.json");
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardman-load"));
        command
            .arg("--target")
            .arg(urls.join(","))
            .args(["--secret", SECRET])
            .arg("--json")
            .arg(&json)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut command);
        Self {
            child: command.spawn().expect("shardman-load binary"),
            json,
            dir,
        }
    }

    /// Waits (without blocking the runtime) for the run to end and returns its JSON report.
    pub async fn finish(mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("shardman-load did not finish within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&self.json).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default();
            panic!("shardman-load wrote no report: {log}")
        });
        serde_json::from_str(&text).expect("report is JSON")
    }
}

/// How many requests of the load report's `route` ended with each status (`transport` for none).
pub fn statuses(report: &Value, route: &str) -> Vec<(String, u64)> {
    report["routes"][route]["statuses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, count)| (status.clone(), count.as_u64().unwrap_or(0)))
        .collect()
}

/// Requests of the report that failed (a 5xx or no answer), by status.
pub fn failures(report: &Value) -> Vec<(String, u64)> {
    ["connect", "beat", "disconnect"]
        .iter()
        .flat_map(|route| statuses(report, route))
        .filter(|(status, _)| status == "transport" || status.starts_with('5'))
        .collect()
}

pub fn number(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}
