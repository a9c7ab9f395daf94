#![allow(dead_code)] // each test module uses its own part of the harness

//! The test harness: real replicas on port 0, on the shared `redis-server`, one of a test's own
//! (both from tests/support) or the in-process store, and requests to them.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use reqwest::header::AUTHORIZATION;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use shardman::config::{Secret, Settings};
use shardman::startup::Application;

use crate::support::redis::{RedisServer, shared_redis};

pub const SECRET: &str = "test-secret";

/// A fresh key prefix, so tests sharing one Redis never see each other's keys.
pub fn fresh_prefix() -> String {
    crate::support::redis::fresh_prefix("test")
}

/// Which store a test app runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// The shared Redis server, under a fresh prefix.
    Redis,
    /// The in-process store (no `REDIS_URL`).
    Memory,
}

/// Settings for a test replica: the test secret, one shard, a 60 s lease, the given backend.
pub fn settings(backend: Backend) -> Settings {
    // reqwest is built with rustls and no provider of its own: any client needs this first.
    shardman::outbound::install_crypto_provider();
    Settings {
        secret: Some(Secret::new(SECRET)),
        host: "127.0.0.1".into(),
        port: 0,
        key_prefix: fresh_prefix(),
        redis_url: match backend {
            Backend::Redis => Some(shared_redis().url()),
            Backend::Memory => None,
        },
        // The test Redis is young: do not treat that as a data loss (tests/api/data_loss.rs does).
        quarantine_fresh_redis: false,
        ..Settings::default()
    }
}

/// A running replica and an HTTP client that speaks to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

/// Starts a replica on a free port and returns once it serves.
pub async fn spawn_app(settings: Settings) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let application = Application::build_with_listener(settings, listener)
        .await
        .expect("build app");
    let address = format!("http://127.0.0.1:{}", application.port());
    tokio::spawn(application.run_until_stopped());
    TestApp::at(address)
}

/// A replica a test stops again (to restart it with other settings, as a rolling deploy does).
pub struct RunningApp {
    pub app: TestApp,
    server: actix_web::dev::ServerHandle,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningApp {
    /// Starts a replica on a free port and returns once it serves.
    pub async fn start(settings: Settings) -> RunningApp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let application = Application::build_with_listener(settings, listener)
            .await
            .expect("build app");
        let app = TestApp::at(format!("http://127.0.0.1:{}", application.port()));
        let server = application.server_handle();
        let running = tokio::spawn(application.run_until_stopped());
        RunningApp {
            app,
            server,
            running,
        }
    }

    /// Lets requests under way finish, stops the server, then its jobs.
    pub async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.running.await;
    }
}

/// `count` replicas sharing one Redis and one key prefix, as behind a load balancer.
pub async fn spawn_replicas(count: usize, settings: Settings) -> Vec<TestApp> {
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(spawn_app(settings.clone()).await);
    }
    replicas
}

/// A granted shard, as `/connect` reports it.
#[derive(Clone, Debug)]
pub struct Claim {
    pub shard_id: u64,
    pub max_shards: u64,
    pub session_id: String,
    pub fence: u64,
}

/// Sends a request; a transport error fails the test.
async fn send(request: RequestBuilder) -> Response {
    request.send().await.expect("request")
}

impl TestApp {
    /// Whatever serves at `address` (`http://127.0.0.1:<port>`), through a client that gives up
    /// after 10 s.
    pub fn at(address: String) -> TestApp {
        TestApp {
            address,
            client: client(Duration::from_secs(10)),
        }
    }

    /// The same replica, seen through a client that gives up after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> TestApp {
        TestApp {
            address: self.address.clone(),
            client: client(timeout),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `method path` with the test secret: every authenticated request of the tests starts here.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(method, path, SECRET)
    }

    /// `method path` with `Authorization: <authorization>` exactly as given (a wrong secret, the
    /// `Bearer` form, another replica's secret).
    pub fn request_as(&self, method: Method, path: &str, authorization: &str) -> RequestBuilder {
        self.anonymous(method, path)
            .header(AUTHORIZATION, authorization)
    }

    /// `method path` without any `Authorization` header.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        send(self.request(Method::GET, path)).await
    }

    pub async fn get_anonymous(&self, path: &str) -> Response {
        send(self.anonymous(Method::GET, path)).await
    }

    /// `GET path` with `Authorization: <authorization>` exactly as given.
    pub async fn get_as(&self, path: &str, authorization: &str) -> Response {
        send(self.request_as(Method::GET, path, authorization)).await
    }

    /// `POST path` with a form body and the secret.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        send(self.request(Method::POST, path).form(fields)).await
    }

    /// `POST path` with a JSON body and the secret.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        send(self.request(Method::POST, path).json(body)).await
    }

    /// `POST path` with these exact bytes and content type, and the secret.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        send(
            self.request(Method::POST, path)
                .header("Content-Type", content_type)
                .body(body),
        )
        .await
    }

    /// `POST path` without any `Authorization` header.
    pub async fn post_form_anonymous(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        send(self.anonymous(Method::POST, path).form(fields)).await
    }

    pub async fn connect(&self) -> Response {
        self.get("/connect").await
    }

    /// Connects and expects a grant.
    pub async fn claim(&self) -> Claim {
        let response = self.connect().await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "connect should grant a shard"
        );
        let body: Value = response.json().await.expect("json");
        Claim {
            shard_id: body["shard_id"].as_u64().expect("shard_id"),
            max_shards: body["max_shards"].as_u64().expect("max_shards"),
            session_id: body["session_id"].as_str().expect("session_id").into(),
            fence: body["fence"].as_u64().expect("fence"),
        }
    }

    /// `POST /beat` as the documented Python client sends it: a form.
    pub async fn beat_form(&self, fields: &[(&str, &str)]) -> Response {
        self.post_form("/beat", fields).await
    }

    pub async fn beat_json(&self, body: &Value) -> Response {
        self.post_json("/beat", body).await
    }

    pub async fn beat(&self, session_id: &str) -> Response {
        self.beat_form(&[("session_id", session_id)]).await
    }

    pub async fn disconnect(&self, session_id: &str) -> Response {
        self.get(&format!("/disconnect?session_id={session_id}"))
            .await
    }

    pub async fn status(&self) -> Value {
        let response = self.get("/status").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// `/status` with the secret; `None` when there is no such shard held.
    pub async fn shard_status(&self, shard_id: u64) -> Option<Value> {
        let status = self.status().await;
        status["shards"]
            .as_array()
            .expect("shards")
            .iter()
            .find(|shard| shard["shard_id"].as_u64() == Some(shard_id))
            .cloned()
    }
}

/// The shard ids `/status` lists as held.
pub fn held_ids(status: &Value) -> Vec<u64> {
    status["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["shard_id"].as_u64().expect("shard_id"))
        .collect()
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one conformance case against both stores: `both_stores!(case)` expands to a module `case`
/// with the tests `case::on_redis` and `case::in_process`, each calling `case(Backend)`.
macro_rules! both_stores {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn on_redis() {
                    super::$case($crate::helpers::Backend::Redis).await;
                }

                #[tokio::test]
                async fn in_process() {
                    super::$case($crate::helpers::Backend::Memory).await;
                }
            }
        )+
    };
}
pub(crate) use both_stores;

/// Settings for a replica on a Redis server of the test's own (one it pauses, stops or flushes).
pub fn settings_on(redis: &RedisServer) -> Settings {
    Settings {
        redis_url: Some(redis.url()),
        ..settings(Backend::Redis)
    }
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// Asserts the status code and returns the JSON body.
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Asserts a `{"detail": "<message>"}` error.
pub async fn expect_detail(response: Response, status: StatusCode, message: &str) {
    let body = expect_json(response, status).await;
    assert_eq!(body, serde_json::json!({ "detail": message }));
}

/// Asserts a FastAPI 422 and returns the `loc` of each issue, as `["body", "guild_count"]`-like
/// vectors of JSON values, after checking every issue has `loc`, `msg` and `type`.
pub async fn expect_validation(response: Response) -> Vec<Vec<Value>> {
    let body = expect_json(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let issues = body["detail"]
        .as_array()
        .expect("detail is a list of issues");
    assert!(!issues.is_empty(), "a 422 names at least one issue");
    issues
        .iter()
        .map(|issue| {
            assert!(issue["msg"].is_string(), "issue without msg: {issue}");
            assert!(issue["type"].is_string(), "issue without type: {issue}");
            issue["loc"].as_array().expect("loc").clone()
        })
        .collect()
}

/// The `type` of the issue whose `loc` is `loc` in a 422 body.
pub fn issue_type<'a>(body: &'a Value, loc: &[&str]) -> Option<&'a str> {
    body["detail"].as_array()?.iter().find_map(|issue| {
        let matches = issue["loc"].as_array().is_some_and(|parts| {
            parts
                .iter()
                .map(Value::as_str)
                .eq(loc.iter().map(|p| Some(*p)))
        });
        matches.then(|| issue["type"].as_str()).flatten()
    })
}

/// `loc` written as the test expects it.
pub fn loc(parts: &[&str]) -> Vec<Value> {
    parts
        .iter()
        .map(|part| Value::String((*part).into()))
        .collect()
}

/// The Redis key `{prefix}:<name>` of a deployment (the key layout is described in
/// migrations-lua/includes/common.lua).
pub fn redis_key(prefix: &str, name: &str) -> String {
    format!("{{{prefix}}}:{name}")
}

/// The whole seconds of a response's `Retry-After` header.
pub fn retry_after_seconds(response: &Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .expect("Retry-After is text")
        .parse()
        .expect("Retry-After is whole seconds")
}
