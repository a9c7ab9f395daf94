//! A pub/sub subscription on a connection of its own (a subscribed connection can send nothing
//! else, so it cannot be one of the pool's), connecting and subscribing bounded by
//! `REDIS_TIMEOUT_MS`. Whether messages still arrive is checked end to end by its user (see
//! `store/wakeups.rs`): a node can answer and still not be where messages are published.

use std::time::Duration;

use futures_util::StreamExt;
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};

use super::errors::classify;
use crate::store::StoreError;

pub(in crate::store) struct Subscription {
    // Kept: dropping the sink would not end the subscription, but it is the connection's half.
    _sink: PubSubSink,
    stream: PubSubStream,
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
            _sink: sink,
            stream,
        })
    }

    /// The next message's text; an error once the connection is gone.
    pub(in crate::store) async fn next(&mut self) -> Result<String, StoreError> {
        loop {
            let message = self.stream.next().await.ok_or_else(|| {
                StoreError::Unavailable("the subscription's connection closed".into())
            })?;
            if let Ok(text) = message.get_payload::<String>() {
                return Ok(text);
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
