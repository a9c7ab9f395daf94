//! HTTP handlers: extract, call the store, map the outcome. No logic of their own.

pub(crate) mod autoscale;
pub(crate) mod connect;
pub(crate) mod dashboard;
pub(crate) mod health;
pub(crate) mod metrics;
pub mod openapi;
pub(crate) mod permits;
pub(crate) mod processes;
pub(crate) mod reshard;
pub(crate) mod shards;
pub(crate) mod status;

use actix_web::web;

use crate::http::error::{MethodNotAllowed, RouteNotFound, error_set};

/// Declares every route once: `configure` registers them and `ROUTES` lists them, so the OpenAPI
/// test (every served route is documented) cannot drift from what the app serves.
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every `(method, path)` the app serves, as registered by [`configure`].
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        pub fn configure(config: &mut web::ServiceConfig) {
            $(config.route($path, web::$method().to($handler));)*
            // Swagger UI's own files under /docs/ (embedded; listed in the document as /docs).
            config.service(openapi::swagger_ui());
        }
    };
}

route_table! {
    get "/connect" => connect::connect,
    post "/beat" => shards::beat,
    get "/disconnect" => shards::disconnect_by_query,
    post "/disconnect" => shards::disconnect_by_body,
    post "/identify" => shards::identify,
    post "/identify/permit" => permits::identify_permit,
    post "/identify/confirm" => permits::identify_confirm,
    post "/reshard" => reshard::reshard,
    post "/processes/{process}/drain" => processes::drain,
    delete "/processes/{process}/drain" => processes::undrain,
    get "/status" => status::status,
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
    get "/metrics" => metrics::metrics,
    get "/autoscale" => autoscale::autoscale,
    get "/" => dashboard::page,
    get "/dashboard.js" => dashboard::script,
    get "/dashboard.css" => dashboard::stylesheet,
    get "/openapi.json" => openapi::openapi_json,
    get "/docs" => openapi::docs_redirect,
}

error_set! {
    /// A request no route serves.
    pub UnknownRoute { RouteNotFound, MethodNotAllowed }
}

/// FastAPI's answer to an unknown route: 405 when the path exists with another method, else 404.
pub async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, UnknownRoute> {
    let path_exists = ROUTES.iter().any(|(_, path)| *path == request.path());
    Err(if path_exists {
        MethodNotAllowed.into()
    } else {
        RouteNotFound.into()
    })
}
