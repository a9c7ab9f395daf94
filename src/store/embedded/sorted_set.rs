//! The sorted-set value of the embedded keyspace: members by score, ties by member, as Redis orders
//! them. A leaf: the keyspace holds it, and `sorted_sets.rs` implements the Z* commands on it.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
pub(super) struct SortedSet {
    pub(super) scores: HashMap<String, f64>,
    pub(super) order: BTreeSet<(Score, String)>,
}

#[derive(Clone, Copy, PartialEq)]
pub(super) struct Score(pub(super) f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl SortedSet {
    pub(super) fn insert(&mut self, member: &str, score: f64) -> bool {
        let previous = self.scores.insert(member.to_owned(), score);
        if let Some(old) = previous {
            self.order.remove(&(Score(old), member.to_owned()));
        }
        self.order.insert((Score(score), member.to_owned()));
        previous.is_none()
    }

    pub(super) fn remove(&mut self, member: &str) -> bool {
        match self.scores.remove(member) {
            Some(score) => self.order.remove(&(Score(score), member.to_owned())),
            None => false,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}
