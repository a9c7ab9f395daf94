//! shardman-load: simulates a fleet of bot processes against one or more shardman replicas,
//! measures every route (HDR histograms), and checks safety from the clients' side: no two
//! processes may believe they hold the same shard of the same generation at the same time.
//!
//! ```text
//! cargo run --release --bin shardman-load -- \
//!     --target http://127.0.0.1:8000 --secret "$SECRET" --max-seconds 60 \
//!     --processes 100 --beat-interval 5 --duration 60 --churn-crash 0.01 --json report.json
//! ```
//!
//! Exit status: 0 when the run was safe, 1 when the checker found a violation, 2 on bad usage.

#[path = "shardman-load/checker.rs"]
mod checker;
#[path = "shardman-load/client.rs"]
mod client;
#[path = "shardman-load/report.rs"]
mod report;
#[path = "shardman-load/sim.rs"]
mod sim;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::client::Client;
use crate::report::{BUCKET, Recorder};
use crate::sim::{Behaviour, World};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Processes connect, beat and churn for `--duration`; the safety checker runs at the end.
    Run,
    /// Hold `--fill` shards, then measure `/connect` (each grant released at once) for `--duration`.
    ConnectLatency,
}

#[derive(Debug, Parser)]
#[command(version, about = "Load generator and safety checker for shardman")]
struct Args {
    /// Replica base URLs; processes spread over them and move on when one fails.
    #[arg(long = "target", value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// The service's SECRET.
    #[arg(long, env = "SECRET", hide_env_values = true)]
    secret: String,
    #[arg(long, value_enum, default_value = "run")]
    mode: Mode,
    /// Simulated bot processes.
    #[arg(long, default_value_t = 10)]
    processes: usize,
    /// Seconds between beats (0: back to back).
    #[arg(long, default_value_t = 1.0)]
    beat_interval: f64,
    /// Seconds the run lasts.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The service's MAX_SECONDS: a lease is valid until the send time of the last acknowledged
    /// beat plus this.
    #[arg(long, default_value_t = 60.0)]
    max_seconds: f64,
    /// Chance per beat that a process disconnects cleanly and connects again.
    #[arg(long, default_value_t = 0.0)]
    churn_disconnect: f64,
    /// Chance per beat that a process crashes (no disconnect) and restarts.
    #[arg(long, default_value_t = 0.0)]
    churn_crash: f64,
    /// Seconds a churned process waits before connecting again.
    #[arg(long, default_value_t = 0.2)]
    restart_delay: f64,
    /// Seconds between connect attempts while no shard is free.
    #[arg(long, default_value_t = 0.2)]
    connect_retry: f64,
    /// Spread the first connects over this many seconds (0: all at once, a cold start).
    #[arg(long, default_value_t = 0.0)]
    stagger: f64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Seconds before a request counts as failed.
    #[arg(long, default_value_t = 5.0)]
    request_timeout: f64,
    /// Keep the shards at the end instead of disconnecting.
    #[arg(long)]
    keep: bool,
    /// connect-latency: shards to hold before measuring.
    #[arg(long, default_value_t = 0)]
    fill: usize,
    /// connect-latency: concurrent connect/disconnect loops.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Write the JSON report here ("-": standard output, and the summary goes to standard error).
    #[arg(long)]
    json: Option<String>,
    /// Print only these values of the report (JSON pointers, comma-separated, e.g.
    /// `/routes/beat/per_second`), space-separated on one line, for scripts.
    #[arg(long, value_delimiter = ',')]
    print: Vec<String>,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name} must be a number of seconds >= 0"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // reqwest is built with rustls but no default provider; plain http needs none, but the
    // builder insists on one being installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(args).await {
        Ok(safe) => {
            if safe {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("shardman-load: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let behaviour = Behaviour {
        processes: args.processes,
        beat_interval: seconds("beat-interval", args.beat_interval)?,
        lease: seconds("max-seconds", args.max_seconds)?,
        churn_disconnect: args.churn_disconnect.clamp(0.0, 1.0),
        churn_crash: args.churn_crash.clamp(0.0, 1.0),
        restart_delay: seconds("restart-delay", args.restart_delay)?,
        connect_retry: seconds("connect-retry", args.connect_retry)?,
        stagger: seconds("stagger", args.stagger)?,
        release_at_end: !args.keep,
    };
    let duration = seconds("duration", args.duration)?;
    let started = Instant::now();
    let recorder = Arc::new(Recorder::new(started));
    let client = Client::new(
        args.targets.clone(),
        args.secret.clone(),
        recorder.clone(),
        args.concurrency,
        seconds("request-timeout", args.request_timeout)?,
    )
    .map_err(|error| error.to_string())?;
    if client.targets() == 0 {
        return Err("give at least one --target".into());
    }
    let config = json!({
        "mode": format!("{:?}", args.mode),
        "targets": args.targets,
        "processes": args.processes,
        "beat_interval_s": args.beat_interval,
        "duration_s": args.duration,
        "max_seconds": args.max_seconds,
        "churn_disconnect": args.churn_disconnect,
        "churn_crash": args.churn_crash,
        "concurrency": args.concurrency,
        "fill": args.fill,
        "workers": args.workers,
    });
    let world = Arc::new(World::new(
        client,
        recorder.clone(),
        behaviour,
        started + duration,
    ));

    let sampler = {
        let (recorder, processes) = (recorder.clone(), args.processes);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(BUCKET);
            loop {
                tick.tick().await;
                recorder.sample_holders(processes);
            }
        })
    };
    match args.mode {
        Mode::Run => {
            let tasks: Vec<_> = (0..args.processes)
                .map(|index| tokio::spawn(sim::run_process(world.clone(), index)))
                .collect();
            for task in tasks {
                task.await.map_err(|error| error.to_string())?;
            }
        }
        Mode::ConnectLatency => {
            // The fill may take a while at 65,536 shards: it gets its own generous deadline.
            let held =
                sim::connect_latency(world.clone(), args.fill, args.workers, duration).await?;
            eprintln!("held {held} shards while measuring /connect");
        }
    }
    sampler.abort();

    let safety = world.checker.check(started);
    let safe = safety.safe();
    let report = recorder.finish(config, safety);
    let json = serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
    if !args.print.is_empty() {
        let value = serde_json::to_value(&report).map_err(|error| error.to_string())?;
        let picked: Vec<String> = args
            .print
            .iter()
            .map(|pointer| match value.pointer(pointer) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "null".into(),
            })
            .collect();
        println!("{}", picked.join(" "));
        if let Some(path) = args.json.as_deref().filter(|path| *path != "-") {
            std::fs::write(path, &json).map_err(|error| format!("cannot write {path}: {error}"))?;
        }
        return Ok(safe);
    }
    match args.json.as_deref() {
        Some("-") => {
            println!("{json}");
            eprint!("{}", report.summary());
        }
        Some(path) => {
            std::fs::write(path, json).map_err(|error| format!("cannot write {path}: {error}"))?;
            print!("{}", report.summary());
        }
        None => print!("{}", report.summary()),
    }
    Ok(safe)
}
