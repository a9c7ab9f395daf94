//! Integration tests: real Redis, real replicas on real ports.

mod helpers;
mod smoke;
mod rate_limit;
