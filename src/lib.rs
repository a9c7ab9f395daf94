//! shardman: hands out Discord shard ids to bot processes, one live session per shard id.

pub mod alerts;
pub mod auth;
pub mod autoscale;
pub mod background;
pub mod body;
pub mod config;
pub mod cors;
pub mod discord;
pub mod domain;
pub mod error;
pub mod http;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod session_token;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
