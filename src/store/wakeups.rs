//! Wake-ups across replicas. A replica that frees shards (a disconnect, a reshard, a reaped expiry,
//! a grant given back) or confirms an IDENTIFY permit wakes its own waiting requests at once, and
//! tells the other replicas by Redis pub/sub (`PUBLISH {prefix}:wakeups`), so that a claim or a
//! permit waiting on another replica tries again at once rather than at its next poll.
//!
//! A message is only a hint: a replica that misses one (its subscription is down, Redis restarted)
//! still finds the change at its next poll (`WAITER_POLL_MS`, [`super::PROVISIONAL_POLL`]), and a
//! lease that ends by its TTL is only ever found by a poll. Pub/sub needs no server setting
//! (unlike keyspace notifications), and a classic `PUBLISH` reaches every node of a Redis Cluster
//! and, through replication, the replicas of a master. The embedded store has one replica: its
//! local wake-up is all there is.
//!
//! The requests that free shards only mark what happened ([`Store::wake`]); the relay job
//! (`jobs/wakeups.rs`) publishes the marks, one message per kind however many came meanwhile, so a
//! request never waits for the `PUBLISH`, and listens. Its subscription is checked end to end: the
//! relay publishes an echo through the store's own connection and must hear it back, so a
//! subscription on a node the messages no longer reach (a master that lost a failover, a node cut
//! off from the cluster) is replaced.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

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
    pub const ALL: [Wakeup; 2] = [Wakeup::Freed, Wakeup::Confirmed];

    fn name(self) -> &'static str {
        match self {
            Wakeup::Freed => "freed",
            Wakeup::Confirmed => "confirmed",
        }
    }
}

/// What a subscription heard.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Another replica's wake-up.
    Wakeup(Wakeup),
    /// This replica's echo number `n` (see [`Store::publish_echo`]).
    Echo(u64),
}

/// Messages are `<kind> <replica>[ <n>]`: the sender skips its own wake-ups (it woke its requests
/// already) and only hears its own echoes.
fn message(kind: &str, replica: &str) -> String {
    format!("{kind} {replica}")
}

const ECHO: &str = "echo";

fn heard(text: &str, this_replica: &str) -> Option<Heard> {
    let mut words = text.split(' ');
    let (kind, replica) = (words.next()?, words.next()?);
    if kind == ECHO {
        return (replica == this_replica)
            .then(|| words.next()?.parse().ok().map(Heard::Echo))
            .flatten();
    }
    if replica == this_replica {
        return None;
    }
    let wakeup = Wakeup::ALL
        .into_iter()
        .find(|wakeup| wakeup.name() == kind)?;
    Some(Heard::Wakeup(wakeup))
}

/// Wake-ups marked by requests and not yet published (see [`Store::take_marked_wakeups`]).
#[derive(Default)]
pub(super) struct MarkedWakeups {
    freed: AtomicBool,
    confirmed: AtomicBool,
    marked: Notify,
}

impl MarkedWakeups {
    fn flag(&self, wakeup: Wakeup) -> &AtomicBool {
        match wakeup {
            Wakeup::Freed => &self.freed,
            Wakeup::Confirmed => &self.confirmed,
        }
    }
}

/// This replica's subscription to the wake-up channel (see [`Store::listen_for_wakeups`]).
pub struct WakeupListener {
    subscription: Subscription,
    replica: String,
}

impl WakeupListener {
    /// The next message for this replica; an error once the connection is gone.
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        loop {
            let text = self.subscription.next().await?;
            if let Some(heard) = heard(&text, &self.replica) {
                return Ok(heard);
            }
        }
    }
}

impl Store {
    /// Wakes this replica's requests waiting for `wakeup` and marks it for the other replicas,
    /// which the relay job tells without holding up the caller.
    pub(super) fn wake(&self, wakeup: Wakeup) {
        self.wake_here(wakeup);
        if !self.is_embedded() {
            self.marked_wakeups
                .flag(wakeup)
                .store(true, Ordering::SeqCst);
            self.marked_wakeups.marked.notify_one();
        }
    }

    /// Wakes this replica's requests waiting for `wakeup`.
    pub fn wake_here(&self, wakeup: Wakeup) {
        match wakeup {
            Wakeup::Freed => self.freed.notify_waiters(),
            Wakeup::Confirmed => self.confirmed.notify_waiters(),
        }
    }

    /// Waits until a request marked a wake-up, then takes every mark made so far.
    pub async fn take_marked_wakeups(&self) -> Vec<Wakeup> {
        self.marked_wakeups.marked.notified().await;
        Wakeup::ALL
            .into_iter()
            .filter(|wakeup| {
                self.marked_wakeups
                    .flag(*wakeup)
                    .swap(false, Ordering::SeqCst)
            })
            .collect()
    }

    /// Tells the other replicas about `wakeup`.
    pub async fn publish_wakeup(&self, wakeup: Wakeup) -> Result<(), StoreError> {
        self.publish(&message(wakeup.name(), &self.replica)).await
    }

    /// Publishes echo number `n`, which this replica's own subscription must hear back.
    pub async fn publish_echo(&self, n: u64) -> Result<(), StoreError> {
        self.publish(&format!("{} {n}", message(ECHO, &self.replica)))
            .await
    }

    async fn publish(&self, text: &str) -> Result<(), StoreError> {
        self.engine
            .command(&["PUBLISH", &self.keys.wakeups, text])
            .await
            .map(drop)
    }

    /// Whether this replica hears the other replicas' wake-ups now (`shardman_wakeups_heard`);
    /// `None` for the embedded store, which has no others.
    pub fn wakeups_heard(&self) -> Option<bool> {
        (!self.is_embedded()).then(|| self.wakeups_heard.load(Ordering::SeqCst))
    }

    /// Set by the relay job as its subscription comes and goes.
    pub fn set_wakeups_heard(&self, heard: bool) {
        self.wakeups_heard.store(heard, Ordering::SeqCst);
    }

    /// Subscribes to the wake-up channel; `None` for the embedded store (one replica).
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
    fn a_replica_hears_the_others_wake_ups_and_its_own_echoes_only() {
        for wakeup in Wakeup::ALL {
            let text = message(wakeup.name(), "replica-a");
            assert_eq!(heard(&text, "replica-b"), Some(Heard::Wakeup(wakeup)));
            assert_eq!(heard(&text, "replica-a"), None);
        }
        assert_eq!(heard("echo replica-a 7", "replica-a"), Some(Heard::Echo(7)));
        assert_eq!(heard("echo replica-a 7", "replica-b"), None);
        assert_eq!(heard("moved replica-a", "replica-b"), None);
        assert_eq!(heard("freed", "replica-b"), None);
    }
}
