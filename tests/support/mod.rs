#![allow(dead_code)] // each suite uses its own part of the support code

//! What the test suites (`tests/api`, `tests/faults`, `tests/clients`) need to run real processes:
//! free ports, scratch directories, children that die with the test process, `redis-server` /
//! `redis-sentinel` processes, `shardman` replicas and `shardman-load` runs. Each suite includes it with
//! `#[path = "../support/mod.rs"] mod support;` and keeps its own harness for the rest.

pub mod load;
pub mod process;
pub mod redis;
pub mod replicas;
pub mod sockets;
