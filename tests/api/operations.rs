//! Operating shardman: `/metrics`, `/autoscale`, the Kubernetes manifests, request logs and
//! graceful shutdown of the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
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
// deploy/kubernetes

/// Every document of every manifest, as JSON values.
fn manifests() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut documents = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    documents
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

#[test]
fn kubernetes_manifests_probe_shardman_and_scale_bots_on_autoscale() {
    let documents = manifests();

    // The kustomization lists every manifest file.
    let kustomization = documents
        .iter()
        .find(|doc| doc["kind"] == "Kustomization")
        .expect("kustomization.yaml");
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .map(|resources| resources.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for file in ["redis.yaml", "shardman.yaml", "bot.yaml", "secret.yaml"] {
        assert!(listed.contains(&file), "kustomization lists {file}");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("deploy/kubernetes")
                .join(file)
                .exists()
        );
    }

    // shardman: probes on /healthz and /readyz, the secret from the Secret, Redis by Service name.
    let deployment = find(&documents, "Deployment", "shardman");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(port, 8000);
    let secret_ref = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|env| env["name"] == "SECRET")
        .expect("SECRET env");
    assert_eq!(secret_ref["valueFrom"]["secretKeyRef"]["name"], "shardman");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(labels[key], *value, "the Deployment selects its own pods");
    }

    // The grace period outlasts the drain plus the in-flight timeout (30 s).
    let config_map = find(&documents, "ConfigMap", "shardman");
    let drain: u64 = config_map["data"]["DRAIN_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > drain + 30);
    let redis_url = config_map["data"]["REDIS_URL"].as_str().unwrap();
    let redis_service = find(&documents, "Service", "redis");
    assert!(redis_url.contains("redis:6379"));
    assert_eq!(redis_service["spec"]["ports"][0]["port"], 6379);
    // Every shardman setting in the ConfigMap is a variable the binary reads (.env.example).
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".env.example"))
            .unwrap();
    for key in config_map["data"].as_object().unwrap().keys() {
        assert!(
            example.contains(&format!("\n{key}=")),
            "{key} is documented in .env.example"
        );
    }

    // The Service selects the Deployment's pods.
    let service = find(&documents, "Service", "shardman");
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels[key], *value);
    }

    // Redis keeps an append-only file on a volume.
    let redis = find(&documents, "StatefulSet", "redis");
    let args = redis["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("appendonly") && args.contains("yes"),
        "{args}"
    );
    assert!(redis["spec"]["volumeClaimTemplates"].is_array());

    // KEDA scales the bot Deployment on /autoscale's desired_processes, authenticated.
    let scaled = find(&documents, "ScaledObject", "bot");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "bot");
    find(&documents, "Deployment", "bot");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "metrics-api");
    let url = trigger["metadata"]["url"].as_str().unwrap();
    assert!(
        url.contains("shardman") && url.ends_with(":8000/autoscale"),
        "{url}"
    );
    assert_eq!(trigger["metadata"]["valueLocation"], "desired_processes");
    assert_eq!(trigger["metadata"]["targetValue"], "1");
    assert_eq!(trigger["metadata"]["authMode"], "bearer");
    let auth_name = trigger["authenticationRef"]["name"].as_str().unwrap();
    let auth = find(&documents, "TriggerAuthentication", auth_name);
    let token = &auth["spec"]["secretTargetRef"][0];
    assert_eq!(token["parameter"], "token");
    assert_eq!(token["name"], "shardman");
    assert_eq!(token["key"], "SECRET");
}

/// The HPA alternative to KEDA: an External metric of shardman_desired_processes, one pod per
/// process, on the bot Deployment, and never applied beside the ScaledObject.
#[test]
fn the_hpa_example_scales_bots_on_the_desired_processes_metric() {
    let documents = manifests();
    let kustomization = documents
        .iter()
        .find(|doc| doc["kind"] == "Kustomization")
        .expect("kustomization.yaml");
    assert!(
        !kustomization["resources"]
            .to_string()
            .contains("bot-hpa.yaml"),
        "two autoscalers on one Deployment fight: the HPA replaces the ScaledObject"
    );

    let hpa = find(&documents, "HorizontalPodAutoscaler", "bot");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "bot");
    find(&documents, "Deployment", "bot");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 1);
    let metric = &hpa["spec"]["metrics"][0];
    assert_eq!(metric["type"], "External");
    assert_eq!(
        metric["external"]["metric"]["name"],
        "shardman_desired_processes"
    );
    assert_eq!(
        metric["external"]["metric"]["selector"]["matchLabels"]["bot"],
        "default"
    );
    assert_eq!(metric["external"]["target"]["type"], "AverageValue");
    assert_eq!(metric["external"]["target"]["averageValue"], "1");

    // Prometheus scrapes shardman's /metrics with the secret, on the Service's port.
    let monitor = find(&documents, "ServiceMonitor", "shardman");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let service = find(&documents, "Service", "shardman");
    assert_eq!(endpoint["port"], service["spec"]["ports"][0]["name"]);
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(service["metadata"]["labels"][key], *value);
    }
    assert_eq!(endpoint["authorization"]["type"], "Bearer");
    assert_eq!(endpoint["authorization"]["credentials"]["name"], "shardman");
    assert_eq!(endpoint["authorization"]["credentials"]["key"], "SECRET");
}

#[test]
fn the_bot_deployment_rolls_with_spares_waiting_and_time_to_hand_over() {
    let documents = manifests();
    let bot = find(&documents, "Deployment", "bot");
    let rolling = &bot["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(bot["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        rolling["maxUnavailable"], 0,
        "an old pod stops only once a spare runs"
    );
    let surge = &rolling["maxSurge"];
    let spares = match surge.as_u64() {
        Some(count) => count > 0,
        None => surge.as_str().is_some_and(|share| share != "0%"),
    };
    assert!(spares, "spares wait in /connect: {rolling}");
    let pod = &bot["spec"]["template"]["spec"];
    // The client packages take up to about 10 s after SIGTERM to close, beat and disconnect.
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= 20);
    let container = &pod["containers"][0];
    assert!(
        container["readinessProbe"].is_null(),
        "a spare holds no shard: a readiness probe on one would stall the rollout"
    );
    assert!(container["lifecycle"]["preStop"].is_null());
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
