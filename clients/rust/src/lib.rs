#![doc = include_str!("../README.md")]

mod api;
mod backoff;
mod gateway;
mod lease;

pub use api::{BeatAck, BeatAnswer, Claim, Client, Error, Resume, ShardReport, State};
pub use backoff::Backoff;
pub use gateway::{Claimed, Configure, Fleet, ShardmanQueue, Step};
pub use lease::{LeaseKeeper, LeaseView, Release, Reports};
/// The twilight-gateway this crate drives (so bots use the very same version).
pub use twilight_gateway;

/// Installs rustls's ring crypto provider for the process (reqwest and twilight's TLS use it),
/// unless one is installed already.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer leaves that one in place, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the moment to call [`Claimed::shutdown`].
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
