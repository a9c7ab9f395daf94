//! The outbound HTTP client (Discord's API and webhooks), and the rules for talking about it in logs.
//!
//! TLS is rustls with the `ring` provider: pure Rust plus a little C/assembly that builds offline
//! without cmake. Certificates are checked against the system's roots (`ca-certificates`).

use std::sync::Once;
use std::time::Duration;

/// `User-Agent` in the form Discord asks bots to send.
pub const USER_AGENT: &str = concat!("DiscordBot (shardman, ", env!("CARGO_PKG_VERSION"), ")");

/// Makes `ring` the process's rustls provider. Every `reqwest::Client` needs one before it is
/// built (reqwest is compiled without a provider of its own); calling this more than once is fine.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first, which serves just as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client with bounded connect and total times that never follows redirects (a redirect could
/// carry the bot token's `Authorization` header, or a webhook's secret URL, somewhere else).
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|error| describe(&error))
}

/// A `reqwest::Error` as it may be logged: without its URL, which for a webhook holds the
/// webhook's token. Request headers (the bot token) are never part of a `reqwest::Error`.
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_decode() {
        "unreadable response"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Seconds to wait from a 429: the larger of the `Retry-After` header and the JSON body's
/// `retry_after` (Discord sends both, in seconds, possibly fractional). `None` when neither is
/// readable.
pub fn retry_after(header: Option<&str>, body: &[u8]) -> Option<Duration> {
    let from_header = header.and_then(|value| value.trim().parse::<f64>().ok());
    let from_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("retry_after").and_then(serde_json::Value::as_f64));
    let seconds = match (from_header, from_body) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(24.0 * 3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_the_larger_of_header_and_body() {
        assert_eq!(
            retry_after(Some("1"), br#"{"retry_after": 2.5, "global": false}"#),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            retry_after(Some("3"), br#"{"retry_after": 0.5}"#),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn retry_after_reads_either_source_alone() {
        assert_eq!(
            retry_after(Some("0.25"), b""),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(None, br#"{"retry_after": 4}"#),
            Some(Duration::from_secs(4))
        );
    }

    #[tokio::test]
    async fn a_failed_request_is_described_without_its_url() {
        let client = client(Duration::from_secs(2)).expect("client");
        // Port 1 on loopback refuses connections.
        let error = client
            .post("http://127.0.0.1:1/api/webhooks/1/the-webhook-token")
            .send()
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            error.to_string().contains("the-webhook-token"),
            "reqwest's own text has it"
        );
        let described = describe(&error);
        assert!(!described.contains("the-webhook-token"), "{described}");
        assert!(described.starts_with("could not connect"), "{described}");
    }

    #[test]
    fn retry_after_is_none_when_unreadable() {
        assert_eq!(retry_after(None, b"<html>"), None);
        assert_eq!(retry_after(Some("soon"), b"{}"), None);
        assert_eq!(retry_after(Some("-1"), b""), None);
    }
}
