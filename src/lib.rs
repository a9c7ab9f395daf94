//! shardman: hands out Discord shard ids to bot processes, one live session per shard id.

pub mod bots;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod outbound;
pub mod session_token;
pub mod startup;
pub mod store;
pub mod telemetry;
