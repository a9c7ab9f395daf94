//! Builds a replica: settings -> store -> HTTP server on a bound listener (port 0 works, for tests).

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
use crate::http::auth::{self, Authenticator, SecretDigest};
use crate::http::cors;
use crate::http::rate_limit::FailedAuthLimiter;
use crate::http::routes;
use crate::http::state::{AppState, BotEntry, Bots};
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
    /// Gateway poller, alerts, autoscale of each bot: stopped when the server stops.
    background: Vec<BackgroundTasks>,
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
        let bots = settings.bots()?;
        let port = listener.local_addr()?.port();
        let failed_auth = Arc::new(FailedAuthLimiter::new(
            settings.failed_auth_per_minute,
            settings.trusted_proxies.clone(),
        ));
        let draining = Arc::new(AtomicBool::new(false));
        let mut entries = Vec::new();
        let mut background = Vec::new();
        for bot in bots {
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
            // Jobs run per bot; their Redis locks are the bot's, so each runs once per fleet.
            background.push(BackgroundTasks::spawn(store.clone(), &bot.settings));
            entries.push(BotEntry {
                authenticator: web::Data::new(Authenticator::new(
                    secret.expose(),
                    failed_auth.clone(),
                )),
                state: web::Data::new(AppState {
                    bot: bot.name,
                    store,
                    settings: bot.settings,
                    draining: draining.clone(),
                }),
            });
        }
        let request_metrics = web::Data::new(Telemetry::new());
        log::info!("replica id {}", request_metrics.replica_id);
        // Callers without a (matching) secret meet the first bot, as a one-bot replica always did.
        let state = entries[0].state.clone();
        let authenticator = entries[0].authenticator.clone();
        let bots = web::Data::new(Bots {
            bots: entries,
            admin: settings
                .admin_secret
                .as_ref()
                .map(|admin| SecretDigest::new(admin.expose())),
        });
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
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        stop_all(self.background).await;
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
        let result = self.server.await;
        stop_all(self.background).await;
        result?;
        log::info!("stopped");
        Ok(())
    }
}

async fn stop_all(background: Vec<BackgroundTasks>) {
    futures_util::future::join_all(background.into_iter().map(BackgroundTasks::stop)).await;
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
    let store = Store::load(settings).await?;
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
