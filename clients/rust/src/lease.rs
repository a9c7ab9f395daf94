//! The process's own view of its lease, the beat loop and the lapse timer.

use crate::api::{Claim, Client, Error, ShardReport, State};
use crate::backoff::Backoff;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the lapse timer looks at the clock at least, so a process woken from SIGSTOP notices
/// a lapsed lease well within a second.
const LAPSE_CHECK: Duration = Duration::from_millis(200);

/// Why a claim ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Release {
    /// The process's own lease view ran out (no acknowledged beat for `lease_seconds`).
    Lapsed,
    /// A beat or `/identify` answered 404: shardman no longer knows the session.
    Lost,
    /// A beat or `/identify` answered 401: the generation was retired; the process should exit.
    Retired,
    /// The process is shutting down (SIGTERM/SIGINT or [`crate::Claimed::shutdown`]).
    Shutdown,
    /// Discord closed a shard with a code that forbids reconnecting (bad token, invalid shard...).
    GatewayClosed {
        /// The closed shard.
        shard_id: u32,
    },
}

impl Release {
    /// The `reason` the example bot prints: `lapsed`, `lost`, `retired`, `shutdown`,
    /// `gateway_closed`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Lapsed => "lapsed",
            Self::Lost => "lost",
            Self::Retired => "retired",
            Self::Shutdown => "shutdown",
            Self::GatewayClosed { .. } => "gateway_closed",
        }
    }
}

/// When the process must consider its claim gone: the send time of the last beat that got
/// 200/204 plus `lease_seconds`; before the first such beat, the `/connect` request's send time
/// plus the longest IDENTIFY wait plus `lease_seconds` (shardman's first lease covers the wait).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct LeaseView {
    deadline: Instant,
    lease: Duration,
}

impl LeaseView {
    /// The view right after `/connect`.
    pub fn from_claim(claim: &Claim) -> Self {
        Self {
            deadline: claim.requested_at + claim.longest_sleep() + claim.lease,
            lease: claim.lease,
        }
    }

    /// A beat sent at `sent_at` was acknowledged.
    pub fn acknowledge(&mut self, sent_at: Instant) {
        self.deadline = sent_at + self.lease;
    }

    /// The instant the lease lapses.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the lease has lapsed at `now`.
    pub fn is_lapsed(&self, now: Instant) -> bool {
        now >= self.deadline
    }
}

/// Sets the claim's end once: the first reason wins. Returns whether this call set it.
pub(crate) fn finish(end: &watch::Sender<Option<Release>>, release: Release) -> bool {
    end.send_if_modified(|current| {
        if current.is_none() {
            *current = Some(release);
            true
        } else {
            false
        }
    })
}

/// Keeps a claim's lease: beats every `beat_interval` from the claim on (retrying 503/429/network
/// errors, the lease view decides), ends the claim on 404 (`Lost`) and 401 (`Retired`), and runs
/// the lapse timer that ends it as `Lapsed`. Stops beating once the claim has ended.
pub struct LeaseKeeper {
    client: Client,
    session_id: String,
    view: Arc<Mutex<LeaseView>>,
    state: Arc<Mutex<State>>,
    end_tx: Arc<watch::Sender<Option<Release>>>,
    end: watch::Receiver<Option<Release>>,
    tasks: Vec<JoinHandle<()>>,
}

/// Gives the current per-shard reports for the next beat.
pub type Reports = Arc<dyn Fn() -> Vec<ShardReport> + Send + Sync>;

impl LeaseKeeper {
    /// Starts beating for `claim` right away, and the lapse timer.
    pub fn start(client: Client, claim: &Claim, reports: Reports) -> Self {
        let (end_tx, end) = watch::channel(None);
        let end_tx = Arc::new(end_tx);
        let view = Arc::new(Mutex::new(LeaseView::from_claim(claim)));
        let state = Arc::new(Mutex::new(claim.state));
        let beats = tokio::spawn(until_end(
            end.clone(),
            beat_loop(BeatLoop {
                client: client.clone(),
                session_id: claim.session_id.clone(),
                interval: claim.beat_interval.max(Duration::from_millis(100)),
                view: view.clone(),
                state: state.clone(),
                end_tx: end_tx.clone(),
                reports,
            }),
        ));
        let lapse = tokio::spawn(until_end(
            end.clone(),
            lapse_timer(view.clone(), end_tx.clone()),
        ));
        Self {
            client,
            session_id: claim.session_id.clone(),
            view,
            state,
            end_tx,
            end,
            tasks: vec![beats, lapse],
        }
    }

    /// The current lease view.
    pub fn view(&self) -> LeaseView {
        *lock(&self.view)
    }

    /// The generation's state as the last beat answered it.
    pub fn state(&self) -> State {
        *lock(&self.state)
    }

    /// Why the claim ended, if it has.
    pub fn released(&self) -> Option<Release> {
        *self.end.borrow()
    }

    /// Waits until the claim ends.
    pub async fn ended(&mut self) -> Release {
        match self.end.wait_for(Option::is_some).await {
            Ok(release) => release.expect("waited for Some"),
            // The sender lives in `self`: it cannot be gone.
            Err(_) => Release::Shutdown,
        }
    }

    /// Ends the claim for `release` unless it has ended already; returns whether it did.
    pub fn release(&self, release: Release) -> bool {
        finish(&self.end_tx, release)
    }

    pub(crate) fn end_sender(&self) -> Arc<watch::Sender<Option<Release>>> {
        self.end_tx.clone()
    }

    pub(crate) fn shared_view(&self) -> Arc<Mutex<LeaseView>> {
        self.view.clone()
    }

    pub(crate) fn end_receiver(&self) -> watch::Receiver<Option<Release>> {
        self.end.clone()
    }

    /// Ends the claim as `Shutdown` (unless it has ended already) and gives it back: one last beat
    /// with `reports` (so the next holder gets the freshest resume data), then `POST /disconnect`.
    /// Does neither when the claim lapsed, was lost or was retired: that session is not touched
    /// again.
    pub async fn shutdown(&mut self, reports: Vec<ShardReport>) -> Release {
        self.release(Release::Shutdown);
        let release = self.ended().await;
        let still_held = matches!(release, Release::Shutdown | Release::GatewayClosed { .. });
        if !still_held || self.view().is_lapsed(Instant::now()) {
            return release;
        }
        let budget = Duration::from_secs(3);
        let last_beat = self.client.beat(&self.session_id, &reports);
        if let Ok(Err(e)) = tokio::time::timeout(budget, last_beat).await {
            tracing::debug!(error = %e, "last beat before disconnect failed");
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        for _ in 0..3 {
            match tokio::time::timeout(budget, self.client.disconnect(&self.session_id)).await {
                Ok(Ok(())) | Ok(Err(Error::SessionLost)) => break,
                Ok(Err(e)) if e.is_retryable() => {
                    tracing::warn!(error = %e, "disconnect failed; retrying");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "disconnect failed");
                    break;
                }
                Err(_) => tracing::warn!("disconnect timed out; retrying"),
            }
            tokio::time::sleep(backoff.next(None)).await;
        }
        release
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `work` until it finishes or the claim ends, whichever comes first.
pub(crate) async fn until_end(
    mut end: watch::Receiver<Option<Release>>,
    work: impl Future<Output = ()>,
) {
    tokio::select! {
        biased;
        _ = end.wait_for(Option::is_some) => {}
        () = work => {}
    }
}

struct BeatLoop {
    client: Client,
    session_id: String,
    interval: Duration,
    view: Arc<Mutex<LeaseView>>,
    state: Arc<Mutex<State>>,
    end_tx: Arc<watch::Sender<Option<Release>>>,
    reports: Reports,
}

async fn beat_loop(beats: BeatLoop) {
    let mut backoff = Backoff::new(crate::api::BACKOFF_BASE, beats.interval);
    loop {
        // A process woken from SIGSTOP must not beat a session whose lease it has given up.
        if lock(&beats.view).is_lapsed(Instant::now()) || beats.end_tx.borrow().is_some() {
            return;
        }
        let reports = (beats.reports)();
        match beats.client.beat(&beats.session_id, &reports).await {
            Ok(ack) => {
                if beats.end_tx.borrow().is_some() {
                    return;
                }
                lock(&beats.view).acknowledge(ack.sent_at);
                if let Some(answer) = ack.answer {
                    let before = std::mem::replace(&mut *lock(&beats.state), answer.state);
                    if before == State::Standby && answer.state == State::Active {
                        tracing::info!(
                            generation = answer.generation,
                            shard_count = answer.shard_count,
                            "generation switched from standby to active"
                        );
                    }
                }
                backoff.reset();
                tokio::time::sleep_until((ack.sent_at + beats.interval).into()).await;
            }
            Err(Error::SessionLost) => {
                tracing::warn!("beat answered 404: the session is lost");
                finish(&beats.end_tx, Release::Lost);
                return;
            }
            Err(Error::Retired) => {
                tracing::info!("beat answered 401: the generation was retired");
                finish(&beats.end_tx, Release::Retired);
                return;
            }
            Err(e) => {
                let wait = backoff.next(e.retry_after());
                tracing::warn!(error = %e, ?wait, "beat failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn lapse_timer(view: Arc<Mutex<LeaseView>>, end_tx: Arc<watch::Sender<Option<Release>>>) {
    loop {
        let deadline = lock(&view).deadline();
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!("the lease view lapsed: no acknowledged beat for a whole lease");
            finish(&end_tx, Release::Lapsed);
            return;
        }
        // Sleep toward the deadline, but look again soon: an acknowledged beat moves it, and
        // after SIGSTOP the clock may have jumped past it.
        tokio::time::sleep((deadline - now).min(LAPSE_CHECK)).await;
    }
}
