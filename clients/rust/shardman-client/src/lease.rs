//! The process's own view of its lease, the beat loop, the lapse timer and the claim's end.

use crate::answers::{Claim, State};
use crate::backoff::{Backoff, beat_retry_delay};
use crate::client::{Client, Error, ShardReport};
use crate::events::Release;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Besides sleeping toward the deadline, the lapse timer looks at the clock at least this often,
/// so a process woken from SIGSTOP past its deadline notices within it
/// (`clients/contract/lease.json`).
pub const LAPSE_CHECK_EVERY: Duration = Duration::from_millis(200);
/// The last beat and each `/disconnect` try of a claim given back get this long.
const GIVE_BACK_TIMEOUT: Duration = Duration::from_secs(3);

/// When the process must consider its claim gone: the send time of the last beat that got
/// 200/204 plus `lease_seconds`; before the first such beat, the send time of the `/connect`
/// request plus the longest IDENTIFY wait plus `lease_seconds` (shardman's first lease covers the
/// wait). Once lapsed, always lapsed: an answer arriving after the deadline cannot revive it.
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

    /// A beat sent at `sent_at` was acknowledged, and the answer arrived at `answered_at`.
    pub fn acknowledge(&mut self, sent_at: Instant, answered_at: Instant) {
        if self.is_lapsed(answered_at) {
            return; // never trust that session id again
        }
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

/// The lease view of a claim, shared with whatever must not act on a lapsed lease (a shard that
/// is about to heartbeat or RESUME, say).
#[derive(Clone, Debug)]
pub struct SharedLease(Arc<Mutex<LeaseView>>);

impl SharedLease {
    /// The view now.
    pub fn view(&self) -> LeaseView {
        *lock(&self.0)
    }

    /// Whether the lease has lapsed at `now`.
    pub fn is_lapsed(&self, now: Instant) -> bool {
        lock(&self.0).is_lapsed(now)
    }
}

/// The end of a claim, shared by everything that may end it (the beats, the lapse timer, the
/// IDENTIFY pacer, an adapter's shards): the first reason wins.
#[derive(Clone, Debug)]
pub struct ClaimEnd(Arc<watch::Sender<Option<Release>>>);

impl ClaimEnd {
    fn new() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }

    /// Ends the claim for `release` unless it has ended already; returns whether it did.
    pub fn release(&self, release: Release) -> bool {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(release);
                true
            } else {
                false
            }
        })
    }

    /// Why the claim ended, if it has.
    pub fn released(&self) -> Option<Release> {
        *self.0.borrow()
    }

    /// Waits until the claim ends.
    pub async fn wait(&self) -> Release {
        let mut end = self.0.subscribe();
        match end.wait_for(Option::is_some).await {
            Ok(release) => release.expect("waited for Some"),
            // The sender lives in `self`: it cannot be gone.
            Err(_) => Release::Shutdown,
        }
    }

    /// Runs `work` until it finishes or the claim ends, whichever comes first.
    pub async fn run_until_end(&self, work: impl Future<Output = ()>) {
        tokio::select! {
            biased;
            _ = self.wait() => {}
            () = work => {}
        }
    }
}

/// Keeps a claim's lease: beats every `beat_interval` from the claim on (after a failed beat the
/// next follows sooner; the lease view decides when to give up), ends the claim on 404 (`Lost`),
/// 401 (`Retired`) and an answer's `hand_over` (`HandedOver`), and runs the lapse timer that ends
/// it as `Lapsed`. Stops beating once the claim has ended.
pub struct LeaseKeeper {
    client: Client,
    session_id: String,
    lease: SharedLease,
    state: Arc<Mutex<State>>,
    end: ClaimEnd,
    reconnects: broadcast::Sender<u32>,
    tasks: Vec<JoinHandle<()>>,
}

/// Gives the current per-shard reports for the next beat.
pub type Reports = Arc<dyn Fn() -> Vec<ShardReport> + Send + Sync>;

impl LeaseKeeper {
    /// Starts beating for `claim` right away, and the lapse timer.
    pub fn start(client: Client, claim: &Claim, reports: Reports) -> Self {
        let end = ClaimEnd::new();
        let lease = SharedLease(Arc::new(Mutex::new(LeaseView::from_claim(claim))));
        let state = Arc::new(Mutex::new(claim.state));
        // A beat names a shard to reconnect rarely; a shard that lags behind just misses one.
        let (reconnects, _) = broadcast::channel(16);
        let beats = BeatLoop {
            client: client.clone(),
            session_id: claim.session_id.clone(),
            interval: claim.beat_interval.max(Duration::from_millis(100)),
            lease: lease.clone(),
            state: state.clone(),
            end: end.clone(),
            reconnects: reconnects.clone(),
            reports,
        };
        let beating = tokio::spawn({
            let end = end.clone();
            async move { end.run_until_end(beat_loop(beats)).await }
        });
        let lapsing = tokio::spawn({
            let (end, lease) = (end.clone(), lease.clone());
            async move { end.run_until_end(lapse_timer(lease, end.clone())).await }
        });
        Self {
            client,
            session_id: claim.session_id.clone(),
            lease,
            state,
            end,
            reconnects,
            tasks: vec![beating, lapsing],
        }
    }

    /// The shard ids beats ask to reconnect (`reconnect`), from now on: the adapter closes each
    /// such shard resumably, so its library RESUMEs it.
    pub fn reconnects(&self) -> broadcast::Receiver<u32> {
        self.reconnects.subscribe()
    }

    /// The current lease view.
    pub fn view(&self) -> LeaseView {
        self.lease.view()
    }

    /// The lease view, shared.
    pub fn lease(&self) -> SharedLease {
        self.lease.clone()
    }

    /// The claim's end, shared.
    pub fn end(&self) -> ClaimEnd {
        self.end.clone()
    }

    /// The generation's state as the last beat answered it.
    pub fn state(&self) -> State {
        *lock(&self.state)
    }

    /// Why the claim ended, if it has.
    pub fn released(&self) -> Option<Release> {
        self.end.released()
    }

    /// Waits until the claim ends.
    pub async fn ended(&self) -> Release {
        self.end.wait().await
    }

    /// Ends the claim for `release` unless it has ended already; returns whether it did.
    pub fn release(&self, release: Release) -> bool {
        self.end.release(release)
    }

    /// Ends the claim as `Shutdown` (unless it has ended already), then [`LeaseKeeper::close`].
    pub async fn shutdown(&mut self, reports: Vec<ShardReport>) -> Release {
        self.release(Release::Shutdown);
        self.close(reports).await
    }

    /// Once the claim has ended (call it after stopping the shards): gives it back if its reason
    /// says so ([`Release::gives_back`]): one last beat with `reports` (so the next holder gets the
    /// resume data the shards ended with), then `POST /disconnect`. A lapsed, lost or retired
    /// session is not touched again. Answers why the claim ended.
    pub async fn close(&mut self, reports: Vec<ShardReport>) -> Release {
        let release = self.ended().await;
        if !release.gives_back() || self.view().is_lapsed(Instant::now()) {
            return release;
        }
        // The last beat carries the sequence the next holder RESUMEs from: one lost to a
        // connection error would leave it the previous beat's, and events handled twice.
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        for _ in 0..3 {
            let last_beat = self.client.beat(&self.session_id, &reports);
            match tokio::time::timeout(GIVE_BACK_TIMEOUT, last_beat).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) if e.is_retryable() => {
                    tracing::warn!(error = %e, "last beat before disconnect failed; retrying");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "last beat before disconnect failed");
                    break;
                }
                Err(_) => {
                    tracing::warn!("last beat before disconnect timed out");
                    break;
                }
            }
            tokio::time::sleep(backoff.next(None)).await;
        }
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        for _ in 0..3 {
            match tokio::time::timeout(GIVE_BACK_TIMEOUT, self.client.disconnect(&self.session_id))
                .await
            {
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

/// Locks `mutex`, also after a panic elsewhere poisoned it (the data is plain values).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct BeatLoop {
    client: Client,
    session_id: String,
    interval: Duration,
    lease: SharedLease,
    state: Arc<Mutex<State>>,
    end: ClaimEnd,
    reconnects: broadcast::Sender<u32>,
    reports: Reports,
}

async fn beat_loop(beats: BeatLoop) {
    let mut failures = 0;
    loop {
        // A process woken from SIGSTOP must not beat a session whose lease it has given up.
        if beats.lease.is_lapsed(Instant::now()) || beats.end.released().is_some() {
            return;
        }
        let reports = (beats.reports)();
        match beats.client.beat(&beats.session_id, &reports).await {
            Ok(ack) => {
                if beats.end.released().is_some() {
                    return;
                }
                lock(&beats.lease.0).acknowledge(ack.sent_at, ack.received_at);
                if let Some(answer) = ack.answer {
                    if answer.hand_over {
                        tracing::info!(
                            "placement moves the claim to another process: handing over"
                        );
                        beats.end.release(Release::HandedOver);
                        return;
                    }
                    for shard in answer.reconnect {
                        tracing::info!(shard, "shardman asks to reconnect the shard");
                        // No receiver: no shard is running to reconnect.
                        let _ = beats.reconnects.send(shard);
                    }
                    let before = std::mem::replace(&mut *lock(&beats.state), answer.state);
                    if before == State::Standby && answer.state == State::Active {
                        tracing::info!(
                            generation = answer.generation,
                            shard_count = answer.shard_count,
                            "generation switched from standby to active"
                        );
                    }
                }
                failures = 0;
                tokio::time::sleep_until((ack.sent_at + beats.interval).into()).await;
            }
            Err(Error::SessionLost) => {
                tracing::warn!("beat answered 404: the session is lost");
                beats.end.release(Release::Lost);
                return;
            }
            Err(Error::Retired) => {
                tracing::info!("beat answered 401: the generation was retired");
                beats.end.release(Release::Retired);
                return;
            }
            Err(e) => {
                let wait =
                    beat_retry_delay(failures, e.retry_after(), beats.interval, fastrand::f64());
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, ?wait, "beat failed; the next one sooner");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

async fn lapse_timer(lease: SharedLease, end: ClaimEnd) {
    loop {
        let deadline = lease.view().deadline();
        let now = Instant::now();
        if now >= deadline {
            tracing::warn!("the lease view lapsed: no acknowledged beat for a whole lease");
            end.release(Release::Lapsed);
            return;
        }
        // Sleep toward the deadline, but look again soon: an acknowledged beat moves it, and
        // after SIGSTOP the clock may have jumped past it.
        tokio::time::sleep((deadline - now).min(LAPSE_CHECK_EVERY)).await;
    }
}
