//! Lanes: each thread that serves requests keeps to its own shared Redis connection and its own
//! beat queue. A multiplexed connection's reader runs on the thread that opened it, and a batch
//! task on the thread that spawned it; when a request, its batch and its connection are all on
//! the thread the request arrived on (an actix worker runs a single-threaded runtime), a beat is
//! served without waking another thread. On a 2-core machine shared with Redis, those cross-thread
//! wake-ups cost more than the beat itself. Lanes are only about where work runs: any thread may
//! use any lane, and correctness never depends on which.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Numbers threads in the order they first ask.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THIS_THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The calling thread's lane among `lanes` (threads beyond `lanes` share).
pub(super) fn of_this_thread(lanes: usize) -> usize {
    THIS_THREAD.with(|thread| *thread) % lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_its_lane_and_another_thread_gets_the_next_one() {
        let here = of_this_thread(1_000);
        assert_eq!(of_this_thread(1_000), here);
        let there = std::thread::spawn(|| of_this_thread(1_000))
            .join()
            .expect("the thread runs");
        assert_ne!(there, here);
    }
}
