//! What every handler shares within one replica.

use crate::auth::SecretDigest;
use crate::config::Settings;
use crate::store::Store;

pub struct AppState {
    pub store: Store,
    pub secret: SecretDigest,
    pub settings: Settings,
}
