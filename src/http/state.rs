//! What every handler shares within one replica. The secret and the failed-authentication limiter
//! are app data of their own (`auth::Authenticator`), and so are the request metrics
//! (`telemetry::Telemetry`), so that their extractor and middleware need nothing from here.
//!
//! A replica serves one or more bots (`BOTS_FILE`), each with its own `AppState` and
//! `Authenticator`; [`Bots`] lists them, and `auth::select_bot` hands a request the pair of the
//! bot whose secret it carries, so every handler sees only that bot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::web;

use crate::config::Settings;
use crate::http::auth::{Authenticator, SecretDigest};
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

/// One bot as requests see it.
#[derive(Clone)]
pub struct BotEntry {
    pub state: web::Data<AppState>,
    pub authenticator: web::Data<Authenticator>,
}

/// Every bot of the replica, in `BOTS_FILE` order (the first also answers callers without a
/// secret, e.g. a public `/status`), and the admin secret's digest.
pub struct BotList {
    pub bots: Vec<BotEntry>,
    pub admin: Option<SecretDigest>,
}

impl BotList {
    pub fn named(&self, name: &str) -> Option<&BotEntry> {
        self.bots.iter().find(|entry| entry.state.bot == name)
    }
}

/// The current [`BotList`]; a reload (SIGHUP) swaps it while requests keep the list they began
/// with.
pub struct Bots(RwLock<Arc<BotList>>);

impl Bots {
    pub fn new(list: BotList) -> Self {
        Self(RwLock::new(Arc::new(list)))
    }

    pub fn current(&self) -> Arc<BotList> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn replace(&self, list: BotList) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(list);
    }
}
