//! shardman: hands out Discord shard ids to bot processes, one live session per shard id.

pub mod auth;
pub mod body;
pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod rate_limit;
pub mod startup;
pub mod state;
pub mod store;
