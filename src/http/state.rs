//! What every handler shares within one replica. The secret and the failed-authentication limiter
//! are app data of their own (`auth::Authenticator`), and so are the request metrics
//! (`telemetry::Telemetry`), so that their extractor and middleware need nothing from here.
//!
//! A replica serves one or more bots (`BOTS_FILE`), each with its own `AppState`; `auth::Bots`
//! lists them, and `auth::select_bot` hands a request the state of the bot whose secret it
//! carries, so every handler sees only that bot.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Settings;
use crate::store::Store;

pub struct AppState {
    /// The bot's name (`default` without `BOTS_FILE`): the `bot` label of its metrics.
    pub bot: String,
    /// Shared with the background jobs.
    pub store: Arc<Store>,
    pub settings: Settings,
    /// Set on SIGTERM: `/readyz` answers 503 while in-flight requests finish. Shared by every
    /// bot of the replica.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
