//! A pub/sub subscription on a connection of its own (a subscribed connection can send nothing
//! else, so it cannot be one of the pool's), with every step bounded by `REDIS_TIMEOUT_MS` and a
//! health check, so that a silent connection (Redis paused, a network that dropped it without a
//! word) is noticed and replaced rather than trusted for ever.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::{Client, Value};

use super::errors::classify;
use crate::store::StoreError;

/// How long a subscription may stay quiet before it is asked for a `PING`.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

pub(in crate::store) struct Subscription {
    sink: PubSubSink,
    stream: PubSubStream,
    timeout: Duration,
}

impl Subscription {
    /// Connects to the node of `client` and subscribes to `channel`.
    pub(super) async fn open(
        client: &Client,
        channel: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let pubsub = bounded(
            timeout,
            "connecting to subscribe",
            client.get_async_pubsub(),
        )
        .await?;
        let (mut sink, stream) = pubsub.split();
        bounded(timeout, "subscribing", sink.subscribe(channel)).await?;
        Ok(Self {
            sink,
            stream,
            timeout,
        })
    }

    /// The next message's text; an error once the connection is gone or fails its health check.
    pub(in crate::store) async fn next(&mut self) -> Result<String, StoreError> {
        loop {
            tokio::select! {
                message = self.stream.next() => {
                    let message = message.ok_or_else(|| {
                        StoreError::Unavailable("the subscription's connection closed".into())
                    })?;
                    if let Ok(text) = message.get_payload::<String>() {
                        return Ok(text);
                    }
                }
                () = tokio::time::sleep(HEALTH_CHECK) => {
                    bounded(self.timeout, "a subscription's health check", self.sink.ping::<Value>())
                        .await?;
                }
            }
        }
    }
}

async fn bounded<T>(
    timeout: Duration,
    what: &str,
    step: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, step).await {
        Ok(result) => result.map_err(classify),
        Err(_) => Err(StoreError::Unavailable(format!(
            "{what} took over {} ms",
            timeout.as_millis()
        ))),
    }
}
