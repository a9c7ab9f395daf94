//! The wake-up relay (see `store/wakeups.rs`): one task publishes the wake-ups this replica's
//! requests marked, one message per kind however many came meanwhile; the other listens to the
//! other replicas' and wakes this replica's waiting requests with each. Without a subscription the
//! waiting requests still poll, so a broken one only costs latency: it is made again after a
//! pause, and its loss is logged once per outage.
//!
//! The subscription is checked end to end every [`ECHO_EVERY`] it stays quiet: an echo published
//! through the store's own connection must come back within [`ECHO_WITHIN`], so a subscription on
//! a node the messages no longer reach (a master that lost a failover, a node cut off from the
//! cluster) is replaced, not trusted for ever.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::stop::sleep_or_stop;
use crate::store::{Heard, Store, StoreError, Wakeup, WakeupListener};

/// The pause before subscribing again after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// How long the subscription may stay quiet before an echo checks it.
const ECHO_EVERY: Duration = Duration::from_secs(5);
/// How long an echo may take to come back.
const ECHO_WITHIN: Duration = Duration::from_secs(2);

pub struct WakeupRelay {
    store: Arc<Store>,
}

impl WakeupRelay {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// Publishes and listens until `stop`; returns at once for the embedded store.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        if self.store.is_embedded() {
            return;
        }
        tokio::join!(self.publish(stop.clone()), self.listen(stop));
    }

    async fn publish(&self, mut stop: watch::Receiver<bool>) {
        loop {
            let marked = tokio::select! {
                marked = self.store.take_marked_wakeups() => marked,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            for wakeup in marked {
                if let Err(error) = self.store.publish_wakeup(wakeup).await {
                    log::debug!("could not tell the other replicas ({wakeup:?}): {error}");
                }
            }
        }
    }

    async fn listen(&self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let listener = tokio::select! {
                listener = self.store.listen_for_wakeups() => listener,
                _ = stop.wait_for(|stopped| *stopped) => return,
            };
            let Some(listener) = listener else {
                return;
            };
            let error = match listener {
                Ok(listener) => {
                    self.store.set_wakeups_heard(true);
                    if failing {
                        log::info!("listening to the other replicas' wake-ups again");
                        failing = false;
                    }
                    // Whatever happened while nobody listened: the waiting requests look now.
                    for wakeup in Wakeup::ALL {
                        self.store.wake_here(wakeup);
                    }
                    tokio::select! {
                        error = self.relay(listener) => error,
                        _ = stop.wait_for(|stopped| *stopped) => return,
                    }
                }
                Err(error) => error,
            };
            self.store.set_wakeups_heard(false);
            if !failing {
                log::warn!(
                    "not listening to the other replicas' wake-ups (waiting requests poll meanwhile): {error}"
                );
                failing = true;
            }
            if sleep_or_stop(RETRY, &mut stop).await {
                return;
            }
        }
    }

    /// Wakes this replica's requests with each wake-up heard, until the subscription fails.
    async fn relay(&self, mut listener: WakeupListener) -> StoreError {
        let mut echo = 0;
        let mut echo_due = Instant::now() + ECHO_EVERY;
        let mut awaiting: Option<(u64, Instant)> = None;
        loop {
            let check_at = awaiting.map_or(echo_due, |(_, deadline)| deadline);
            tokio::select! {
                heard = listener.next() => match heard {
                    Ok(Heard::Wakeup(wakeup)) => self.store.wake_here(wakeup),
                    Ok(Heard::Echo(n)) => {
                        if awaiting.is_some_and(|(sent, _)| sent == n) {
                            awaiting = None;
                        }
                    }
                    Err(error) => return error,
                },
                () = tokio::time::sleep_until(check_at) => {
                    if awaiting.is_some() {
                        return StoreError::Unavailable(format!(
                            "an echo did not come back within {} s",
                            ECHO_WITHIN.as_secs()
                        ));
                    }
                    echo += 1;
                    if let Err(error) = self.store.publish_echo(echo).await {
                        return error;
                    }
                    awaiting = Some((echo, Instant::now() + ECHO_WITHIN));
                    continue;
                }
            }
            // Anything heard shows the subscription works: check again after a quiet spell.
            echo_due = Instant::now() + ECHO_EVERY;
        }
    }
}
