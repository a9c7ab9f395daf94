#![allow(dead_code)] // each suite uses its own part of the support code

//! What both test suites (`tests/api`, `tests/faults`) need to run real processes: free ports,
//! scratch directories, children that die with the test process, and `redis-server` /
//! `redis-sentinel` processes. Each suite includes it with
//! `#[path = "../support/mod.rs"] mod support;` and keeps its own harness for the rest.

pub mod process;
pub mod redis;
