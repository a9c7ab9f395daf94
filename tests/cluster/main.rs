//! The Redis Cluster suite: a real cluster of three masters with a replica each (started by
//! tests/support), replicas of the service on it, and bots whose hash tags land on different
//! masters. It checks what the single-Redis suites check (every id granted once under a race,
//! leases that expire, a script cache flushed on every node), and that kill -9 of a master under
//! load is ridden out: its replica is promoted, beats continue, nothing is granted twice, and what
//! failed meanwhile failed with 503.
//!
//! Small on purpose (well under two minutes in CI); scenarios run one at a time on one cluster each.

// As in tests/api: the in-process apps' futures nest past rustc's default query depth when the
// suite is built from scratch.
#![recursion_limit = "256"]

mod bots;
mod harness;
mod scenarios;
#[path = "../support/mod.rs"]
mod support;
