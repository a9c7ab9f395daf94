//! In-process store: the same contract as the Redis store, for a single replica with no Redis.
//!
//! It mirrors the scripts' data structures (high-water mark, free set, deadlines), so lowest-free-id
//! and expiry behave the same; expiry is lazy, checked on every operation, as Redis does for keys.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::config::Settings;
use crate::domain::{BeatOutcome, BeatReport, FleetStatus, Grant, Lease, ShardStatus};

pub struct MemoryStore {
    state: Mutex<State>,
    lease: Duration,
}

struct State {
    generation: u64,
    max_shards: u32,
    /// Ids at or above this were never handed out.
    next: u32,
    /// Released or expired ids below `next`.
    free: BTreeSet<u32>,
    /// Held ids by deadline.
    deadlines: BTreeSet<(Instant, u32)>,
    /// Shard id -> session id of its live lease.
    holders: HashMap<u32, String>,
    sessions: HashMap<String, Session>,
    fences: HashMap<u32, u64>,
}

struct Session {
    shard_id: u32,
    generation: u64,
    fence: u64,
    deadline: Instant,
    last_beat: chrono::DateTime<Utc>,
    guild_count: Option<u64>,
    latency: Option<f64>,
    extra: Option<String>,
}

impl MemoryStore {
    pub fn new(settings: &Settings) -> Self {
        Self {
            lease: Duration::from_millis(settings.lease_ms()),
            state: Mutex::new(State {
                generation: 1,
                max_shards: settings.max_shards,
                next: 0,
                free: BTreeSet::new(),
                deadlines: BTreeSet::new(),
                holders: HashMap::new(),
                sessions: HashMap::new(),
                fences: HashMap::new(),
            }),
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.expire(Instant::now());
        state
    }

    pub fn connect(&self, session_id: String) -> Option<Grant> {
        let mut state = self.locked();
        let shard_id = match state.free.pop_first() {
            Some(id) => id,
            None if state.next < state.max_shards => {
                state.next += 1;
                state.next - 1
            }
            None => return None,
        };
        let fence = state.fences.entry(shard_id).or_insert(0);
        *fence += 1;
        let fence = *fence;
        let deadline = Instant::now() + self.lease;
        let generation = state.generation;
        state.deadlines.insert((deadline, shard_id));
        state.holders.insert(shard_id, session_id.clone());
        state.sessions.insert(
            session_id.clone(),
            Session {
                shard_id,
                generation,
                fence,
                deadline,
                last_beat: Utc::now(),
                guild_count: None,
                latency: None,
                extra: None,
            },
        );
        Some(Grant {
            session_id,
            lease: Lease {
                shard_id,
                max_shards: state.max_shards,
                generation,
                fence,
            },
        })
    }

    pub fn beat(&self, report: &BeatReport) -> BeatOutcome {
        let mut state = self.locked();
        let (max_shards, active_generation) = (state.max_shards, state.generation);
        let new_deadline = Instant::now() + self.lease;
        let Some(session) = state.sessions.get_mut(&report.session_id) else {
            return BeatOutcome::NotFound;
        };
        let lease = Lease {
            shard_id: session.shard_id,
            max_shards,
            generation: session.generation,
            fence: session.fence,
        };
        if session.generation != active_generation || session.shard_id >= max_shards {
            return BeatOutcome::Retired(lease);
        }
        let old_deadline = std::mem::replace(&mut session.deadline, new_deadline);
        session.last_beat = Utc::now();
        if report.guild_count.is_some() {
            session.guild_count = report.guild_count;
        }
        if report.latency.is_some() {
            session.latency = report.latency;
        }
        if report.extra.is_some() {
            session.extra.clone_from(&report.extra);
        }
        state.deadlines.remove(&(old_deadline, lease.shard_id));
        state.deadlines.insert((new_deadline, lease.shard_id));
        BeatOutcome::Alive(lease)
    }

    pub fn disconnect(&self, session_id: &str) -> bool {
        let mut state = self.locked();
        match state.sessions.remove(session_id) {
            Some(session) => {
                state.release(session.shard_id, session.deadline);
                true
            }
            None => false,
        }
    }

    pub fn status(&self) -> FleetStatus {
        let state = self.locked();
        let mut shards: Vec<ShardStatus> = state
            .sessions
            .values()
            .filter(|session| session.generation == state.generation)
            .map(|session| ShardStatus {
                shard_id: session.shard_id,
                last_beat: session.last_beat,
                guild_count: session.guild_count,
                latency: session.latency,
                extra: session
                    .extra
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok()),
            })
            .collect();
        shards.sort_by_key(|shard| shard.shard_id);
        FleetStatus {
            total_shards: state.max_shards,
            generation: state.generation,
            shards,
        }
    }
}

impl State {
    /// Frees every lease whose deadline has passed, as Redis's TTL does for the lease keys.
    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, shard_id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            if let Some(session_id) = self.holders.get(&shard_id).cloned() {
                self.sessions.remove(&session_id);
            }
            self.release(shard_id, deadline);
        }
    }

    fn release(&mut self, shard_id: u32, deadline: Instant) {
        self.deadlines.remove(&(deadline, shard_id));
        self.holders.remove(&shard_id);
        self.free.insert(shard_id);
    }
}
