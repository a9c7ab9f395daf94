//! The replica's background tasks: the gateway poller (with `BOT_TOKEN`), the alert dispatcher and
//! lease reaper (with `WEBHOOK_URL`), and autoscale (without `MAX_SHARDS`). They start when the
//! replica is built and stop when its server stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub mod alerts;
pub mod autoscale;
pub mod discord;

use crate::config::Secret;
use crate::http::state::AppState;
use alerts::{Dispatcher, Reaper};
use autoscale::Autoscaler;
use discord::GatewayPoller;

/// How long stopping waits for a task to notice before it is aborted.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub struct BackgroundTasks {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl BackgroundTasks {
    /// Spawns the tasks the settings call for on the current Tokio runtime.
    pub fn spawn(state: Arc<AppState>) -> Self {
        let (stop, stopped) = watch::channel(false);
        // The name this replica uses for the store's locks.
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let settings = &state.settings;
        let gateway_fetched = Arc::new(Notify::new());
        let mut handles = Vec::new();
        if let Some(token) = &settings.bot_token {
            let poller = GatewayPoller {
                state: state.clone(),
                token: token.clone(),
                owner: owner.clone(),
                fetched: gateway_fetched.clone(),
            };
            handles.push(tokio::spawn(poller.run(stopped.clone())));
        }
        if let Some(url) = &settings.webhook_url {
            let dispatcher = Dispatcher {
                state: state.clone(),
                url: Secret::new(url.clone()),
                content: settings.webhook_content.clone(),
            };
            handles.push(tokio::spawn(dispatcher.run(stopped.clone())));
            let reaper = Reaper {
                state: state.clone(),
            };
            handles.push(tokio::spawn(reaper.run(stopped.clone())));
        }
        if settings.autoscale {
            let autoscaler = Autoscaler {
                state: state.clone(),
                owner,
                wake: gateway_fetched,
            };
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

/// Sleeps for `duration`; returns `true` early when `stop` turns true (or its sender is gone).
pub async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.wait_for(|stopped| *stopped) => return true,
    }
    *stop.borrow()
}
