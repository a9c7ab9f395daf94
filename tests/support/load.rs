//! `shardman-load` runs in the background, the safety checker of the fault and cluster suites,
//! and reading their JSON reports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{Scratch, die_with_parent};
use super::replicas::{Replica, SECRET};

/// A `shardman-load` run in the background.
pub struct Load {
    child: Child,
    json: PathBuf,
    dir: Scratch,
}

impl Load {
    /// A run against `urls`, authenticated with `secret`, with `args`.
    pub fn start(urls: &[String], secret: &str, args: &[&str]) -> Self {
        let dir = Scratch::new("load");
        let json = dir.0.join("report.json");
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardman-load"));
        command
            .arg("--target")
            .arg(urls.join(","))
            .args(["--secret", secret])
            .arg("--json")
            .arg(&json)
            .args(args)
            .stdout(Stdio::null())
            .stderr(stderr);
        die_with_parent(&mut command);
        Self {
            child: command.spawn().expect("shardman-load binary"),
            json,
            dir,
        }
    }

    /// A run through replica processes (tests/support/replicas.rs), with their secret.
    pub fn through(replicas: &[&Replica], args: &[&str]) -> Self {
        let urls: Vec<String> = replicas.iter().map(|replica| replica.url()).collect();
        Self::start(&urls, SECRET, args)
    }

    /// Waits for the run to end (bounded), blocking the thread, and returns its JSON report.
    pub fn finish(mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        while !self.ended(deadline, within) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.report()
    }

    /// Like [`Load::finish`], without blocking the async runtime.
    pub async fn finished(mut self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        while !self.ended(deadline, within) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.report()
    }

    fn ended(&mut self, deadline: Instant, within: Duration) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return true;
        }
        if Instant::now() > deadline {
            let _ = self.child.kill();
            panic!("shardman-load did not finish within {within:?}");
        }
        false
    }

    fn report(&self) -> Value {
        let text = std::fs::read_to_string(&self.json).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default();
            panic!("shardman-load wrote no report: {log}")
        });
        serde_json::from_str(&text).expect("report is JSON")
    }
}

/// The standard fleet's arguments: `processes` bots beating every half second through a
/// `max_seconds` lease for `seconds`, retrying a refused claim every 0.1 s.
pub fn fleet(processes: u32, max_seconds: u64, seconds: f64) -> Vec<String> {
    [
        "--processes",
        &processes.to_string(),
        "--beat-interval",
        "0.5",
        "--max-seconds",
        &max_seconds.to_string(),
        "--duration",
        &seconds.to_string(),
        "--request-timeout",
        "2",
        "--connect-retry",
        "0.1",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

/// A count of the report at `pointer` (0 when absent).
pub fn number(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// How many requests of the report's `route` ended with each status (`transport` for none).
pub fn statuses(report: &Value, route: &str) -> Vec<(String, u64)> {
    report["routes"][route]["statuses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(status, count)| (status.clone(), count.as_u64().unwrap_or(0)))
        .collect()
}

/// Requests of the report that failed (a 5xx or no answer), by status.
pub fn failures(report: &Value) -> Vec<(String, u64)> {
    ["connect", "beat", "disconnect"]
        .iter()
        .flat_map(|route| statuses(report, route))
        .filter(|(status, _)| status == "transport" || status.starts_with('5'))
        .collect()
}
