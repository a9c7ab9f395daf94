//! Integration tests: real Redis, real replicas on real ports.

mod alerts;
mod autoscale;
mod cors;
mod discord;
mod helpers;
mod standin;
mod rate_limit;
mod beat;
mod concurrency;
mod connect;
mod deployment;
mod disconnect;
mod expiry;
mod health;
mod redis_faults;
mod status;
mod validation;
mod operations;
mod openapi;
mod dashboard;
mod fuzz;
