use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{App, SECRET, serial, settings, unix_ms};
use crate::support::load::{self, Load, failures, number};
use crate::support::redis::RedisCluster;

/// Fires `clients` `/connect` calls at once, spread round-robin over `apps`; returns the granted
/// shard ids (sorted) and how many calls were refused with 401.
async fn race(apps: Arc<Vec<App>>, clients: usize) -> (Vec<u64>, usize) {
    let start = Arc::new(tokio::sync::Barrier::new(clients));
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let apps = apps.clone();
            let start = start.clone();
            tokio::spawn(async move {
                let app = &apps[client % apps.len()];
                start.wait().await;
                app.get("/connect").await
            })
        })
        .collect();
    let mut granted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("client task") {
            (200, body) => granted.push(body["shard_id"].as_u64().expect("shard_id")),
            (401, body) => {
                assert_eq!(body["detail"], "No Shards Available");
                refused += 1;
            }
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    granted.sort_unstable();
    (granted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bots_on_different_masters_each_grant_every_id_once_to_96_racing_clients() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "three masters serve the slots");
    let prefixes = [
        cluster.prefix_on(masters[0], "race-a"),
        cluster.prefix_on(masters[1], "race-b"),
    ];
    let mut fleets = Vec::new();
    for prefix in &prefixes {
        fleets.push(Arc::new(
            App::many(3, settings(&cluster.seeds(), prefix, 32, 60)).await,
        ));
    }

    let races: Vec<_> = fleets
        .iter()
        .map(|apps| tokio::spawn(race(apps.clone(), 96)))
        .collect();
    for race in races {
        let (granted, refused) = race.await.expect("race");
        assert_eq!(
            granted,
            (0..32).collect::<Vec<u64>>(),
            "ids 0..31, each once"
        );
        assert_eq!(refused, 64);
    }

    for (prefix, master) in prefixes.iter().zip(&masters) {
        // A node answers for its own slots only (others get MOVED): the bot's keys are on its master.
        let plan = cluster
            .node_query(*master, &["EXISTS", &format!("{{{prefix}}}:plan")])
            .expect("the bot's master holds its keys");
        assert_eq!(plan, redis::Value::Int(1), "{prefix} on {master}");
    }
    let (_, status) = fleets[1][2].get("/status").await;
    assert_eq!(status["shards"].as_array().map(Vec::len), Some(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_and_a_script_cache_flushed_on_every_node_is_reloaded() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    let prefix = cluster.prefix_on(cluster.masters()[2], "expiry");
    let app = App::spawn(settings(&cluster.seeds(), &prefix, 1, 1)).await;

    let (status, first) = app.get("/connect").await;
    assert_eq!(status, 200, "{first}");
    let (status, _) = app.get("/connect").await;
    assert_eq!(status, 401, "the only shard is held");
    // The first lease covers the identify wait plus MAX_SECONDS (1 s), then Redis expires it.
    let wait = first["sleep_duration"].as_f64().unwrap_or(0.0) + 1.5;
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let (status, second) = app.get("/connect").await;
    assert_eq!(status, 200, "the expired shard is granted again: {second}");
    assert_eq!(second["shard_id"], 0);
    assert!(
        second["fence"].as_u64() > first["fence"].as_u64(),
        "{first} {second}"
    );
    let old = first["session_id"].as_str().expect("session");
    assert_eq!(app.beat(old).await, 404, "the expired session is gone");

    for port in &cluster.ports {
        // Replicas refuse nothing here: SCRIPT FLUSH is allowed on every node.
        cluster
            .node_query(*port, &["SCRIPT", "FLUSH"])
            .expect("SCRIPT FLUSH");
    }
    let current = second["session_id"].as_str().expect("session");
    assert_eq!(
        app.beat(current).await,
        204,
        "NOSCRIPT is answered by reloading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_connects_on_two_replicas_get_expired_shards_in_the_order_they_arrived() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    let prefix = cluster.prefix_on(cluster.masters()[1], "waiting");
    let apps = Arc::new(App::many(2, settings(&cluster.seeds(), &prefix, 1, 1)).await);
    let (status, holder) = apps[0].get("/connect").await;
    assert_eq!(status, 200, "{holder}");
    // Nobody beats: each lease ends by its TTL, one second after its grant.
    let waiter = |index: usize| {
        let apps = apps.clone();
        tokio::spawn(async move {
            let answer = apps[index].get("/connect?wait=8").await;
            (answer, Instant::now())
        })
    };
    let started = Instant::now();
    let first = waiter(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = waiter(1);

    let ((status, first_grant), first_at) = first.await.expect("first waiter");
    assert_eq!(status, 200, "{first_grant}");
    let ((status, second_grant), second_at) = second.await.expect("second waiter");
    assert_eq!(status, 200, "{second_grant}");

    assert!(
        first_at - started < Duration::from_secs(2),
        "the first waiter got the expired shard {:?} after the claim of a 1 s lease",
        first_at - started
    );
    // The first waiter's lease covers its IDENTIFY wait (its bucket's next slot) plus 1 s.
    let first_lease =
        Duration::from_secs_f64(first_grant["sleep_duration"].as_f64().unwrap_or(0.0) + 1.0);
    let second_after = second_at - first_at;
    assert!(
        second_after + Duration::from_millis(200) >= first_lease
            && second_after < first_lease + Duration::from_secs(1),
        "the second waiter got the shard {second_after:?} after the first, whose lease lasted {first_lease:?}"
    );
    assert!(first_grant["fence"].as_u64() > holder["fence"].as_u64());
    assert!(second_grant["fence"].as_u64() > first_grant["fence"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_replica_wakes_a_connect_waiting_on_another_long_before_its_poll() {
    let _serial = serial().await;
    let cluster = RedisCluster::start(3);
    // The replicas subscribe on the first seed; the bot's slot lives on another node.
    let master = cluster
        .masters()
        .into_iter()
        .find(|master| *master != cluster.ports[0])
        .expect("a master besides the first seed");
    let prefix = cluster.prefix_on(master, "wakeups");
    let mut settings = settings(&cluster.seeds(), &prefix, 1, 30);
    // A poll this slow cannot be what answers the waiter.
    settings.waiter_poll_ms = 10_000;
    let apps = App::many(2, settings).await;
    // Each replica subscribes on some node: a PUBLISH on any node reaches them all.
    let channel = format!("{{{prefix}}}:wakeups");
    let subscribed = Instant::now() + Duration::from_secs(10);
    while cluster.subscribers(&channel) < 2 {
        assert!(
            Instant::now() < subscribed,
            "both replicas subscribe to the wake-ups"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cluster.node_subscribers(master, &channel),
        0,
        "published on one node, heard on another"
    );
    let (status, holder) = apps[0].get("/connect").await;
    assert_eq!(status, 200, "{holder}");
    let waiting = {
        // Its wait runs out before the poll: only a wake-up can answer it with a shard.
        let waiter = apps[1].clone();
        tokio::spawn(async move { (waiter.get("/connect?wait=8").await, Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let released_at = Instant::now();
    let session_id = holder["session_id"].as_str().expect("session_id");
    assert_eq!(apps[0].disconnect(session_id).await, 204);
    let ((status, grant), answered_at) = waiting.await.expect("the waiting request");

    assert_eq!(status, 200, "{grant}");
    assert!(
        answered_at - released_at < Duration::from_secs(5),
        "answered {:?} after the release on the other replica: by its poll, not a wake-up",
        answered_at - released_at
    );
}

/// Load arguments: `processes` bots of the standard fleet, a 3 s lease, for `seconds`.
fn fleet(processes: u32, seconds: u64) -> Vec<String> {
    load::fleet(processes, 3, seconds as f64)
}

fn start_load(apps: &[App], args: &[String]) -> Load {
    let urls: Vec<String> = apps.iter().map(|app| app.url.clone()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Load::start(&urls, SECRET, &args)
}

/// Successful requests in the report's timeline from `from_unix_ms` on.
fn ok_after(report: &Value, from_unix_ms: u64) -> u64 {
    let started = number(report, "/started_unix_ms");
    let bucket = number(report, "/timeline/bucket_ms").max(1);
    let first = (from_unix_ms.saturating_sub(started) / bucket) as usize;
    report["timeline"]["ok"]
        .as_array()
        .map(|ok| ok.iter().skip(first).filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_killed_under_load_is_replaced_by_its_replica_without_double_grants() {
    let _serial = serial().await;
    let mut cluster = RedisCluster::start(3);
    let masters = cluster.masters();
    let victim = masters[0];
    let prefix = cluster.prefix_on(victim, "failover");
    let bystander_prefix = cluster.prefix_on(masters[1], "bystander");
    let slot = cluster.slot_of(&format!("{{{prefix}}}:"));
    let apps = App::many(3, settings(&cluster.seeds(), &prefix, 8, 3)).await;
    let bystanders = App::many(1, settings(&cluster.seeds(), &bystander_prefix, 4, 3)).await;
    let start = Instant::now();
    let load = start_load(&apps, &fleet(8, 14));
    let bystander_load = start_load(&bystanders, &fleet(4, 14));

    tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
    let killed = unix_ms();
    cluster.kill(victim);
    let promoted = tokio::task::block_in_place(|| cluster.wait_for_failover(slot, victim));
    let failed_over = unix_ms();
    eprintln!("failover took {} ms", failed_over - killed);

    // The promoted replica may lack the dead master's last writes: the service starts a new epoch
    // there with a quarantine, as after a Sentinel failover.
    let quarantine_key = format!("{{{prefix}}}:quarantine");
    let mut quarantined = false;
    for _ in 0..40 {
        if let Ok(redis::Value::Int(ms)) = cluster.node_query(promoted, &["PTTL", &quarantine_key])
            && ms > 0
        {
            quarantined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(quarantined, "a quarantine follows the failover");

    let report = load.finished(Duration::from_secs(60)).await;
    let bystander_report = bystander_load.finished(Duration::from_secs(60)).await;
    for (name, report) in [("bot", &report), ("bystander", &bystander_report)] {
        assert_eq!(
            number(report, "/safety/double_grants"),
            0,
            "{name}: {report}"
        );
        assert_eq!(
            number(report, "/safety/fence_regressions"),
            0,
            "{name}: {report}"
        );
        let failed = failures(report);
        eprintln!("{name}: failed requests by status: {failed:?}");
        assert!(
            failed.iter().all(|(status, _)| status == "503"),
            "{name}: what failed answered 503, fast: {failed:?}"
        );
    }
    assert_eq!(
        failures(&bystander_report),
        [],
        "a bot on another master does not notice the failover"
    );
    assert!(
        ok_after(&report, failed_over + 1000) > 0,
        "beats continue after the failover: {report}"
    );
    assert!(
        number(&report, "/routes/beat/statuses/204") > 0,
        "the fleet beat: {report}"
    );
    assert!(
        cluster.script_calls(promoted) > 0,
        "the promoted replica serves the bot's scripts"
    );
}

/// `docker-compose config` parses and interpolates the cluster variant as `docker-compose up` would.
#[test]
fn docker_compose_cluster_yml_is_valid_and_points_every_replica_at_the_cluster() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(version) = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
    else {
        println!("NOTE: docker-compose is not installed; skipping (scripts/test.sh installs it)");
        return;
    };
    assert!(version.status.success(), "docker-compose version");
    let config = |secret: Option<&str>| {
        let mut command = std::process::Command::new("docker-compose");
        command
            .current_dir(root)
            .args(["-f", "docker-compose.cluster.yml", "config"])
            .env_remove("SECRET");
        if let Some(secret) = secret {
            command.env("SECRET", secret);
        }
        command.output().expect("docker-compose config")
    };
    let output = config(Some("compose-cluster-secret"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for node in 1..=6 {
        assert!(
            text.contains(&format!("redis-{node}:")),
            "node {node}:\n{text}"
        );
    }
    for needle in [
        "redis-cluster-init:",
        "--cluster-replicas",
        "haproxy:",
        "cluster-enabled",
    ] {
        assert!(
            text.contains(needle),
            "compose config lacks {needle}:\n{text}"
        );
    }
    let seeds = "REDIS_CLUSTER: redis-1:6379,redis-2:6379,redis-3:6379,redis-4:6379,redis-5:6379,redis-6:6379";
    assert_eq!(text.matches(seeds).count(), 3, "every replica: {text}");
    assert_eq!(text.matches("compose-cluster-secret").count(), 3);
    assert!(
        !text.contains("REDIS_URL"),
        "the cluster variant uses no single Redis"
    );
    assert!(!config(None).status.success(), "SECRET is required");
}
