//! `BOTS_FILE` reloads on SIGHUP, in the running process.

use std::time::{Duration, Instant};

use crate::scenarios::serial;
use crate::support::process::Scratch;
use crate::support::redis::RedisServer;
use crate::support::replicas::{Deployment, http_status_as};

fn bots_file(bots: &[&str]) -> String {
    bots.iter()
        .map(|name| {
            format!("[[bot]]\nname = \"{name}\"\nsecret = \"{name}-secret\"\nkey_prefix = \"reload-{name}\"\n\n")
        })
        .collect()
}

#[test]
fn a_sighup_reloads_the_bots_file_and_a_new_bot_connects_without_a_restart() {
    let _serial = serial();
    let redis = RedisServer::start();
    let dir = Scratch::new("bots");
    let path = dir.0.join("bots.toml");
    std::fs::write(&path, bots_file(&["first"])).expect("bots file");
    let replica = Deployment::new(&redis.url(), 5, 4)
        .set("BOTS_FILE", path.to_str().expect("a UTF-8 path"))
        .set("RUST_LOG", "info")
        .start();
    let pid = replica.pid();
    assert_eq!(
        http_status_as(replica.port, "/connect", "first-secret"),
        Some(200)
    );
    // An unknown secret is refused like any wrong one.
    assert_eq!(
        http_status_as(replica.port, "/connect", "second-secret"),
        Some(403)
    );

    std::fs::write(&path, bots_file(&["first", "second"])).expect("bots file");
    replica.hang_up();
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_status_as(replica.port, "/connect", "second-secret") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "the new bot was not served 10 s after SIGHUP: {}",
            replica.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_eq!(replica.pid(), pid, "the same process serves both bots");
    assert!(replica.ready());
    assert_eq!(
        http_status_as(replica.port, "/connect", "first-secret"),
        Some(200)
    );
    assert!(
        replica.log().contains("SIGHUP received"),
        "{}",
        replica.log()
    );
}
