//! A twilight bot whose shards shardman hands out. Configured by the environment only:
//! SHARDMAN_URL, SHARDMAN_SECRET, DISCORD_TOKEN, optional DISCORD_API_BASE. Logs go to stderr;
//! stdout carries one JSON line per claim change.
use shardman_twilight::twilight_gateway::{Event, Intents};
use shardman_twilight::{ClaimEvent, Client, Fleet, Step, shutdown_signal};
use std::io::Write;
use std::process::ExitCode;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set"))
}

/// One JSON line on stdout, flushed at once.
fn print_event(event: &ClaimEvent) {
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_string(event).expect("an event is JSON");
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .expect("stdout");
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
        print_event(&ClaimEvent::claimed(claimed.claim()));
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
        print_event(&ClaimEvent::released(claimed.claim(), release));
        // Lapsed and lost claim anew; retired, shutdown and failed end the process.
        if let Some(code) = release.exit_code() {
            return ExitCode::from(code);
        }
    }
}
