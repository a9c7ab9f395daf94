//! Settings, read from the environment (and `.env`, which `main` loads into it) through the
//! `config` crate.
//!
//! - `settings`: the table that declares each setting once (who it belongs to, its variable,
//!   type, default and parser) and the loader it generates;
//! - `parse`: the value types and parsers the table names;
//! - `validate`: the checks of relations between values, after parsing;
//! - `store_backend`: the store engine the Redis settings choose;
//! - `bots`: `BOTS_FILE`, one `Settings` per bot, and what a reload compares.

pub mod bots;
mod parse;
mod settings;
mod store_backend;
mod validate;

pub use parse::{LogFormat, Secret, ShardsPerProcess, parse_trusted_proxies};
pub use settings::{ConfigError, Scope, Settings};
pub use store_backend::StoreBackend;
pub use validate::MAX_SHARD_COUNT;
