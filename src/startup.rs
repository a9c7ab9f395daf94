//! Builds a replica: settings -> store -> HTTP server on a bound listener (port 0 works, for tests).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use rand::RngExt;

use crate::config::{Secret, Settings};
use crate::domain::GatewayInfo;
use crate::http::auth::{self, Authenticator, BotEntry, BotList, Bots, SecretDigest};
use crate::http::cors;
use crate::http::rate_limit::FailedAuthLimiter;
use crate::http::routes;
use crate::http::state::AppState;
use crate::jobs::{self, BackgroundTasks};
use crate::store::{Store, StoreError};
use crate::telemetry::{self, Telemetry};

/// How long a starting replica waits for Redis to come up before it gives up.
const STORE_STARTUP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// The bots, and their gateway pollers, alerts and autoscale: stopped when the server stops.
    reloader: Reloader,
}

impl Application {
    /// Binds `HOST:PORT` and builds the replica.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        mut settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        crate::outbound::install_crypto_provider();
        if settings.bots_file.is_none() {
            settings.secret.get_or_insert_with(generated_secret);
        }
        let port = listener.local_addr()?.port();
        let reloader = Reloader {
            base: settings.clone(),
            bots: web::Data::new(Bots::new(BotList {
                bots: Vec::new(),
                admin: None,
            })),
            running: Arc::default(),
            failed_auth: Arc::new(FailedAuthLimiter::new(
                settings.failed_auth_per_minute,
                settings.trusted_proxies.clone(),
            )),
            draining: Arc::new(AtomicBool::new(false)),
        };
        reloader.reload().await?;
        let first = reloader.bots.current().bots[0].clone();
        let request_metrics = web::Data::new(Telemetry::new());
        log::info!("replica id {}", request_metrics.replica_id);
        // `auth::select_bot` hands each request its bot; these are what a request that never
        // went through it would see.
        let state = first.state;
        let authenticator = first.authenticator;
        let bots = reloader.bots.clone();
        let app_state = state.clone();
        let cors_origins = settings.cors_origins.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(authenticator.clone())
                .app_data(bots.clone())
                .app_data(request_metrics.clone())
                .wrap(from_fn(auth::select_bot))
                // One line per request; it logs no headers, so the secret never reaches the log.
                .wrap(from_fn(telemetry::record_requests))
                .wrap(cors::middleware(&cors_origins))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        // Signals are handled by `run_until_terminated`, which drains before stopping.
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECONDS)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            state,
            reloader,
        })
    }

    /// What reloads `BOTS_FILE` (SIGHUP does, in [`Application::run_until_terminated`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.reloader.stop_all().await;
        result
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: `/readyz` answers 503 for
    /// `DRAIN_SECONDS` while every request is still served (load balancers take the replica out),
    /// then the listener closes, in-flight requests finish (up to `SHUTDOWN_TIMEOUT_SECONDS`) and
    /// this returns.
    pub async fn run_until_terminated(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        // Installed before anything else runs, so no SIGTERM from now on takes the default action.
        let signals = TerminationSignals::install()?;
        tokio::spawn(async move {
            let signal = signals.received().await;
            state.draining.store(true, Ordering::Relaxed);
            let drain = Duration::from_secs(state.settings.drain_seconds);
            log::info!(
                "{signal} received: failing /readyz for {}s, then finishing in-flight requests",
                drain.as_secs()
            );
            tokio::time::sleep(drain).await;
            handle.stop(true).await;
        });
        let reloader = self.reloader.clone();
        let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let reloading = tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                log::info!("SIGHUP received: reloading the bots");
                if let Err(error) = reloader.reload().await {
                    log::error!("reload failed, the bots run as before: {error}");
                }
            }
        });
        let result = self.server.await;
        reloading.abort();
        self.reloader.stop_all().await;
        result?;
        log::info!("stopped");
        Ok(())
    }
}

/// Each running bot's fingerprint (see `Bot::fingerprint`) and jobs, by name.
type RunningBots = HashMap<String, ([u8; 32], BackgroundTasks)>;

/// The bots of a replica and how to reload them: `BOTS_FILE` read again, bots whose settings did
/// not change kept as they run, new or changed ones opened (store, then jobs) before they are
/// swapped in, removed ones' jobs stopped. Requests already under way finish with the list they
/// began with, so no bot that stays sees any downtime.
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
    /// Loads the bots (again). On any error (an invalid file, a store that does not answer) the
    /// bots stay as they were.
    pub async fn reload(&self) -> Result<(), StartupError> {
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
            let store = Arc::new(open_store(&bot.settings).await?);
            match store.is_embedded() {
                true => log::warn!(
                    "REDIS_URL is not set: using the in-process store. State lives in this process \
                     only; run exactly one replica, and set REDIS_URL to run several."
                ),
                false => log::info!(
                    "bot {}: using Redis with key prefix {{{}}}",
                    bot.name,
                    bot.settings.key_prefix
                ),
            }
            let secret = bot.settings.secret.clone().unwrap_or_else(generated_secret);
            entries.push(BotEntry {
                authenticator: web::Data::new(Authenticator::new(
                    secret.expose(),
                    self.failed_auth.clone(),
                )),
                state: web::Data::new(AppState {
                    bot: bot.name.clone(),
                    store,
                    settings: bot.settings,
                    draining: self.draining.clone(),
                }),
            });
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

    async fn stop_all(&self) {
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

/// How long in-flight requests may take to finish once the listener has closed.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// SIGTERM (orchestrators) and SIGINT (Ctrl-C) handlers.
struct TerminationSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal and names it.
    async fn received(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Waits for Redis while it is merely unreachable (it may still be starting); any other error, such
/// as a broken script or a newer schema, stops startup at once.
async fn open_store(settings: &Settings) -> Result<Store, StoreError> {
    let started = Instant::now();
    loop {
        match open_store_once(settings).await {
            Err(StoreError::Unavailable(reason)) if started.elapsed() < STORE_STARTUP_WAIT => {
                log::warn!("waiting for Redis: {reason}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

/// Opens the store and creates the plan if there is none. A first start with `BOT_TOKEN` and no
/// `MAX_SHARDS` plans the count Discord recommends (as autoscale would round it), so the fleet
/// does not start at one shard and reshard at once.
async fn open_store_once(settings: &Settings) -> Result<Store, StoreError> {
    let store = Store::open_without_plan(settings).await?;
    let mut first_shards = settings.max_shards;
    if settings.autoscale
        && let Some(token) = &settings.bot_token
        && !store.plan_exists().await?
    {
        match first_gateway_info(settings, token).await {
            Some(info) => {
                let policy = jobs::autoscale::AutoscaleSettings::from_settings(settings)
                    .map(|autoscale| autoscale.policy)
                    .expect("autoscale is on");
                first_shards = jobs::autoscale::target_shards(
                    &jobs::autoscale::Load {
                        recommended_shards: Some(info.shards),
                        total_guilds: 0,
                        max_concurrency: info.max_concurrency,
                    },
                    &policy,
                );
                log::info!(
                    "first start: Discord recommends {} shards at max_concurrency {}; planning {first_shards}",
                    info.shards,
                    info.max_concurrency
                );
                store.save_gateway(&info).await?;
            }
            None => {
                first_shards = settings.min_shards.max(1);
                log::warn!(
                    "first start: no answer from Discord's /gateway/bot within {}s; planning \
                     MIN_SHARDS ({first_shards}) and leaving the count to autoscale",
                    FIRST_PLAN_WAIT.as_secs()
                );
            }
        }
    }
    store.create_plan(first_shards).await?;
    Ok(store)
}

/// How long a first start waits for Discord's `/gateway/bot` before planning `MIN_SHARDS`.
const FIRST_PLAN_WAIT: Duration = Duration::from_secs(10);

async fn first_gateway_info(settings: &Settings, token: &Secret) -> Option<GatewayInfo> {
    let client = crate::outbound::client(FIRST_PLAN_WAIT).ok()?;
    let deadline = Instant::now() + FIRST_PLAN_WAIT;
    while Instant::now() < deadline {
        let wait = match jobs::discord::fetch(&client, &settings.discord_api_base, token).await {
            jobs::discord::Fetch::Info(info) => return Some(info),
            jobs::discord::Fetch::Refused(status) => {
                log::error!("Discord refused /gateway/bot with {status}: check BOT_TOKEN");
                return None;
            }
            jobs::discord::Fetch::RateLimited(after) => after,
            jobs::discord::Fetch::Failed(_) => Duration::from_secs(1),
        };
        tokio::time::sleep(wait.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    None
}

/// With no `SECRET`, a fresh random one, printed once so the operator can hand it to the bots.
fn generated_secret() -> Secret {
    let bytes: [u8; 24] = rand::rng().random();
    let secret = hex::encode(bytes);
    println!("SECRET is not set; this run's secret is: {secret}");
    Secret::new(secret)
}
