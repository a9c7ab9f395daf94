//! Listens for the other replicas' wake-ups (shards freed, IDENTIFY permits confirmed) and wakes
//! this replica's waiting requests with each (see `store/wakeups.rs`). Without a subscription the
//! waiting requests still poll, so a broken one only costs latency: it is made again after a
//! pause, and its loss is logged once per outage.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::store::Store;

/// The pause before subscribing again after a failure.
const RETRY: Duration = Duration::from_secs(1);

pub struct WakeupRelay {
    store: Arc<Store>,
}

impl WakeupRelay {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut failing = false;
        loop {
            let Some(listener) = self.store.listen_for_wakeups().await else {
                return;
            };
            let error = match listener {
                Ok(mut listener) => {
                    if failing {
                        log::info!("listening to the other replicas' wake-ups again");
                        failing = false;
                    }
                    loop {
                        tokio::select! {
                            wakeup = listener.next() => match wakeup {
                                Ok(wakeup) => self.store.wake_here(wakeup),
                                Err(error) => break error,
                            },
                            _ = stop.wait_for(|stopped| *stopped) => return,
                        }
                    }
                }
                Err(error) => error,
            };
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
}
