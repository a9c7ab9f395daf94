//! `GET /`: the status page. Plain HTML, CSS and JS embedded in the binary; the page reads
//! `/status` with the secret it asks for once (kept in the browser's session storage), or without
//! one when `PUBLIC_STATUS=true`.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::http::state::AppState;

const PAGE: &str = include_str!("../../../assets/dashboard.html");
const SCRIPT: &str = include_str!("../../../assets/dashboard.js");
const STYLESHEET: &str = include_str!("../../../assets/dashboard.css");

/// Whether browsers may keep a copy: the page carries settings, so it is always revalidated.
const NO_CACHE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-cache");

/// The page, with this deployment's settings filled in.
#[utoipa::path(
    get,
    path = "/",
    tag = "dashboard",
    description = "The status page: a grid of every planned shard coloured by state (held, missing, \
        late beat, high latency) and held shards by load, totals, generations, the processes with \
        their load, CPU and memory, and the fleet's events per second and held shards over the \
        last hour; refreshed every few seconds. It asks for the secret once unless \
        `PUBLIC_STATUS=true`.",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String)),
)]
pub async fn page(state: web::Data<AppState>) -> HttpResponse {
    let html = PAGE
        .replace(
            "{{PUBLIC_STATUS}}",
            if state.settings.public_status {
                "true"
            } else {
                "false"
            },
        )
        .replace("{{LEASE_SECONDS}}", &state.settings.max_seconds.to_string());
    HttpResponse::Ok()
        .insert_header(NO_CACHE)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

#[utoipa::path(
    get,
    path = "/dashboard.js",
    tag = "dashboard",
    description = "The status page's script.",
    responses((status = 200, description = "JavaScript", content_type = "text/javascript",
        body = String)),
)]
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(NO_CACHE)
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

#[utoipa::path(
    get,
    path = "/dashboard.css",
    tag = "dashboard",
    description = "The status page's stylesheet.",
    responses((status = 200, description = "CSS", content_type = "text/css", body = String)),
)]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(NO_CACHE)
        .content_type("text/css; charset=utf-8")
        .body(STYLESHEET)
}
