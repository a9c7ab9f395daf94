//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes, and the two
//! routes that serve it: `/openapi.json` and `/docs` (Swagger UI, embedded in the binary: nothing
//! comes from a CDN). Those two are the only handlers that need the document, which names every
//! handler, so they sit beside it rather than with the others. A test checks that every route in
//! `routes::ROUTES` is in it, so a new route must be listed in `paths(...)` below.

use std::sync::OnceLock;

use actix_web::{HttpResponse, http::header};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::http::routes::{
    autoscale, connect, dashboard, health, metrics, permits, processes, reshard, shards, status,
};
use crate::http::schemas::{
    BeatBody, ConfirmBody, Detail, IdentifyBody, PermitBody, ReshardBody, ResumeData, SessionBody,
    ShardReportBody, ValidationError, ValidationIssue,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shardman",
        description = "Hands out Discord shard ids to bot processes: one live session per shard id, \
            leases in Redis, any number of stateless replicas.\n\nAuthenticate with \
            `Authorization: <SECRET>` (or `Bearer <SECRET>`). A missing header is a 422 in FastAPI's \
            shape, a wrong secret a 403, and an address that sent too many wrong secrets gets 429 \
            (with `Retry-After`) on every authenticated route, even with the right one. Each \
            route lists the errors its handler can return: they are generated from its type."
    ),
    paths(
        connect::connect,
        shards::beat,
        shards::disconnect_by_query,
        shards::disconnect_by_body,
        shards::identify,
        permits::identify_permit,
        permits::identify_confirm,
        reshard::reshard,
        processes::drain,
        processes::undrain,
        status::status,
        health::healthz,
        health::readyz,
        metrics::metrics,
        autoscale::autoscale,
        dashboard::page,
        dashboard::script,
        dashboard::stylesheet,
        openapi_json,
        docs_redirect,
    ),
    components(schemas(Detail, ValidationError, ValidationIssue, BeatBody, SessionBody, IdentifyBody, PermitBody, ConfirmBody, ReshardBody, ResumeData, ShardReportBody)),
    modifiers(&SecretScheme),
    tags(
        (name = "bots", description = "What each bot process calls: connect, beat, identify (slots or permits), disconnect."),
        (name = "fleet", description = "The fleet's state."),
        (name = "operations", description = "Probes, metrics and autoscaling."),
        (name = "dashboard", description = "The status page."),
        (name = "documentation", description = "This document."),
    )
)]
struct ApiDoc;

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The `secret` security scheme: the `Authorization` header.
struct SecretScheme;

impl Modify for SecretScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "secret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "The deployment's SECRET, as is or as `Bearer <SECRET>`.",
            ))),
        );
    }
}

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
        document()
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
