//! How a job waits: every pause ends early when the replica stops. Its own module, so the jobs
//! and the module that spawns them do not import each other.

use std::time::Duration;

use tokio::sync::watch;

/// Sleeps for `duration`; returns `true` early when `stop` turns true (or its sender is gone).
pub async fn sleep_or_stop(duration: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = stop.wait_for(|stopped| *stopped) => return true,
    }
    *stop.borrow()
}
