//! IDENTIFY permits (`POST /identify/permit`, `POST /identify/confirm`): a session that connected
//! with `?identify=permit` asks for each shard's permit right before its IDENTIFY, and the
//! replica waits for the shard's bucket to open rather than booking a slot ahead of time.
//!
//! **The rule** lives in one place, `includes/common.lua` ("IDENTIFY pacing"): a bucket opens
//! `CONFIRMED_GAP_MS` (5 s) after the previous permit's confirm, or `UNCONFIRMED_HOLD_MS`
//! (8.1 s) after its grant when it is never confirmed, and legacy slots keep their 6 s spacing on
//! the same value.
//!
//! **Waiting.** `identify_permit.lua` either grants, or answers how long until the bucket opens
//! and whether that time is firm (no outstanding permit could move it) or provisional (an
//! outstanding permit may be confirmed, opening it sooner). The request sleeps until a firm
//! opening, and asks again every [`PROVISIONAL_POLL`] while it is provisional; a confirm wakes the
//! waiters at once, on this replica and (by pub/sub, see `wakeups.rs`) on the others. Every ask is bounded by the request's `wait`; a wait
//! that runs out answers [`PermitOutcome::NotYet`] with the store's best estimate.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::scripts::identify_confirm::IdentifyConfirm;
use super::scripts::identify_permit::{IdentifyPermit, PermitReply};
use super::{Store, StoreError, Wakeup};
use crate::domain::{ConfirmOutcome, PermitOutcome};

/// How often a waiting permit asks again while its bucket's opening is provisional: how late a
/// waiter learns of a confirm whose wake-up got lost.
pub const PROVISIONAL_POLL: Duration = Duration::from_millis(100);

/// How long a permit that is not granted yet sleeps before it asks again: until a firm opening,
/// at most `poll` ([`PROVISIONAL_POLL`]) while the opening is provisional, and never past the end
/// of the request's wait (`left`).
fn pause_before_asking_again(
    until_open: Duration,
    firm: bool,
    poll: Duration,
    left: Duration,
) -> Duration {
    let pause = if firm {
        until_open
    } else {
        until_open.min(poll)
    };
    pause.min(left)
}

impl Store {
    /// The permit to IDENTIFY `shard_id` of the session's group now (`None`: its first shard),
    /// waiting up to `wait` for the shard's bucket to open, or until `stop` resolves (the replica
    /// drains): then [`PermitOutcome::NotYet`].
    pub async fn identify_permit(
        &self,
        session_id: &str,
        shard_id: Option<u32>,
        wait: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<PermitOutcome, StoreError> {
        self.wait_for_permit(session_id, shard_id, wait, PROVISIONAL_POLL, stop)
            .await
    }

    /// [`Store::identify_permit`] with another poll (the tests' way to tell a wake-up from a poll).
    async fn wait_for_permit(
        &self,
        session_id: &str,
        shard_id: Option<u32>,
        wait: Duration,
        poll: Duration,
        stop: impl Future<Output = ()>,
    ) -> Result<PermitOutcome, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(PermitOutcome::NotFound);
        };
        let call = IdentifyPermit {
            nonce: &claims.nonce,
            default_concurrency: self.default_concurrency,
            identify_reserve: self.identify_reserve,
            shard_id: claims.shard_id,
            generation: claims.generation,
            identify_shard_id: shard_id,
        };
        let deadline = Instant::now() + wait;
        tokio::pin!(stop);
        loop {
            // Registered before the ask, so a confirm made during it still wakes this request.
            let confirmed = self.confirmed.notified();
            tokio::pin!(confirmed);
            confirmed.as_mut().enable();
            let (shard_id, wait_ms, firm) = match self.run_planned(&call).await? {
                PermitReply::Final(outcome) => return Ok(outcome),
                PermitReply::Wait {
                    shard_id,
                    wait_ms,
                    firm,
                } => (shard_id, wait_ms, firm),
            };
            let not_yet = PermitOutcome::NotYet {
                shard_id,
                retry_after_ms: wait_ms,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(not_yet);
            }
            let pause = pause_before_asking_again(Duration::from_millis(wait_ms), firm, poll, left);
            tokio::select! {
                () = &mut confirmed => {}
                () = tokio::time::sleep(pause) => {}
                () = &mut stop => return Ok(not_yet),
            }
        }
    }

    /// Marks the permitted IDENTIFY of `shard_id` of the session's group (`None`: its first
    /// shard) as sent: its bucket opens `CONFIRMED_GAP_MS` from now. Wakes this replica's
    /// waiting permits.
    pub async fn identify_confirm(
        &self,
        session_id: &str,
        shard_id: Option<u32>,
    ) -> Result<ConfirmOutcome, StoreError> {
        let Some(claims) = self.verify_session(session_id) else {
            return Ok(ConfirmOutcome::NotFound);
        };
        let outcome = self
            .run_planned(&IdentifyConfirm {
                nonce: &claims.nonce,
                default_concurrency: self.default_concurrency,
                shard_id: claims.shard_id,
                generation: claims.generation,
                identify_shard_id: shard_id,
            })
            .await?;
        if outcome == ConfirmOutcome::Confirmed(true) {
            self.wake(Wakeup::Confirmed);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::sync::Arc;

    use super::*;
    use crate::domain::{ConnectOutcome, IdentifyPacing};
    use crate::store::test_support::embedded_store;

    const SECOND: Duration = Duration::from_secs(1);

    fn pause(until_open: Duration, firm: bool, left: Duration) -> Duration {
        pause_before_asking_again(until_open, firm, PROVISIONAL_POLL, left)
    }

    #[test]
    fn a_firm_opening_is_slept_until_and_a_provisional_one_is_asked_again_every_100_ms() {
        let long = Duration::from_secs(30);
        assert_eq!(pause(3 * SECOND, true, long), 3 * SECOND);
        assert_eq!(pause(3 * SECOND, false, long), PROVISIONAL_POLL);
        let soon = Duration::from_millis(40);
        assert_eq!(pause(soon, false, long), soon);
    }

    #[test]
    fn no_pause_outlasts_the_requests_wait() {
        let left = Duration::from_millis(250);
        assert_eq!(pause(3 * SECOND, true, left), left);
        let little = Duration::from_millis(30);
        assert_eq!(pause(3 * SECOND, false, little), little);
        assert_eq!(pause(3 * SECOND, true, Duration::ZERO), Duration::ZERO);
    }

    async fn session_by_permits(store: &Arc<Store>) -> String {
        match store
            .claim(None, IdentifyPacing::Permit, "")
            .await
            .expect("claims")
        {
            ConnectOutcome::Granted(grant) => grant.session_id,
            other => panic!("no grant: {other:?}"),
        }
    }

    /// A permit held at its grant's 8.1 s and confirmed 0.3 s later: a waiter that polls too
    /// rarely to matter is granted 5 s after the confirm only if the confirm woke it (its own
    /// next ask would be at the 8.1 s).
    #[tokio::test]
    async fn a_confirm_on_this_replica_wakes_the_permit_waiting_for_its_bucket() {
        // One bucket for both shards (max_concurrency 1, the embedded store's default).
        let store = embedded_store(2).await;
        let (first, second) = (
            session_by_permits(&store).await,
            session_by_permits(&store).await,
        );
        let granted = store
            .identify_permit(&first, None, Duration::ZERO, pending())
            .await
            .expect("asks");
        assert_eq!(granted, PermitOutcome::Granted { shard_id: 0 });

        let waiting = {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let rarely = Duration::from_secs(600);
                let permit = store.wait_for_permit(&second, None, 30 * SECOND, rarely, pending());
                (permit.await.expect("asks"), Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the bucket is held");
        let confirmed_at = Instant::now();
        assert_eq!(
            store
                .identify_confirm(&first, None)
                .await
                .expect("confirms"),
            ConfirmOutcome::Confirmed(true)
        );

        let (outcome, granted_at) = waiting.await.expect("joins");
        assert_eq!(outcome, PermitOutcome::Granted { shard_id: 1 });
        let after_confirm = granted_at - confirmed_at;
        assert!(
            (Duration::from_millis(5000)..Duration::from_millis(5600)).contains(&after_confirm),
            "{after_confirm:?} after the confirm"
        );
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_answers_not_yet_with_the_time_left_until_the_bucket_opens() {
        let store = embedded_store(2).await;
        let (first, second) = (
            session_by_permits(&store).await,
            session_by_permits(&store).await,
        );
        store
            .identify_permit(&first, None, Duration::ZERO, pending())
            .await
            .expect("asks");

        let started = Instant::now();
        let outcome = store
            .identify_permit(&second, None, Duration::from_millis(300), pending())
            .await
            .expect("asks");

        let PermitOutcome::NotYet {
            shard_id,
            retry_after_ms,
        } = outcome
        else {
            panic!("granted while held: {outcome:?}");
        };
        assert_eq!(shard_id, 1);
        assert!((7000..=8100).contains(&retry_after_ms), "{retry_after_ms}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < SECOND);
    }
}
