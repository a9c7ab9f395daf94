//! `scripts/bench.sh --tiny` keeps working: CI runs it on the binaries of this build.

use std::process::Command;

use crate::support::process::Scratch;

#[test]
fn the_benchmark_script_runs_at_tiny_size() {
    let _serial = crate::scenarios::serial();
    let scratch = Scratch::new("bench");
    let table = scratch.0.join("bench.md");
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench.sh"))
        .arg("--tiny")
        .env("SHARDMAN_BIN", env!("CARGO_BIN_EXE_shardman"))
        .env("SHARDMAN_LOAD_BIN", env!("CARGO_BIN_EXE_shardman-load"))
        .env("BENCH_OUT", &table)
        .output()
        .expect("bash runs scripts/bench.sh");
    assert!(
        output.status.success(),
        "bench.sh --tiny failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = std::fs::read_to_string(&table).expect("the script wrote its table");
    for measure in [
        "/beat via one replica",
        "/connect p99",
        "cold start",
        "bytes per held shard",
    ] {
        assert!(table.contains(measure), "{measure} missing from:\n{table}");
    }
    assert!(
        table.contains("/ 0 |"),
        "no double grant in the cold start:\n{table}"
    );
}
