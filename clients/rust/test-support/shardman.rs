//! The real shardman binary, on a free port with its embedded store.
//!
//! SHARDMAN_BIN names the binary. Without it, the repository's own debug build is used, built (or
//! brought up to date) first with `cargo build --bin shardman`, so this crate's tests run on a
//! fresh clone too and always against the server as the repository has it now.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const SECRET: &str = "rust-client-test-secret";

pub struct RealShardman {
    child: Child,
    pub url: String,
}

impl Drop for RealShardman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("SHARDMAN_BIN") {
            return PathBuf::from(path);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--bin", "shardman", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            // The repository's own target dir, whatever this crate's build was told.
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("run cargo build for shardman");
        assert!(status.success(), "cargo build --bin shardman failed");
        root.join("target/debug/shardman")
    })
}

pub async fn start(max_shards: u32, max_seconds: u32) -> RealShardman {
    let binary = binary();
    assert!(
        binary.exists(),
        "no shardman binary at {}",
        binary.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .env_clear()
        .env("SECRET", SECRET)
        .env("MAX_SHARDS", max_shards.to_string())
        .env("MAX_SECONDS", max_seconds.to_string())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardman");
    let shardman = RealShardman {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    shardman_client::install_crypto_provider();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{}/healthz", shardman.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "shardman did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shardman
}
