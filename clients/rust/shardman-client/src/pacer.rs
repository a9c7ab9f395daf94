//! When each shard of a claim may IDENTIFY: its first slot from `/connect`, later ones booked with
//! `/identify`.

use crate::answers::Claim;
use crate::client::{Client, Error};
use crate::events::Release;
use crate::lease::{ClaimEnd, LeaseKeeper, lock};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// IDENTIFY pacing for one claim, for any gateway library that asks before each IDENTIFY: a
/// shard's first IDENTIFY may go out `sleep_durations[i]` after the `/connect` answer arrived; any
/// later one (invalid session, failed RESUME, reconnect without a session), and the first one of a
/// shard whose claim inherited resume data (it RESUMEs, so no slot was booked), first asks
/// `POST /identify` and waits its `sleep_duration`. A 404 or 401 there ends the claim (`Lost`,
/// `Retired`).
#[derive(Debug)]
pub struct IdentifyPacer {
    client: Client,
    session_id: String,
    /// Unused first slots (shards that RESUME have none).
    first_slots: Mutex<HashMap<u32, Instant>>,
    end: ClaimEnd,
}

/// When a shard may IDENTIFY.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Slot {
    pub at: Instant,
    /// Whether it is the shard's first slot from `/connect` (give it back with
    /// [`IdentifyPacer::unused`] if the shard did not get to use it).
    pub first: bool,
}

impl IdentifyPacer {
    /// The pacer of `keeper`'s claim.
    pub fn new(client: Client, claim: &Claim, keeper: &LeaseKeeper) -> Self {
        let first_slots = claim
            .shard_ids
            .iter()
            .zip(&claim.sleep_durations)
            .zip(&claim.resumes)
            .filter(|(_, resume)| resume.is_none())
            .map(|((&id, &sleep), _)| (id, claim.received_at + sleep))
            .collect();
        Self {
            client,
            session_id: claim.session_id.clone(),
            first_slots: Mutex::new(first_slots),
            end: keeper.end(),
        }
    }

    /// The slot of `shard`'s next IDENTIFY, booked with `/identify` when its first one is used;
    /// `None` when `/identify` answered 404 or 401, which ended the claim.
    pub async fn slot(&self, shard: u32) -> Option<Slot> {
        if let Some(at) = lock(&self.first_slots).remove(&shard) {
            return Some(Slot { at, first: true });
        }
        match self.client.identify_retrying(&self.session_id, shard).await {
            Ok(sleep) => Some(Slot {
                at: Instant::now() + sleep,
                first: false,
            }),
            Err(e) => {
                let release = if matches!(e, Error::Retired) {
                    Release::Retired
                } else {
                    Release::Lost
                };
                tracing::warn!(shard, error = %e, "identify refused; the claim ends");
                self.end.release(release);
                None
            }
        }
    }

    /// `shard` did not get to use its first slot (it lost its connection before): keep it for its
    /// next try.
    pub fn unused(&self, shard: u32, slot: Slot) {
        if slot.first {
            lock(&self.first_slots).insert(shard, slot.at);
        }
    }

    /// The claim's end (the library should hold back an IDENTIFY once it has come).
    pub fn end(&self) -> &ClaimEnd {
        &self.end
    }
}
