//! Group commit of beats: the beats that arrive while earlier batches are in flight go to the
//! store together, in one `beat.lua` call that answers each of them.
//!
//! A beat joins the queue of its thread's lane (see `lanes.rs`: the batch task then runs on the
//! thread the request arrived on, and so does its connection's reader), then waits for its own
//! answer. Whoever finds a free batch slot of the lane (at most [`BATCHES_IN_FLIGHT`] batches per
//! lane run at once on Redis, one on the embedded store, whose scripts run one at a time on the
//! thread that calls them) takes the lane's queue, up to [`MAX_BATCH`] beats, and commits it in a
//! task of its own, so a request that gives up (a client that hangs up, a deadline)
//! never abandons the beats of others; the task keeps taking batches while beats keep queuing. So
//! a beat on an idle replica leaves at once (a batch of one), and under load each batch carries the
//! beats that arrived during the previous round trip: the window is the time a batch is in flight,
//! bounded by the store's timeout, and a batch leaves as soon as a slot is free. Nothing is
//! answered before the store applied the batch, and each beat gets its own answer, in order.

use std::mem;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::scripts::beat::{Beat, BeatAnswers, BeatBatch};
use super::{Store, StoreError, lanes};
use crate::domain::BeatOutcome;

/// Batches one lane has in flight on Redis at most: one being applied while the next travels.
/// (One per lane made no difference beyond the machine's noise; BENCHMARKS.md.)
pub(super) const BATCHES_IN_FLIGHT: usize = 2;
/// Lanes of beat queues on Redis: as many as the engine's shared connections, so that a thread's
/// queue and its connection go together. The embedded store has one lane: its batches run one at a
/// time under the engine's lock, and a second lane's batch would only block its thread there.
pub(super) const REDIS_LANES: usize = super::redis::SHARED_CONNECTIONS;
/// Beats per batch at most (a batch of this size holds Redis for well under a millisecond).
pub(super) const MAX_BATCH: usize = 256;

type Answer = Result<BeatOutcome, StoreError>;

struct Waiting {
    beat: Beat,
    answer: oneshot::Sender<Answer>,
}

/// The lanes' queues of beats not yet sent.
pub(super) struct BeatQueue {
    lanes: Box<[Lane]>,
    /// How long a beat waits for its answer at most (`REDIS_TIMEOUT_MS`; none for the embedded
    /// store, which answers synchronously).
    deadline: Option<Duration>,
}

/// One lane's beats not yet sent, and its batch slots.
struct Lane {
    waiting: Mutex<Vec<Waiting>>,
    slots: Arc<Semaphore>,
}

impl BeatQueue {
    /// `slots`: batches in flight at most, per lane.
    pub(super) fn new(lanes: usize, slots: usize, deadline: Option<Duration>) -> Self {
        Self {
            lanes: (0..lanes)
                .map(|_| Lane {
                    waiting: Mutex::new(Vec::new()),
                    slots: Arc::new(Semaphore::new(slots)),
                })
                .collect(),
            deadline,
        }
    }
}

impl Lane {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        // Nothing panics while holding the lock; a poisoned queue is still a valid queue.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next batch: up to MAX_BATCH beats, oldest first, leaving out those nobody waits for.
    fn take(&self) -> Vec<Waiting> {
        let mut waiting = self.waiting();
        let batch = if waiting.len() <= MAX_BATCH {
            mem::take(&mut *waiting)
        } else {
            waiting.drain(..MAX_BATCH).collect()
        };
        drop(waiting);
        batch
            .into_iter()
            .filter(|beat| !beat.answer.is_closed())
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.waiting().is_empty()
    }
}

impl Store {
    /// Applies one beat through the group commit and waits for its own answer.
    pub(super) async fn commit_beat(self: &Arc<Self>, beat: Beat) -> Answer {
        let (answer, answered) = oneshot::channel();
        let lane = lanes::of_this_thread(self.beats.lanes.len());
        let queue = &self.beats.lanes[lane];
        queue.waiting().push(Waiting { beat, answer });
        if let Ok(slot) = queue.slots.clone().try_acquire_owned() {
            tokio::spawn(self.clone().commit_batches(lane, slot));
        }
        let abandoned = || {
            Err(StoreError::Unavailable(
                "the beat's batch was dropped".into(),
            ))
        };
        match self.beats.deadline {
            Some(deadline) => match tokio::time::timeout(deadline, answered).await {
                Ok(answer) => answer.unwrap_or_else(|_| abandoned()),
                Err(_) => Err(StoreError::Unavailable(
                    "Redis did not answer in time".into(),
                )),
            },
            None => answered.await.unwrap_or_else(|_| abandoned()),
        }
    }

    /// Commits the lane's batches while its beats are queued, holding one of its batch slots.
    async fn commit_batches(self: Arc<Self>, lane: usize, mut slot: OwnedSemaphorePermit) {
        let queue = &self.beats.lanes[lane];
        loop {
            loop {
                // Beats whose requests are being read on this thread right now join this batch;
                // and the embedded store answers without ever waiting, so without this the task
                // would keep its thread from serving anything else while beats keep coming.
                tokio::task::yield_now().await;
                let batch = queue.take();
                if batch.is_empty() {
                    break;
                }
                self.commit(batch).await;
            }
            drop(slot);
            // A beat queued after the last take but before the slot was free found no slot: take
            // it now (or leave it to whoever holds the slot it finds).
            if queue.is_empty() {
                return;
            }
            match queue.slots.clone().try_acquire_owned() {
                Ok(again) => slot = again,
                Err(_) => return,
            }
        }
    }

    async fn commit(&self, batch: Vec<Waiting>) {
        let (beats, answers): (Vec<Beat>, Vec<oneshot::Sender<Answer>>) = batch
            .into_iter()
            .map(|waiting| (waiting.beat, waiting.answer))
            .unzip();
        let count = beats.len();
        let outcome = self
            .run_planned(&BeatBatch {
                resume_window_ms: self.resume_window_ms,
                beats,
            })
            .await;
        match outcome {
            Ok(BeatAnswers(outcomes)) if outcomes.len() == count => {
                for (answer, outcome) in answers.into_iter().zip(outcomes) {
                    // A request that gave up no longer listens; its beat was applied all the same.
                    let _ = answer.send(Ok(outcome));
                }
            }
            Ok(BeatAnswers(outcomes)) => {
                let error = StoreError::Internal(format!(
                    "beat.lua answered {} beats of {count}",
                    outcomes.len()
                ));
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConnectOutcome, SessionState};
    use crate::store::test_support::embedded_store;

    async fn session(store: &Store) -> String {
        match store.connect(None).await.expect("connect") {
            ConnectOutcome::Granted(grant) => grant.session_id,
            other => panic!("no grant: {other:?}"),
        }
    }

    fn beat_of(store: &Store, session_id: &str) -> Beat {
        let claims = store
            .signer
            .verify(session_id)
            .expect("a signed session id");
        Beat::from_claims(
            claims,
            &crate::domain::BeatReport {
                ready: true,
                ..Default::default()
            },
        )
    }

    fn states(answers: &[BeatOutcome]) -> Vec<(&'static str, u64)> {
        answers
            .iter()
            .map(|answer| match answer {
                BeatOutcome::Alive(lease) => (
                    match lease.state {
                        SessionState::Active => "active",
                        SessionState::Standby => "standby",
                        SessionState::Retired => "retired?",
                    },
                    lease.generation,
                ),
                BeatOutcome::Retired(lease) => ("401", lease.generation),
                BeatOutcome::NotFound => ("404", 0),
            })
            .collect()
    }

    /// Within one batch, each beat sees what the beats before it did: the beat that completes a
    /// reshard switches the generation, and the old generation's next beat is retired (401).
    #[tokio::test]
    async fn a_batch_applies_its_beats_in_order_across_a_generation_switch() {
        let store = embedded_store(1).await;
        let old = session(&store).await;
        assert!(store.reshard(2, None).await.expect("reshard").started);
        let first_new = session(&store).await;
        let second_new = session(&store).await;
        let BeatAnswers(answers) = store
            .run_planned(&BeatBatch {
                resume_window_ms: 0,
                beats: vec![beat_of(&store, &second_new)],
            })
            .await
            .expect("a batch of one");
        assert_eq!(states(&answers), [("standby", 2)]);

        let BeatAnswers(answers) = store
            .run_planned(&BeatBatch {
                resume_window_ms: 0,
                beats: vec![
                    beat_of(&store, &old),
                    beat_of(&store, &first_new),
                    beat_of(&store, &old),
                    beat_of(&store, &second_new),
                    Beat {
                        nonce: "another session".into(),
                        ..beat_of(&store, &first_new)
                    },
                ],
            })
            .await
            .expect("one batch");

        assert_eq!(
            states(&answers),
            [
                ("active", 1),
                ("active", 2),
                ("401", 1),
                ("active", 2),
                ("404", 0)
            ]
        );
    }

    /// Beats sent together through `Store::beat` each get their own answer.
    #[tokio::test]
    async fn beats_committed_together_each_get_their_own_answer() {
        let store = embedded_store(8).await;
        let mut sessions = Vec::new();
        for _ in 0..8 {
            sessions.push(session(&store).await);
        }
        let released = sessions[3].clone();
        assert!(store.disconnect(&released).await.expect("disconnect"));
        let beats = sessions.iter().map(|session_id| {
            let store = store.clone();
            let report = crate::domain::BeatReport {
                session_id: session_id.clone(),
                guild_count: Some(1),
                ready: true,
                ..Default::default()
            };
            async move { store.beat(&report).await }
        });
        let answers = futures_util::future::join_all(beats).await;
        for (index, answer) in answers.into_iter().enumerate() {
            match answer.expect("the store answers") {
                BeatOutcome::Alive(lease) => {
                    assert_ne!(index, 3);
                    assert_eq!(lease.shard_id as usize, index);
                }
                BeatOutcome::NotFound => assert_eq!(index, 3),
                other => panic!("beat {index}: {other:?}"),
            }
        }
    }
}
