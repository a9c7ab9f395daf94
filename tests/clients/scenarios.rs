//! The scenarios, for each example bot, judged from the gateway's records (and the
//! proxies' for what the bots asked shardman). At most `AT_ONCE` (harness) scenarios run at a
//! time, of any kinds: they measure time, and their processes share the machine's cores.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::discord::{Event, Record, Shard};
use crate::harness::{BotKind, Fleet, MAX_SECONDS, Setup, http, scenario_slot};
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
    assert_clean_since(fleet, fleet.started);
}

/// No IDENTIFY too early since `since`, and nothing but JSON lines on any bot's stdout.
fn assert_clean_since(fleet: &Fleet, since: Instant) {
    let early: Vec<_> = fleet
        .discord
        .too_early_identifies()
        .into_iter()
        .filter(|record| record.at >= since)
        .collect();
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

/// Waits until process `pid` has beaten twice since the last of `held` came live (READY or
/// RESUMED): only then does shardman have each session to hand over (a shard that came up last
/// may not have been beaten yet; the first beat may have left while READY was on its way).
fn wait_until_beaten_since_live(fleet: &Fleet, pid: u32, held: &BTreeSet<Shard>) {
    let live_at = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.pid == Some(pid))
        .filter(|record| record.shard.is_some_and(|shard| held.contains(&shard)))
        .filter(|record| matches!(record.event, Event::Ready { .. } | Event::Resumed { .. }))
        .map(|record| record.at)
        .max()
        .expect("the shards came live");
    fleet.wait_for(
        "the holder to beat twice since its shards came live",
        TAKE_OVER,
        |fleet| {
            let exchanges = fleet.exchanges();
            let beats_since = exchanges.iter().filter(|exchange| {
                exchange.pid == Some(pid)
                    && exchange.path == "/beat"
                    && exchange.status < 300
                    && exchange.at > live_at
            });
            beats_since.count() >= 2
        },
    );
}

/// Kills the holder of shard 0 with SIGKILL and checks that the spare takes its shards over
/// (RESUMing them where the library must), measuring kill -> spare READY/RESUMED.
fn kill_holder_and_watch_the_spare_take_over(fleet: &mut Fleet, spare: usize, scenario: &str) {
    let kind = fleet.kind;
    let victim = fleet.holder_of(0, 4).expect("a holder of shard 0");
    let (ids, _) = fleet.bots[victim].holds().expect("victim's claim");
    let taken = shards(ids.iter().copied(), 4);
    wait_until_beaten_since_live(fleet, fleet.bots[victim].pid, &taken);
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
    let _slot = scenario_slot();
    let mut fleet = Fleet::start(kind, 4, 1);
    let spare = come_up_once(&mut fleet, 5, 1);
    kill_holder_and_watch_the_spare_take_over(&mut fleet, spare, "shards");
}

fn groups_come_up_once_and_hand_over_on_kill(kind: BotKind) {
    let _slot = scenario_slot();
    let mut fleet = Fleet::start(kind, 4, 2);
    let spare = come_up_once(&mut fleet, 3, 2);
    kill_holder_and_watch_the_spare_take_over(&mut fleet, spare, "groups");
}

fn stopped_holder_hands_over_and_leaves_when_woken(kind: BotKind) {
    let _slot = scenario_slot();
    let name = kind.name();
    let mut fleet = Fleet::start(kind, 4, 1);
    let spare = come_up_once(&mut fleet, 5, 1);
    let victim = fleet.holder_of(0, 4).expect("a holder of shard 0");
    let victim_pid = fleet.bots[victim].pid;
    let shard = Shard { id: 0, count: 4 };
    wait_until_beaten_since_live(&fleet, victim_pid, &BTreeSet::from([shard]));
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
    let _slot = scenario_slot();
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

/// The deployment: 8 shards at `max_concurrency` 2, one a process.
const DEPLOY_SHARDS: u32 = 8;
/// From the first bot's start until all 8 shards are up: 4 IDENTIFYs a bucket, at least 5 s
/// apart, plus library start-up on a loaded machine.
const DEPLOY_COME_UP: Duration = Duration::from_secs(60);
/// How long an old process may take from SIGTERM to exit: close its shards, a last beat, a
/// disconnect.
const EXITS_WITHIN: Duration = Duration::from_secs(10);
/// The bound on a RESUME handover's gap (old connection closed -> RESUMED).
const HANDOVER_GAP: Duration = Duration::from_millis(500);
/// The bound for the adapters not held to `HANDOVER_GAP` yet (hikari, Discordeno: their
/// successors build a client per claim, 0.3 to 0.7 s under load; Python IDENTIFYs): a handover
/// that never waits for the lease (10 s here). The JS bot once needed it too (1054 ms seen under a
/// load average of 10, before its last beat overlapped the close).
const HANDOVER_GAP_LOADED: Duration = Duration::from_secs(3);

fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}

fn median(sorted: &[Duration]) -> Duration {
    match sorted.len() {
        0 => Duration::ZERO,
        len if len % 2 == 1 => sorted[len / 2],
        len => (sorted[len / 2 - 1] + sorted[len / 2]) / 2,
    }
}

/// Every pair of consecutive accepted IDENTIFYs of one bucket since `since`: (bucket, spacing).
fn bucket_spacings(fleet: &Fleet, since: Instant) -> Vec<(u32, Duration)> {
    let mut last: std::collections::HashMap<u32, Instant> = Default::default();
    let mut spacings = Vec::new();
    for record in fleet.discord.records() {
        let (Event::Identify { too_early: false }, Some(shard)) = (&record.event, record.shard)
        else {
            continue;
        };
        if record.at < since {
            continue;
        }
        let bucket = shard.id % fleet.max_concurrency;
        if let Some(previous) = last.insert(bucket, record.at) {
            spacings.push((bucket, record.at - previous));
        }
    }
    spacings
}

/// How long before its SIGTERM a dispatch written to an old process may still have been unread
/// when it stopped taking them: a busy machine may schedule the signal before the socket read.
/// Far less than a beat interval, so a handover that passed on the sequence of an earlier beat
/// still shows.
const IN_FLIGHT_BEFORE_SIGTERM: Duration = Duration::from_millis(250);

/// How a RESUME follows on from the session's old connection.
#[derive(Debug, PartialEq)]
enum Handover {
    /// It names the last sequence the old connection was sent.
    Exact,
    /// It names an earlier one, and every dispatch the old connection was sent after it was
    /// written once its process had been told to stop (SIGTERM, less `IN_FLIGHT_BEFORE_SIGTERM`):
    /// in flight while it closed, never handled there, and replayed to the new holder. (An adapter
    /// that stops taking dispatches and then closes, as the JS one does, leaves these.)
    InFlight(usize),
    /// Refused, or it names a sequence the old process had long received, or one it was never
    /// sent: events handled twice, or lost.
    Wrong,
}

fn judge_handover(
    fleet: &Fleet,
    resume: &Record,
    sigterms: &std::collections::HashMap<u32, Instant>,
) -> Handover {
    let Event::Resume {
        accepted: true,
        sequence: Some(given),
        last_sent: Some(last_sent),
        previous_connection: Some(old),
        ..
    } = resume.event
    else {
        return Handover::Wrong;
    };
    if given == last_sent {
        return Handover::Exact;
    }
    let old_pid = fleet
        .discord
        .records()
        .into_iter()
        .find(|record| record.connection == old)
        .and_then(|record| record.pid);
    let Some(stopped) = old_pid.and_then(|pid| sigterms.get(&pid)) else {
        return Handover::Wrong;
    };
    let unread: Vec<(u64, Instant)> = fleet
        .discord
        .sent_on(old)
        .into_iter()
        .filter(|(sequence, _)| *sequence > given)
        .collect();
    let all_logged = unread.len() as u64 == last_sent.saturating_sub(given);
    if given < last_sent
        && all_logged
        && unread
            .iter()
            .all(|(_, written)| *written + IN_FLIGHT_BEFORE_SIGTERM >= *stopped)
    {
        Handover::InFlight(unread.len())
    } else {
        Handover::Wrong
    }
}

/// A rolling deploy the way Kubernetes rolls a Deployment: 8 processes run the 8 shards, 8 new
/// ones start, and once each is up (asking shardman for a shard) the old ones get SIGTERM, one a
/// second. Judged: the cold start's IDENTIFY pacing, old processes exiting 0, never two live
/// sessions of a shard, no IDENTIFY within 5 s of its bucket's previous one during the deploy,
/// and for the bots that RESUME what they are handed: no IDENTIFY, every RESUME at the last
/// sequence its old connection was sent (or before dispatches that were in flight while it
/// closed, see `Handover`), each shard down at most `gap_bound`.
fn come_up_and_roll_over(kind: BotKind, gap_bound: Duration) {
    let _slot = scenario_slot();
    let name = kind.name();
    // A longer lease than the other scenarios': nothing here waits for one to run out, and on a
    // busy 2-core machine a burst of starting processes can starve the running ones' beats for
    // seconds (seen: 7 of 8 old processes lapsing at once under a load average of 6).
    let mut fleet = Fleet::start_with(
        kind,
        Setup {
            max_seconds: 2 * MAX_SECONDS,
            ..Setup::new(DEPLOY_SHARDS, 1)
        },
    );
    let all = shards(0..DEPLOY_SHARDS, DEPLOY_SHARDS);
    let cold_start = Instant::now();
    fleet.spawn_bots(DEPLOY_SHARDS as usize);
    wait_live_exactly(&fleet, &all, "all 8 shards live", DEPLOY_COME_UP);
    // The cold start: each shard READY once; no IDENTIFY within 5 s of its bucket's previous one
    // (the stand-in answers such an IDENTIFY with op 9 and records it as too early).
    assert_clean(&fleet);
    let readies = fleet.discord.ready_counts();
    for shard in &all {
        assert_eq!(
            readies.get(shard),
            Some(&1),
            "{name}: shard {shard} was not READY exactly once at the cold start\n{}",
            fleet.report()
        );
    }
    let spacings = bucket_spacings(&fleet, cold_start);
    let mean = spacings.iter().map(|(_, gap)| *gap).sum::<Duration>() / spacings.len() as u32;
    let identifies: Vec<Instant> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.event == Event::Identify { too_early: false })
        .map(|record| record.at)
        .collect();
    eprintln!(
        "clients measurement: cold start {name}: 8 shards at max_concurrency 2: IDENTIFY spacing in \
         a bucket min {} ms, mean {} ms; first to last IDENTIFY {} ms (Discord's limit 15000 ms)",
        ms(spacings
            .iter()
            .map(|(_, gap)| *gap)
            .min()
            .unwrap_or_default()),
        ms(mean),
        ms(identifies[identifies.len() - 1] - identifies[0])
    );

    // Sequences move all along (a dispatch every 50 ms on each session), so a handover that passed
    // on the sequence of an earlier beat instead of the last one would show.
    let deployed_at = Instant::now();
    let old: Vec<usize> = (0..fleet.bots.len()).collect();
    let old_pids: Vec<u32> = old.iter().map(|&index| fleet.bots[index].pid).collect();
    // Pods of a rollout start about together; a little apart here, so that 8 libraries loading at
    // once do not take the machine from the processes running the shards.
    fleet.spawn_bots_apart(DEPLOY_SHARDS as usize, Duration::from_millis(200));
    let new_pids: Vec<u32> = fleet.bots[old.len()..].iter().map(|bot| bot.pid).collect();
    // Kubernetes stops an old pod once a new one is ready; a bot is ready once it asks for shards.
    fleet.wait_for(
        "every new process to ask shardman for shards",
        Duration::from_secs(40),
        |fleet| {
            let exchanges = fleet.exchanges();
            new_pids.iter().all(|pid| {
                exchanges
                    .iter()
                    .any(|exchange| exchange.pid == Some(*pid) && exchange.path == "/connect")
            })
        },
    );
    // SIGTERM one a second, watching every old process's exit as it comes.
    let mut terminated: Vec<Instant> = Vec::new();
    type Exit = Option<(std::process::ExitStatus, Instant)>;
    let mut exited: Vec<Exit> = vec![None; old.len()];
    let watch_exits = |fleet: &mut Fleet, terminated: &[Instant], exited: &mut [Exit]| {
        for (slot, &index) in exited.iter_mut().zip(&old).take(terminated.len()) {
            if slot.is_none() {
                *slot = fleet.bots[index]
                    .exited()
                    .map(|status| (status, Instant::now()));
            }
        }
    };
    for &index in &old {
        terminated.push(Instant::now());
        fleet.bots[index].sigterm();
        let next = Instant::now() + Duration::from_secs(1);
        while Instant::now() < next {
            watch_exits(&mut fleet, &terminated, &mut exited);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let deadline = terminated[terminated.len() - 1] + EXITS_WITHIN;
    while exited.iter().any(Option::is_none) && Instant::now() < deadline {
        watch_exits(&mut fleet, &terminated, &mut exited);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut exits = Vec::new();
    for ((&index, sent), exit) in old.iter().zip(&terminated).zip(&exited) {
        let Some((status, at)) = exit else {
            panic!(
                "{name}: old bot {index} did not exit within {EXITS_WITHIN:?} of SIGTERM\n{}",
                fleet.report()
            );
        };
        assert_eq!(
            status.code(),
            Some(0),
            "{name}: old bot {index} exited with {status} after SIGTERM\n{}",
            fleet.report()
        );
        assert!(
            at.saturating_duration_since(*sent) <= EXITS_WITHIN,
            "{name}: old bot {index} took {:?} to exit after SIGTERM\n{}",
            at.saturating_duration_since(*sent),
            fleet.report()
        );
        exits.push(at.saturating_duration_since(*sent));
    }
    fleet.wait_for(
        "the 8 shards live in the new processes",
        DEPLOY_COME_UP,
        |fleet| {
            let live = fleet.discord.live();
            live.iter().map(|(shard, _)| *shard).collect::<Vec<_>>()
                == all.iter().copied().collect::<Vec<_>>()
                && live
                    .iter()
                    .all(|(_, pid)| pid.is_some_and(|pid| new_pids.contains(&pid)))
        },
    );
    // A little longer: nothing more may happen once the new fleet is up.
    std::thread::sleep(Duration::from_millis(1500));

    let records = fleet.discord.records();
    let since_deploy = || records.iter().filter(|record| record.at >= deployed_at);
    let identifies = since_deploy()
        .filter(|record| matches!(record.event, Event::Identify { .. }))
        .count();
    let sigterms: std::collections::HashMap<u32, Instant> = old_pids
        .iter()
        .copied()
        .zip(terminated.iter().copied())
        .collect();
    let resumes: Vec<(&Record, Handover)> = since_deploy()
        .filter(|record| matches!(record.event, Event::Resume { .. }))
        .map(|record| (record, judge_handover(&fleet, record, &sigterms)))
        .collect();
    let exact = resumes
        .iter()
        .filter(|(_, handover)| *handover == Handover::Exact)
        .count();
    let in_flight: usize = resumes
        .iter()
        .map(|(_, handover)| match handover {
            Handover::InFlight(unread) => *unread,
            _ => 0,
        })
        .sum();
    let old_closes: Vec<_> = since_deploy()
        .filter(|record| record.pid.is_some_and(|pid| old_pids.contains(&pid)))
        .filter_map(|record| match &record.event {
            Event::Closed {
                code, by_server, ..
            } => Some((record.shard, *code, *by_server)),
            _ => None,
        })
        .collect();
    let gaps = fleet.discord.gaps(deployed_at);
    let mut lengths: Vec<Duration> = gaps.iter().map(|gap| gap.length()).collect();
    lengths.sort();
    eprintln!(
        "clients measurement: rolling deploy {name}: per-shard gap median {} ms, max {} ms \
         ({} gaps: {:?} ms); IDENTIFY {identifies}, RESUME {} ({exact} at the last sequence \
         its old connection was sent; {} dispatches replayed, {in_flight} of them in flight at the \
         old connection's close); old processes exit {}..{} ms after \
         SIGTERM; old connections closed with {:?}",
        ms(median(&lengths)),
        ms(lengths.last().copied().unwrap_or_default()),
        gaps.len(),
        gaps.iter()
            .map(|gap| (gap.shard.id, ms(gap.length())))
            .collect::<Vec<_>>(),
        resumes.len(),
        resumes
            .iter()
            .map(|(record, _)| match record.event {
                Event::Resume { replayed, .. } => replayed,
                _ => 0,
            })
            .sum::<usize>(),
        ms(exits.iter().min().copied().unwrap_or_default()),
        ms(exits.iter().max().copied().unwrap_or_default()),
        old_closes
            .iter()
            .map(|(_, code, by_server)| (*code, *by_server))
            .collect::<BTreeSet<_>>(),
    );

    let overlaps: Vec<String> = fleet
        .discord
        .overlaps()
        .iter()
        .map(|overlap| {
            format!(
                "shard {} for {} ms, pids {:?}",
                overlap.shard,
                ms(overlap.length),
                overlap.pids
            )
        })
        .collect();
    assert!(
        overlaps.is_empty(),
        "{name}: two live sessions of one shard at once: {overlaps:?}\n{}",
        fleet.report()
    );
    assert_clean_since(&fleet, deployed_at);
    // Each shard went down once, for its handover, and came back.
    assert_eq!(
        gaps.iter().map(|gap| gap.shard).collect::<Vec<_>>(),
        all.iter().copied().collect::<Vec<_>>(),
        "{name}: not one gap per shard: {gaps:?}\n{}",
        fleet.report()
    );
    if !kind.must_resume() {
        // discord.py builds its cache and readiness from READY and the GUILD_CREATEs after it,
        // which a RESUME in a new process would not replay: the Python adapter IDENTIFYs on a
        // handover (through shardman's pacing, so the gap is that of its identify queue). How it
        // should hand over is for issue 19 §2 to decide; until then only the above holds for it.
        return;
    }
    assert_eq!(
        identifies,
        0,
        "{name}: a rolling deploy spent IDENTIFYs\n{}",
        fleet.report()
    );
    for (shard, code, by_server) in &old_closes {
        assert!(
            !by_server && code.is_some_and(|code| code != 1000 && code != 1001),
            "{name}: an old process's connection of {shard:?} did not close resumably: code \
             {code:?}, by the gateway: {by_server}\n{}",
            fleet.report()
        );
    }
    assert_eq!(
        resumes.len(),
        DEPLOY_SHARDS as usize,
        "{name}: not one RESUME per shard\n{}",
        fleet.report()
    );
    for (record, handover) in &resumes {
        assert!(
            matches!(handover, Handover::Exact | Handover::InFlight(_)),
            "{name}: the RESUME of {:?} does not follow on from what its old connection was \
             sent: {:?}\n{}",
            record.shard,
            record.event,
            fleet.report()
        );
    }
    for gap in &gaps {
        assert!(
            gap.length() <= gap_bound && matches!(gap.came_back, Some(Event::Resumed { .. })),
            "{name}: shard {} was down {} ms (at most {} ms), back by {:?}\n{}",
            gap.shard,
            ms(gap.length()),
            ms(gap_bound),
            gap.came_back,
            fleet.report()
        );
    }
}

/// Redis restarted empty (no persistence) while 8 bots run 8 shards and a ninth waits for one:
/// shardman quarantines new grants for a lease while the running bots beat their signed sessions
/// back in. Judged from the gateway: no shard changes hands, no IDENTIFY, no RESUME, no session
/// closed, none doubled; and the waiting process is given nothing.
fn ride_a_redis_restart(kind: BotKind) {
    let _slot = scenario_slot();
    let name = kind.name();
    // Every shard in a bucket of its own: all 8 IDENTIFY at once, the quick way up (this scenario
    // is not about pacing).
    let mut fleet = Fleet::start_with(
        kind,
        Setup {
            max_concurrency: DEPLOY_SHARDS,
            own_redis: true,
            ..Setup::new(DEPLOY_SHARDS, 1)
        },
    );
    let all = shards(0..DEPLOY_SHARDS, DEPLOY_SHARDS);
    fleet.spawn_bots(DEPLOY_SHARDS as usize + 1);
    wait_live_exactly(&fleet, &all, "all 8 shards live", COME_UP);
    let spare = (0..fleet.bots.len())
        .find(|&index| fleet.bots[index].holds().is_none())
        .expect("a ninth process without a shard");
    let spare_pid = fleet.bots[spare].pid;
    // The proxy records an exchange once it is answered, and the spare's `/connect` waits up to
    // 30 s for a shard (claims that wait) before its 401.
    fleet.wait_for(
        "the spare to ask for a shard",
        Duration::from_secs(45),
        |fleet| {
            fleet
                .exchanges()
                .iter()
                .any(|exchange| exchange.pid == Some(spare_pid) && exchange.path == "/connect")
        },
    );
    let live_before = fleet.discord.live();
    let claims_before: Vec<_> = fleet.bots.iter().map(|bot| bot.events().len()).collect();

    let restarted_at = Instant::now();
    fleet
        .redis
        .as_mut()
        .expect("the fleet's own Redis")
        .restart();
    // Through the quarantine (one lease) and another lease: a bot that failed to beat its session
    // back in would have lapsed by then.
    std::thread::sleep(Duration::from_secs(2 * MAX_SECONDS + 1));

    let exchanges: Vec<_> = fleet
        .exchanges()
        .into_iter()
        .filter(|exchange| exchange.at >= restarted_at)
        .collect();
    let statuses = |path: &str, spare: bool| {
        let mut counts = std::collections::BTreeMap::<u16, usize>::new();
        for exchange in exchanges
            .iter()
            .filter(|exchange| exchange.path == path && (exchange.pid == Some(spare_pid)) == spare)
        {
            *counts.entry(exchange.status).or_default() += 1;
        }
        counts
    };
    eprintln!(
        "clients measurement: redis restart {name}: holders' beats since {:?}, the spare's \
         /connect {:?}",
        statuses("/beat", false),
        statuses("/connect", true)
    );
    let after: Vec<_> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.at >= restarted_at)
        .collect();
    assert!(
        after.is_empty(),
        "{name}: the gateway saw something after the Redis restart: {after:?}\n{}",
        fleet.report()
    );
    assert_eq!(
        fleet.discord.live(),
        live_before,
        "{name}: a shard changed hands\n{}",
        fleet.report()
    );
    for (index, bot) in fleet.bots.iter().enumerate() {
        assert_eq!(
            bot.events().len(),
            claims_before[index],
            "{name}: bot {index}'s claim changed: {:?}\n{}",
            bot.events(),
            fleet.report()
        );
    }
    assert!(
        fleet.bots[spare].holds().is_none() && fleet.discord.open_connections_of(spare_pid) == 0,
        "{name}: the spare was given a shard\n{}",
        fleet.report()
    );
    // Every holder is known to shardman again: its last beat was accepted.
    for bot in fleet.bots.iter().filter(|bot| bot.pid != spare_pid) {
        let last_beat = exchanges
            .iter()
            .rfind(|exchange| exchange.pid == Some(bot.pid) && exchange.path == "/beat");
        assert!(
            last_beat.is_some_and(|beat| beat.status == 200),
            "{name}: bot {}'s last beat: {last_beat:?}\n{}",
            bot.pid,
            fleet.report()
        );
    }
    assert!(fleet.discord.overlaps().is_empty());
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
    let _slot = scenario_slot();
    let name = kind.name();
    let mut fleet = Fleet::start_with(
        kind,
        Setup {
            variables: vec![
                ("SECRET".into(), ROTATED_AWAY.into()),
                ("SECRET_PREVIOUS".into(), SECRET.into()),
            ],
            ..Setup::new(4, 1)
        },
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

#[test]
fn python_bots_start_paced_and_roll_over_exiting_0_without_a_double_session() {
    come_up_and_roll_over(BotKind::Python, HANDOVER_GAP_LOADED);
}

#[test]
fn js_bots_start_paced_and_roll_over_leaving_no_shard_down_longer_than_half_a_second() {
    come_up_and_roll_over(BotKind::Js, HANDOVER_GAP);
}

#[test]
fn rust_bots_start_paced_and_roll_over_leaving_no_shard_down_longer_than_half_a_second() {
    come_up_and_roll_over(BotKind::Rust, HANDOVER_GAP);
}

#[test]
fn python_bots_ride_a_redis_restart_without_persistence_keeping_every_shard() {
    ride_a_redis_restart(BotKind::Python);
}

#[test]
fn js_bots_ride_a_redis_restart_without_persistence_keeping_every_shard() {
    ride_a_redis_restart(BotKind::Js);
}

#[test]
fn rust_bots_ride_a_redis_restart_without_persistence_keeping_every_shard() {
    ride_a_redis_restart(BotKind::Rust);
}

#[test]
fn hikari_bot_groups_of_two_shards_come_up_once_and_resume_on_kill() {
    groups_come_up_once_and_hand_over_on_kill(BotKind::Hikari);
}

#[test]
fn hikari_bots_start_paced_and_roll_over_resuming_every_shard_at_its_last_sequence() {
    come_up_and_roll_over(BotKind::Hikari, HANDOVER_GAP_LOADED);
}

/// The lower end of the Python package's discord.py range (2.0.0, with aiohttp 3.9.1): the basic
/// scenario, paced IDENTIFYs and a kill -9 taken over.
#[test]
fn python_bots_on_the_oldest_discord_py_come_up_once_and_hand_over_on_kill() {
    come_up_once_and_hand_over_on_kill(BotKind::PythonOldest);
}

#[test]
fn discordeno_bots_for_four_shards_come_up_once_and_resume_on_kill() {
    come_up_once_and_hand_over_on_kill(BotKind::Discordeno);
}

#[test]
fn discordeno_bots_start_paced_and_roll_over_resuming_every_shard_at_its_last_sequence() {
    come_up_and_roll_over(BotKind::Discordeno, HANDOVER_GAP_LOADED);
}

/// SIGTERMs the holder of shard 1 while the `spares` wait for shards: the holder gives its shard
/// back and exits 0, and a spare takes it over without two live sessions of it or an early
/// IDENTIFY. Returns the index of the spare that took it.
fn sigterm_holder_and_watch_a_spare_take_over(fleet: &mut Fleet, spares: &[usize]) -> usize {
    let name = fleet.kind.name();
    let victim = fleet.holder_of(1, 4).expect("a holder of shard 1");
    let (ids, _) = fleet.bots[victim].holds().expect("victim's claim");
    let taken = shards(ids.iter().copied(), 4);
    let spare_pids: Vec<u32> = spares.iter().map(|&index| fleet.bots[index].pid).collect();
    let stopped_at = Instant::now();
    fleet.bots[victim].sigterm();
    fleet.wait_for("a spare to take the shards over", TAKE_OVER, |fleet| {
        taken.iter().all(|shard| {
            fleet
                .discord
                .first_live_after(*shard, stopped_at)
                .is_some_and(|record| record.pid.is_some_and(|pid| spare_pids.contains(&pid)))
        })
    });
    let status = loop {
        if let Some(status) = fleet.bots[victim].exited() {
            break status;
        }
        assert!(
            stopped_at.elapsed() <= EXITS_WITHIN,
            "{name}: the SIGTERMed holder did not exit within {EXITS_WITHIN:?}\n{}",
            fleet.report()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{name}: the SIGTERMed holder exited with {status}\n{}",
        fleet.report()
    );
    assert!(
        fleet.bots[victim]
            .events_named("released")
            .iter()
            .any(|(at, event)| *at >= stopped_at && event["reason"] == "shutdown"),
        "{name}: the SIGTERMed holder did not report giving its shards back\n{}",
        fleet.report()
    );
    let mut taker = None;
    for shard in &taken {
        let record = fleet
            .discord
            .first_live_after(*shard, stopped_at)
            .expect("live");
        taker = spares
            .iter()
            .copied()
            .find(|&index| Some(fleet.bots[index].pid) == record.pid);
        eprintln!(
            "clients measurement: sigterm {name}: SIGTERM -> spare live as shard {shard}: {} ms",
            record.at.duration_since(stopped_at).as_millis()
        );
    }
    let taker = taker.expect("the spare that took the shards");
    // Not judged: the Python adapter IDENTIFYs what it is handed, so the old session's close code
    // (4000 to leave it resumable) matters to it less than to the bots that RESUME.
    let victim_pid = fleet.bots[victim].pid;
    let closes: Vec<(Option<u16>, String)> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.pid == Some(victim_pid))
        .filter_map(|record| match record.event {
            Event::Closed { code, reason, .. } => Some((code, reason)),
            _ => None,
        })
        .collect();
    eprintln!("clients measurement: sigterm {name}: the old connections closed with {closes:?}");
    wait_live_exactly(
        fleet,
        &shards(0..4, 4),
        "all 4 shards live again",
        Duration::from_secs(5),
    );
    let overlaps = fleet.discord.overlaps();
    assert!(
        overlaps.is_empty(),
        "{name}: two live sessions of one shard at once: {overlaps:?}\n{}",
        fleet.report()
    );
    assert_eq!(
        fleet.bots[taker].holds(),
        Some((ids, 4)),
        "{name}: the spare's own account of its claim"
    );
    assert_clean(fleet);
    taker
}

/// The basic scenarios in one fleet, for each fork of discord.py the Python adapter runs: 4
/// shards come up once (no early IDENTIFY) in 6 processes, a spare takes over from a holder
/// stopped with SIGTERM, and the other spare takes over a holder killed with SIGKILL.
fn fork_comes_up_once_hands_over_on_sigterm_and_takes_over_on_kill(kind: BotKind) {
    let _slot = scenario_slot();
    let mut fleet = Fleet::start(kind, 4, 1);
    come_up_once(&mut fleet, 6, 1);
    let spares: Vec<usize> = (0..fleet.bots.len())
        .filter(|&index| fleet.bots[index].holds().is_none())
        .collect();
    let taker = sigterm_holder_and_watch_a_spare_take_over(&mut fleet, &spares);
    let spare = spares
        .into_iter()
        .find(|&index| index != taker)
        .expect("the other spare");
    kill_holder_and_watch_the_spare_take_over(&mut fleet, spare, "shards");
}

#[test]
fn disnake_bots_come_up_once_hand_over_on_sigterm_and_take_over_on_kill() {
    fork_comes_up_once_hands_over_on_sigterm_and_takes_over_on_kill(BotKind::Disnake);
}

#[test]
fn nextcord_bots_come_up_once_hand_over_on_sigterm_and_take_over_on_kill() {
    fork_comes_up_once_hands_over_on_sigterm_and_takes_over_on_kill(BotKind::Nextcord);
}

#[test]
fn pycord_bots_come_up_once_hand_over_on_sigterm_and_take_over_on_kill() {
    fork_comes_up_once_hands_over_on_sigterm_and_takes_over_on_kill(BotKind::Pycord);
}
