//! The core of shardman's Rust client, without any bot library: the HTTP client ([`Client`]),
//! answer decoding ([`answers`]), the waits between retries ([`backoff`]), the lease view and the
//! beat/lapse loop ([`LeaseKeeper`]), IDENTIFY pacing by permits ([`IdentifyPacer`]), why a claim ends
//! ([`Release`]) and what the process reports of itself ([`ProcessUsage`]). An adapter for a gateway library (`shardman-twilight`) builds on these. What
//! the three client packages must do alike is pinned in `clients/contract`, which this crate's
//! tests load.

pub mod answers;
pub mod backoff;
mod client;
mod error;
mod events;
mod lease;
mod pacer;
mod usage;

pub use answers::{Answer, BeatAck, BeatAnswer, Claim, Permit, Placement, Resume, Route, State};
pub use backoff::Backoff;
pub use client::{Client, ShardReport};
pub use error::Error;
pub use events::{ClaimEvent, FINAL_CLOSE, RESUMABLE_CLOSE, Release};
pub use lease::{ClaimEnd, LAPSE_CHECK_EVERY, LeaseKeeper, LeaseView, Reports, SharedLease, lock};
pub use pacer::{IdentifyPacer, PERMIT_WAIT};
pub use usage::{PROCESS_LABEL_MAX_CHARS, ProcessUsage, default_process_label};

/// The README's code blocks, compiled (and the `no_run` ones only compiled) by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Installs rustls's ring crypto provider for the process (reqwest's TLS uses it), unless one is
/// installed already.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer leaves that one in place, which is as good.
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange. ring
        // stays this crate's one provider (the lighter build); a process that wants post-quantum
        // key exchange installs another (aws-lc-rs's) before calling this.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the moment to shut down.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
