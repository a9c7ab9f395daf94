//! The example bots in a fleet sized and placed by load (`SHARDS_PER_PROCESS=auto`, issue 20 §5):
//! the stand-in Discord sends each shard its own rate (README's worked example: shards 0 and 1 at
//! 40 dispatches a second, the other six at 5), and the tests judge what shardman makes of the
//! bots' reports (`/status`, `/autoscale`) and, from the gateway's records, how shards move.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::discord::{Dispatches, Event, Record, Shard};
use crate::harness::{BY_LOAD_MAX_SECONDS, BotKind, Fleet, Setup, Status, scenario_slot};

const SHARDS: u32 = 8;
/// The busy shards (big guilds) and their rate; every other shard gets `QUIET_RATE`.
const BUSY_SHARDS: &[u32] = &[0, 1];
const BUSY_RATE: f64 = 40.0;
const QUIET_RATE: f64 = 5.0;
/// Events per second one process should carry: 110 / 45 asks for 3 processes, so a third process
/// that joins shares the load rather than waiting as a spare, and the reported total may be off
/// by 18 % down or 22 % up before the answer changes.
const LOAD_TARGET: f64 = 45.0;
/// How far a reported rate may be from the stand-in's.
const RATE_TOLERANCE: f64 = 0.25;
/// From the first bot's start until all 8 shards are up: four rounds of the two identify buckets,
/// 5 s apart, plus library start-up on a loaded machine.
const COME_UP: Duration = Duration::from_secs(60);
/// A beat interval of these fleets: the next rate snapshot is another measurement.
const BEAT_INTERVAL: Duration = Duration::from_secs(BY_LOAD_MAX_SECONDS / 3);
/// From every shard up until each has a rate: two beats, with margin.
const RATES_KNOWN: Duration = Duration::from_secs(6 * BY_LOAD_MAX_SECONDS / 3);
/// Rate snapshots compared, one a beat interval apart, so one lucky answer does not pass.
const RATE_SNAPSHOTS: usize = 3;
/// From a change of the fleet (load known, a process joining or leaving) until it is balanced:
/// a few placements (every second), each move a hand-over (a beat, a close, a claim, a RESUME),
/// moved shards settling for `MOVE_SETTLE` before they may move on.
const BALANCE: Duration = Duration::from_secs(90);

fn rate_of(shard_id: u32) -> f64 {
    if BUSY_SHARDS.contains(&shard_id) {
        BUSY_RATE
    } else {
        QUIET_RATE
    }
}

fn total_rate() -> f64 {
    (0..SHARDS).map(rate_of).sum()
}

fn dispatches() -> Dispatches {
    (0..SHARDS).fold(Dispatches::none(), |dispatches, id| {
        dispatches.shard(id, Some(Duration::from_secs_f64(1.0 / rate_of(id))))
    })
}

fn start(kind: BotKind) -> Fleet {
    Fleet::start_with(kind, Setup::by_load(SHARDS, LOAD_TARGET, dispatches()))
}

/// A fleet sized by load whose shards stay where they are (`MAX_MOVES=0`): with adapters that
/// follow placement, a shard on its way has no holder or no rate for a while (seen with h/py's
/// Python adapter), and the rates are what is measured here.
fn start_without_moves(kind: BotKind) -> Fleet {
    let mut setup = Setup::by_load(SHARDS, LOAD_TARGET, dispatches());
    setup.variables.push(("MAX_MOVES".into(), "0".into()));
    Fleet::start_with(kind, setup)
}

fn all_shards() -> Vec<Shard> {
    (0..SHARDS).map(|id| Shard { id, count: SHARDS }).collect()
}

fn all_live_once(fleet: &Fleet) -> bool {
    fleet.discord.live_shards() == all_shards()
}

/// Every shard with a rate in `/status`.
fn rates(status: &Status) -> Option<BTreeMap<u32, f64>> {
    let rates: BTreeMap<u32, f64> = status
        .shards
        .iter()
        .filter_map(|shard| Some((shard.shard_id, shard.events_per_second?)))
        .collect();
    (rates.len() == SHARDS as usize).then_some(rates)
}

/// Never two live sessions of a shard, no IDENTIFY too early since `since`, nothing but JSON on
/// stdout. (A cold start's pacing is the cold-start scenarios' (issue 19 §1): with slots booked at
/// `/connect`, an IDENTIFY late to its slot crowds the next.)
fn assert_safe_since(fleet: &Fleet, since: Instant) {
    let name = fleet.kind.name();
    let overlaps = fleet.discord.overlaps();
    assert!(
        overlaps.is_empty(),
        "{name}: double sessions {overlaps:?}\n{}",
        fleet.report()
    );
    assert!(
        fleet
            .discord
            .too_early_identifies()
            .iter()
            .all(|early| early.at < since),
        "{name}: IDENTIFY too early:\n{}\n{}",
        fleet.explain_too_early(),
        fleet.report()
    );
    for bot in &fleet.bots {
        assert!(
            bot.stray_stdout().is_empty(),
            "{name}: bot {} printed non-JSON on stdout: {:?}",
            bot.pid,
            bot.stray_stdout()
        );
    }
}

/// 8 bots (one shard each with adapters that ignore placement, more with those that follow it)
/// come up; each shard's rate in `/status` is within 25 % of what the stand-in sends it, and
/// `/autoscale` asks for ceil(total / LOAD_TARGET) processes.
fn reported_rates_follow_the_gateway_and_size_the_fleet(kind: BotKind) {
    let _slot = scenario_slot();
    let name = kind.name();
    let mut fleet = start_without_moves(kind);
    fleet.spawn_bots(SHARDS as usize);
    fleet.wait_for("all 8 shards live", COME_UP, all_live_once);
    let up = Instant::now();
    fleet.wait_for("every shard's rate in /status", RATES_KNOWN, |fleet| {
        fleet.status().as_ref().and_then(rates).is_some()
    });
    for snapshot in 0..RATE_SNAPSHOTS {
        if snapshot > 0 {
            std::thread::sleep(BEAT_INTERVAL);
        }
        let status = fleet.status().expect("/status");
        let reported = rates(&status).expect("every shard's rate");
        eprintln!("{name}: rates reported, snapshot {snapshot}: {reported:?}");
        for (shard_id, rate) in &reported {
            let sent = rate_of(*shard_id);
            assert!(
                (rate - sent).abs() <= RATE_TOLERANCE * sent,
                "{name}: shard {shard_id} reported at {rate:.1}/s, the stand-in sends {sent}/s \
                 (snapshot {snapshot}: {reported:?})\n{}",
                fleet.report()
            );
        }
    }
    let expected = (total_rate() / LOAD_TARGET).ceil() as u32;
    // The autoscale job runs every second; until the whole load is known it answers less.
    fleet.wait_for(
        "desired_processes from the reported load",
        RATES_KNOWN,
        |fleet| {
            fleet
                .autoscale()
                .is_some_and(|answer| answer.desired_processes == expected)
        },
    );
    let answer = fleet.autoscale().expect("/autoscale");
    let load = answer
        .load
        .expect("a load with LOAD_TARGET")
        .events_per_second;
    assert!(
        (load - total_rate()).abs() <= RATE_TOLERANCE * total_rate(),
        "{name}: /autoscale's load {load:.1}/s, the stand-in sends {}/s",
        total_rate()
    );
    assert_eq!(
        answer.desired_processes,
        (load / LOAD_TARGET).ceil() as u32,
        "{name}: desired_processes is not ceil({load:.1} / {LOAD_TARGET})"
    );
    assert!(
        all_live_once(&fleet),
        "{name}: a shard went down\n{}",
        fleet.report()
    );
    assert_safe_since(&fleet, up);
}

/// Each process's load by the stand-in's rates, for the processes `/status` shows holding shards.
fn process_loads(status: &Status) -> BTreeMap<Option<String>, f64> {
    status
        .processes
        .iter()
        .map(|process| {
            let load = process.shard_ids.iter().copied().map(rate_of).sum();
            (process.process.clone(), load)
        })
        .collect()
}

/// Whether the fleet is balanced among exactly the bots `among` (by index): every shard live once,
/// by the process `/status` says holds it, one of them; each of them holding shards, none moving,
/// and the busiest within
/// max(1.25 x the mean process load, the largest single shard), by the stand-in's rates.
fn balanced_among(fleet: &Fleet, among: &[usize]) -> bool {
    if !all_live_once(fleet) {
        return false;
    }
    let Some(status) = fleet.status() else {
        return false;
    };
    if status.shards.len() != SHARDS as usize
        || status.shards.iter().any(|shard| shard.moving_to.is_some())
    {
        return false;
    }
    // shardman's holders are the gateway's: each shard's label names the process live as it.
    let gateway_holders: BTreeMap<u32, Option<u32>> = fleet
        .discord
        .live()
        .into_iter()
        .map(|(shard, pid)| (shard.id, pid))
        .collect();
    let labels_agree = status.shards.iter().all(|shard| {
        let labelled_pid = shard
            .process
            .as_deref()
            .and_then(|label| fleet.bot_labelled(label))
            .map(|index| fleet.bots[index].pid);
        labelled_pid.is_some() && gateway_holders.get(&shard.shard_id) == Some(&labelled_pid)
    });
    if !labels_agree {
        return false;
    }
    let loads = process_loads(&status);
    let holders: BTreeSet<usize> = loads
        .keys()
        .filter_map(|label| fleet.bot_labelled(label.as_deref()?))
        .collect();
    if loads.len() != among.len() || holders != among.iter().copied().collect() {
        return false;
    }
    let mean = total_rate() / among.len() as f64;
    let largest = (0..SHARDS).map(rate_of).fold(0.0, f64::max);
    let busiest = loads.values().copied().fold(0.0, f64::max);
    busiest <= (1.25 * mean).max(largest)
}

/// What a phase of the placement scenario did, for BENCHMARKS.md.
struct Phase {
    name: &'static str,
    took: Duration,
    /// Sessions that went live (READY or RESUMED): each is a shard moved.
    moved: usize,
    resumes: usize,
    identifies: usize,
    longest_gap: Duration,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: balanced after {} ms, {} shards moved, {} RESUMEs, {} IDENTIFYs, longest gap of a \
             shard {} ms",
            self.name,
            self.took.as_millis(),
            self.moved,
            self.resumes,
            self.identifies,
            self.longest_gap.as_millis()
        )
    }
}

/// Waits until the fleet is balanced among `among`, and tells what it took since `since`.
fn balance(fleet: &Fleet, name: &'static str, among: &[usize], since: Instant) -> Phase {
    fleet.wait_for(name, BALANCE, |fleet| balanced_among(fleet, among));
    let took = since.elapsed();
    let records: Vec<Record> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.at >= since)
        .collect();
    let count = |wanted: fn(&Event) -> bool| {
        records
            .iter()
            .filter(|record| wanted(&record.event))
            .count()
    };
    let longest_gap = fleet
        .discord
        .gaps(since)
        .iter()
        .filter_map(|gap| Some(gap.to? - gap.from))
        .max()
        .unwrap_or_default();
    let phase = Phase {
        name,
        took,
        moved: count(|event| matches!(event, Event::Ready { .. } | Event::Resumed { .. })),
        resumes: count(|event| matches!(event, Event::Resume { accepted: true, .. })),
        identifies: count(|event| matches!(event, Event::Identify { .. })),
        longest_gap,
    };
    eprintln!("{}: {phase}", fleet.kind.name());
    phase
}

/// How long before its connection closed a dispatch may have been written and still be unread by
/// a process handing its shard over: written while it sent its last beat and closed.
const IN_FLIGHT_BEFORE_CLOSE: Duration = Duration::from_millis(1000);

/// Whether a RESUME carries on where the old connection left off: accepted, naming the last
/// sequence the old connection was sent, or an earlier one when every dispatch after it was
/// written in the moment before that connection closed (in flight, never handled there).
fn resumed_where_it_left_off(fleet: &Fleet, records: &[Record], resume: &Record) -> bool {
    let Event::Resume {
        accepted: true,
        sequence: Some(given),
        last_sent: Some(last_sent),
        previous_connection: Some(old),
        ..
    } = resume.event
    else {
        return false;
    };
    if given == last_sent {
        return true;
    }
    let Some(closed) = records
        .iter()
        .find(|record| record.connection == old && matches!(record.event, Event::Closed { .. }))
    else {
        return false;
    };
    let unread: Vec<(u64, Instant)> = fleet
        .discord
        .sent_on(old)
        .into_iter()
        .filter(|(sequence, _)| *sequence > given)
        .collect();
    given < last_sent
        && unread.len() as u64 == last_sent - given
        && unread
            .iter()
            .all(|(_, written)| *written + IN_FLIGHT_BEFORE_CLOSE >= closed.at)
}

/// The placement scenario: 2 processes rebalance once the load is known (the second
/// joining a process that holds all 8 shards); a 3rd joins and takes shards; one of the 3 stops
/// (SIGTERM) and the other two take its shards. After each step the busiest process is within
/// the bound; no shard ever had two live sessions, and every shard is live at the end. Bots that RESUME what they are handed move shards without an
/// IDENTIFY, each RESUME where the old connection left off; the others' IDENTIFYs are paced.
fn shards_follow_the_load_as_processes_come_and_go(kind: BotKind) {
    let _slot = scenario_slot();
    let name = kind.name();
    let mut fleet = start(kind);
    // One process takes every shard; a second one joins before any shard has a rate, so
    // placement has to wait for the load before it moves half of them.
    fleet.spawn_bots(1);
    fleet.wait_for("all 8 shards live", COME_UP, all_live_once);
    let up = Instant::now();
    fleet.spawn_bots(1);
    balance(&fleet, "a 2nd process joined, load known", &[0, 1], up);
    let joined = Instant::now();
    fleet.spawn_bots(1);
    balance(&fleet, "a 3rd process joined", &[0, 1, 2], joined);
    let stopped = Instant::now();
    fleet.bots[0].sigterm();
    balance(&fleet, "1 of 3 stopped", &[1, 2], stopped);
    let records: Vec<Record> = fleet
        .discord
        .records()
        .into_iter()
        .filter(|record| record.at >= up)
        .collect();
    if kind.must_resume() {
        let identifies: Vec<&Record> = records
            .iter()
            .filter(|record| matches!(record.event, Event::Identify { .. }))
            .collect();
        assert!(
            identifies.is_empty(),
            "{name}: shards moved by IDENTIFY: {identifies:?}\n{}",
            fleet.report()
        );
        let wrong: Vec<&Record> = records
            .iter()
            .filter(|record| matches!(record.event, Event::Resume { .. }))
            .filter(|resume| !resumed_where_it_left_off(&fleet, &records, resume))
            .collect();
        assert!(
            wrong.is_empty(),
            "{name}: RESUMEs that lost or repeated events: {wrong:?}\n{}",
            fleet.report()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while fleet.bots[0].exited().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fleet.bots[0]
            .exited()
            .is_some_and(|status| status.success()),
        "{name}: the stopped process did not exit 0: {:?}\n{}",
        fleet.bots[0].exited(),
        fleet.report()
    );
    assert!(
        all_live_once(&fleet),
        "{name}: a shard is down\n{}",
        fleet.report()
    );
    assert_safe_since(&fleet, up);
}

#[test]
fn python_bots_report_each_shards_rate_within_a_quarter_and_autoscale_asks_for_total_over_target() {
    reported_rates_follow_the_gateway_and_size_the_fleet(BotKind::Python);
}

#[test]
fn js_bots_report_each_shards_rate_within_a_quarter_and_autoscale_asks_for_total_over_target() {
    reported_rates_follow_the_gateway_and_size_the_fleet(BotKind::Js);
}

#[test]
fn rust_bots_report_each_shards_rate_within_a_quarter_and_autoscale_asks_for_total_over_target() {
    reported_rates_follow_the_gateway_and_size_the_fleet(BotKind::Rust);
}

#[test]
fn python_bots_rebalance_as_processes_join_and_leave_without_a_double_session_and_identify_paced() {
    shards_follow_the_load_as_processes_come_and_go(BotKind::Python);
}

#[test]
fn js_bots_rebalance_as_processes_join_and_leave_moving_shards_by_resume_only() {
    shards_follow_the_load_as_processes_come_and_go(BotKind::Js);
}

#[test]
fn rust_bots_rebalance_as_processes_join_and_leave_moving_shards_by_resume_only() {
    shards_follow_the_load_as_processes_come_and_go(BotKind::Rust);
}

#[test]
fn hikari_bots_rebalance_as_processes_join_and_leave_moving_shards_by_resume_only() {
    shards_follow_the_load_as_processes_come_and_go(BotKind::Hikari);
}

#[test]
fn discordeno_bots_rebalance_as_processes_join_and_leave_moving_shards_by_resume_only() {
    shards_follow_the_load_as_processes_come_and_go(BotKind::Discordeno);
}
