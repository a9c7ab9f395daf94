use actix_web::HttpResponse;
use actix_web::web;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness: the process runs and serves HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness: the store answers, so this replica can serve bots.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "store": state.store.kind() })))
}
