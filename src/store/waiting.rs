//! Claims that wait (`GET /connect?wait=<seconds>`): rather than answering 401 at once when every
//! shard is held, the replica keeps claiming for the request until a shard group is free or the
//! wait is up, first come first served across all replicas.
//!
//! **Waking up.** A waiting claim runs `connect.lua` again at once when any replica frees shards
//! (a disconnect, a reshard, a reaped expiry, a grant given back: this replica's own at once,
//! another's by pub/sub, see `wakeups.rs`), and every `WAITER_POLL_MS` when nothing woke it.
//! Leases expire by Redis's key TTL with nothing running, and the claim script is what notices an
//! expiry, so the poll is what finds one; it also covers a wake-up that got lost. Not keyspace
//! notifications: they need a `notify-keyspace-events` setting (managed Redis often forbids it)
//! and arrive late for expiries. Each poll is one O(log N) script call.
//!
//! **Order.** Each waiting request has a ticket, queued in the store by first arrival (see
//! `claims_ahead` in `migrations-lua/includes/common.lua`); a claim may take a group only while
//! more groups are free than tickets are queued ahead of it, so neither a later waiter nor a claim
//! that does not wait can overtake an earlier waiter. Every attempt renews the ticket for
//! [`Store::waiter_renew_ms`]; the ticket of a replica that died lapses after that.
//!
//! **Delivery.** A claim runs on a task of its own ([`Store::claim_delivered`]) and hands its
//! answer to the request; when the request is gone (actix drops a handler whose client hung up),
//! the wait ends at once, and a grant made meanwhile is given back (`give_back.lua`) rather than
//! held by nobody for a lease.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::scripts::give_back::{GiveBack, GivenBack, RESUME_SEPARATOR};
use super::scripts::stop_waiting::StopWaiting;
use super::{Store, StoreError, Wakeup};
use crate::domain::{ConnectOutcome, Grant, IdentifyPacing};
use crate::session_token::new_nonce;

/// How long a ticket keeps its place in the queue without another attempt beyond its poll: ten
/// polls at the default `WAITER_POLL_MS`, so that a busy replica's waiters keep their places,
/// while a dead replica's leave within about two seconds (see [`Store::waiter_renew_ms`]).
pub(super) const WAITER_RENEW_MS: u64 = 2000;

/// A claim's outcome, and how long the request waited before the attempt that decided it.
#[derive(Debug)]
pub struct WaitedClaim {
    pub outcome: ConnectOutcome,
    /// From the start of the wait to the start of the deciding attempt: a grant's lease began no
    /// earlier than this after the request arrived (clients count their lease view from it).
    pub waited: Duration,
}

impl Store {
    /// How long a ticket keeps its place without another attempt: a poll plus
    /// [`WAITER_RENEW_MS`] (a waiter tries again at least once a poll).
    pub(super) fn waiter_renew_ms(&self) -> u64 {
        let poll_ms = u64::try_from(self.waiter_poll.as_millis()).unwrap_or(u64::MAX);
        WAITER_RENEW_MS.saturating_add(poll_ms)
    }

    /// Claims for one request on a task of its own, waiting up to `wait` (`None`: one attempt, as
    /// a claim that does not wait) or until `give_up` resolves. Should the returned future be
    /// dropped (the request is gone), the wait ends at once and a grant it missed is given back.
    pub fn claim_delivered<GiveUp: Future<Output = ()> + Send + 'static>(
        self: &Arc<Self>,
        process: Option<String>,
        pacing: IdentifyPacing,
        wait: Option<Duration>,
        give_up: GiveUp,
    ) -> impl Future<Output = Result<WaitedClaim, StoreError>> + use<GiveUp> {
        let (mut answer, answered) = oneshot::channel();
        let store = Arc::clone(self);
        // Boxed: unboxed, the store's futures nest too deep for the compiler's layout queries.
        tokio::spawn(Box::pin(async move {
            let claim = match wait {
                None => Box::pin(store.claim(process.as_deref(), pacing, ""))
                    .await
                    .map(|outcome| WaitedClaim {
                        outcome,
                        waited: Duration::ZERO,
                    }),
                Some(wait) => {
                    let request_gone = answer.closed();
                    let stop = async move {
                        tokio::select! {
                            () = request_gone => {}
                            () = give_up => {}
                        }
                    };
                    let process = process.as_deref();
                    let poll = store.waiter_poll;
                    Box::pin(store.wait_for_claim(process, pacing, wait, poll, stop)).await
                }
            };
            if let Err(Ok(WaitedClaim {
                outcome: ConnectOutcome::Granted(grant),
                ..
            })) = answer.send(claim)
            {
                Box::pin(store.give_back_undelivered(&grant)).await;
            }
        }));
        async move {
            answered.await.unwrap_or_else(|_| {
                Err(StoreError::Internal(
                    "a claim's task ended without an answer".into(),
                ))
            })
        }
    }

    /// Claims, trying again every `WAITER_POLL_MS` (at once when any replica frees shards) while
    /// every group is held or spoken for, until `wait` is up or `stop` resolves; then answers
    /// [`ConnectOutcome::Full`]. Any other answer ends the wait at once.
    pub async fn connect_waiting(
        &self,
        process: Option<&str>,
        wait: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<WaitedClaim, StoreError> {
        self.wait_for_claim(process, IdentifyPacing::Slot, wait, self.waiter_poll, stop)
            .await
    }

    /// [`Store::connect_waiting`] with another poll (the tests' way to tell a wake-up from a poll).
    async fn wait_for_claim(
        &self,
        process: Option<&str>,
        pacing: IdentifyPacing,
        wait: Duration,
        poll: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<WaitedClaim, StoreError> {
        let ticket = new_nonce();
        let started = Instant::now();
        let deadline = started + wait;
        tokio::pin!(stop);
        loop {
            // Registered before the attempt, so a release made during it still wakes this claim.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let waited = started.elapsed();
            let outcome = self.claim(process, pacing, &ticket).await;
            let ended = match &outcome {
                Ok(ConnectOutcome::Full) => Instant::now() >= deadline,
                // A grant took the ticket out of the queue.
                Ok(ConnectOutcome::Granted(_)) => return finish(outcome, waited),
                Ok(_) | Err(_) => true,
            };
            if ended {
                self.stop_waiting(&ticket).await;
                return finish(outcome, waited);
            }
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(deadline.min(Instant::now() + poll)) => {}
                () = &mut stop => {
                    self.stop_waiting(&ticket).await;
                    return Ok(WaitedClaim { outcome: ConnectOutcome::Full, waited: started.elapsed() });
                }
            }
        }
    }

    /// Takes a ticket out of the queue. Should the store not answer, the ticket lapses by itself
    /// after [`Store::waiter_renew_ms`].
    async fn stop_waiting(&self, ticket: &str) {
        if let Err(error) = self.run(&StopWaiting { ticket }).await {
            log::warn!("a waiting claim could not leave the queue (it lapses by itself): {error}");
        }
    }

    /// Frees the group of a grant whose answer never reached its claimant and puts back the
    /// resume data it took; false when the grant no longer held its group.
    pub async fn give_back(&self, grant: &Grant) -> Result<bool, StoreError> {
        let Some(claims) = self.signer.verify(&grant.session_id) else {
            return Ok(false);
        };
        let resumes = grant
            .shards
            .iter()
            .map(|shard| {
                let json = shard.resume.as_ref().map(ToString::to_string);
                json.unwrap_or_default() + &RESUME_SEPARATOR.to_string()
            })
            .collect();
        let GivenBack(given_back) = self
            .run(&GiveBack {
                nonce: &claims.nonce,
                shard_id: claims.shard_id,
                generation: claims.generation,
                resume_window_ms: self.resume_window_ms,
                resumes,
            })
            .await?;
        if given_back {
            self.wake(Wakeup::Freed);
        }
        Ok(given_back)
    }

    async fn give_back_undelivered(&self, grant: &Grant) {
        let shard_id = grant.lease.shard_id;
        match self.give_back(grant).await {
            Ok(_) => {
                log::info!("shard {shard_id} was granted to a request that is gone: given back")
            }
            Err(error) => log::warn!(
                "shard {shard_id} was granted to a request that is gone and could not be given \
                 back; it is free again when its first lease ends: {error}"
            ),
        }
    }
}

fn finish(
    outcome: Result<ConnectOutcome, StoreError>,
    waited: Duration,
) -> Result<WaitedClaim, StoreError> {
    outcome.map(|outcome| WaitedClaim { outcome, waited })
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;
    use crate::config::{Secret, Settings};
    use crate::domain::BeatReport;
    use crate::store::test_support::embedded_store;

    fn granted(outcome: ConnectOutcome) -> Grant {
        match outcome {
            ConnectOutcome::Granted(grant) => grant,
            other => panic!("no grant: {other:?}"),
        }
    }

    fn is_full(outcome: &ConnectOutcome) -> bool {
        matches!(outcome, ConnectOutcome::Full)
    }

    async fn hold(store: &Store) -> Grant {
        granted(store.connect(None).await.expect("connect"))
    }

    /// A claim waiting up to 30 s on its own task, polling too rarely to matter: within a test,
    /// only a wake-up serves it.
    fn waiter(store: &Arc<Store>) -> tokio::task::JoinHandle<Result<WaitedClaim, StoreError>> {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let rarely = Duration::from_secs(600);
            store
                .wait_for_claim(
                    None,
                    IdentifyPacing::Slot,
                    Duration::from_secs(30),
                    rarely,
                    pending(),
                )
                .await
        })
    }

    /// Lets the spawned claims make their attempt and wait for the next.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn served(waiter: tokio::task::JoinHandle<Result<WaitedClaim, StoreError>>) -> Grant {
        let claim = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("served by a wake-up: its next poll is minutes away")
            .expect("joins")
            .expect("claims");
        granted(claim.outcome)
    }

    #[tokio::test]
    async fn a_waiting_claim_gets_a_shard_released_on_its_replica_without_waiting_for_a_poll() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;
        let waiting = waiter(&store);
        settle().await;

        assert!(
            store
                .disconnect(&holder.session_id)
                .await
                .expect("disconnect")
        );

        assert_eq!(served(waiting).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn waiting_claims_are_served_in_the_order_they_arrived() {
        let store = embedded_store(2).await;
        let (first_holder, second_holder) = (hold(&store).await, hold(&store).await);
        let first = waiter(&store);
        settle().await;
        let second = waiter(&store);
        settle().await;

        store
            .disconnect(&second_holder.session_id)
            .await
            .expect("disconnect");
        settle().await;
        assert!(
            !second.is_finished(),
            "the second waiter is not served first"
        );
        assert_eq!(served(first).await.lease.shard_id, 1);

        store
            .disconnect(&first_holder.session_id)
            .await
            .expect("disconnect");
        assert_eq!(served(second).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn several_waiting_claims_are_served_at_once_when_several_shards_free_together() {
        let store = embedded_store(2).await;
        let holders = [hold(&store).await, hold(&store).await];
        let first = waiter(&store);
        settle().await;
        let second = waiter(&store);
        settle().await;

        // A reshard to 4 shards frees a whole generation, whose shards the waiters take.
        assert!(store.reshard(4, None).await.expect("reshards").started);

        let mut ids = [
            served(first).await.lease.shard_id,
            served(second).await.lease.shard_id,
        ];
        ids.sort_unstable();
        assert_eq!(ids, [0, 1]);
        drop(holders);
    }

    #[tokio::test]
    async fn a_claim_that_does_not_wait_cannot_take_a_shard_an_earlier_waiter_is_owed() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;
        let waiting = waiter(&store);
        settle().await;

        // Released, and claimed at once, before the woken waiter has run again.
        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");
        assert!(is_full(&store.connect(None).await.expect("connect")));

        assert_eq!(served(waiting).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn a_waiting_claim_notices_a_lease_that_expired_at_its_next_poll() {
        let settings = Settings {
            secret: Some(Secret::new("waiting-test")),
            max_shards: 1,
            max_seconds: 1,
            ..Settings::default()
        };
        let store = Store::open(&settings)
            .await
            .expect("the embedded store opens");
        let holder = hold(&store).await;
        let started = Instant::now();

        // Nothing wakes it: the lease ends by its TTL, which only a claim notices.
        let claim = store
            .connect_waiting(None, Duration::from_secs(10), pending())
            .await
            .expect("claims");

        assert_eq!(granted(claim.outcome).lease.shard_id, holder.lease.shard_id);
        let after_expiry = started.elapsed().saturating_sub(Duration::from_secs(1));
        assert!(
            after_expiry < Duration::from_secs(1),
            "{after_expiry:?} after the expiry"
        );
        assert!(
            claim.waited >= Duration::from_millis(800),
            "{:?}",
            claim.waited
        );
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_answers_full_and_leaves_the_queue() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;

        let claim = store
            .connect_waiting(None, Duration::from_millis(500), pending())
            .await
            .expect("claims");

        assert!(is_full(&claim.outcome));
        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");
        // Nobody is queued ahead any more: a claim that does not wait gets the shard.
        assert_eq!(hold(&store).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn a_waiting_claim_stopped_early_leaves_the_queue() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;

        let claim = store
            .connect_waiting(
                None,
                Duration::from_secs(30),
                tokio::time::sleep(Duration::from_millis(500)),
            )
            .await
            .expect("claims");

        assert!(is_full(&claim.outcome));
        assert!(claim.waited < Duration::from_secs(5), "{:?}", claim.waited);
        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");
        assert_eq!(hold(&store).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn the_ticket_of_a_replica_that_stopped_asking_lapses() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;
        // Queued by a replica that then died: one attempt, and never another.
        let attempt = store
            .claim(None, IdentifyPacing::Slot, "ticket-of-a-dead-replica")
            .await;
        assert!(is_full(&attempt.expect("claims")));
        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");
        assert!(
            is_full(&store.connect(None).await.expect("connect")),
            "held for the waiter"
        );

        tokio::time::sleep(Duration::from_millis(store.waiter_renew_ms() + 100)).await;

        assert_eq!(hold(&store).await.lease.shard_id, 0);
    }

    #[tokio::test]
    async fn a_grant_whose_request_is_gone_is_given_back_with_its_resume_data() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;
        let resume =
            r#"{"session_id":"discord-session","sequence":42,"resume_gateway_url":"wss://r"}"#;
        let beat = BeatReport {
            session_id: holder.session_id.clone(),
            resume: Some(resume.into()),
            ready: true,
            ..Default::default()
        };
        store.beat(&beat).await.expect("beats");
        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");

        // The request is dropped before its claim's task has run: the task grants, finds nobody
        // to answer, and gives the grant back.
        drop(store.claim_delivered(None, IdentifyPacing::Slot, None, pending()));
        settle().await;

        let next = hold(&store).await;
        assert_eq!(next.lease.shard_id, 0);
        assert_eq!(
            next.lease.fence,
            holder.lease.fence + 2,
            "a grant came in between"
        );
        let handed_over = next.first_shard().and_then(|shard| shard.resume.clone());
        assert_eq!(
            handed_over,
            Some(serde_json::from_str(resume).expect("JSON")),
            "the next claimant can still RESUME"
        );
    }

    #[tokio::test]
    async fn a_waiting_request_that_is_dropped_leaves_the_queue_at_once() {
        let store = embedded_store(1).await;
        let holder = hold(&store).await;
        let request = tokio::spawn(store.claim_delivered(
            None,
            IdentifyPacing::Slot,
            Some(Duration::from_secs(30)),
            pending(),
        ));
        settle().await;

        request.abort();
        settle().await;

        store
            .disconnect(&holder.session_id)
            .await
            .expect("disconnect");
        assert_eq!(
            hold(&store).await.lease.shard_id,
            0,
            "nobody is left queued"
        );
    }
}
