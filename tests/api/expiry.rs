//! Leases expire after `MAX_SECONDS` without a beat; beating keeps a shard.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;

use crate::helpers::{Backend, both_stores, held_ids, settings, spawn_app};

both_stores!(
    a_silent_session_loses_its_shard_while_a_beating_one_keeps_it,
    an_expired_id_is_granted_again_lowest_first_with_a_larger_fence,
    a_live_lease_whose_recorded_deadline_fell_behind_is_not_granted_again,
);

async fn a_silent_session_loses_its_shard_while_a_beating_one_keeps_it(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 1;
    settings.max_shards = 3;
    // One bucket each: no identify wait, so each first lease is the bare 1 s.
    settings.max_concurrency = 3;
    let app = spawn_app(settings).await;
    let silent_low = app.claim().await;
    let beating = app.claim().await;
    let silent_high = app.claim().await;

    // Beat shard 1 every 300 ms for 1.8 s: well past the 1 s lease of the others.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.beat(&beating.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    assert_eq!(
        held_ids(&app.status().await),
        vec![1],
        "only the beating shard is still held"
    );
    assert_eq!(
        app.beat(&silent_low.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.beat(&silent_high.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.disconnect(&silent_high.session_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.beat(&beating.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
}

async fn an_expired_id_is_granted_again_lowest_first_with_a_larger_fence(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 1;
    settings.max_shards = 3;
    settings.max_concurrency = 3;
    let app = spawn_app(settings).await;
    let first = [app.claim().await, app.claim().await];
    assert_eq!(app.claim().await.shard_id, 2);
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);

    tokio::time::sleep(Duration::from_millis(1300)).await;

    let again = [app.claim().await, app.claim().await, app.claim().await];
    let ids: Vec<u64> = again.iter().map(|claim| claim.shard_id).collect();
    assert_eq!(ids, vec![0, 1, 2], "expired ids come back lowest first");
    for (old, new) in first.iter().zip(&again) {
        assert!(
            new.fence > old.fence,
            "shard {}: fence {} then {}",
            old.shard_id,
            old.fence,
            new.fence
        );
        assert_ne!(new.session_id, old.session_id);
    }
    assert_eq!(app.connect().await.status(), StatusCode::UNAUTHORIZED);
}

/// A beat moves the lease's entry in `deadlines` only in the first beat of each half lease, so the
/// entry may fall behind the lease's real expiry; a claim that finds it passed must check the
/// lease itself and leave a live one alone.
async fn a_live_lease_whose_recorded_deadline_fell_behind_is_not_granted_again(backend: Backend) {
    let mut settings = settings(backend);
    settings.max_seconds = 4;
    settings.max_shards = 1;
    let app = spawn_app(settings).await;
    // Half leases are 2 s windows of store time (the machine's clock): claim just after one
    // starts, beat late in the same window. The recorded deadline stays the claim's (+4 s), the
    // lease lasts until the beat's (+4 s), 1.7 s later.
    let into_window = || {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_millis((now.as_millis() % 2000) as u64)
    };
    tokio::time::sleep(Duration::from_millis(2050) - into_window()).await;
    let holder = app.claim().await;
    tokio::time::sleep(Duration::from_millis(1750).saturating_sub(into_window())).await;
    assert_eq!(
        app.beat(&holder.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    // About 4.9 s after the claim: its recorded deadline has passed, the lease has ~0.85 s left.
    tokio::time::sleep(Duration::from_millis(3150)).await;
    assert_eq!(
        app.connect().await.status(),
        StatusCode::UNAUTHORIZED,
        "the shard is still held"
    );
    assert_eq!(
        app.beat(&holder.session_id).await.status(),
        StatusCode::NO_CONTENT
    );

    // Unbeaten for a whole lease, it does expire.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert_eq!(app.claim().await.shard_id, 0);
}
