//! How many bot processes the fleet's load calls for (`LOAD_TARGET`, `CPU_TARGET`): pure, no I/O.
//!
//! The raw answer is `ceil(load / target)`, the larger of the two when both targets are set. A
//! raw answer above the current one is taken at once (scale out). A lower one only once the load
//! has stayed below `(current - 1) * target * 0.9` (for every target set) for `SCALE_IN_AFTER`
//! without a break: the 10 % band keeps a load that hovers around a boundary from flapping, and
//! the wait keeps a dip from sending processes away that the next minute needs. The answer is
//! always between 1 and the shard count. [`decide`] makes the decision; the autoscaler
//! (`jobs::autoscale`) keeps its result and the scale-in hold in the store, so every replica
//! answers the same and a restart resets nothing.

use std::time::Duration;

use super::{FleetStatus, events_per_second_total, process_counts, process_loads};

/// The share of the next lower count's capacity the load must stay under before scaling in.
pub const SCALE_IN_BAND: f64 = 0.9;

/// The operator's targets: what one process should carry. At least one is set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sizing {
    /// `LOAD_TARGET`: gateway events per second per process.
    pub load_target: Option<f64>,
    /// `CPU_TARGET`: CPU cores per process.
    pub cpu_target: Option<f64>,
    /// `SCALE_IN_AFTER`: how long a lower load must hold.
    pub scale_in_after: Duration,
}

impl Sizing {
    /// `None` when neither target is set (`LOAD_TARGET`, `CPU_TARGET` unset): the process count
    /// is the shard group count.
    pub fn new(
        load_target: Option<f64>,
        cpu_target: Option<f64>,
        scale_in_after: Duration,
    ) -> Option<Self> {
        (load_target.is_some() || cpu_target.is_some()).then_some(Self {
            load_target,
            cpu_target,
            scale_in_after,
        })
    }

    /// Each target set whose load is known, with that load.
    fn pairs(&self, load: &FleetLoad) -> impl Iterator<Item = (f64, f64)> {
        [
            (load.events_per_second, self.load_target),
            (load.cpu, self.cpu_target),
        ]
        .into_iter()
        .filter_map(|(load, target)| Some((load?, target?)))
    }
}

/// What the fleet carries: the active generation's shards' events per second, summed, and its
/// processes' CPU, in cores, summed. `None` until something reported one.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FleetLoad {
    pub events_per_second: Option<f64>,
    pub cpu: Option<f64>,
}

impl FleetLoad {
    pub fn of(fleet: &FleetStatus) -> Self {
        let rated = fleet
            .shards
            .iter()
            .any(|shard| shard.events_per_second.is_some());
        let cpu = process_loads(fleet.generation, fleet.shards_per_process, &fleet.shards)
            .iter()
            .filter_map(|process| process.cpu)
            .reduce(|total, cpu| total + cpu);
        Self {
            events_per_second: rated.then(|| events_per_second_total(&fleet.shards)),
            cpu,
        }
    }

    /// As the store keeps it: `<events per second>:<cpu>`, each empty when unknown.
    pub fn encode(&self) -> String {
        let text = |value: Option<f64>| value.map_or_else(String::new, |value| value.to_string());
        format!("{}:{}", text(self.events_per_second), text(self.cpu))
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (events, cpu) = text.split_once(':')?;
        let number = |text: &str| -> Option<Option<f64>> {
            match text {
                "" => Some(None),
                text => text
                    .parse()
                    .ok()
                    .filter(|value: &f64| value.is_finite())
                    .map(Some),
            }
        };
        Some(Self {
            events_per_second: number(events)?,
            cpu: number(cpu)?,
        })
    }
}

/// The answer the autoscaler last gave, and the load it was made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessAnswer {
    pub desired: u32,
    pub load: FleetLoad,
}

impl ProcessAnswer {
    /// As the store keeps it: `<desired>:<events per second>:<cpu>`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.desired, self.load.encode())
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (desired, load) = text.split_once(':')?;
        Some(Self {
            desired: desired.parse().ok()?,
            load: FleetLoad::decode(load)?,
        })
    }
}

/// A lower load being waited out: since when (ms since the epoch, the store's clock), and the
/// count a scale-in would go to (the highest raw answer seen since then).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleInHold {
    pub since_ms: i64,
    pub count: u32,
}

impl ScaleInHold {
    /// As the store keeps it: `<since ms>:<count>`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.since_ms, self.count)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (since, count) = text.split_once(':')?;
        Some(Self {
            since_ms: since.parse().ok()?,
            count: count.parse().ok()?,
        })
    }
}

/// The active generation's shard groups: the process count without load targets, and where a
/// fleet sized by load starts.
pub fn group_count(fleet: &FleetStatus) -> u32 {
    process_counts(fleet.total_shards, fleet.shards_per_process, &[]).0
}

/// `ceil(load / target)`, the largest over the targets whose load is known; `None` when no load
/// is known. A quotient a rounding error above a whole number counts as that number.
pub fn raw_processes(load: &FleetLoad, sizing: &Sizing) -> Option<u32> {
    sizing
        .pairs(load)
        .map(|(load, target)| {
            let quotient = load.max(0.0) / target;
            // `as` saturates: a huge load asks for u32::MAX, clamped to the shard count later.
            (quotient - quotient * 1e-12).ceil() as u32
        })
        .max()
}

/// Whether the load is low enough for `current - 1` processes with the band to spare, for every
/// target whose load is known.
fn below_band(load: &FleetLoad, sizing: &Sizing, current: u32) -> bool {
    let capacity = f64::from(current.saturating_sub(1)) * SCALE_IN_BAND;
    sizing
        .pairs(load)
        .all(|(load, target)| load < capacity * target)
}

/// The processes the fleet needs, and the scale-in hold to keep in the store (`None`: clear it).
///
/// `current` is the answer the fleet runs on (the last one kept, or the shard group count when
/// there is none yet), `shards` the active generation's shard count, `now_ms` the store's clock.
/// An unknown load keeps the current answer and clears the hold: nothing shows the load is low.
pub fn decide(
    current: u32,
    shards: u32,
    load: &FleetLoad,
    sizing: &Sizing,
    hold: Option<ScaleInHold>,
    now_ms: i64,
) -> (u32, Option<ScaleInHold>) {
    let most = shards.max(1);
    let current = current.clamp(1, most);
    let Some(raw) = raw_processes(load, sizing) else {
        return (current, None);
    };
    let raw = raw.clamp(1, most);
    if raw > current {
        return (raw, None);
    }
    if !below_band(load, sizing, current) {
        return (current, None);
    }
    // Below the band: start or continue the wait. It goes to the highest answer seen while
    // waiting, so a dip at its end cannot take the fleet below what the load needed.
    let hold = match hold {
        Some(hold) if hold.count < current => ScaleInHold {
            since_ms: hold.since_ms,
            count: hold.count.max(raw),
        },
        _ => ScaleInHold {
            since_ms: now_ms,
            count: raw,
        },
    };
    let held_ms = now_ms.saturating_sub(hold.since_ms);
    let needed_ms = i64::try_from(sizing.scale_in_after.as_millis()).unwrap_or(i64::MAX);
    if held_ms >= needed_ms {
        (hold.count, None)
    } else {
        (current, Some(hold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn by_events(target: f64) -> Sizing {
        Sizing {
            load_target: Some(target),
            cpu_target: None,
            scale_in_after: Duration::from_secs(300),
        }
    }

    fn events(rate: f64) -> FleetLoad {
        FleetLoad {
            events_per_second: Some(rate),
            cpu: None,
        }
    }

    /// Runs `decide` over a series of loads, one a minute, as the autoscaler would, keeping its
    /// answer and hold; the answers.
    fn run(start: u32, shards: u32, sizing: &Sizing, loads: &[FleetLoad]) -> Vec<u32> {
        let (mut current, mut hold) = (start, None);
        let mut answers = Vec::new();
        for (minute, load) in loads.iter().enumerate() {
            let now = i64::try_from(minute).unwrap() * MINUTE;
            (current, hold) = decide(current, shards, load, sizing, hold, now);
            answers.push(current);
        }
        answers
    }

    #[test]
    fn the_raw_answer_is_the_load_over_the_target_rounded_up() {
        // The README's example: shards 0 and 1 at 40/s, six more at 5/s, LOAD_TARGET 60.
        let load = events(2.0 * 40.0 + 6.0 * 5.0);
        assert_eq!(raw_processes(&load, &by_events(60.0)), Some(2));
        assert_eq!(raw_processes(&events(120.0), &by_events(60.0)), Some(2));
        assert_eq!(raw_processes(&events(120.5), &by_events(60.0)), Some(3));
        assert_eq!(raw_processes(&events(0.0), &by_events(60.0)), Some(0));
        // 0.7 / 0.1 is 6.999... in floating point, and 0.3 / 0.1 is 2.999...; neither asks for more.
        assert_eq!(raw_processes(&events(0.7), &by_events(0.1)), Some(7));
        assert_eq!(raw_processes(&events(0.3), &by_events(0.1)), Some(3));
    }

    #[test]
    fn noise_around_a_boundary_never_flaps() {
        // 2 processes of 60/s; the load wobbles around 120 (the 2/3 boundary) and, later,
        // around 60 (the 1/2 boundary).
        let sizing = by_events(60.0);
        let wobble: Vec<FleetLoad> = (0..30)
            .map(|minute| events(if minute % 2 == 0 { 121.0 } else { 118.0 }))
            .collect();
        let answers = run(2, 16, &sizing, &wobble);
        assert_eq!(answers[0], 3, "above 120 scales out at once");
        assert!(answers.iter().all(|&count| count == 3), "{answers:?}");

        let low_wobble: Vec<FleetLoad> = (0..30)
            .map(|minute| events(if minute % 2 == 0 { 61.0 } else { 59.0 }))
            .collect();
        let answers = run(2, 16, &sizing, &low_wobble);
        assert!(
            answers.iter().all(|&count| count == 2),
            "59/s is not under 90 % of one process (54/s): {answers:?}"
        );
    }

    #[test]
    fn scaling_out_is_immediate_and_clears_a_hold() {
        let sizing = by_events(60.0);
        let hold = Some(ScaleInHold {
            since_ms: 0,
            count: 1,
        });
        assert_eq!(
            decide(2, 16, &events(300.0), &sizing, hold, MINUTE),
            (5, None)
        );
    }

    #[test]
    fn scaling_in_waits_for_scale_in_after_then_goes_to_the_raw_answer() {
        let sizing = by_events(60.0);
        // 5 processes; the load falls to 100/s (2 processes), below 4 * 60 * 0.9 = 216.
        let (count, hold) = decide(5, 16, &events(100.0), &sizing, None, 0);
        assert_eq!(count, 5);
        assert_eq!(
            hold,
            Some(ScaleInHold {
                since_ms: 0,
                count: 2
            })
        );
        let (count, hold) = decide(5, 16, &events(100.0), &sizing, hold, 5 * MINUTE - 1);
        assert_eq!((count, hold.map(|hold| hold.since_ms)), (5, Some(0)));
        assert_eq!(
            decide(5, 16, &events(100.0), &sizing, hold, 5 * MINUTE),
            (2, None)
        );
    }

    #[test]
    fn a_load_inside_the_band_keeps_the_answer() {
        // 3 processes of 60/s: 2 could carry 120/s, but 110/s is not under 2 * 60 * 0.9 = 108.
        let sizing = by_events(60.0);
        assert_eq!(decide(3, 16, &events(110.0), &sizing, None, 0), (3, None));
        let (count, hold) = decide(3, 16, &events(107.0), &sizing, None, 0);
        assert_eq!((count, hold.map(|hold| hold.count)), (3, Some(2)));
    }

    #[test]
    fn a_spike_during_the_hold_restarts_it() {
        let sizing = by_events(60.0);
        let (_, hold) = decide(4, 16, &events(60.0), &sizing, None, 0);
        // Back above the band for one evaluation: the wait is over.
        let (count, hold) = decide(4, 16, &events(200.0), &sizing, hold, 2 * MINUTE);
        assert_eq!((count, hold), (4, None));
        let (count, hold) = decide(4, 16, &events(60.0), &sizing, hold, 4 * MINUTE);
        assert_eq!(count, 4);
        assert_eq!(hold.map(|hold| hold.since_ms), Some(4 * MINUTE));
        let (count, _) = decide(4, 16, &events(60.0), &sizing, hold, 8 * MINUTE);
        assert_eq!(count, 4, "only 4 minutes since the spike");
        let (count, _) = decide(4, 16, &events(60.0), &sizing, hold, 9 * MINUTE);
        assert_eq!(count, 1);
    }

    #[test]
    fn a_scale_in_goes_to_the_highest_answer_seen_while_waiting() {
        let sizing = by_events(60.0);
        let (_, hold) = decide(6, 16, &events(50.0), &sizing, None, 0);
        let (_, hold) = decide(6, 16, &events(170.0), &sizing, hold, MINUTE);
        let (count, _) = decide(6, 16, &events(50.0), &sizing, hold, 5 * MINUTE);
        assert_eq!(count, 3, "170/s needed 3 during the wait");
    }

    #[test]
    fn the_answer_is_at_least_one_and_at_most_the_shard_count() {
        let sizing = by_events(60.0);
        assert_eq!(decide(1, 8, &events(10_000.0), &sizing, None, 0).0, 8);
        assert_eq!(decide(1, 8, &events(f64::MAX), &sizing, None, 0).0, 8);
        assert_eq!(
            decide(2, 8, &events(0.0), &sizing, None, 0)
                .1
                .unwrap()
                .count,
            1
        );
        let no_wait = Sizing {
            scale_in_after: Duration::ZERO,
            ..sizing
        };
        assert_eq!(decide(2, 8, &events(0.0), &no_wait, None, 0), (1, None));
        assert_eq!(decide(1, 8, &events(0.0), &no_wait, None, 0), (1, None));
        // Fewer shards than the current answer (a reshard down): no more processes than shards.
        assert_eq!(decide(12, 8, &events(400.0), &sizing, None, 0), (8, None));
        assert_eq!(decide(0, 0, &events(400.0), &sizing, None, 0), (1, None));
    }

    #[test]
    fn an_unknown_load_keeps_the_current_answer() {
        let sizing = by_events(60.0);
        let hold = Some(ScaleInHold {
            since_ms: 0,
            count: 1,
        });
        let unknown = FleetLoad::default();
        assert_eq!(
            decide(8, 8, &unknown, &sizing, hold, 60 * MINUTE),
            (8, None)
        );
        // A CPU figure does not stand in for the events LOAD_TARGET reads.
        let cpu_only = FleetLoad {
            events_per_second: None,
            cpu: Some(0.1),
        };
        assert_eq!(decide(8, 8, &cpu_only, &sizing, None, 0), (8, None));
    }

    #[test]
    fn with_both_targets_the_larger_answer_wins_and_both_must_be_low_to_scale_in() {
        let both = Sizing {
            load_target: Some(60.0),
            cpu_target: Some(0.5),
            scale_in_after: Duration::ZERO,
        };
        let load = FleetLoad {
            events_per_second: Some(100.0),
            cpu: Some(1.9),
        };
        assert_eq!(
            raw_processes(&load, &both),
            Some(4),
            "1.9 cores / 0.5 > 100/s / 60"
        );
        assert_eq!(decide(1, 16, &load, &both, None, 0), (4, None));
        // Events low, CPU not (1.4 cores is above 3 * 0.5 * 0.9 = 1.35): no scale-in from 4.
        let busy_cpu = FleetLoad {
            events_per_second: Some(10.0),
            cpu: Some(1.4),
        };
        assert_eq!(decide(4, 16, &busy_cpu, &both, None, 0), (4, None));
        // A target whose load is unknown is left out: CPU alone decides.
        let cpu_only = FleetLoad {
            events_per_second: None,
            cpu: Some(0.4),
        };
        assert_eq!(decide(4, 16, &cpu_only, &both, None, 0), (1, None));
    }

    #[test]
    fn the_answer_and_the_hold_survive_the_store_as_text() {
        let hold = ScaleInHold {
            since_ms: 1_767_000_000_000,
            count: 3,
        };
        assert_eq!(ScaleInHold::decode(&hold.encode()), Some(hold));
        assert_eq!(ScaleInHold::decode("garbage"), None);
        for load in [
            FleetLoad::default(),
            events(110.25),
            FleetLoad {
                events_per_second: None,
                cpu: Some(1.5),
            },
        ] {
            let answer = ProcessAnswer { desired: 2, load };
            assert_eq!(ProcessAnswer::decode(&answer.encode()), Some(answer));
        }
        assert_eq!(ProcessAnswer::decode("2:x:"), None);
        assert_eq!(ProcessAnswer::decode("2"), None);
    }
}
