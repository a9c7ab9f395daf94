//! What the store's unit tests share.

use std::sync::Arc;

use super::Store;
use crate::config::{Secret, Settings};

/// An in-process store planning `max_shards` shards.
pub async fn embedded_store(max_shards: u32) -> Arc<Store> {
    let settings = Settings {
        secret: Some(Secret::new("store-unit-test")),
        max_shards,
        ..Settings::default()
    };
    Arc::new(
        Store::open(&settings)
            .await
            .expect("the embedded store opens"),
    )
}
