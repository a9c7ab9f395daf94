//! Everything HTTP-facing: the route handlers, what they extract (body fields, the secret), the
//! one error type they answer with, the middleware (CORS, brute-force limit) and the OpenAPI
//! document that describes them.

pub mod auth;
pub mod body;
pub mod cors;
pub mod error;
pub mod rate_limit;
pub mod routes;
pub mod schemas;
pub mod secret;
pub mod state;
