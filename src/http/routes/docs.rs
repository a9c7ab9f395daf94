//! `/openapi.json` and `/docs` (Swagger UI, embedded in the binary: nothing comes from a CDN).

use std::sync::OnceLock;

use actix_web::{HttpResponse, http::header};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// The OpenAPI document, built once.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    description = "This OpenAPI document.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json",
        body = Object, example = json!({"openapi": "3.1.0", "info": {"title": "shardman"}, "paths": {}}))),
)]
pub async fn openapi_json() -> HttpResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let body = DOCUMENT.get_or_init(|| {
        crate::http::openapi::document()
            .to_pretty_json()
            .expect("the OpenAPI document serialises")
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.as_str())
}

/// Swagger UI lives under `/docs/`; `/docs` sends browsers there.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    description = "Interactive API documentation (Swagger UI, served from the binary). Redirects to \
        `/docs/`, under which the UI's files live.",
    responses((status = 308, description = "Redirect to `/docs/`",
        headers(("Location" = String, description = "`/docs/`")))),
)]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// The Swagger UI files, reading the document from `/openapi.json`. No validator badge: it would
/// call an outside service.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}").config(
        Config::new(["/openapi.json"])
            .validator_url("none")
            .try_it_out_enabled(true),
    )
}
