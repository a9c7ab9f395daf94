//! The bots a replica serves, and reloading them: `BOTS_FILE` read again (on SIGHUP), bots whose
//! settings did not change kept as they run, new or changed ones opened (store, then jobs) before
//! they are swapped in, removed ones' jobs stopped. Requests already under way finish with the
//! list they began with, so no bot that stays sees any downtime.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix_web::web;
use rand::RngExt;

use crate::config::{ConfigError, Secret, Settings};
use crate::http::auth::{Authenticator, BotEntry, BotList, Bots, SecretDigest};
use crate::http::rate_limit::FailedAuthLimiter;
use crate::http::state::AppState;
use crate::jobs::BackgroundTasks;
use crate::store::StoreError;

mod first_start;

/// Why the bots could not be (re)loaded; the bots that ran before keep running.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Each running bot's fingerprint (see `Bot::fingerprint`) and jobs, by name.
type RunningBots = HashMap<String, ([u8; 32], BackgroundTasks)>;

/// The bots of a replica and how to reload them.
#[derive(Clone)]
pub struct Reloader {
    base: Settings,
    bots: web::Data<Bots>,
    /// Each bot's fingerprint and jobs, by name.
    running: Arc<tokio::sync::Mutex<RunningBots>>,
    failed_auth: Arc<FailedAuthLimiter>,
    draining: Arc<AtomicBool>,
}

impl Reloader {
    /// No bot loaded yet: [`Reloader::reload`] loads them. Without `BOTS_FILE` the one bot's
    /// secret, if not set, is generated here once, so that a reload keeps it.
    pub fn new(mut base: Settings) -> Self {
        if base.bots_file.is_none() {
            base.secret.get_or_insert_with(generated_secret);
        }
        Self {
            bots: web::Data::new(Bots::new(BotList {
                bots: Vec::new(),
                admin: None,
            })),
            running: Arc::default(),
            failed_auth: Arc::new(FailedAuthLimiter::new(
                base.failed_auth_per_minute,
                base.trusted_proxies.clone(),
            )),
            draining: Arc::new(AtomicBool::new(false)),
            base,
        }
    }

    /// The bots as the server's middleware reads them (`auth::select_bot`).
    pub fn bots(&self) -> web::Data<Bots> {
        self.bots.clone()
    }

    /// Loads the bots (again). On any error (an invalid file, a store that does not answer) the
    /// bots stay as they were.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let mut running = self.running.lock().await;
        let current = self.bots.current();
        let mut entries = Vec::new();
        let mut started = HashMap::new();
        for bot in self.base.bots()? {
            let fingerprint = bot.fingerprint();
            if let (Some(entry), Some((known, _))) =
                (current.named(&bot.name), running.get(&bot.name))
                && *known == fingerprint
            {
                entries.push(entry.clone());
                continue;
            }
            entries.push(self.open_bot(bot.name.clone(), bot.settings).await?);
            started.insert(bot.name, fingerprint);
        }
        let names: Vec<String> = entries
            .iter()
            .map(|entry| entry.state.bot.clone())
            .collect();
        // Jobs run per bot; their Redis locks are the bot's, so each runs once per fleet.
        let mut retired = Vec::new();
        for entry in &entries {
            if let Some(fingerprint) = started.remove(&entry.state.bot) {
                let tasks =
                    BackgroundTasks::spawn(entry.state.store.clone(), &entry.state.settings);
                if let Some((_, old)) =
                    running.insert(entry.state.bot.clone(), (fingerprint, tasks))
                {
                    retired.push(old);
                }
            }
        }
        let gone: Vec<String> = running
            .keys()
            .filter(|name| !names.contains(name))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, tasks)) = running.remove(&name) {
                retired.push(tasks);
            }
        }
        let removed: Vec<String> = current
            .bots
            .iter()
            .map(|entry| entry.state.bot.clone())
            .filter(|name| !names.contains(name))
            .collect();
        self.bots.replace(BotList {
            bots: entries,
            admin: self
                .base
                .admin_secret
                .as_ref()
                .map(|admin| SecretDigest::new(admin.expose())),
        });
        if !current.bots.is_empty() {
            log::info!("bots reloaded: serving {names:?}; removed {removed:?}");
        }
        drop(running);
        futures_util::future::join_all(retired.into_iter().map(BackgroundTasks::stop)).await;
        Ok(())
    }

    /// Opens a new or changed bot: its store (creating the plan on a first start) and what its
    /// requests see. Its jobs start once the whole list has loaded.
    async fn open_bot(&self, name: String, settings: Settings) -> Result<BotEntry, StoreError> {
        // Boxed: unboxed, the futures nested from `main` down to the store's are too deep for
        // the compiler's layout queries.
        let store = Arc::new(Box::pin(first_start::open_store(&settings)).await?);
        match store.is_embedded() {
            true => log::warn!(
                "REDIS_URL is not set: using the in-process store. State lives in this process \
                 only; run exactly one replica, and set REDIS_URL to run several."
            ),
            false => log::info!(
                "bot {name}: using Redis with key prefix {{{}}}",
                settings.key_prefix
            ),
        }
        // Before the bot is served: a replica whose secret is not the deployment's must refuse
        // its writes from the first request on.
        store.check_secret().await?;
        let secret = settings.secret.clone().unwrap_or_else(generated_secret);
        Ok(BotEntry {
            authenticator: web::Data::new(Authenticator::new(
                secret.expose(),
                settings.secret_previous.as_ref().map(Secret::expose),
                store.previous_secret_uses().clone(),
                self.failed_auth.clone(),
            )),
            state: web::Data::new(AppState {
                bot: name,
                store,
                settings,
                draining: self.draining.clone(),
            }),
        })
    }

    /// Stops every bot's jobs; the server that served them has stopped.
    pub(crate) async fn stop_all(&self) {
        let tasks: Vec<BackgroundTasks> = self
            .running
            .lock()
            .await
            .drain()
            .map(|(_, (_, tasks))| tasks)
            .collect();
        futures_util::future::join_all(tasks.into_iter().map(BackgroundTasks::stop)).await;
    }
}

/// With no `SECRET`, a fresh random one, printed once so the operator can hand it to the bots.
fn generated_secret() -> Secret {
    let bytes: [u8; 24] = rand::rng().random();
    let secret = hex::encode(bytes);
    println!("SECRET is not set; this run's secret is: {secret}");
    Secret::new(secret)
}
