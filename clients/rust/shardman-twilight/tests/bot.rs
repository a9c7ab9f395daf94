//! The example bot as a process: two of them against the real shardman and the small fake gateway.
//! The holder is frozen (SIGSTOP) past its lease, the spare takes the shard over by RESUMEing the
//! holder's Discord session, and the woken holder releases (`lapsed`) and leaves the gateway.

mod fake_gateway;
#[path = "../../test-support/mod.rs"]
mod support;

use fake_gateway::{FakeGateway, Seen};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::shardman::{SECRET, start as start_shardman};
use support::{FakeShardman, Reply};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Process {
    fn lines(&self) -> Vec<(Instant, Value)> {
        self.lines.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    async fn wait_for_line(&self, wanted: impl Fn(&Value) -> bool, limit: Duration) -> Instant {
        let started = Instant::now();
        loop {
            if let Some((at, _)) = self.lines().into_iter().find(|(_, line)| wanted(line)) {
                return at;
            }
            assert!(
                started.elapsed() < limit,
                "no such line; got {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn example_bot() -> PathBuf {
    // target/debug/deps/bot-<hash> -> target/debug/examples/bot (cargo test builds the examples)
    let exe = std::env::current_exe().expect("test binary");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("examples/bot")
}

fn spawn_bot(shardman: &str, api_base: &str) -> Process {
    let mut child = Command::new(example_bot())
        .env("SHARDMAN_URL", shardman)
        .env("SHARDMAN_SECRET", SECRET)
        .env("DISCORD_TOKEN", "token")
        .env("DISCORD_API_BASE", api_base)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example bot");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut reader = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let collected = lines.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            let value = serde_json::from_str(&line).expect("stdout carries only JSON lines");
            collected.lock().unwrap().push((Instant::now(), value));
        }
    });
    Process { child, lines }
}

fn event_is(line: &Value, event: &str) -> bool {
    line["event"] == event
}

#[tokio::test]
async fn a_frozen_holder_past_its_lease_gives_way_to_the_spare_which_resumes_and_wakes_released() {
    let shardman = start_shardman(1, 3).await;
    let url = shardman.url.clone();
    let gateway = FakeGateway::start().await;
    // shardman runs without BOT_TOKEN, so the bots read the gateway URL from Discord's REST API.
    let rest = FakeShardman::start().await;
    rest.on(
        "/api/v10/gateway",
        vec![Reply::json(200, json!({"url": gateway.url}))],
    );
    let api_base = format!("{}/api/v10", rest.url);

    let holder = spawn_bot(&url, &api_base);
    holder
        .wait_for_line(|l| event_is(l, "claimed"), Duration::from_secs(10))
        .await;
    let claimed = &holder.lines()[0].1;
    assert_eq!(claimed["shard_ids"], json!([0]));
    assert_eq!(claimed["shard_count"], 1);
    assert_eq!(claimed["generation"], 1);
    let started = Instant::now();
    while !gateway.seen().contains(&Seen::Identify { shard: [0, 1] }) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            gateway.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let a beat carry the READY session as resume data.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let spare = spawn_bot(&url, &api_base);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(spare.lines().is_empty(), "the spare claimed a held shard");

    holder.signal("STOP");
    let stopped = Instant::now();
    let taken = spare
        .wait_for_line(|l| event_is(l, "claimed"), Duration::from_secs(10))
        .await;
    assert!(
        taken - stopped >= Duration::from_secs(2),
        "taken after {:?}",
        taken - stopped
    );
    let started = Instant::now();
    while !gateway.seen().contains(&Seen::Resume {
        session_id: "session-1".into(),
        sequence: 1,
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            gateway.seen()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gateway
            .seen()
            .iter()
            .filter(|s| matches!(s, Seen::Identify { .. }))
            .count(),
        1,
        "the spare identified instead of resuming"
    );

    holder.signal("CONT");
    let woken = Instant::now();
    let released = holder
        .wait_for_line(|l| event_is(l, "released"), Duration::from_secs(3))
        .await;
    assert!(
        released - woken < Duration::from_secs(2),
        "{:?}",
        released - woken
    );
    let line = holder.lines()[1].1.clone();
    assert_eq!(line["reason"], "lapsed");
    assert_eq!(line["shard_ids"], json!([0]));
    let left = gateway
        .records()
        .into_iter()
        .find(|r| r.connection == 1 && matches!(r.seen, Seen::Closed { .. } | Seen::Gone))
        .expect("the holder left the gateway");
    assert!(left.at >= woken && left.at - woken < Duration::from_millis(1500));

    // The holder holds nothing now (the spare does): it just exits; the spare gives its shard back.
    for (mut bot, last) in [(holder, "lapsed"), (spare, "shutdown")] {
        bot.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(10), bot.child.wait())
            .await
            .expect("exited")
            .expect("status");
        assert!(status.success(), "{status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let lines: Vec<Value> = bot.lines().into_iter().map(|(_, l)| l).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(event_is(&lines[0], "claimed") && event_is(&lines[1], "released"));
        assert_eq!(lines[1]["reason"], last);
    }
}
