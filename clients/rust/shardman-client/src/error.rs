//! Why a request to shardman failed: the one error type of the client and of answer decoding.

use std::time::Duration;

/// Why a request to shardman failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/connect` answered 401: every shard id is held. Retry later.
    #[error("no shards available (401)")]
    NoShardsAvailable,
    /// A beat or an identify route answered 401: the session's generation was retired; stop and exit.
    #[error("session retired (401): its generation was replaced")]
    Retired,
    /// 404: the session is unknown, expired or released; stop its shards.
    #[error("session not found (404)")]
    SessionLost,
    /// 403: shardman refused the secret.
    #[error("forbidden (403): shardman refused the secret")]
    Forbidden,
    /// 429 or a 5xx: try again, not before `retry_after`.
    #[error("shardman unavailable ({status}), retry after {retry_after:?}")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer (connection refused, timeout, bad body).
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// Any other answer.
    #[error("unexpected answer {status}: {body}")]
    Unexpected { status: u16, body: String },
    /// The client could not be set up (a secret that is not a valid header value).
    #[error("bad configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again later can succeed (503/429/5xx, network errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Transport(_))
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
