//! Which process runs which shard, by load (`SHARDS_PER_PROCESS=auto`).
//!
//! Pure: [`plan_moves`] takes the held shards with their load and process, the processes waiting
//! for shards and how many processes the fleet needs, and answers which shards to move where. The
//! placement job (`src/jobs/placement.rs`) reads the fleet, asks this, and marks the moves in the
//! store; each holder then hands its marked shards over by RESUME (README, "Scaling on load").

use std::collections::HashMap;

/// A held shard as placement sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlacedShard {
    pub shard_id: u32,
    /// The process label of its holder.
    pub process: String,
    /// Dispatches per second.
    pub events_per_second: f64,
    /// False while it must stay where it is: moved within the settling time, already moving, or
    /// not up yet.
    pub movable: bool,
}

/// One shard to hand over from one process to another.
#[derive(Clone, Debug, PartialEq)]
pub struct Move {
    pub shard_id: u32,
    pub from: String,
    pub to: String,
}

/// The balance placement keeps: the busiest process carries at most this much more than the
/// mean process (25 %), or the largest single shard when that is more.
pub const BUSIEST_OVER_MEAN: f64 = 1.25;

/// A shard's weight besides its events, as a share of the mean shard's rate: every shard costs
/// something (heartbeats, its cache), so an idle fleet is balanced by shard count.
const SHARD_BASE_SHARE: f64 = 0.05;
/// The weight of a shard of a fleet without any traffic.
const IDLE_SHARD_WEIGHT: f64 = 1.0;

/// The moves that bring the busiest process within the bound (see [`BUSIEST_OVER_MEAN`]), at most
/// `max_moves` of them, fewest first: each takes the busiest process's shard whose move to the
/// least loaded process lowers the larger of the two the most.
///
/// The processes that share the load are the holders, plus processes waiting for shards (in the
/// order they came) while fewer than `desired_processes` run (any number when `None`). A process
/// that waits while enough run is a spare: it gets shards only when a holder leaves.
///
/// A `draining` process (`shardman drain`) shares nothing: each of its movable shards moves, the
/// heaviest first, to the least loaded other process before anything is balanced, and it is not
/// counted among the processes that run, so a spare joins in its place.
pub fn plan_moves(
    shards: &[PlacedShard],
    waiting: &[String],
    draining: &[String],
    desired_processes: Option<u32>,
    max_moves: usize,
) -> Vec<Move> {
    if shards.is_empty() || max_moves == 0 {
        return Vec::new();
    }
    let total_rate: f64 = shards
        .iter()
        .map(|shard| shard.events_per_second.max(0.0))
        .sum();
    let base = if total_rate > 0.0 {
        total_rate / shards.len() as f64 * SHARD_BASE_SHARE
    } else {
        IDLE_SHARD_WEIGHT
    };
    let weight = |shard: &PlacedShard| shard.events_per_second.max(0.0) + base;

    // Processes in a stable order: holders by their lowest shard id, then the waiting ones taken.
    let mut names: Vec<String> = Vec::new();
    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for shard in shards {
        if !index_of.contains_key(shard.process.as_str()) {
            index_of.insert(&shard.process, names.len());
            names.push(shard.process.clone());
        }
    }
    let is_draining = |name: &str| draining.iter().any(|label| label == name);
    let wanted = desired_processes.map_or(usize::MAX, |count| count.max(1) as usize);
    for label in waiting {
        let serving = names.iter().filter(|name| !is_draining(name)).count();
        if serving >= wanted {
            break;
        }
        if !index_of.contains_key(label.as_str()) && !is_draining(label) {
            index_of.insert(label, names.len());
            names.push(label.clone());
        }
    }
    // The processes that may take shards.
    let serving: Vec<usize> = (0..names.len())
        .filter(|&process| !is_draining(&names[process]))
        .collect();
    if serving.is_empty() || names.len() < 2 {
        return Vec::new();
    }

    let mut loads = vec![0.0_f64; names.len()];
    // Each process's movable shards: (weight, shard index).
    let mut movable: Vec<Vec<(f64, usize)>> = vec![Vec::new(); names.len()];
    for (at, shard) in shards.iter().enumerate() {
        let process = index_of[shard.process.as_str()];
        loads[process] += weight(shard);
        if shard.movable {
            movable[process].push((weight(shard), at));
        }
    }
    let mut moves = Vec::new();
    let move_shard =
        |moves: &mut Vec<Move>, loads: &mut [f64], at: usize, from: usize, to: usize| {
            let shard_weight = weight(&shards[at]);
            loads[from] -= shard_weight;
            loads[to] += shard_weight;
            moves.push(Move {
                shard_id: shards[at].shard_id,
                from: names[from].clone(),
                to: names[to].clone(),
            });
        };

    // Draining processes first: every movable shard goes, the heaviest first.
    let mut leaving: Vec<(f64, usize, usize)> = (0..names.len())
        .filter(|&process| is_draining(&names[process]))
        .flat_map(|process| {
            std::mem::take(&mut movable[process])
                .into_iter()
                .map(move |(shard_weight, at)| (shard_weight, at, process))
        })
        .collect();
    leaving.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, at, from) in leaving.into_iter().take(max_moves) {
        let lightest = lightest_of(&serving, &loads);
        move_shard(&mut moves, &mut loads, at, from, lightest);
    }

    // Then the balance among the processes that serve.
    let mean = serving.iter().map(|&process| loads[process]).sum::<f64>() / serving.len() as f64;
    let largest = shards.iter().map(weight).fold(0.0, f64::max);
    let bound = (mean * BUSIEST_OVER_MEAN).max(largest);
    while moves.len() < max_moves {
        let busiest = busiest_of(&serving, &loads);
        let lightest = lightest_of(&serving, &loads);
        if loads[busiest] <= bound * (1.0 + 1e-9) || busiest == lightest {
            break;
        }
        // The shard whose move leaves the larger of the two processes lightest; only a move that
        // makes it lighter than the busiest is now is worth a hand-over.
        let best = movable[busiest]
            .iter()
            .enumerate()
            .map(|(position, &(shard_weight, _))| {
                let after = (loads[busiest] - shard_weight).max(loads[lightest] + shard_weight);
                (position, after)
            })
            .filter(|&(_, after)| after < loads[busiest] - 1e-9)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((position, _)) = best else {
            break;
        };
        let (_, at) = movable[busiest].swap_remove(position);
        move_shard(&mut moves, &mut loads, at, busiest, lightest);
    }
    moves
}

/// The busiest of `processes` (the first of equals).
fn busiest_of(processes: &[usize], loads: &[f64]) -> usize {
    processes
        .iter()
        .copied()
        .max_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// The least loaded of `processes` (the first of equals).
fn lightest_of(processes: &[usize], loads: &[f64]) -> usize {
    processes
        .iter()
        .copied()
        .min_by(|&a, &b| loads[a].total_cmp(&loads[b]).then(a.cmp(&b)))
        .unwrap_or(0)
}

/// The load of the busiest process over the bound it must keep, after `moves`: at most 1.0 when
/// balanced. For tests and figures.
pub fn busiest_over_bound(shards: &[PlacedShard], processes: usize) -> f64 {
    let mut loads: HashMap<&str, f64> = HashMap::new();
    for shard in shards {
        *loads.entry(&shard.process).or_default() += shard.events_per_second;
    }
    let total: f64 = loads.values().sum();
    let mean = total / processes.max(1) as f64;
    let largest = shards
        .iter()
        .map(|shard| shard.events_per_second)
        .fold(0.0, f64::max);
    let busiest = loads.values().copied().fold(0.0, f64::max);
    let bound = (mean * BUSIEST_OVER_MEAN).max(largest);
    if bound == 0.0 { 0.0 } else { busiest / bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard_id: u32, process: &str, rate: f64) -> PlacedShard {
        PlacedShard {
            shard_id,
            process: process.into(),
            events_per_second: rate,
            movable: true,
        }
    }

    fn apply(shards: &mut [PlacedShard], moves: &[Move]) {
        for shard_move in moves {
            let shard = shards
                .iter_mut()
                .find(|shard| shard.shard_id == shard_move.shard_id)
                .unwrap();
            assert_eq!(shard.process, shard_move.from);
            shard.process = shard_move.to.clone();
        }
    }

    /// Shards 0 and 1 at 40/s, 2..8 at 5/s: the example fleet.
    fn skewed(placement: &[&str]) -> Vec<PlacedShard> {
        placement
            .iter()
            .enumerate()
            .map(|(id, process)| shard(id as u32, process, if id < 2 { 40.0 } else { 5.0 }))
            .collect()
    }

    #[test]
    fn a_balanced_fleet_moves_nothing() {
        let shards = skewed(&["a", "b", "a", "a", "b", "b", "a", "b"]);
        assert_eq!(plan_moves(&shards, &[], &[], None, 8), vec![]);
    }

    #[test]
    fn the_two_busy_shards_of_one_process_are_split() {
        let mut shards = skewed(&["a", "a", "b", "b", "b", "b", "b", "b"]);
        let moves = plan_moves(&shards, &[], &[], None, 8);
        // One busy shard to b (40 + 30 = 70 is still over 1.25 x 55), then a quiet one back.
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert!(moves[0].shard_id < 2 && moves[0].to == "b");
        assert!(moves[1].shard_id >= 2 && moves[1].to == "a");
        apply(&mut shards, &moves);
        assert!(busiest_over_bound(&shards, 2) <= 1.0);
    }

    #[test]
    fn a_process_that_waits_takes_shards_from_the_busiest_until_within_the_bound() {
        let mut shards = skewed(&["a", "b", "a", "b", "a", "b", "a", "b"]);
        let moves = plan_moves(&shards, &["c".to_string()], &[], None, 8);
        // c takes a busy shard; two quiet ones then even out a and b: no fewer moves would do.
        assert_eq!(moves.len(), 3, "{moves:?}");
        assert!(moves[0].shard_id < 2 && moves[0].to == "c");
        apply(&mut shards, &moves);
        assert!(busiest_over_bound(&shards, 3) <= 1.0, "{shards:?}");
        // And balanced it stays: asked again, nothing more moves.
        assert_eq!(plan_moves(&shards, &[], &[], None, 8), vec![]);
    }

    #[test]
    fn a_spare_waits_while_enough_processes_run() {
        let shards = skewed(&["a", "b", "a", "b", "a", "b", "a", "b"]);
        assert_eq!(
            plan_moves(&shards, &["c".to_string()], &[], Some(2), 8),
            vec![]
        );
    }

    #[test]
    fn moves_stop_at_the_bound_given() {
        let shards = skewed(&["a", "b", "a", "b", "a", "b", "a", "b"]);
        assert_eq!(
            plan_moves(&shards, &["c".to_string()], &[], None, 1).len(),
            1
        );
        assert_eq!(
            plan_moves(&shards, &["c".to_string()], &[], None, 0).len(),
            0
        );
    }

    #[test]
    fn shards_that_must_stay_are_never_moved() {
        let mut shards = skewed(&["a", "a", "b", "b", "b", "b", "b", "b"]);
        for shard in &mut shards {
            shard.movable = shard.process == "b";
        }
        let moves = plan_moves(&shards, &[], &[], None, 8);
        assert!(moves.iter().all(|shard_move| shard_move.from != "a"));
    }

    #[test]
    fn one_shard_heavier_than_the_rest_together_stays_alone_without_churn() {
        let shards = vec![shard(0, "a", 100.0), shard(1, "b", 1.0), shard(2, "b", 1.0)];
        assert_eq!(plan_moves(&shards, &[], &[], None, 8), vec![]);
    }

    #[test]
    fn an_idle_fleet_is_balanced_by_shard_count() {
        let mut shards: Vec<_> = (0..8).map(|id| shard(id, "a", 0.0)).collect();
        let moves = plan_moves(&shards, &["b".to_string()], &[], None, 8);
        // 5 and 3 shards: the busiest within 1.25 x the mean of 4.
        assert_eq!(moves.len(), 3, "{moves:?}");
        apply(&mut shards, &moves);
        assert_eq!(
            shards.iter().filter(|shard| shard.process == "b").count(),
            3
        );
    }

    #[test]
    fn a_lone_process_has_nowhere_to_move_to() {
        let shards = skewed(&["a"; 8]);
        assert_eq!(plan_moves(&shards, &[], &[], None, 8), vec![]);
        assert_eq!(plan_moves(&[], &["b".to_string()], &[], None, 8), vec![]);
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_draining_process_hands_every_shard_to_the_others_heaviest_first() {
        let mut shards = skewed(&["a", "b", "a", "b", "c", "c", "c", "c"]);
        let moves = plan_moves(&shards, &[], &labels(&["c"]), None, 8);
        let from_c: Vec<u32> = moves
            .iter()
            .filter(|shard_move| shard_move.from == "c")
            .map(|shard_move| shard_move.shard_id)
            .collect();
        assert_eq!(from_c.len(), 4, "{moves:?}");
        assert!(moves.iter().all(|shard_move| shard_move.to != "c"));
        apply(&mut shards, &moves);
        assert!(shards.iter().all(|shard| shard.process != "c"));
    }

    #[test]
    fn a_draining_process_is_replaced_by_a_spare_and_never_gets_shards() {
        let shards = skewed(&["a", "b", "a", "b", "a", "b", "a", "b"]);
        // Two processes wanted, b drains: the spare c takes b's place, a gives it nothing more.
        let moves = plan_moves(&shards, &labels(&["c"]), &labels(&["b"]), Some(2), 8);
        assert!(!moves.is_empty());
        assert!(
            moves.iter().all(|shard_move| shard_move.to != "b"),
            "{moves:?}"
        );
        let from_b = moves
            .iter()
            .filter(|shard_move| shard_move.from == "b")
            .count();
        assert_eq!(from_b, 4, "{moves:?}");
        // A draining process that waits for shards is not given any.
        let shards = skewed(&["a"; 8]);
        assert_eq!(
            plan_moves(&shards, &labels(&["b"]), &labels(&["b"]), None, 8),
            vec![]
        );
    }

    #[test]
    fn draining_respects_the_moves_allowed_and_the_shards_that_must_stay() {
        let mut shards = skewed(&["a", "a", "b", "b", "b", "b", "b", "b"]);
        shards[2].movable = false;
        let moves = plan_moves(&shards, &[], &labels(&["b"]), None, 2);
        assert_eq!(moves.len(), 2, "{moves:?}");
        assert!(
            moves
                .iter()
                .all(|shard_move| shard_move.from == "b" && shard_move.shard_id != 2)
        );
        let all = plan_moves(&shards, &[], &labels(&["b"]), None, 8);
        assert_eq!(
            all.iter()
                .filter(|shard_move| shard_move.from == "b")
                .count(),
            5
        );
        // With nobody else, a draining process keeps its shards.
        assert_eq!(
            plan_moves(&skewed(&["b"; 8]), &[], &labels(&["b"]), None, 8),
            vec![]
        );
    }
}
