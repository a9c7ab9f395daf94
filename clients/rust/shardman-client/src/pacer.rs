//! When each shard of a claim may IDENTIFY: by permits, asked right before each IDENTIFY and
//! confirmed right after it went out (README "When to IDENTIFY: slots or permits").

use crate::answers::Claim;
use crate::backoff::Backoff;
use crate::client::{Client, Error};
use crate::events::Release;
use crate::lease::{ClaimEnd, LeaseKeeper, lock};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// How long a permit request lets the replica wait for the shard's bucket to open.
pub const PERMIT_WAIT: Duration = Duration::from_secs(10);
/// A permit that was not granted is asked again after the server's `retry_after`, but not sooner
/// than this: a replica answering at once (one shutting down says 0) is not asked in a tight loop.
const PERMIT_RETRY_FLOOR: Duration = Duration::from_millis(100);

/// IDENTIFY pacing for one claim, for any gateway library that asks before each IDENTIFY (its
/// first, and any later one: invalid session, failed RESUME): [`IdentifyPacer::permit`] asks
/// `POST /identify/permit` until the shard's bucket is open; once Discord answered the IDENTIFY
/// with READY the adapter sends [`IdentifyPacer::confirm`], so the bucket opens 5 s later instead of
/// 8.1 s after the grant. A 404 or 401 ends the claim (`Lost`, `Retired`).
#[derive(Debug)]
pub struct IdentifyPacer {
    client: Client,
    session_id: String,
    /// Shards granted a permit whose IDENTIFY has not been confirmed yet.
    unconfirmed: Mutex<HashSet<u32>>,
    end: ClaimEnd,
}

impl IdentifyPacer {
    /// The pacer of `keeper`'s claim.
    pub fn new(client: Client, claim: &Claim, keeper: &LeaseKeeper) -> Self {
        Self {
            client,
            session_id: claim.session_id.clone(),
            unconfirmed: Mutex::default(),
            end: keeper.end(),
        }
    }

    /// Asks for `shard`'s permit until it is granted (`true`: IDENTIFY now, then
    /// [`IdentifyPacer::confirm`]). Not granted within the wait: asks again after the server's
    /// `retry_after`; 429 (the identify budget), 503 and network errors: again with backoff, never
    /// before `Retry-After` (the lease view decides when to give up). `false` once a 404 or 401
    /// ended the claim.
    pub async fn permit(&self, shard: u32) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let wait = match self
                .client
                .identify_permit(&self.session_id, shard, PERMIT_WAIT)
                .await
            {
                Ok(permit) if permit.granted => {
                    lock(&self.unconfirmed).insert(shard);
                    return true;
                }
                Ok(permit) => {
                    backoff.reset();
                    permit
                        .retry_after
                        .unwrap_or_default()
                        .max(PERMIT_RETRY_FLOOR)
                }
                Err(e @ (Error::SessionLost | Error::Retired)) => {
                    end_for(&self.end, shard, &e);
                    return false;
                }
                Err(e) => {
                    let wait = backoff.next(e.retry_after());
                    tracing::warn!(shard, error = %e, ?wait, "identify permit failed; retrying");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// `shard` did not get to use its permit (it lost its connection first): nothing to confirm;
    /// its bucket opens 8.1 s after the grant.
    pub fn unused(&self, shard: u32) {
        lock(&self.unconfirmed).remove(&shard);
    }

    /// `shard`'s IDENTIFY was answered with READY: takes its unconfirmed permit and answers the
    /// request that confirms it (`None` when none awaits, so it is sent once per permit). Only
    /// call it on READY, never before (shardman opens the bucket 5 s after the confirm arrives: a
    /// confirm that overtakes its IDENTIFY on the way shortens the gap). One try: a lost confirm
    /// only leaves the bucket closed until 8.1 s after the grant, and a late one would close it
    /// longer.
    pub fn confirm(&self, shard: u32) -> Option<impl Future<Output = ()> + Send + 'static> {
        if !lock(&self.unconfirmed).remove(&shard) {
            return None;
        }
        let (client, session_id, end) = (
            self.client.clone(),
            self.session_id.clone(),
            self.end.clone(),
        );
        Some(async move {
            match client.identify_confirm(&session_id, shard).await {
                Ok(confirmed) => tracing::debug!(shard, confirmed, "IDENTIFY confirmed"),
                Err(e @ (Error::SessionLost | Error::Retired)) => end_for(&end, shard, &e),
                Err(e) => tracing::warn!(shard, error = %e, "identify confirm failed"),
            }
        })
    }

    /// The claim's end (the library should hold back an IDENTIFY once it has come).
    pub fn end(&self) -> &ClaimEnd {
        &self.end
    }
}

/// A 404 or 401 from a permit route ends the claim (`Lost`, `Retired`).
fn end_for(end: &ClaimEnd, shard: u32, error: &Error) {
    let release = if matches!(error, Error::Retired) {
        Release::Retired
    } else {
        Release::Lost
    };
    tracing::warn!(shard, %error, "identify permit refused; the claim ends");
    end.release(release);
}
