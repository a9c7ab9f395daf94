//! What every handler shares within one replica.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Settings;
use crate::http::auth::SecretDigest;
use crate::store::Store;
use crate::telemetry::Telemetry;

pub struct AppState {
    pub store: Store,
    pub secret: SecretDigest,
    /// Failed authentications per client address (brute-force protection).
    pub failed_auth: crate::http::rate_limit::FailedAuthLimiter,
    pub settings: Settings,
    /// This replica's id and request metrics (see `telemetry`).
    pub telemetry: Telemetry,
    /// Set on SIGTERM: `/readyz` answers 503 while in-flight requests finish.
    pub draining: AtomicBool,
}

impl AppState {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
