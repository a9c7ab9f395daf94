//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` attributes, and the two
//! routes that serve it: `/openapi.json` and `/docs` (Swagger UI, embedded in the binary: nothing
//! comes from a CDN). Those two are the only handlers that need the document, which names every
//! handler, so they sit beside it rather than with the others. A test checks that every route in
//! `routes::ROUTES` is in it, so a new route must be listed in `paths(...)` below.

use std::sync::OnceLock;

use actix_web::{HttpResponse, http::header};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::http::routes::{autoscale, dashboard, health, metrics, reshard, shards, status};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shardman",
        description = "Hands out Discord shard ids to bot processes: one live session per shard id, \
            leases in Redis, any number of stateless replicas.\n\nAuthenticate with \
            `Authorization: <SECRET>` (or `Bearer <SECRET>`). A missing header is a 422 in FastAPI's \
            shape, a wrong secret a 403."
    ),
    paths(
        shards::connect,
        shards::beat,
        shards::disconnect_by_query,
        shards::disconnect_by_body,
        shards::identify,
        reshard::reshard,
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
    components(schemas(Detail, ValidationError, ValidationIssue, BeatBody, SessionBody, ReshardBody, ResumeData)),
    modifiers(&SecretScheme),
    tags(
        (name = "bots", description = "What each bot process calls: connect, beat, disconnect."),
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

/// Every error except validation: `{"detail": "<message>"}`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": "Session Not Found"}))]
pub struct Detail {
    pub detail: String,
}

/// A 422, shaped like FastAPI's.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"detail": [{"loc": ["header", "authorization"], "msg": "field required",
    "type": "value_error.missing"}]}))]
pub struct ValidationError {
    pub detail: Vec<ValidationIssue>,
}

/// One invalid or missing field.
#[derive(Serialize, ToSchema)]
pub struct ValidationIssue {
    /// Where: `["header", "authorization"]`, `["body", "guild_count"]`, `["query", "session_id"]`.
    #[schema(example = json!(["body", "guild_count"]))]
    pub loc: Vec<String>,
    #[schema(example = "value is not a valid integer")]
    pub msg: String,
    /// pydantic's error type.
    #[serde(rename = "type")]
    #[schema(example = "type_error.integer")]
    pub kind: String,
}

/// `POST /beat`, as JSON or as a form (`requests.post(url, data={...})` sends a form).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": "4f2a9c0e8b7d4a35a1f0c2d3e4b5a697", "guild_count": 2431,
    "latency": 0.084, "extra": {"version": "1.4.2"}}))]
pub struct BeatBody {
    /// From `/connect`.
    pub session_id: String,
    /// Guilds this shard serves (an integer, at least 0).
    pub guild_count: Option<u64>,
    /// Gateway latency in seconds.
    pub latency: Option<f64>,
    /// Any JSON, up to `MAX_EXTRA_BYTES`; in a form, JSON text.
    #[schema(value_type = Option<Object>)]
    pub extra: Option<serde_json::Value>,
    /// Discord's resume data for this session, handed to the next holder of the shard id if this
    /// process disappears (in a form, JSON text).
    pub resume: Option<ResumeData>,
}

/// Discord's resume data: what a successor needs to RESUME instead of IDENTIFY.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": "9f8e7d6c5b4a", "sequence": 1234, "resume_gateway_url": "wss://gateway-us-east1-b.discord.gg"}))]
pub struct ResumeData {
    pub session_id: String,
    pub sequence: u64,
    pub resume_gateway_url: String,
}

/// `POST /reshard`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"max_shards": 6}))]
pub struct ReshardBody {
    /// The new shard count, 1 to 65536.
    pub max_shards: u32,
}

/// `POST /disconnect`, as JSON or as a form.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"session_id": "4f2a9c0e8b7d4a35a1f0c2d3e4b5a697"}))]
pub struct SessionBody {
    pub session_id: String,
}
