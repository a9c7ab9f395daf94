use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::{Outcome, at};
use crate::support::load::{self, Load};
use crate::support::redis::{RedisOptions, RedisServer, Sentinels};
use crate::support::replicas::{Deployment, Replica, unix_ms};

/// Lease length of every scenario, in seconds.
const MAX_SECONDS: u64 = 3;

/// One scenario at a time: each measures time, and the machine is small.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `FAULT_SCALE` (default 1) multiplies the fleet.
fn scale() -> u32 {
    std::env::var("FAULT_SCALE")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|scale| *scale >= 1)
        .unwrap_or(1)
}

fn shards() -> u32 {
    8 * scale()
}

/// Load arguments: as many processes as shards, the standard fleet.
fn fleet(duration: Duration) -> Vec<String> {
    load::fleet(shards(), MAX_SECONDS, duration.as_secs_f64())
}

/// A scenario's cast: three replicas on `redis_url` and the standard fleet beating through them
/// for `run`, started now.
struct UnderLoad {
    replicas: Vec<Replica>,
    start: Instant,
    load: Load,
}

fn three_replicas_under_load(redis_url: &str, run: Duration) -> UnderLoad {
    let replicas = Deployment::new(redis_url, MAX_SECONDS, shards()).start_many(3);
    let start = Instant::now();
    let load = start_load(&replicas.iter().collect::<Vec<_>>(), &fleet(run));
    UnderLoad {
        replicas,
        start,
        load,
    }
}

/// Waits for the fleet's report, records the scenario's row and checks the safety invariants.
fn finish(load: Load, within: Duration, scenario: &str, fault_ended: u64, note: &str) -> Outcome {
    let report = load.finish(within);
    let outcome = Outcome::from_report(scenario, &report, fault_ended, note);
    outcome.save();
    outcome.assert_safe();
    outcome
}

fn start_load(replicas: &[&Replica], args: &[String]) -> Load {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Load::through(replicas, &args)
}

/// Gives the fleet time to connect before a fault.
const WARM_UP: Duration = Duration::from_secs(3);

#[test]
fn a_replica_killed_under_load_loses_no_lease_and_comes_back() {
    let _serial = serial();
    let redis = RedisServer::start();
    let UnderLoad {
        mut replicas,
        start,
        load,
    } = three_replicas_under_load(&redis.url(), Duration::from_secs(11));

    at(start, WARM_UP);
    replicas[0].kill();
    let killed = unix_ms();
    at(start, WARM_UP + Duration::from_secs(3));
    replicas[0].restart();
    let outcome = finish(
        load,
        Duration::from_secs(40),
        "replica kill -9 and restart",
        killed,
        "",
    );
    assert_eq!(outcome.lost_acknowledged_beats, 0, "{outcome:?}");
    assert_eq!(outcome.expired_in_client_view, 0, "{outcome:?}");
    assert!(replicas[0].ready(), "the restarted replica serves again");
}

#[test]
fn redis_paused_for_less_than_max_seconds_loses_no_lease() {
    let _serial = serial();
    let redis = RedisServer::start();
    let UnderLoad {
        replicas: _replicas, // kept alive for the run
        start,
        load,
    } = three_replicas_under_load(&redis.url(), Duration::from_secs(10));

    at(start, WARM_UP);
    redis.pause();
    std::thread::sleep(Duration::from_millis(1000));
    redis.resume();
    let resumed = unix_ms();
    let outcome = finish(
        load,
        Duration::from_secs(40),
        "Redis SIGSTOP 1 s (< MAX_SECONDS 3 s)",
        resumed,
        "",
    );
    assert_eq!(outcome.lost_acknowledged_beats, 0, "{outcome:?}");
    assert_eq!(outcome.expired_in_client_view, 0, "{outcome:?}");
}

#[test]
fn redis_paused_for_longer_than_max_seconds_expires_leases_without_double_grants() {
    let _serial = serial();
    let redis = RedisServer::start();
    let UnderLoad {
        replicas: _replicas, // kept alive for the run
        start,
        load,
    } = three_replicas_under_load(&redis.url(), Duration::from_secs(18));

    at(start, WARM_UP);
    redis.pause();
    std::thread::sleep(Duration::from_secs(MAX_SECONDS + 2));
    redis.resume();
    let resumed = unix_ms();
    let outcome = finish(
        load,
        Duration::from_secs(50),
        "Redis SIGSTOP 5 s (> MAX_SECONDS 3 s)",
        resumed,
        "leases expire in the clients' view first",
    );
    assert!(
        outcome.expired_in_client_view > 0,
        "the pause outlasted the leases, so clients must have stopped: {outcome:?}"
    );
    assert!(
        outcome.recovery_ms.is_some_and(|ms| ms < 12_000),
        "the fleet holds every shard again before the run ends: {outcome:?}"
    );
}

#[test]
fn script_flush_under_load_is_invisible() {
    let _serial = serial();
    let redis = RedisServer::start();
    let UnderLoad {
        replicas: _replicas, // kept alive for the run
        start,
        load,
    } = three_replicas_under_load(&redis.url(), Duration::from_secs(8));

    at(start, WARM_UP);
    for _ in 0..5 {
        redis.query(&["SCRIPT", "FLUSH"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let flushed = unix_ms();
    let outcome = finish(
        load,
        Duration::from_secs(40),
        "SCRIPT FLUSH x5 under load",
        flushed,
        "",
    );
    assert_eq!(outcome.lost_acknowledged_beats, 0, "{outcome:?}");
    assert_eq!(
        outcome.failed_requests, 0,
        "a flushed script cache is invisible: {outcome:?}"
    );
}

#[test]
fn a_slow_redis_gives_bounded_503s_and_recovers() {
    let _serial = serial();
    let redis = RedisServer::start();
    let UnderLoad {
        replicas: _replicas, // kept alive for the run
        start,
        load,
    } = three_replicas_under_load(&redis.url(), Duration::from_secs(10));

    at(start, WARM_UP);
    // DEBUG SLEEP blocks Redis for 2 s (REDIS_TIMEOUT_MS is 500 ms), twice.
    for _ in 0..2 {
        redis.query(&["DEBUG", "SLEEP", "2"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let recovered = unix_ms();
    let outcome = finish(
        load,
        Duration::from_secs(40),
        "Redis slowed (DEBUG SLEEP 2 s, twice)",
        recovered,
        "",
    );
    assert!(
        outcome.failed_requests > 0,
        "a blocked Redis must show: {outcome:?}"
    );
    // Bounded: no request waits for Redis much longer than REDIS_TIMEOUT_MS (500 ms); the client's
    // own timeout is 2 s, so a hang would show as a 2 s latency.
    assert!(outcome.max_beat_latency_ms < 1900.0, "{outcome:?}");
    assert!(
        outcome.recovery_ms.is_some_and(|ms| ms < 3000),
        "{outcome:?}"
    );
}

/// Redis comes back empty: shardman must notice, grant nothing to a newcomer for one lease length,
/// and let the running bots re-establish their leases (same shard id) with their next beat.
#[test]
fn redis_restarted_without_persistence_grants_nothing_twice_and_keeps_live_sessions() {
    let _serial = serial();
    let mut redis = RedisServer::start();
    let deployment = Deployment::new(&redis.url(), MAX_SECONDS, shards());
    let replicas = deployment.start_many(3);
    let start = Instant::now();
    // One process more than shards: a newcomer keeps asking, and must not get a live session's id.
    let mut args = fleet(Duration::from_secs(12));
    args[1] = (shards() + 1).to_string();
    let load = start_load(&replicas.iter().collect::<Vec<_>>(), &args);

    at(start, WARM_UP);
    redis.restart();
    let restarted = unix_ms();
    let report = load.finish(Duration::from_secs(50));

    let outcome = Outcome::from_report_holding(
        "Redis restarted without persistence",
        &report,
        restarted,
        "all leases lost at once; recovery = end of the newcomers' 503s",
        u64::from(shards()),
    );
    outcome.save();
    outcome.assert_safe();
    assert_eq!(
        outcome.lost_acknowledged_beats, 0,
        "live sessions keep their shard through a data loss: {outcome:?}"
    );
    assert_eq!(outcome.expired_in_client_view, 0, "{outcome:?}");
    // Every bot kept the one session it started with: no shard changed hands, none was granted twice.
    assert_eq!(
        report["safety"]["sessions"].as_u64(),
        Some(u64::from(shards())),
        "one session per shard for the whole run: {}",
        report["safety"]
    );
    assert_eq!(
        report["safety"]["distinct_shards"].as_u64(),
        Some(u64::from(shards())),
        "{}",
        report["safety"]
    );
    let connect = &report["routes"]["connect"]["statuses"];
    assert!(
        connect["503"].as_u64().unwrap_or(0) > 0,
        "the newcomer was told to wait while leases were recovered: {connect}"
    );
    assert!(
        outcome
            .recovery_ms
            .is_some_and(|ms| ms < 3 * MAX_SECONDS * 1000),
        "the quarantine ends about one MAX_SECONDS after the loss: {outcome:?}"
    );
}

#[test]
fn the_service_follows_a_sentinel_failover_without_restart() {
    let _serial = serial();
    let master = RedisServer::start();
    let replica = RedisServer::start_with(RedisOptions {
        replica_of: Some(master.port),
        ..Default::default()
    });
    let sentinels = Sentinels::start(master.port, 3);
    let deployment = Deployment::new("", MAX_SECONDS, shards())
        .set("REDIS_URL", "")
        .set("REDIS_SENTINELS", &sentinels.addresses())
        .set("REDIS_SENTINEL_MASTER", Sentinels::MASTER);
    let replicas = deployment.start_many(3);
    let start = Instant::now();
    let load = start_load(
        &replicas.iter().collect::<Vec<_>>(),
        &fleet(Duration::from_secs(16)),
    );
    let prefix = deployment
        .env
        .iter()
        .find_map(|(name, value)| (name == "KEY_PREFIX").then_some(value.clone()))
        .expect("KEY_PREFIX");
    // Each replica listens for the others' wake-ups on the master the sentinels name.
    let channel = format!("{{{prefix}}}:wakeups");
    let subscribers = |server: &RedisServer| {
        let reply = server.query(&["PUBSUB", "NUMSUB", &channel]);
        redis::from_redis_value::<(String, i64)>(reply).map_or(0, |(_, count)| count)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscribers(&master) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        subscribers(&master),
        3,
        "every replica subscribes through the sentinels"
    );

    at(start, WARM_UP);
    sentinels.failover();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sentinels.master_port() != Some(replica.port) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed_over = unix_ms();
    assert_eq!(
        sentinels.master_port(),
        Some(replica.port),
        "sentinels promoted the replica"
    );
    // The old master stays up and, until the sentinels demote it (seconds later), still accepts
    // writes: the replicas must stop writing there as soon as the sentinels name the new master.
    std::thread::sleep(Duration::from_secs(1));
    let old_master_scripts = master.script_calls();
    let new_master_scripts = replica.script_calls();
    // The old master's last writes may not have replicated: the service starts a new epoch on the
    // new master and holds newcomers back for one lease, as after a data loss.
    let quarantine = replica.query(&["PTTL", &format!("{{{prefix}}}:quarantine")]);
    assert!(
        matches!(quarantine, redis::Value::Int(ms) if ms > 0),
        "a quarantine follows the failover: {quarantine:?}"
    );
    let outcome = finish(
        load,
        Duration::from_secs(50),
        "Sentinel failover",
        failed_over,
        "old master left running",
    );
    assert_eq!(
        outcome.lost_acknowledged_beats, 0,
        "no acknowledged beat went to the old master after the failover: {outcome:?}"
    );
    assert_eq!(
        master.script_calls(),
        old_master_scripts,
        "nothing runs on the old master a second after the failover"
    );
    assert!(
        replica.script_calls() > new_master_scripts,
        "the service writes to the new master"
    );
    assert!(
        outcome.recovery_ms.is_some_and(|ms| ms < 8000),
        "{outcome:?}"
    );
    // Still listening: on the new master, or on the old one now that it replicates from it.
    assert_eq!(
        subscribers(&master) + subscribers(&replica),
        3,
        "every replica still listens for wake-ups"
    );
    for replica in &replicas {
        assert!(replica.ready(), "served throughout, never restarted");
    }
    drop(master);
}
