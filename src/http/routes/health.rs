use actix_web::HttpResponse;
use actix_web::web;
use serde_json::json;

use crate::http::error::{ShuttingDown, error_set};
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
    pub NotReady { ShuttingDown, StoreError }
}

/// Readiness: the store answers, so this replica can serve bots.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    description = "Readiness: 200 when the store answers and the scripts are loaded; 503 when it does not, or once the replica received SIGTERM and is draining. Needs no secret.",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "store": "redis"})),
        NotReady,
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, NotReady> {
    if state.is_draining() {
        return Err(ShuttingDown.into());
    }
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.kind() })))
}
