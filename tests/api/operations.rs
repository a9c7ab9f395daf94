//! Operating shardman: `/metrics`, `/autoscale`, request logs and graceful shutdown of the real
//! binary. (The manifests under deploy/ are tests/api/manifests.rs's.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, SECRET, TestApp, settings, spawn_app};
use crate::support::process::free_port;
use crate::support::redis::{RedisServer, shared_redis};

/// The value of one sample in a Prometheus text exposition: `name{labels} value`. Every given
/// label must match; other labels may be present.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all_match = labels
                .iter()
                .all(|(key, expected)| label_text.contains(&format!("{key}=\"{expected}\"")));
            all_match.then(|| value.parse().ok()).flatten()
        })
}

pub(crate) async fn metrics_text(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("text")
}

#[tokio::test]
async fn metrics_report_the_fleet_and_this_replicas_requests() {
    let mut config = settings(Backend::Redis);
    config.max_shards = 4;
    let replicas = crate::helpers::spawn_replicas(2, config).await;
    let (first, second) = (&replicas[0], &replicas[1]);
    let a = first.claim().await;
    let b = first.claim().await;
    let beat = |session: &str, guilds: &str, latency: &str| {
        let fields = [
            ("session_id", session.to_owned()),
            ("guild_count", guilds.to_owned()),
            ("latency", latency.to_owned()),
        ];
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            first.beat_form(&fields).await
        }
    };
    assert_eq!(
        beat(&a.session_id, "100", "0.08").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        beat(&b.session_id, "250", "1.5").await.status(),
        StatusCode::NO_CONTENT
    );

    let text = metrics_text(second).await;
    assert_eq!(sample(&text, "shardman_shards_total", &[]), Some(4.0));
    assert_eq!(sample(&text, "shardman_shards_held", &[]), Some(2.0));
    assert_eq!(sample(&text, "shardman_shards_missing", &[]), Some(2.0));
    assert_eq!(sample(&text, "shardman_guilds", &[]), Some(350.0));
    assert_eq!(sample(&text, "shardman_store_up", &[]), Some(1.0));
    assert!(sample(&text, "shardman_generation", &[]).is_some_and(|g| g >= 1.0));
    // One histogram for all shards, not one series per shard.
    assert_eq!(
        sample(&text, "shardman_shard_latency_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "shardman_shard_latency_seconds_bucket",
            &[("le", "0.1")]
        ),
        Some(1.0)
    );
    assert!(!text.contains("shard_id="), "no per-shard series");

    // Both replicas report the same cluster figures; request counts are each replica's own.
    let other = metrics_text(first).await;
    assert_eq!(sample(&other, "shardman_shards_held", &[]), Some(2.0));
    assert_eq!(
        sample(
            &other,
            "shardman_http_requests_total",
            &[("method", "GET"), ("route", "/connect"), ("status", "200")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "shardman_http_requests_total",
            &[("method", "GET"), ("route", "/connect"), ("status", "200")]
        ),
        None,
        "the second replica served no /connect"
    );
    assert!(
        sample(
            &other,
            "shardman_http_request_duration_seconds_count",
            &[("route", "/beat"), ("status", "204")]
        )
        .is_some_and(|count| count == 2.0)
    );
}

#[tokio::test]
async fn request_metrics_label_routes_by_pattern_not_by_raw_path() {
    let app = spawn_app(settings(Backend::Redis)).await;
    app.get("/disconnect?session_id=abc").await;
    app.get("/no-such-page-1").await;
    app.get("/no-such-page-2").await;
    let text = metrics_text(&app).await;
    assert_eq!(
        sample(
            &text,
            "shardman_http_requests_total",
            &[("route", "/disconnect"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "shardman_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(2.0)
    );
    assert!(!text.contains("no-such-page"));
    assert!(!text.contains("session_id"));
}

#[tokio::test]
async fn metrics_need_the_secret_unless_public_metrics_is_set() {
    let private = spawn_app(settings(Backend::Redis)).await;
    assert_eq!(
        private.get_anonymous("/metrics").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        private.get_anonymous("/autoscale").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let wrong = private.get_as("/metrics", "nope").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    let mut config = settings(Backend::Redis);
    config.public_metrics = true;
    let public = spawn_app(config).await;
    assert_eq!(
        public.get_anonymous("/metrics").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        public.get_anonymous("/autoscale").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_still_answer_with_store_up_zero_when_redis_is_gone() {
    let mut redis = RedisServer::start();
    let mut config = crate::helpers::settings_on(&redis);
    config.redis_timeout_ms = 300;
    let app = spawn_app(config).await;
    redis.stop();
    let text = metrics_text(&app).await;
    assert_eq!(sample(&text, "shardman_store_up", &[]), Some(0.0));
    assert_eq!(sample(&text, "shardman_shards_total", &[]), None);
}

#[tokio::test]
async fn autoscale_asks_for_one_process_per_planned_shard() {
    let mut config = settings(Backend::Redis);
    config.max_shards = 3;
    let app = spawn_app(config).await;
    let claim = app.claim().await;

    let response = app.get("/autoscale").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["desired_processes"], 3);
    assert_eq!(body["held"], 1);
    assert_eq!(body["missing"], 2);
    assert_eq!(body["total_shards"], 3);

    app.disconnect(&claim.session_id).await;
    let body: Value = app.get("/autoscale").await.json().await.unwrap();
    assert_eq!(body["held"], 0);
    assert_eq!(body["missing"], 3);
}

async fn autoscale_counts_both_generations_during_a_reshard(backend: Backend) {
    let mut config = settings(backend);
    config.max_shards = 2;
    let app = spawn_app(config).await;
    let first = app.claim().await;
    app.claim().await;
    let started = app.post_form("/reshard", &[("max_shards", "5")]).await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    // One shard of the new generation is claimed; the old generation still runs.
    let newcomer = app.claim().await;
    assert_eq!(
        app.beat(&newcomer.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    let body: Value = app.get("/autoscale").await.json().await.unwrap();
    assert_eq!(body["desired_processes"], 2 + 5, "{body}");
    assert_eq!(body["held"], 3, "{body}");
    assert_eq!(body["missing"], 4, "{body}");
    assert_eq!(body["pending_shards"], 5, "{body}");
    assert_eq!(body["total_shards"], 2, "{body}");

    let text = metrics_text(&app).await;
    assert_eq!(
        sample(&text, "shardman_pending_shards_total", &[]),
        Some(5.0)
    );
    assert_eq!(
        sample(&text, "shardman_pending_shards_held", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "shardman_desired_processes", &[]), Some(7.0));
    assert_eq!(
        app.disconnect(&first.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let body: Value = app.get("/autoscale").await.json().await.unwrap();
    assert_eq!(body["held"], 2, "{body}");
}

#[tokio::test]
async fn autoscale_counts_both_generations_during_a_reshard_on_redis() {
    autoscale_counts_both_generations_during_a_reshard(Backend::Redis).await;
}

#[tokio::test]
async fn autoscale_counts_both_generations_during_a_reshard_in_process() {
    autoscale_counts_both_generations_during_a_reshard(Backend::Memory).await;
}

/// `/metrics` and `/status` each read the fleet page by page (512 shard ids a page); they must
/// agree across page boundaries.
#[tokio::test]
async fn metrics_agree_with_status_across_many_pages() {
    let mut config = settings(Backend::Redis);
    config.max_shards = 1200;
    let app = spawn_app(config).await;
    let mut sessions = Vec::new();
    for _ in 0..1100 {
        sessions.push(app.claim().await);
    }
    // Free a few ids on both sides of the page boundaries.
    for index in [0, 511, 512, 1023, 1024, 1099] {
        assert_eq!(
            app.disconnect(&sessions[index].session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    for claim in sessions.iter().filter(|claim| claim.shard_id % 100 == 7) {
        let response = app
            .beat_form(&[
                ("session_id", claim.session_id.as_str()),
                ("guild_count", "3"),
            ])
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let status = app.status().await;
    let held = crate::helpers::held_ids(&status).len() as f64;
    assert_eq!(held, 1094.0);
    let text = metrics_text(&app).await;
    assert_eq!(sample(&text, "shardman_shards_held", &[]), Some(held));
    assert_eq!(
        sample(&text, "shardman_shards_missing", &[]),
        Some(1200.0 - held)
    );
    assert_eq!(sample(&text, "shardman_guilds", &[]), Some(3.0 * 11.0));
    assert_eq!(
        sample(&text, "shardman_shard_beat_age_seconds_count", &[]),
        Some(held)
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary: request logs and SIGTERM.

/// `target/debug/shardman` as a child process, its stderr collected by a thread.
struct Binary {
    child: Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Binary {
    fn start(extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardman"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("SECRET", SECRET)
            .env("MAX_SHARDS", "4")
            .env("REDIS_URL", shared_redis().url())
            .env("QUARANTINE_FRESH_REDIS", "false")
            .env("KEY_PREFIX", crate::helpers::fresh_prefix())
            .env("BOT_TOKEN", "bot-token-that-must-never-be-logged")
            .envs(extra_env.iter().copied())
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start shardman");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let binary = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while binary.http_status("GET", "/readyz", None) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "shardman did not become ready: {}",
                binary.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        binary
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// One request on a fresh connection (`Connection: close`); the status, or None when the
    /// connection is refused or drops.
    fn http_status(&self, method: &str, path: &str, authorization: Option<&str>) -> Option<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let auth = authorization
            .map(|value| format!("Authorization: {value}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        read_status(&mut stream)
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits for the process to exit; its exit code.
    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn every_request_is_logged_as_one_json_line_without_secrets() {
    let mut binary = Binary::start(&[("LOG_FORMAT", "json")]);
    assert_eq!(
        binary.http_status("GET", "/connect", Some(SECRET)),
        Some(200)
    );
    assert_eq!(
        binary.http_status(
            "GET",
            "/disconnect?session_id=nope",
            Some(&format!("Bearer {SECRET}"))
        ),
        Some(404)
    );
    binary.signal(libc::SIGTERM);
    assert_eq!(binary.wait_exit(Duration::from_secs(20)), Some(0));

    let log = binary.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["target"] == "shardman::request")
        .collect();
    let connect = requests
        .iter()
        .find(|line| line["route"] == "/connect")
        .expect("a line for /connect");
    assert_eq!(connect["method"], "GET");
    assert_eq!(connect["status"], 200);
    assert!(connect["latency_ms"].as_f64().is_some());
    let replica = connect["replica"].as_str().expect("replica id");
    assert!(!replica.is_empty());
    let disconnect = requests
        .iter()
        .find(|line| line["route"] == "/disconnect")
        .expect("a line for /disconnect");
    assert_eq!(disconnect["status"], 404);
    assert_eq!(disconnect["replica"], replica);
    assert_eq!(
        requests
            .iter()
            .filter(|line| line["route"] == "/connect")
            .count(),
        1,
        "one line per request"
    );
    assert!(!log.contains(SECRET), "the secret was logged:\n{log}");
    assert!(!log.contains("bot-token-that-must-never-be-logged"));
    assert!(
        !log.contains("session_id=nope"),
        "query strings are not logged"
    );
}

#[test]
fn sigterm_fails_readyz_finishes_in_flight_requests_and_exits() {
    let mut binary = Binary::start(&[("DRAIN_SECONDS", "2")]);

    // A request in flight: headers and half of the body sent.
    let body = "session_id=unknown-session&guild_count=1";
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut in_flight = TcpStream::connect(("127.0.0.1", binary.port)).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        in_flight,
        "POST /beat HTTP/1.1\r\nHost: localhost\r\nAuthorization: {SECRET}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{first_half}",
        body.len()
    )
    .unwrap();
    in_flight.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    binary.signal(libc::SIGTERM);

    // While draining, the replica still serves but reports itself not ready.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut readyz = binary.http_status("GET", "/readyz", None);
    while readyz == Some(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        readyz = binary.http_status("GET", "/readyz", None);
    }
    assert_eq!(readyz, Some(503), "/readyz fails once SIGTERM arrived");
    assert_eq!(binary.http_status("GET", "/healthz", None), Some(200));

    // Wait until the listener has closed, then complete the in-flight request.
    let deadline = Instant::now() + Duration::from_secs(10);
    while binary.http_status("GET", "/healthz", None).is_some() {
        assert!(Instant::now() < deadline, "the listener never closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        binary.child.try_wait().unwrap().is_none(),
        "the process waits for the request in flight"
    );
    in_flight.write_all(second_half.as_bytes()).unwrap();
    assert_eq!(
        read_status(&mut in_flight),
        Some(404),
        "the in-flight beat got its answer (unknown session)"
    );

    assert_eq!(binary.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(binary.log().contains("SIGTERM received"));
}

#[test]
fn sigterm_answers_a_waiting_connect_at_once_so_its_bot_asks_another_replica() {
    let mut binary = Binary::start(&[("MAX_SHARDS", "1"), ("DRAIN_SECONDS", "5")]);
    assert_eq!(
        binary.http_status("GET", "/connect", Some(SECRET)),
        Some(200)
    );
    let mut waiting = TcpStream::connect(("127.0.0.1", binary.port)).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        waiting,
        "GET /connect?wait=30 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {SECRET}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    binary.signal(libc::SIGTERM);
    let signalled = Instant::now();

    assert_eq!(read_status(&mut waiting), Some(401), "today's answer");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "answered {:?} after SIGTERM, not at the end of its wait or the drain",
        signalled.elapsed()
    );
    assert_eq!(binary.wait_exit(Duration::from_secs(20)), Some(0));
}

/// At-least-once alerts: a replica killed after it took an event from the queue, while its POST
/// is still unanswered, loses nothing; another replica delivers the event once its claim (one
/// lease length) lapses, with the same event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_taken_by_a_replica_killed_before_it_posted_is_delivered_by_another() {
    // The first POST hangs, as if the killed replica had never finished it.
    let webhook = crate::standin::StandIn::start(|index, _| {
        if index == 0 {
            crate::standin::Reply::no_content().after(Duration::from_secs(120))
        } else {
            crate::standin::Reply::no_content()
        }
    })
    .await;
    let url = format!("{}/webhook", webhook.base);
    let prefix = crate::helpers::fresh_prefix();
    let start = move |url: String, prefix: String| {
        tokio::task::spawn_blocking(move || {
            Binary::start(&[
                ("WEBHOOK_URL", url.as_str()),
                ("KEY_PREFIX", prefix.as_str()),
                ("MAX_SECONDS", "2"),
            ])
        })
    };
    let mut first = start(url.clone(), prefix.clone()).await.unwrap();
    assert_eq!(
        first.http_status("GET", "/connect", Some(SECRET)),
        Some(200)
    );
    assert!(
        crate::helpers::eventually(Duration::from_secs(10), || async {
            !webhook.requests().is_empty()
        })
        .await,
        "the first replica took the connect event and began posting it"
    );
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));

    let second = start(url, prefix).await.unwrap();
    assert!(
        crate::helpers::eventually(Duration::from_secs(15), || async {
            webhook.requests().len() >= 2
        })
        .await,
        "the event was delivered again: {}",
        second.log()
    );
    let requests = webhook.requests();
    let event_id = |body: &Value| crate::standin::embed_field(body, "Event ID");
    assert!(
        event_id(&requests[0].body).is_some(),
        "alerts carry their event id"
    );
    assert_eq!(event_id(&requests[1].body), event_id(&requests[0].body));
    assert_eq!(
        crate::standin::embed_field(&requests[1].body, "Event").as_deref(),
        Some("connect")
    );
}
