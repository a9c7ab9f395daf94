//! A twilight bot whose shards shardman hands out. Configured by the environment only:
//! SHARDMAN_URL, SHARDMAN_SECRET, DISCORD_TOKEN, optional DISCORD_API_BASE. Logs go to stderr;
//! stdout carries one JSON line per claim change.
use serde_json::json;
use shardman_twilight::twilight_gateway::{Event, Intents};
use shardman_twilight::{Claimed, Client, Fleet, Release, Step, shutdown_signal};
use std::io::Write;
use std::process::ExitCode;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

/// One JSON line on stdout, flushed at once.
fn print_line(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
}

fn print_release(claimed: &Claimed, release: Release) {
    let claim = claimed.claim();
    print_line(json!({
        "event": "released",
        "shard_ids": claim.shard_ids,
        "shard_count": claim.shard_count,
        "generation": claim.generation,
        "reason": release.reason(),
    }));
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let client = Client::new(&env("SHARDMAN_URL"), &env("SHARDMAN_SECRET")).expect("client");
    let api_base = std::env::var("DISCORD_API_BASE")
        .unwrap_or_else(|_| "https://discord.com/api/v10".to_owned());
    let fleet =
        Fleet::new(client, env("DISCORD_TOKEN"), Intents::GUILDS).discord_api_base(api_base);
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let mut claimed = tokio::select! {
            claimed = fleet.claim() => claimed.expect("shardman refused the claim"),
            () = &mut shutdown => return ExitCode::SUCCESS,
        };
        let claim = claimed.claim();
        print_line(json!({
            "event": "claimed",
            "shard_ids": claim.shard_ids,
            "shard_count": claim.shard_count,
            "generation": claim.generation,
            "state": claim.state,
        }));
        let release = loop {
            tokio::select! {
                step = claimed.next() => match step {
                    Step::Event(shard, Event::Ready(ready)) => {
                        tracing::info!(shard = shard.number(), user = %ready.user.name, "ready");
                    }
                    Step::Event(..) => {}
                    Step::Released(release) => break release,
                },
                () = &mut shutdown => break claimed.shutdown().await,
            }
        };
        print_release(&claimed, release);
        match release {
            Release::Retired | Release::Shutdown => return ExitCode::SUCCESS,
            Release::GatewayClosed { .. } => return ExitCode::FAILURE,
            Release::Lapsed | Release::Lost => {}
        }
    }
}
