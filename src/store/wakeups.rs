//! Wake-ups across replicas. A replica that frees shards (a disconnect, a reshard, a reaped expiry,
//! a grant given back) or confirms an IDENTIFY permit wakes its own waiting requests at once, and
//! tells the other replicas by Redis pub/sub (`PUBLISH {prefix}:wakeups`), so that a claim or a
//! permit waiting on another replica tries again at once rather than at its next poll.
//!
//! A message is only a hint: a replica that misses one (its subscription is down, Redis restarted)
//! still finds the change at its next poll (`WAITER_POLL_MS`, [`super::PROVISIONAL_POLL`]),
//! and a lease that ends by its TTL is only ever found by a poll. Pub/sub needs no server setting
//! (unlike keyspace notifications), and a classic `PUBLISH` reaches every node of a Redis Cluster
//! and every replica of a Sentinel master, so the subscriber may listen on any node. The embedded
//! store has one replica: its local wake-up is all there is.

use super::engine::Engine;
use super::redis::Subscription;
use super::{Store, StoreError};

/// What happened on the replica that sent a wake-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// Shards came free: claims that wait try again.
    Freed,
    /// An IDENTIFY permit was confirmed: permits waiting for that bucket ask again.
    Confirmed,
}

impl Wakeup {
    const ALL: [Wakeup; 2] = [Wakeup::Freed, Wakeup::Confirmed];

    fn name(self) -> &'static str {
        match self {
            Wakeup::Freed => "freed",
            Wakeup::Confirmed => "confirmed",
        }
    }
}

/// A message is `<wakeup> <replica>`: the sender skips its own (it woke its requests already).
fn message(wakeup: Wakeup, replica: &str) -> String {
    format!("{} {replica}", wakeup.name())
}

/// The wake-up in a message from another replica; `None` for this replica's own or an unknown one.
fn from_message(text: &str, this_replica: &str) -> Option<Wakeup> {
    let (name, replica) = text.split_once(' ')?;
    if replica == this_replica {
        return None;
    }
    Wakeup::ALL.into_iter().find(|wakeup| wakeup.name() == name)
}

/// This replica's subscription to the other replicas' wake-ups (see [`Store::listen_for_wakeups`]).
pub struct WakeupListener {
    subscription: Subscription,
    replica: String,
}

impl WakeupListener {
    /// The next wake-up from another replica; an error when the subscription broke (Redis went
    /// away, or stopped answering its health check), after which a new one is needed.
    pub async fn next(&mut self) -> Result<Wakeup, StoreError> {
        loop {
            let text = self.subscription.next().await?;
            if let Some(wakeup) = from_message(&text, &self.replica) {
                return Ok(wakeup);
            }
        }
    }
}

impl Store {
    /// Wakes this replica's requests waiting for `wakeup`, then the other replicas' (best effort:
    /// they poll anyway).
    pub(super) async fn wake(&self, wakeup: Wakeup) {
        self.wake_here(wakeup);
        if self.is_embedded() {
            return;
        }
        let channel = &self.keys.wakeups;
        let text = message(wakeup, &self.replica);
        if let Err(error) = self.engine.command(&["PUBLISH", channel, &text]).await {
            log::debug!(
                "could not tell the other replicas ({}): {error}",
                wakeup.name()
            );
        }
    }

    /// Wakes this replica's requests waiting for `wakeup`.
    pub fn wake_here(&self, wakeup: Wakeup) {
        match wakeup {
            Wakeup::Freed => self.freed.notify_waiters(),
            Wakeup::Confirmed => self.confirmed.notify_waiters(),
        }
    }

    /// Subscribes to the other replicas' wake-ups; `None` for the embedded store (one replica).
    pub async fn listen_for_wakeups(&self) -> Option<Result<WakeupListener, StoreError>> {
        let subscription = match &self.engine {
            Engine::Embedded(_) => return None,
            Engine::Redis(engine) => engine.subscribe(&self.keys.wakeups).await,
            Engine::Cluster(engine) => engine.subscribe(&self.keys.wakeups).await,
        };
        Some(subscription.map(|subscription| WakeupListener {
            subscription,
            replica: self.replica.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_reads_the_others_wake_ups_and_skips_its_own() {
        for wakeup in Wakeup::ALL {
            let text = message(wakeup, "replica-a");
            assert_eq!(from_message(&text, "replica-b"), Some(wakeup));
            assert_eq!(from_message(&text, "replica-a"), None);
        }
        assert_eq!(from_message("moved replica-a", "replica-b"), None);
        assert_eq!(from_message("freed", "replica-b"), None);
    }
}
