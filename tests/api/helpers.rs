#![allow(dead_code)] // each test module uses its own part of the harness

//! The test harness: real `redis-server` processes on free ports and real replicas on port 0.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Response, StatusCode};
use serde_json::Value;
use shardman::config::{Secret, Settings};
use shardman::startup::Application;

pub const SECRET: &str = "test-secret";

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server of this test's own, for tests that pause, stop or flush Redis.
    pub fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("shardman-test-redis-{port}-{}", unique()));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        kill_with_parent(&mut command);
        let child = command
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.try_query(&["PING"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command and returns its reply.
    pub fn query(&self, args: &[&str]) -> redis::Value {
        self.try_query(args)
            .unwrap_or_else(|error| panic!("redis {args:?}: {error}"))
    }

    fn try_query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut conn)
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("redis is running").id();
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }

    /// SIGSTOP: Redis keeps its sockets open but answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the server; its data is gone (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused server ignores SIGKILL until continued on some kernels' bookkeeping; be sure.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes the child die with the test process, even when the test binary is killed. The shared
/// server is spawned from a thread that lives as long as the process (PDEATHSIG follows the thread).
fn kill_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// One server for every test that does not disturb Redis; each test gets its own key prefix.
pub fn shared_redis() -> &'static RedisServer {
    static SHARED: OnceLock<&'static RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server: &'static RedisServer = Box::leak(Box::new(RedisServer::start()));
            sender.send(server).expect("send shared redis");
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("shared redis started")
    })
}

fn unique() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos() as u64)
        .unwrap_or_default();
    (std::process::id() as u64) << 40 ^ nanos << 8 ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// A fresh key prefix, so tests sharing one Redis never see each other's keys.
pub fn fresh_prefix() -> String {
    format!("test-{:x}", unique())
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
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
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

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("Authorization", SECRET)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_anonymous(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
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
        self.client
            .post(self.url("/beat"))
            .header("Authorization", SECRET)
            .form(fields)
            .send()
            .await
            .expect("request")
    }

    pub async fn beat_json(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/beat"))
            .header("Authorization", SECRET)
            .json(body)
            .send()
            .await
            .expect("request")
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

impl TestApp {
    /// The same replica, seen through a client that gives up after `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> TestApp {
        TestApp {
            address: self.address.clone(),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("client"),
        }
    }

    /// `GET path` with `Authorization: <authorization>` exactly as given.
    pub async fn get_as(&self, path: &str, authorization: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("Authorization", authorization)
            .send()
            .await
            .expect("request")
    }

    /// `POST path` with a form body and the secret.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .header("Authorization", SECRET)
            .form(fields)
            .send()
            .await
            .expect("request")
    }

    /// `POST path` with a JSON body and the secret.
    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .header("Authorization", SECRET)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST path` with these exact bytes and content type, and the secret.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        self.client
            .post(self.url(path))
            .header("Authorization", SECRET)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// `POST path` without any `Authorization` header.
    pub async fn post_form_anonymous(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("request")
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

/// The Redis key `{prefix}:<name>` of a deployment (see src/store/redis.rs for the schema).
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
