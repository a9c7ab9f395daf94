//! Secret drift: every few seconds each replica compares its secret for the bot with the
//! deployment's, by fingerprints in the store (`Store::check_secret`, which also ran before the
//! bot was served). A replica whose `SECRET` is not the deployment's is refused until a check
//! accepts it again; one that starts or ends a rotation step moves the deployment's record. Only
//! the Redis-backed stores check: the in-process store is one process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stop::sleep_or_stop;
use crate::store::Store;

/// How often each replica checks: how long a replica whose secret a rotation step left behind
/// keeps serving, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);

pub struct SecretDriftCheck {
    store: Arc<Store>,
}

impl SecretDriftCheck {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !sleep_or_stop(CHECK_EVERY, &mut stop).await {
            // The verdict stays as it was while the store does not answer; requests say so.
            if let Err(error) = self.store.check_secret().await {
                log::debug!("cannot compare this replica's secret with the deployment's: {error}");
            }
        }
    }
}
