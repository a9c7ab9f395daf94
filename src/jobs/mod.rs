//! The replica's background tasks: the gateway poller (with `BOT_TOKEN`), the alert dispatcher and
//! lease reaper (with `WEBHOOK_URL`), autoscale (without `MAX_SHARDS`), the load history, placement
//! by load (`SHARDS_PER_PROCESS=auto`), the silent-shard check (`SHARD_SILENT_AFTER`), and on Redis
//! the secret-drift check and the relay of the other replicas' wake-ups. They start when the
//! replica is built and stop when its server stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub mod alerts;
pub mod autoscale;
pub mod discord;
pub mod load_history;
pub mod placement;
pub mod secret_drift;
pub mod silence;
mod stop;
pub mod wakeups;

use crate::config::Settings;
use crate::store::Store;
use alerts::{Dispatcher, Reaper, WebhookSettings};
use autoscale::{AutoscaleSettings, Autoscaler};
use discord::{GatewayPoller, GatewaySettings};
use load_history::LoadHistory;
use placement::{Placement, PlacementSettings};
use secret_drift::SecretDriftCheck;
use silence::Silence;
use wakeups::WakeupRelay;

/// How long stopping waits for a task to notice before it is aborted.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub struct BackgroundTasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl BackgroundTasks {
    /// Spawns the tasks the settings call for on the current Tokio runtime. Each task gets the
    /// store and only the settings it reads.
    pub fn spawn(store: Arc<Store>, settings: &Settings) -> Self {
        let (stop, stopped) = watch::channel(false);
        // The name this replica uses for the store's locks.
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let gateway_fetched = Arc::new(Notify::new());
        let mut handles = Vec::new();
        if let Some(gateway) = GatewaySettings::from_settings(settings) {
            let poller = GatewayPoller::new(
                store.clone(),
                gateway,
                owner.clone(),
                gateway_fetched.clone(),
            );
            handles.push(tokio::spawn(poller.run(stopped.clone())));
        }
        if let Some(webhook) = WebhookSettings::from_settings(settings) {
            let dispatcher = Dispatcher::new(store.clone(), webhook);
            handles.push(tokio::spawn(dispatcher.run(stopped.clone())));
            let reaper = Reaper::new(store.clone());
            handles.push(tokio::spawn(reaper.run(stopped.clone())));
        }
        let history = LoadHistory::new(store.clone(), owner.clone());
        handles.push(tokio::spawn(history.run(stopped.clone())));
        if !store.is_embedded() {
            let check = SecretDriftCheck::new(store.clone());
            handles.push(tokio::spawn(check.run(stopped.clone())));
            let relay = WakeupRelay::new(store.clone());
            handles.push(tokio::spawn(relay.run(stopped.clone())));
        }
        if let Some(placement) = PlacementSettings::from_settings(settings) {
            let placement = Placement::new(store.clone(), placement, owner.clone());
            handles.push(tokio::spawn(placement.run(stopped.clone())));
        }
        if let Some(silence) = Silence::from_settings(store.clone(), settings, owner.clone()) {
            handles.push(tokio::spawn(silence.run(stopped.clone())));
        }
        if let Some(autoscale) = AutoscaleSettings::from_settings(settings) {
            let autoscaler = Autoscaler::new(store, autoscale, owner, gateway_fetched);
            handles.push(tokio::spawn(autoscaler.run(stopped)));
        }
        Self { stop, handles }
    }

    /// Asks every task to stop and waits briefly for them; a task still busy then is aborted.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let abort = handle.abort_handle();
            if tokio::time::timeout(STOP_WAIT, handle).await.is_err() {
                abort.abort();
            }
        }
    }
}
