//! What every handler shares within one replica. The secret and the failed-authentication limiter
//! are app data of their own (`auth::Authenticator`), and so are the request metrics
//! (`telemetry::Telemetry`), so that their extractor and middleware need nothing from here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Settings;
use crate::store::Store;

pub struct AppState {
    /// Shared with the background jobs.
    pub store: Arc<Store>,
    pub settings: Settings,
    /// Set on SIGTERM: `/readyz` answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
