//! The fault suite: real redis-server processes, three `shardman` replicas as child processes and a
//! `shardman-load` fleet, while faults are injected. Every scenario checks, from the clients' side,
//! that no two processes ever believed they held the same shard at once, and reports lost
//! acknowledged beats and the time to recover (`scripts/faults.sh` turns the reports into a table).
//!
//! The scale is small so CI runs it in about two minutes; `FAULT_SCALE=4` (scripts/faults.sh) runs more
//! processes for longer. Scenarios run one at a time: they measure time.

mod bench_script;
mod harness;
mod reload;
mod scenarios;
mod security;
#[path = "../support/mod.rs"]
mod support;
