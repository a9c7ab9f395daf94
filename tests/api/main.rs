//! Integration tests: real Redis, real replicas on real ports.
// The app's futures nest deeply enough (an actix app per test, many bots' state) that a build
// from scratch overflows rustc's default query depth computing their layouts.
#![recursion_limit = "256"]

mod alerts;
mod autoscale;
mod beat;
mod cli;
mod compat;
mod concurrency;
mod connect;
mod cors;
mod dashboard;
mod data_loss;
mod deployment;
mod disconnect;
mod discord;
mod documented_errors;
mod expiry;
mod fleets;
mod fuzz;
mod generations;
mod handover;
mod health;
mod helpers;
mod identify;
mod load;
mod manifests;
mod openapi;
mod operations;
mod permits;
mod placement;
mod rate_limit;
mod redis_faults;
mod resume;
mod secrets;
mod silence;
mod standin;
mod status;
#[path = "../support/mod.rs"]
mod support;
mod validation;
mod waiting;
