#![doc = include_str!("../README.md")]

mod gateway;
mod queue;
mod running;

pub use gateway::{Claimed, Configure, Fleet, Step};
pub use queue::ShardmanQueue;
pub use running::{Notice, Running};
/// The core this adapter builds on, re-exported so a bot needs one dependency.
pub use shardman_client::{
    self, BeatAck, BeatAnswer, Claim, ClaimEvent, Client, Error, LeaseKeeper, LeaseView, Placement,
    Release, Reports, Resume, ShardReport, State, install_crypto_provider, shutdown_signal,
};
/// The twilight-gateway this crate drives (so bots use the very same version).
pub use twilight_gateway;
