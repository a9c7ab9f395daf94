//! Integration tests: real Redis, real replicas on real ports.

mod alerts;
mod autoscale;
mod cors;
mod discord;
mod helpers;
mod smoke;
mod standin;
mod rate_limit;
