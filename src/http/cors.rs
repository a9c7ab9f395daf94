//! CORS (`CORS_ORIGINS`): which web origins may call the API from a browser.

use actix_cors::Cors;
use actix_web::middleware::Condition;

/// The CORS middleware for these origins (`*` allows any). With none, the middleware is off and
/// responses carry no CORS headers, so browsers keep the same-origin rule.
pub fn middleware(origins: &[String]) -> Condition<Cors> {
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers(["retry-after", "session-id"])
        .max_age(3600);
    if origins.iter().any(|origin| origin == "*") {
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    Condition::new(!origins.is_empty(), cors)
}
