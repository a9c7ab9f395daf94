//! Simulated bot processes: connect, beat, churn; each keeps its own view of its lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checker::{Checker, Interval};
use crate::client::{Client, Grant};
use crate::report::{Outcome, Recorder};

/// How the processes behave.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub processes: usize,
    /// Time between beats; zero beats back to back (throughput runs).
    pub beat_interval: Duration,
    /// The service's `MAX_SECONDS`: how long a lease lasts after the send time of an acknowledged beat.
    pub lease: Duration,
    /// Chance, per beat, that a process disconnects cleanly and connects again.
    pub churn_disconnect: f64,
    /// Chance, per beat, that a process crashes (stops beating, no disconnect) and restarts.
    pub churn_crash: f64,
    pub restart_delay: Duration,
    pub connect_retry: Duration,
    /// Initial connects are spread over this window.
    pub stagger: Duration,
    /// Release every shard when the run ends.
    pub release_at_end: bool,
}

pub struct World {
    pub client: Client,
    pub recorder: Arc<Recorder>,
    pub checker: Checker,
    pub behaviour: Behaviour,
    pub deadline: Instant,
    sessions: AtomicU64,
}

impl World {
    pub fn new(
        client: Client,
        recorder: Arc<Recorder>,
        behaviour: Behaviour,
        deadline: Instant,
    ) -> Self {
        Self {
            client,
            recorder,
            checker: Checker::default(),
            behaviour,
            deadline,
            sessions: AtomicU64::new(0),
        }
    }
}

/// A small, seedable generator (splitmix64): jitter and churn need no cryptographic quality.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `base` scaled by a factor in [1 - spread, 1 + spread).
    pub fn jitter(&mut self, base: Duration, spread: f64) -> Duration {
        base.mul_f64(1.0 - spread + 2.0 * spread * self.unit())
    }
}

/// One held lease, as the process sees it.
struct Holding {
    grant: Grant,
    session: u64,
    start: Instant,
    /// Send time of the last acknowledged beat (or of the connect) + lease length.
    valid_until: Instant,
}

enum Ended {
    /// The run is over.
    Deadline,
    /// Lost, retired, released or crashed: connect again (after `pause`).
    Again { pause: Duration },
}

pub async fn run_process(world: Arc<World>, index: usize) {
    let mut dice = Dice::new(index as u64 + 1);
    let mut target = index;
    let stagger = world.behaviour.stagger.mul_f64(dice.unit());
    tokio::time::sleep(stagger).await;
    while Instant::now() < world.deadline {
        let Some(holding) = connect(&world, &mut dice, &mut target, index).await else {
            return;
        };
        match hold(&world, &mut dice, &mut target, index, holding).await {
            Ended::Deadline => return,
            Ended::Again { pause } => sleep_until_or(world.deadline, pause).await,
        }
    }
}

async fn sleep_until_or(deadline: Instant, pause: Duration) {
    let wake = (Instant::now() + pause).min(deadline);
    tokio::time::sleep_until(wake.into()).await;
}

/// Connects until granted; `None` when the run ends first.
async fn connect(
    world: &World,
    dice: &mut Dice,
    target: &mut usize,
    index: usize,
) -> Option<Holding> {
    let behaviour = &world.behaviour;
    while Instant::now() < world.deadline {
        let answer = world.client.connect(*target).await;
        match (answer.outcome, answer.value) {
            (Outcome::Status(200), Some(grant)) => {
                let holders = world.recorder.holders.fetch_add(1, Ordering::Relaxed) + 1;
                if holders as usize >= behaviour.processes {
                    world.recorder.full_now();
                }
                return Some(Holding {
                    grant,
                    session: world.sessions.fetch_add(1, Ordering::Relaxed),
                    start: Instant::now(),
                    valid_until: answer.sent + behaviour.lease,
                });
            }
            (outcome, _) => {
                if outcome.is_error() {
                    // That replica may be down: a load balancer would route elsewhere.
                    *target += 1;
                }
                let pause = dice.jitter(behaviour.connect_retry, 0.5);
                sleep_until_or(world.deadline, pause).await;
            }
        }
    }
    let _ = index;
    None
}

/// Beats until the lease ends one way or another; records the process's belief interval.
async fn hold(
    world: &World,
    dice: &mut Dice,
    target: &mut usize,
    index: usize,
    mut holding: Holding,
) -> Ended {
    let behaviour = &world.behaviour;
    let recorder = &world.recorder;
    let retry = behaviour
        .beat_interval
        .min(Duration::from_millis(200))
        .max(Duration::from_millis(20));
    let mut next_beat = Instant::now() + dice.jitter(behaviour.beat_interval, 0.1);
    let mut guild_count = 0u64;
    let finish = |holding: &Holding, end: Instant| {
        recorder.holders.fetch_sub(1, Ordering::Relaxed);
        world.checker.record(Interval {
            shard_id: holding.grant.shard_id,
            generation: holding.grant.generation,
            fence: holding.grant.fence,
            session: holding.session,
            process: index,
            start: holding.start,
            end: end.max(holding.start),
        });
    };
    loop {
        if next_beat >= world.deadline {
            tokio::time::sleep_until(world.deadline.into()).await;
            let end = if behaviour.release_at_end {
                let answer = world
                    .client
                    .disconnect(*target, &holding.grant.session_id)
                    .await;
                answer.sent
            } else {
                Instant::now()
            };
            finish(&holding, end.min(holding.valid_until));
            return Ended::Deadline;
        }
        tokio::time::sleep_until(next_beat.into()).await;

        let roll = dice.unit();
        if roll < behaviour.churn_crash {
            // A crash: no disconnect; the process (or its zombie) believes until its lease runs out.
            recorder.crashes.fetch_add(1, Ordering::Relaxed);
            finish(&holding, holding.valid_until);
            return Ended::Again {
                pause: behaviour.restart_delay,
            };
        }
        if roll < behaviour.churn_crash + behaviour.churn_disconnect {
            recorder.disconnects.fetch_add(1, Ordering::Relaxed);
            let answer = world
                .client
                .disconnect(*target, &holding.grant.session_id)
                .await;
            finish(&holding, answer.sent.min(holding.valid_until));
            return Ended::Again {
                pause: behaviour.restart_delay,
            };
        }

        if Instant::now() >= holding.valid_until {
            // No acknowledged beat within the lease: a careful bot stops its shard here.
            recorder
                .expired_in_client_view
                .fetch_add(1, Ordering::Relaxed);
            finish(&holding, holding.valid_until);
            return Ended::Again {
                pause: Duration::ZERO,
            };
        }
        guild_count += 1;
        let answer = world
            .client
            .beat(*target, &holding.grant.session_id, guild_count)
            .await;
        match answer.outcome {
            Outcome::Status(204) | Outcome::Status(200) => {
                recorder.beats_acked.fetch_add(1, Ordering::Relaxed);
                holding.valid_until = holding.valid_until.max(answer.sent + behaviour.lease);
                next_beat = answer.sent.max(next_beat) + dice.jitter(behaviour.beat_interval, 0.1);
                if behaviour.beat_interval.is_zero() {
                    next_beat = Instant::now();
                }
            }
            Outcome::Status(404) => {
                if answer.sent < holding.valid_until {
                    recorder
                        .lost_acknowledged_beats
                        .fetch_add(1, Ordering::Relaxed);
                }
                finish(&holding, Instant::now().min(holding.valid_until));
                return Ended::Again {
                    pause: Duration::ZERO,
                };
            }
            Outcome::Status(401) => {
                recorder.retired.fetch_add(1, Ordering::Relaxed);
                finish(&holding, Instant::now().min(holding.valid_until));
                return Ended::Again {
                    pause: Duration::ZERO,
                };
            }
            outcome => {
                recorder.beats_failed.fetch_add(1, Ordering::Relaxed);
                if outcome.is_error() {
                    *target += 1;
                }
                next_beat = Instant::now() + retry;
            }
        }
    }
}

/// `/connect` latency with nearly every shard held: `fill` sessions hold shards (no beats: the
/// service's `MAX_SECONDS` must outlast the run), then `workers` loop connect -> disconnect.
pub async fn connect_latency(
    world: Arc<World>,
    fill: usize,
    workers: usize,
    measure: Duration,
) -> Result<usize, String> {
    let filled = Arc::new(std::sync::Mutex::new(Vec::with_capacity(fill)));
    let fillers = workers.max(1).min(fill.max(1));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for worker in 0..fillers {
        let (world, filled, next) = (world.clone(), filled.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = 0u32;
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < fill {
                loop {
                    let answer = world.client.connect(worker).await;
                    if let (Outcome::Status(200), Some(grant)) = (answer.outcome, answer.value) {
                        filled.lock().expect("fill lock").push(grant.session_id);
                        break;
                    }
                    failures += 1;
                    if failures > 1000 || Instant::now() > world.deadline {
                        return Err(format!("fill failed: {:?}", answer.outcome));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Ok(())
        }));
    }
    for task in tasks.drain(..) {
        task.await.map_err(|error| error.to_string())??;
    }
    let held = filled.lock().expect("fill lock").len();
    // Only the measured phase counts: start the histograms afresh.
    world.recorder.reset_routes();
    let stop = Instant::now() + measure;
    for worker in 0..workers.max(1) {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < stop {
                let answer = world.client.connect(worker).await;
                if let Some(grant) = answer.value {
                    world.client.disconnect(worker, &grant.session_id).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(|error| error.to_string())??;
    }
    let sessions = std::mem::take(&mut *filled.lock().expect("fill lock"));
    // Release the filled shards, a few requests at a time.
    let chunks: Vec<Vec<String>> = sessions
        .chunks(sessions.len().div_ceil(workers.max(1)).max(1))
        .map(<[String]>::to_vec)
        .collect();
    let mut releases = Vec::new();
    for (worker, chunk) in chunks.into_iter().enumerate() {
        let world = world.clone();
        releases.push(tokio::spawn(async move {
            for session in chunk {
                world.client.disconnect(worker, &session).await;
            }
        }));
    }
    for release in releases {
        let _ = release.await;
    }
    Ok(held)
}
