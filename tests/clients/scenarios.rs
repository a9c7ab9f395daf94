//! The scenarios, for each example bot, judged from the gateway's records (and the
//! proxies' for what the bots asked shardman). Scenarios of one bot kind run one at a time: they
//! measure time, and their processes share two cores with the other kind running beside them.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::discord::{Event, Shard};
use crate::harness::{BotKind, Fleet, MAX_SECONDS, http};
use crate::support::replicas::SECRET;
use shardman::session_token::SessionSigner;

/// From the first bot's start until every shard is up: the last group's IDENTIFY slot is 6 s
/// after the first, plus library start-up on a loaded machine.
const COME_UP: Duration = Duration::from_secs(45);
/// From a fault until the spare is up: the lease, the spare's retry, its connect.
const TAKE_OVER: Duration = Duration::from_secs(25);
/// How long after SIGCONT a woken process may still be on the gateway: its lapse timer fires
/// within a second, plus margin for two busy cores.
const WOKEN_LEAVES_WITHIN: Duration = Duration::from_millis(3000);

fn one_at_a_time(kind: BotKind) -> MutexGuard<'static, ()> {
    static LOCKS: [Mutex<()>; 3] = [Mutex::new(()), Mutex::new(()), Mutex::new(())];
    let lock = &LOCKS[kind as usize];
    lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shards(ids: impl IntoIterator<Item = u32>, count: u32) -> BTreeSet<Shard> {
    ids.into_iter().map(|id| Shard { id, count }).collect()
}

fn live_set(fleet: &Fleet) -> Vec<Shard> {
    fleet.discord.live_shards()
}

/// Waits until exactly `expected` are live, each once.
fn wait_live_exactly(fleet: &Fleet, expected: &BTreeSet<Shard>, what: &str, within: Duration) {
    let wanted: Vec<Shard> = expected.iter().copied().collect();
    fleet.wait_for(what, within, |fleet| live_set(fleet) == wanted);
}

/// No IDENTIFY too early, and nothing but JSON lines on any bot's stdout.
fn assert_clean(fleet: &Fleet) {
    let early = fleet.discord.too_early_identifies();
    assert!(
        early.is_empty(),
        "{}: IDENTIFY too early:\n{}\n{}",
        fleet.kind.name(),
        fleet.explain_too_early(),
        fleet.report()
    );
    for bot in &fleet.bots {
        assert!(
            bot.stray_stdout().is_empty(),
            "{}: bot {} printed non-JSON on stdout: {:?}",
            fleet.kind.name(),
            bot.pid,
            bot.stray_stdout()
        );
    }
}

/// Starts `processes` bots for 4 shards in groups of `group` and checks that every shard comes
/// up exactly once (one READY each), that processes beyond the groups hold nothing, and that no
/// IDENTIFY came early. Returns the index of a spare.
fn come_up_once(fleet: &mut Fleet, processes: usize, group: usize) -> usize {
    let expected = shards(0..4, 4);
    fleet.spawn_bots(processes);
    wait_live_exactly(fleet, &expected, "all 4 shards live", COME_UP);
    // A little longer: nothing more may happen once the fleet is up.
    std::thread::sleep(Duration::from_millis(1500));
    let kind = fleet.kind.name();
    assert_eq!(
        live_set(fleet),
        expected.iter().copied().collect::<Vec<_>>(),
        "{kind}: the live sessions changed after coming up\n{}",
        fleet.report()
    );
    let readies = fleet.discord.ready_counts();
    for shard in &expected {
        assert_eq!(
            readies.get(shard),
            Some(&1),
            "{kind}: shard {shard} was not READY exactly once\n{}",
            fleet.report()
        );
    }
    let holders: Vec<usize> = (0..fleet.bots.len())
        .filter(|&index| fleet.bots[index].holds().is_some())
        .collect();
    assert_eq!(
        holders.len(),
        4 / group,
        "{kind}: expected {} holders\n{}",
        4 / group,
        fleet.report()
    );
    for &index in &holders {
        let (ids, count) = fleet.bots[index].holds().expect("holder");
        assert_eq!(
            (ids.len(), count),
            (group, 4),
            "{kind}: claim of bot {index}"
        );
    }
    let spare = (0..fleet.bots.len())
        .find(|index| !holders.contains(index))
        .expect("a spare process");
    let spare_bot = &fleet.bots[spare];
    assert!(
        spare_bot.events_named("claimed").is_empty(),
        "{kind}: the spare claimed something\n{}",
        fleet.report()
    );
    assert_eq!(
        fleet.discord.open_connections_of(spare_bot.pid),
        0,
        "{kind}: the spare is on the gateway\n{}",
        fleet.report()
    );
    // Every live session belongs to the process that says it holds that shard.
    for (shard, pid) in fleet.discord.live() {
        let holder = fleet
            .holder_of(shard.id, shard.count)
            .map(|index| fleet.bots[index].pid);
        assert_eq!(
            pid,
            holder,
            "{kind}: who is live as {shard}\n{}",
            fleet.report()
        );
    }
    assert_clean(fleet);
    spare
}

/// Kills the holder of shard 0 with SIGKILL and checks that the spare takes its shards over
/// (RESUMing them where the library must), measuring kill -> spare READY/RESUMED.
fn kill_holder_and_watch_the_spare_take_over(fleet: &mut Fleet, spare: usize, scenario: &str) {
    let kind = fleet.kind;
    let victim = fleet.holder_of(0, 4).expect("a holder of shard 0");
    let (ids, _) = fleet.bots[victim].holds().expect("victim's claim");
    let taken = shards(ids.iter().copied(), 4);
    let killed_at = Instant::now();
    fleet.bots[victim].kill9();
    fleet.wait_for("the spare to take the shards over", TAKE_OVER, |fleet| {
        taken
            .iter()
            .all(|shard| fleet.discord.first_live_after(*shard, killed_at).is_some())
    });
    let spare_pid = fleet.bots[spare].pid;
    let mut slowest = Duration::ZERO;
    for shard in &taken {
        let record = fleet
            .discord
            .first_live_after(*shard, killed_at)
            .expect("live");
        assert_eq!(
            record.pid,
            Some(spare_pid),
            "{}: shard {shard} came up in another process than the spare\n{}",
            kind.name(),
            fleet.report()
        );
        if kind.must_resume() {
            assert!(
                matches!(record.event, Event::Resumed { .. }),
                "{}: the spare did not RESUME shard {shard}\n{}",
                kind.name(),
                fleet.report()
            );
            assert_eq!(
                fleet.discord.identifies_after(*shard, killed_at),
                0,
                "{}: shard {shard} was identified anew\n{}",
                kind.name(),
                fleet.report()
            );
        }
        let took = record.at.duration_since(killed_at);
        eprintln!(
            "clients measurement: {scenario} {}: kill -9 -> spare {} of shard {shard}: {} ms",
            kind.name(),
            if matches!(record.event, Event::Resumed { .. }) {
                "RESUMED"
            } else {
                "READY"
            },
            took.as_millis()
        );
        slowest = slowest.max(took);
    }
    wait_live_exactly(
        fleet,
        &shards(0..4, 4),
        "all 4 shards live again",
        Duration::from_secs(5),
    );
    let (double, _) = fleet.discord.longest_double_session();
    assert_eq!(
        double,
        Duration::ZERO,
        "{}: a killed process's session overlapped its successor's\n{}",
        kind.name(),
        fleet.report()
    );
    assert_eq!(
        fleet.bots[spare].holds(),
        Some((ids, 4)),
        "{}: the spare's own account of its claim",
        kind.name()
    );
    assert!(
        slowest <= Duration::from_secs(MAX_SECONDS + 6),
        "{}: the hand-over took {slowest:?}",
        kind.name()
    );
    assert_clean(fleet);
}

fn come_up_once_and_hand_over_on_kill(kind: BotKind) {
    let _serial = one_at_a_time(kind);
    let mut fleet = Fleet::start(kind, 4, 1);
    let spare = come_up_once(&mut fleet, 5, 1);
    kill_holder_and_watch_the_spare_take_over(&mut fleet, spare, "shards");
}

fn groups_come_up_once_and_hand_over_on_kill(kind: BotKind) {
    let _serial = one_at_a_time(kind);
    let mut fleet = Fleet::start(kind, 4, 2);
    let spare = come_up_once(&mut fleet, 3, 2);
    kill_holder_and_watch_the_spare_take_over(&mut fleet, spare, "groups");
}

fn stopped_holder_hands_over_and_leaves_when_woken(kind: BotKind) {
    let _serial = one_at_a_time(kind);
    let name = kind.name();
    let mut fleet = Fleet::start(kind, 4, 1);
    let spare = come_up_once(&mut fleet, 5, 1);
    let victim = fleet.holder_of(0, 4).expect("a holder of shard 0");
    let victim_pid = fleet.bots[victim].pid;
    let shard = Shard { id: 0, count: 4 };
    let own_sessions: Vec<String> = fleet
        .exchanges()
        .into_iter()
        .filter(|exchange| exchange.pid == Some(victim_pid))
        .filter_map(|exchange| exchange.granted)
        .collect();
    assert!(
        !own_sessions.is_empty(),
        "{name}: the proxies saw no grant to the holder"
    );

    let stopped_at = Instant::now();
    fleet.bots[victim].sigstop();
    fleet.wait_for("the spare to take shard 0 over", TAKE_OVER, |fleet| {
        fleet
            .discord
            .first_live_after(shard, stopped_at)
            .is_some_and(|record| record.pid == Some(fleet.bots[spare].pid))
    });
    let taken = fleet
        .discord
        .first_live_after(shard, stopped_at)
        .expect("live");
    if kind.must_resume() {
        assert!(
            matches!(taken.event, Event::Resumed { .. }),
            "{name}: the spare did not RESUME\n{}",
            fleet.report()
        );
    }
    eprintln!(
        "clients measurement: stopped {name}: SIGSTOP -> spare live: {} ms",
        taken.at.duration_since(stopped_at).as_millis()
    );

    std::thread::sleep(Duration::from_millis(500));
    let woken_at = Instant::now();
    fleet.bots[victim].sigcont();
    fleet.wait_for(
        "the woken process to leave the gateway",
        Duration::from_secs(10),
        |fleet| fleet.discord.open_connections_of(victim_pid) == 0,
    );
    // Watch a while longer: it must not come back while the spare holds its shard.
    std::thread::sleep(WOKEN_LEAVES_WITHIN + Duration::from_millis(1000));
    let left = fleet
        .discord
        .last_close_of(victim_pid)
        .map(|closed| closed.saturating_duration_since(woken_at));
    eprintln!(
        "clients measurement: stopped {name}: SIGCONT -> off the gateway: {} ms",
        left.map_or(0, |left| left.as_millis())
    );
    assert!(
        fleet.discord.open_connections_of(victim_pid) == 0
            && left.is_none_or(|left| left <= WOKEN_LEAVES_WITHIN),
        "{name}: the woken process stayed on the gateway ({left:?} after SIGCONT)\n{}",
        fleet.report()
    );
    let beats_after: Vec<_> = fleet
        .exchanges()
        .into_iter()
        .filter(|exchange| {
            exchange.pid == Some(victim_pid)
                && exchange.at >= woken_at
                && exchange.path == "/beat"
                && exchange
                    .session_id
                    .as_ref()
                    .is_some_and(|session| own_sessions.contains(session))
        })
        .collect();
    assert!(
        beats_after.is_empty(),
        "{name}: the woken process beat its old session again: {beats_after:?}"
    );
    assert!(
        fleet.bots[victim]
            .events_named("released")
            .iter()
            .any(|(at, event)| *at >= woken_at && event["reason"] == "lapsed"),
        "{name}: the woken process did not report its lapse\n{}",
        fleet.report()
    );
    let (double, double_shard) = fleet.discord.longest_double_session();
    eprintln!(
        "clients measurement: stopped {name}: longest double session: {} ms ({double_shard:?})",
        double.as_millis()
    );
    wait_live_exactly(
        &fleet,
        &shards(0..4, 4),
        "all 4 shards live once",
        Duration::from_secs(5),
    );
    assert_eq!(
        fleet
            .discord
            .live()
            .iter()
            .find(|(live, _)| *live == shard)
            .map(|(_, pid)| *pid),
        Some(Some(fleet.bots[spare].pid)),
        "{name}: shard 0 is not the spare's\n{}",
        fleet.report()
    );
    assert_clean(&fleet);
}

fn reshard_from_four_to_six_retires_the_old_processes(kind: BotKind) {
    let _serial = one_at_a_time(kind);
    let name = kind.name();
    let mut fleet = Fleet::start(kind, 4, 1);
    fleet.spawn_bots(4);
    wait_live_exactly(&fleet, &shards(0..4, 4), "all 4 shards live", COME_UP);
    let (status, body) = http(
        fleet.replicas[0].port,
        "POST",
        "/reshard",
        Some(&json!({"max_shards": 6})),
    )
    .expect("POST /reshard");
    assert_eq!(status, 202, "{name}: /reshard answered {body}");
    let resharded_at = Instant::now();
    fleet.spawn_bots(6);
    let old = 0..4;
    wait_live_exactly(
        &fleet,
        &shards(0..6, 6),
        "exactly the 6 shards of count 6 live",
        COME_UP + Duration::from_secs(10),
    );
    eprintln!(
        "clients measurement: reshard {name}: POST /reshard -> only the 6 new shards live: {} ms",
        resharded_at.elapsed().as_millis()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    for index in old.clone() {
        let status = loop {
            if let Some(status) = fleet.bots[index].exited() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: old bot {index} did not exit\n{}",
                fleet.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            status.code(),
            Some(0),
            "{name}: old bot {index} exited with {status}\n{}",
            fleet.report()
        );
    }
    let exchanges = fleet.exchanges();
    for index in old.clone() {
        let bot = &fleet.bots[index];
        assert!(
            exchanges
                .iter()
                .any(|exchange| exchange.pid == Some(bot.pid)
                    && exchange.path == "/beat"
                    && exchange.status == 401),
            "{name}: old bot {index} exited without a 401 beat"
        );
        assert!(
            bot.events_named("released")
                .iter()
                .any(|(_, event)| event["reason"] == "retired"),
            "{name}: old bot {index} did not report its retirement\n{}",
            fleet.report()
        );
        assert_eq!(fleet.discord.open_connections_of(bot.pid), 0);
    }
    for index in 4..10 {
        assert!(
            fleet.bots[index].exited().is_none(),
            "{name}: new bot {index} exited\n{}",
            fleet.report()
        );
    }
    let readies = fleet.discord.ready_counts();
    for shard in shards(0..6, 6) {
        assert_eq!(
            readies.get(&shard),
            Some(&1),
            "{name}: shard {shard} was not READY once\n{}",
            fleet.report()
        );
    }
    assert_clean(&fleet);
}

/// The secret the bots' sessions are first signed under; the bots send the new one, `SECRET`.
const ROTATED_AWAY: &str = "rotated-away-secret";

/// The README's secret rotation under running bots: three replicas that completed its first phase
/// (SECRET=old, SECRET_PREVIOUS=new, which the bots send) are rolled one by one to its second
/// (SECRET=new, SECRET_PREVIOUS=old), then to its third (SECRET=new). No shard may change hands:
/// every beat is answered 2xx, no bot claims again or releases, every shard is READY once. The
/// sessions, signed under the old secret, survive the third phase only if the bots sent the ids
/// the second phase re-signed.
fn a_secret_rotation_rolled_replica_by_replica_hands_no_shard_over(kind: BotKind) {
    let _serial = one_at_a_time(kind);
    let name = kind.name();
    let mut fleet = Fleet::start_with(
        kind,
        4,
        1,
        &[("SECRET", ROTATED_AWAY), ("SECRET_PREVIOUS", SECRET)],
    );
    let expected = shards(0..4, 4);
    fleet.spawn_bots(4);
    wait_live_exactly(&fleet, &expected, "all 4 shards live", COME_UP);
    let key_prefix = fleet.key_prefix();
    let signed_under = |secret: &str, session_id: &str| {
        SessionSigner::new(secret, &key_prefix)
            .verify(session_id)
            .is_some()
    };
    let granted: Vec<String> = fleet
        .exchanges()
        .into_iter()
        .filter_map(|exchange| exchange.granted)
        .collect();
    assert_eq!(granted.len(), 4, "{name}: one grant per shard");
    assert!(granted.iter().all(|id| signed_under(ROTATED_AWAY, id)));

    let rolled_at = Instant::now();
    fleet.roll(&[("SECRET", SECRET), ("SECRET_PREVIOUS", ROTATED_AWAY)]);
    // Every session beats within a lease: re-signed by then.
    std::thread::sleep(Duration::from_secs(MAX_SECONDS));
    fleet.roll(&[("SECRET", SECRET), ("SECRET_PREVIOUS", "")]);
    // A session still signed under the old secret would be answered 404 within a beat interval.
    std::thread::sleep(Duration::from_secs(MAX_SECONDS));
    eprintln!(
        "clients measurement: rotation {name}: both rolls and a lease after each: {} ms",
        rolled_at.elapsed().as_millis()
    );

    let exchanges = fleet.exchanges();
    let failed: Vec<String> = exchanges
        .iter()
        .filter(|exchange| exchange.path == "/beat" && !(200..300).contains(&exchange.status))
        .map(|exchange| format!("{} from pid {:?}", exchange.status, exchange.pid))
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: beats not answered 2xx: {failed:?}
{}",
        fleet.report()
    );
    let connects = exchanges.iter().filter(|e| e.path == "/connect").count();
    assert_eq!(
        connects,
        4,
        "{name}: a bot connected again
{}",
        fleet.report()
    );
    for bot in &fleet.bots {
        assert_eq!(
            (
                bot.events_named("claimed").len(),
                bot.events_named("released").len()
            ),
            (1, 0),
            "{name}: bot {} claimed again or released
{}",
            bot.pid,
            fleet.report()
        );
        let beats: Vec<_> = exchanges
            .iter()
            .filter(|exchange| exchange.pid == Some(bot.pid) && exchange.path == "/beat")
            .collect();
        assert!(
            beats.iter().any(|exchange| exchange.resigned.is_some()),
            "{name}: bot {} was never re-signed",
            bot.pid
        );
        let last = beats
            .last()
            .and_then(|exchange| exchange.session_id.clone())
            .expect("a beat");
        assert!(
            signed_under(SECRET, &last) && !signed_under(ROTATED_AWAY, &last),
            "{name}: bot {} still beats a session signed under the old secret",
            bot.pid
        );
    }
    wait_live_exactly(&fleet, &expected, "the same 4 shards live", Duration::ZERO);
    let readies = fleet.discord.ready_counts();
    for shard in &expected {
        assert_eq!(
            readies.get(shard),
            Some(&1),
            "{name}: shard {shard} was not READY exactly once
{}",
            fleet.report()
        );
    }
    assert_clean(&fleet);
}

#[test]
fn python_bots_keep_their_shards_through_a_secret_rotation_rolled_over_the_replicas() {
    a_secret_rotation_rolled_replica_by_replica_hands_no_shard_over(BotKind::Python);
}

#[test]
fn js_bots_keep_their_shards_through_a_secret_rotation_rolled_over_the_replicas() {
    a_secret_rotation_rolled_replica_by_replica_hands_no_shard_over(BotKind::Js);
}

#[test]
fn rust_bots_keep_their_shards_through_a_secret_rotation_rolled_over_the_replicas() {
    a_secret_rotation_rolled_replica_by_replica_hands_no_shard_over(BotKind::Rust);
}

#[test]
fn python_bots_for_four_shards_come_up_once_and_hand_over_on_kill() {
    come_up_once_and_hand_over_on_kill(BotKind::Python);
}

#[test]
fn js_bots_for_four_shards_come_up_once_and_resume_on_kill() {
    come_up_once_and_hand_over_on_kill(BotKind::Js);
}

#[test]
fn rust_bots_for_four_shards_come_up_once_and_resume_on_kill() {
    come_up_once_and_hand_over_on_kill(BotKind::Rust);
}

#[test]
fn python_bot_stopped_past_its_lease_is_replaced_and_leaves_the_gateway_when_woken() {
    stopped_holder_hands_over_and_leaves_when_woken(BotKind::Python);
}

#[test]
fn js_bot_stopped_past_its_lease_is_replaced_and_leaves_the_gateway_when_woken() {
    stopped_holder_hands_over_and_leaves_when_woken(BotKind::Js);
}

#[test]
fn rust_bot_stopped_past_its_lease_is_replaced_and_leaves_the_gateway_when_woken() {
    stopped_holder_hands_over_and_leaves_when_woken(BotKind::Rust);
}

#[test]
fn python_bots_reshard_from_four_to_six_and_the_old_ones_exit_on_401() {
    reshard_from_four_to_six_retires_the_old_processes(BotKind::Python);
}

#[test]
fn js_bots_reshard_from_four_to_six_and_the_old_ones_exit_on_401() {
    reshard_from_four_to_six_retires_the_old_processes(BotKind::Js);
}

#[test]
fn rust_bots_reshard_from_four_to_six_and_the_old_ones_exit_on_401() {
    reshard_from_four_to_six_retires_the_old_processes(BotKind::Rust);
}

#[test]
fn python_bot_groups_of_two_shards_come_up_once_and_hand_over_on_kill() {
    groups_come_up_once_and_hand_over_on_kill(BotKind::Python);
}

#[test]
fn js_bot_groups_of_two_shards_come_up_once_and_resume_on_kill() {
    groups_come_up_once_and_hand_over_on_kill(BotKind::Js);
}

#[test]
fn rust_bot_groups_of_two_shards_come_up_once_and_resume_on_kill() {
    groups_come_up_once_and_hand_over_on_kill(BotKind::Rust);
}
