//! The example bots of `clients/` (Python with discord.py and its forks, JS with discord.js, Rust
//! with twilight) as real processes against three `shardman` replicas on one Redis and a stand-in
//! Discord gateway. Every scenario is judged from the gateway's side: who was live as which shard
//! when, READY counts, IDENTIFYs too early, double sessions, the gaps while a shard had no live
//! session, and the sequence each RESUME named against what the old connection was sent. `scripts/test.sh` installs the bots
//! first; a bot that is not installed fails its scenarios, saying so.

mod discord;
mod gateway_rules;
mod harness;
mod load;
mod pacing;
mod proxy;
mod scenarios;
mod sockets;
#[path = "../support/mod.rs"]
mod support;
