//! shardman: hands out Discord shard ids to bot processes, one live session per shard id.

pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod outbound;
pub mod session_token;
pub mod startup;
pub mod store;
pub mod telemetry;

// `config` still names the proxy-list parser by its old path; this keeps that path until it moves.
pub(crate) use http::rate_limit;
