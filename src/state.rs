//! What every handler shares within one replica.

use crate::auth::SecretDigest;
use crate::config::Settings;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub secret: SecretDigest,
    /// Failed authentications per client address (brute-force protection).
    pub failed_auth: crate::rate_limit::FailedAuthLimiter,
    pub settings: Settings,
}
