//! What a serving replica does on each signal: SIGTERM and SIGINT drain it and stop it, SIGHUP
//! reloads its bots.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::bots::Reloader;
use crate::http::state::AppState;

/// On SIGTERM (orchestrators) or SIGINT (Ctrl-C): `/readyz` answers 503 for `DRAIN_SECONDS` while
/// every request is still served (load balancers take the replica out), then the server stops
/// gracefully. The handlers are installed before this returns, so from then on no SIGTERM takes
/// the default action.
pub(super) fn drain_on_termination(
    server: ServerHandle,
    state: web::Data<AppState>,
) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let received = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        state.draining.store(true, Ordering::Relaxed);
        let drain = Duration::from_secs(state.settings.drain_seconds);
        log::info!(
            "{received} received: failing /readyz for {}s, then finishing in-flight requests",
            drain.as_secs()
        );
        tokio::time::sleep(drain).await;
        server.stop(true).await;
    });
    Ok(())
}

/// On each SIGHUP: reads `BOTS_FILE` again. A reload that fails leaves the bots as they run.
pub(super) fn reload_on_hangup(reloader: Reloader) -> std::io::Result<JoinHandle<()>> {
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            log::info!("SIGHUP received: reloading the bots");
            if let Err(error) = reloader.reload().await {
                log::error!("reload failed, the bots run as before: {error}");
            }
        }
    }))
}
