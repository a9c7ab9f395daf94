//! Classification of Redis errors into [`StoreError`]: a script's `SCHEMA_TOO_NEW` signal (with
//! the version it found), an outage (connection trouble, a timeout, or a Redis that cannot serve
//! just now: `READONLY`, `LOADING`, `BUSY`, ...), which callers answer with 503 and after which the
//! connection is dropped, and anything else, a bug. Apart from the pool so the one rule deciding
//! between "retry later" and "bug" reads in one place.

use crate::store::{SCHEMA_VERSION, StoreError};

/// Script errors are bugs or known signals; everything else is an outage.
pub(super) fn classify(error: redis::RedisError) -> StoreError {
    let text = error.to_string();
    if let Some(rest) = text.split("SCHEMA_TOO_NEW").nth(1) {
        let found = rest
            .split(|c: char| !c.is_ascii_digit())
            .find_map(|word| word.parse().ok())
            .unwrap_or(u64::MAX);
        return StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        };
    }
    let outage = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(
            error.code(),
            Some("BUSY" | "LOADING" | "MASTERDOWN" | "READONLY" | "TRYAGAIN" | "CLUSTERDOWN")
        );
    if outage {
        StoreError::Unavailable(text)
    } else {
        StoreError::Internal(text)
    }
}
