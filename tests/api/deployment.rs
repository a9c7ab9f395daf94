//! Deploying: settings that stop startup, the schema-version rule, key-prefix isolation, the real
//! binary, and docker-compose.yml.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use shardman::config::Settings;
use shardman::startup::Application;
use shardman::store::SCHEMA_VERSION;

use crate::helpers::{
    Backend, SECRET, TestApp, eventually, held_ids, redis_key, settings, spawn_app,
};
use crate::support::process::free_port;
use crate::support::redis::shared_redis;

#[tokio::test]
async fn a_replica_refuses_to_start_against_a_newer_schema() {
    let settings = settings(Backend::Redis);
    let newer = (SCHEMA_VERSION + 1).to_string();
    shared_redis().query(&["SET", &redis_key(&settings.key_prefix, "schema"), &newer]);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = Application::build_with_listener(settings.clone(), listener).await;

    let error = refused.err().expect("startup must fail").to_string();
    assert!(
        error.contains(&newer),
        "the error names the schema found: {error}"
    );
    // And it left the newer deployment's data alone.
    let stored = shared_redis().query(&["GET", &redis_key(&settings.key_prefix, "schema")]);
    assert_eq!(stored, redis::Value::BulkString(newer.into_bytes()));
}

#[tokio::test]
async fn a_replica_starts_against_its_own_schema_version_and_records_it() {
    let settings = settings(Backend::Redis);
    let key = redis_key(&settings.key_prefix, "schema");
    shared_redis().query(&["SET", &key, &SCHEMA_VERSION.to_string()]);

    let app = spawn_app(settings).await;

    assert_eq!(app.get_anonymous("/readyz").await.status(), StatusCode::OK);
    assert_eq!(
        shared_redis().query(&["GET", &key]),
        redis::Value::BulkString(SCHEMA_VERSION.to_string().into_bytes())
    );
}

#[tokio::test]
async fn two_deployments_sharing_one_redis_are_isolated_by_their_key_prefix() {
    let mut one = settings(Backend::Redis);
    one.max_shards = 2;
    let mut two = settings(Backend::Redis);
    two.max_shards = 3;
    assert_ne!(one.key_prefix, two.key_prefix);
    let one = spawn_app(one).await;
    let two = spawn_app(two).await;

    let claim_one = one.claim().await;
    let claim_two = two.claim().await;

    assert_eq!(
        (claim_one.shard_id, claim_two.shard_id),
        (0, 0),
        "each has its own shard 0"
    );
    assert_eq!(
        one.disconnect(&claim_one.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        two.beat(&claim_two.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let claim_one = one.claim().await;
    assert_eq!(
        claim_one.shard_id, 0,
        "one's release freed one's shard 0 only"
    );
    assert_eq!(two.claim().await.shard_id, 1);
    let status_one = one.status().await;
    let status_two = two.status().await;
    assert_eq!(
        (
            status_one["total_shards"].as_u64(),
            status_two["total_shards"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(held_ids(&status_one), vec![0]);
    assert_eq!(held_ids(&status_two), vec![0, 1]);
}

/// Session ids are signed with a key derived from SECRET alone, so a deployment sharing Redis
/// *and* the secret with another accepts the other's session ids and runs beat.lua's
/// restore-after-data-loss path on them: it quarantines its own /connect, may rewrite its shard
/// count to the other deployment's and hands the foreign session one of its shards.
#[tokio::test]
async fn a_session_of_another_deployment_sharing_redis_and_secret_is_unknown() {
    let mut one = settings(Backend::Redis);
    one.max_shards = 2;
    let mut two = settings(Backend::Redis);
    two.max_shards = 3;
    let one = spawn_app(one).await;
    let two = spawn_app(two).await;
    let foreign = one.claim().await;

    assert_eq!(
        two.beat(&foreign.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        two.disconnect(&foreign.session_id).await.status(),
        StatusCode::NOT_FOUND
    );

    let status = two.status().await;
    assert_eq!(
        status["total_shards"], 3,
        "two's shard count is its own: {status}"
    );
    assert_eq!(held_ids(&status), Vec::<u64>::new());
    assert_eq!(two.claim().await.shard_id, 0, "two still grants at once");
}

#[test]
fn settings_validation_names_the_variable_at_fault() {
    assert!(
        Settings::default().validate().is_ok(),
        "the defaults are valid"
    );
    type BreakIt = fn(&mut Settings);
    let cases: [(&str, BreakIt); 9] = [
        ("MAX_SECONDS", |s| s.max_seconds = 0),
        ("MAX_SHARDS", |s| s.max_shards = 0),
        ("MAX_SHARDS", |s| s.max_shards = 65_537),
        ("KEY_PREFIX", |s| s.key_prefix = "a{b".into()),
        ("KEY_PREFIX", |s| s.key_prefix = "a}".into()),
        ("REDIS_TIMEOUT_MS", |s| s.redis_timeout_ms = 0),
        ("REDIS_SENTINEL_MASTER", |s| {
            s.redis_sentinels = vec!["127.0.0.1:26379".into()]
        }),
        ("REDIS_SENTINEL_MASTER", |s| {
            s.redis_sentinel_master = Some("mymaster".into())
        }),
        ("REDIS_URL", |s| {
            s.redis_sentinels = vec!["127.0.0.1:26379".into()];
            s.redis_sentinel_master = Some("mymaster".into());
            s.redis_url = Some("redis://:hunter2@127.0.0.1:6379".into());
        }),
    ];
    for (variable, break_it) in cases {
        let mut settings = Settings::default();
        break_it(&mut settings);
        let error = settings.validate().expect_err(variable);
        assert_eq!(error.variable, variable);
        assert!(error.to_string().contains(variable), "{error}");
        assert!(
            !error.to_string().contains("hunter2"),
            "a password is never echoed"
        );
    }
    let mut edge = Settings {
        max_shards: 65_536,
        max_seconds: 1,
        ..Settings::default()
    };
    assert!(
        edge.validate().is_ok(),
        "65536 shards and a 1 s lease are allowed"
    );
    edge.max_shards = 1;
    assert!(edge.validate().is_ok());
}

/// The binary, run as an operator would, in an empty directory (no `.env`), with only `vars` set.
fn shardman(vars: &[(&str, &str)]) -> Command {
    let dir = std::env::temp_dir().join(format!("shardman-run-{}", crate::helpers::fresh_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_shardman"));
    command
        .current_dir(dir)
        .env_clear()
        .env("RUST_LOG", "info")
        .envs(vars.iter().copied())
        .stdin(Stdio::null());
    command
}

#[test]
fn the_binary_refuses_to_start_on_an_invalid_setting_and_names_it() {
    let port = free_port().to_string();
    let cases = [
        ("MAX_SECONDS", "soon"),
        ("MAX_SECONDS", "0"),
        ("MAX_SHARDS", "-3"),
        ("MAX_SHARDS", "70000"),
        ("PORT", "99999"),
        ("PUBLIC_STATUS", "maybe"),
        ("MAX_EXTRA_BYTES", "lots"),
        ("KEY_PREFIX", "{x}"),
        ("REDIS_SENTINELS", "127.0.0.1"),
        ("REDIS_SENTINELS", "127.0.0.1:26379,sentinel:port"),
        ("SHARDS_PER_PROCESS", "some"),
        ("LOAD_TARGET", "lots"),
        ("CPU_TARGET", "0"),
        ("SCALE_IN_AFTER", "soon"),
        ("SHARD_LOAD_MAX", "2"),
        ("SHARD_SILENT_AFTER", "-1"),
        // A target needs SHARDS_PER_PROCESS=auto.
        ("LOAD_TARGET", "60"),
    ];
    for (variable, value) in cases {
        let output = shardman(&[("PORT", port.as_str()), (variable, value)])
            .output()
            .expect("run shardman");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{variable}={value} must stop startup"
        );
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {stderr}"
        );
        assert!(
            stderr.contains(variable),
            "{variable}={value}: stderr must name it: {stderr}"
        );
    }
}

/// The README's quick start: no REDIS_URL, no SECRET -> in-process store and a printed secret.
#[tokio::test]
async fn the_binary_alone_runs_in_process_and_prints_a_secret_that_works() {
    shardman::outbound::install_crypto_provider();
    // The secret is printed after the port is bound: no secret means another process took the
    // free port first, so try another.
    let (mut child, port, secret, _guard) = (0..5)
        .find_map(|_| {
            let port = free_port();
            let mut child = shardman(&[("PORT", &port.to_string()), ("HOST", "127.0.0.1")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run shardman");
            let guard = KillOnDrop(child.id());
            let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
            let secret = stdout.by_ref().map_while(Result::ok).find_map(|line| {
                line.rsplit_once("secret is: ")
                    .map(|(_, secret)| secret.trim().to_owned())
            });
            let Some(secret) = secret else {
                // It exited (the port was taken): reap it and try another port.
                let _ = child.wait();
                return None;
            };
            std::thread::spawn(move || stdout.for_each(drop));
            Some((child, port, secret, guard))
        })
        .expect("the generated secret is printed");
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .take(200)
            .collect::<Vec<_>>()
    });
    assert!(secret.len() >= 32, "a long random secret: {secret:?}");
    assert!(!secret.contains(SECRET));

    let app = TestApp::at(format!("http://127.0.0.1:{port}"));
    let up = eventually(Duration::from_secs(10), || async {
        app.anonymous(Method::GET, "/healthz").send().await.is_ok()
    })
    .await;
    assert!(up, "shardman serves on PORT");
    let connect = app.get_as("/connect", &secret).await;
    let connect_status = connect.status();
    let connect_body = connect.text().await.unwrap();
    if connect_status != StatusCode::OK {
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
        let log = log.join().unwrap().join("\n");
        panic!("connect answered {connect_status}: {connect_body}\nlog:\n{log}");
    }
    // The harness's secret is not the one this binary printed.
    let wrong = app.get("/connect").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
    let log = log.join().unwrap().join("\n");
    assert!(
        log.contains("in-process store"),
        "the log says which store runs: {log}"
    );
    assert!(
        !log.contains(&secret),
        "the secret is printed once on stdout, never logged: {log}"
    );
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
    }
}

/// `docker-compose config` parses and interpolates the file as `docker-compose up` would.
#[test]
fn docker_compose_yml_is_valid_and_matches_haproxy_cfg() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let haproxy = std::fs::read_to_string(root.join("deploy/haproxy.cfg")).unwrap();
    assert!(
        haproxy.contains("option httpchk GET /readyz"),
        "HAProxy health-checks /readyz"
    );
    for replica in ["shardman-1", "shardman-2", "shardman-3"] {
        assert!(
            haproxy.contains(&format!("server {replica} {replica}:8000 check")),
            "{replica}"
        );
    }

    let Ok(version) = Command::new("docker-compose").arg("version").output() else {
        println!(
            "NOTE: docker-compose is not installed; skipping `docker-compose config` (scripts/test.sh installs it)"
        );
        return;
    };
    assert!(version.status.success(), "docker-compose version");
    let output = Command::new("docker-compose")
        .current_dir(root)
        .args(["-f", "docker-compose.yml", "config"])
        .env("SECRET", "compose-test-secret")
        .output()
        .expect("docker-compose config");
    let config = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for needle in [
        "shardman-1:",
        "shardman-2:",
        "shardman-3:",
        "haproxy:",
        "redis:",
        "appendonly",
    ] {
        assert!(
            config.contains(needle),
            "compose config lacks {needle}:\n{config}"
        );
    }
    assert_eq!(
        config.matches("REDIS_URL: redis://redis:6379").count(),
        3,
        "{config}"
    );
    assert_eq!(
        config.matches("compose-test-secret").count(),
        3,
        "SECRET reaches every replica"
    );

    // Without SECRET the file refuses to start rather than running replicas with random secrets.
    let unset = Command::new("docker-compose")
        .current_dir(root)
        .args(["-f", "docker-compose.yml", "config"])
        .env_remove("SECRET")
        .output()
        .expect("docker-compose config");
    assert!(
        !unset.status.success(),
        "SECRET is required by docker-compose.yml"
    );
}

/// During a rolling upgrade the first new replica raises `{prefix}:schema`; replicas of the old
/// build that are still running must then stop writing, not only old replicas that start later.
#[tokio::test]
async fn a_running_replica_stops_writing_once_a_newer_schema_appears() {
    let mut settings = settings(Backend::Redis);
    settings.max_shards = 4;
    let key = redis_key(&settings.key_prefix, "schema");
    let app = spawn_app(settings).await;
    app.claim().await;

    shared_redis().query(&["SET", &key, &(SCHEMA_VERSION + 1).to_string()]);

    assert_ne!(
        app.connect().await.status(),
        StatusCode::OK,
        "no grant under a newer schema"
    );
    assert_eq!(held_ids(&app.status().await), vec![0]);
}

/// The README's quick start is a bare `cargo run --release`: with more binaries than the service
/// in the package, Cargo needs `default-run` to know which one that is.
#[test]
fn a_bare_cargo_run_starts_the_service() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let other_binaries = std::fs::read_dir(root.join("src/bin"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let default_run = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("default-run"))
        .map(|rest| rest.trim_start_matches([' ', '=']).trim().trim_matches('"'));
    assert!(
        other_binaries == 0 || default_run == Some("shardman"),
        "src/bin has other binaries, so Cargo.toml needs default-run = \"shardman\" (got {default_run:?})"
    );
}

/// The Dockerfile's build stage copies every folder the binary compiles in (`include_str!`).
#[test]
fn the_dockerfile_copies_every_folder_the_build_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|line| !line.starts_with("--from"))
        .flat_map(|line| line.split_whitespace())
        .collect();
    let mut needed = std::collections::BTreeSet::from(["src".to_owned()]);
    let mut folders = vec![root.join("src")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for include in text.split("include_str!(").skip(1) {
                let Some(relative) = include.split('"').nth(1) else {
                    continue;
                };
                let target = path.parent().expect("parent").join(relative);
                let Ok(target) = target.canonicalize() else {
                    continue;
                };
                if let Ok(inside) = target.strip_prefix(root.canonicalize().expect("root")) {
                    let top = inside.components().next().expect("component");
                    needed.insert(top.as_os_str().to_string_lossy().into_owned());
                }
            }
        }
    }
    assert!(
        needed.contains("migrations-lua"),
        "the scripts are compiled in"
    );
    for folder in needed {
        assert!(
            copied
                .iter()
                .any(|item| item.trim_end_matches('/') == folder),
            "the Dockerfile's build stage does not COPY {folder}/"
        );
    }
}
