//! Builds a replica: settings -> bots (each with its store) -> HTTP server on a bound listener
//! (port 0 works, for tests), and runs it until it is stopped or terminated.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::bots::{ReloadError, Reloader};
use crate::config::Settings;
use crate::http::auth;
use crate::http::cors;
use crate::http::routes;
use crate::http::state::AppState;
use crate::telemetry::{self, Telemetry};

mod signals;

/// How long in-flight requests may take to finish once the listener has closed.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;
/// How long an idle client connection stays open: longer than a beat interval (a third of the
/// lease, 20 s by default) and than load balancers keep idle connections (60 s is usual), so
/// shardman does not close a pooled connection just as a client sends its next beat on it. With
/// actix's default of 5 s, beats 5 s apart met closing connections and failed ("error sending
/// request"), a hand-over's last beat among them.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Bots(#[from] ReloadError),
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
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        crate::outbound::install_crypto_provider();
        let port = listener.local_addr()?.port();
        let cors_origins = settings.cors_origins.clone();
        let reloader = Reloader::new(settings);
        reloader.reload().await?;
        let bots = reloader.bots();
        let first = bots.current().bots[0].clone();
        let request_metrics = web::Data::new(Telemetry::new());
        log::info!("replica id {}", request_metrics.replica_id);
        // `auth::select_bot` hands each request its bot; these are what a request that never
        // went through it would see.
        let state = first.state;
        let authenticator = first.authenticator;
        let app_state = state.clone();
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
        // A client that closes its connection gets no answer, so its request ends at once (actix
        // drops the handler): a claim that waits for a shard stops waiting, and a grant made as
        // the client hung up is given back (src/store/waiting.rs). By default actix would keep
        // serving a request whose client only half-closed, which no client of this API does.
        .h1_allow_half_closed(false)
        .keep_alive(KEEP_ALIVE)
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

    /// Stops the server from outside (then [`Application::run_until_stopped`] stops the bots'
    /// jobs and returns): tests restart replicas with other settings this way.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.reloader.stop_all().await;
        result
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully: `/readyz` answers 503 for
    /// `DRAIN_SECONDS` while every request is still served, then the listener closes, in-flight
    /// requests finish (up to `SHUTDOWN_TIMEOUT_SECONDS`) and this returns. SIGHUP reloads the
    /// bots meanwhile.
    pub async fn run_until_terminated(self) -> std::io::Result<()> {
        signals::drain_on_termination(self.server.handle(), self.state.clone())?;
        let reloading = signals::reload_on_hangup(self.reloader.clone())?;
        let result = self.server.await;
        reloading.abort();
        self.reloader.stop_all().await;
        result?;
        log::info!("stopped");
        Ok(())
    }
}
