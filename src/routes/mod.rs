//! HTTP handlers: extract, call the store, map the outcome. No logic of their own.

mod health;
mod shards;
mod status;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/connect", web::get().to(shards::connect))
        .route("/beat", web::post().to(shards::beat))
        .route("/disconnect", web::get().to(shards::disconnect_by_query))
        .route("/disconnect", web::post().to(shards::disconnect_by_body))
        .route("/status", web::get().to(status::status))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz));
}

/// FastAPI's answer to an unknown route.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
