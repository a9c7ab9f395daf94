use actix_web::HttpResponse;
use actix_web::web;
use serde_json::json;

use crate::http::auth::Bots;
use crate::http::error::{SecretDiffersFromDeployment, ShuttingDown, error_set};
use crate::http::state::AppState;
use crate::store::StoreError;

/// Liveness: the process runs and serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    description = "Liveness: 200 while the process serves HTTP. Needs no secret.",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

error_set! {
    /// Why a replica is not ready.
    pub NotReady {
        ShuttingDown,
        StoreError,
        SecretDiffersFromDeployment = "This replica's `SECRET` for a bot is not the deployment's (secret drift)",
    }
}

/// Readiness: the store answers and this replica may serve every bot, so it can serve bots.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    description = "Readiness: 200 when the store answers and the scripts are loaded; 503 when it does not, once the replica received SIGTERM and is draining, or while its `SECRET` for a bot differs from the deployment's (secret drift: a load balancer cannot route per bot, and a misconfigured replica is better out than answering 403s). Needs no secret.",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "store": "redis"})),
        NotReady,
    ),
)]
pub async fn readyz(
    state: web::Data<AppState>,
    bots: Option<web::Data<Bots>>,
) -> Result<HttpResponse, NotReady> {
    if state.is_draining() {
        return Err(ShuttingDown.into());
    }
    state.store.ping().await?;
    let refused = match &bots {
        Some(bots) => bots
            .current()
            .bots
            .iter()
            .any(|entry| entry.state.store.secret_refused()),
        None => state.store.secret_refused(),
    };
    if refused {
        return Err(SecretDiffersFromDeployment.into());
    }
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.kind() })))
}
