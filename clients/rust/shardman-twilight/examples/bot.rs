//! A twilight bot whose shards shardman hands out. Configured by the environment only:
//! SHARDMAN_URL, SHARDMAN_SECRET, DISCORD_TOKEN, optional DISCORD_API_BASE. Logs go to stderr;
//! stdout carries one JSON line per claim change.
use shardman_twilight::twilight_gateway::{Event, Intents};
use shardman_twilight::{ClaimEvent, Client, Fleet, Notice, shutdown_signal};
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
    // One claim at a time with shard groups; with SHARDS_PER_PROCESS=auto, every claim placement
    // gives this process, side by side.
    let mut running = fleet.run();
    let code = loop {
        tokio::select! {
            notice = running.next() => match notice.expect("shardman refused the claim") {
                Notice::Claimed(claim) => print_event(&ClaimEvent::claimed(&claim)),
                Notice::Event(shard, Event::Ready(ready)) => {
                    tracing::info!(shard = shard.number(), user = %ready.user.name, "ready");
                }
                Notice::Event(..) => {}
                Notice::Released(claim, release) => {
                    print_event(&ClaimEvent::released(&claim, release));
                    // Lapsed, lost and handed-over claims go on; see `Running::exit_code`.
                    if let Some(code) = running.exit_code(release) {
                        break code;
                    }
                }
            },
            () = &mut shutdown => break 0,
        }
    };
    for (claim, release) in running.shutdown().await {
        print_event(&ClaimEvent::released(&claim, release));
    }
    ExitCode::from(code)
}
