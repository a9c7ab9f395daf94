//! Redis with a password (alone or behind Sentinel) and over TLS: the replicas work unchanged
//! behind each.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::load::Load;
use crate::support::process::{Scratch, free_port};
use crate::support::redis::{RedisOptions, RedisServer, SentinelPasswords, Sentinels};
use crate::support::replicas::{Deployment, Replica};

/// A short run through one replica; returns (acked beats, failed requests, safe).
fn short_run(replica: &Replica) -> (u64, u64, bool) {
    let load = Load::through(
        &[replica],
        &[
            "--processes",
            "2",
            "--beat-interval",
            "0.2",
            "--max-seconds",
            "3",
            "--duration",
            "2",
        ],
    );
    let report = load.finish(Duration::from_secs(30));
    let acked = report["beats"]["acked"].as_u64().unwrap_or(0);
    let failed = report["beats"]["failed"].as_u64().unwrap_or(0);
    let safe = report["safety"]["double_grants"].as_u64() == Some(0);
    (acked, failed, safe)
}

#[test]
fn replicas_work_with_a_redis_password() {
    let redis = RedisServer::start_with(RedisOptions {
        password: Some("s3cret-pass".into()),
        ..Default::default()
    });
    assert!(redis.url().contains(":s3cret-pass@"));
    let replica = Deployment::new(&redis.url(), 3, 4).start();
    let (acked, failed, safe) = short_run(&replica);
    assert!(
        acked > 0 && failed == 0 && safe,
        "acked {acked}, failed {failed}"
    );

    // And without the password, Redis refuses: the replica must not start.
    let mut wrong = std::process::Command::new(env!("CARGO_BIN_EXE_shardman"));
    let status = wrong
        .env_clear()
        .env("SECRET", "x")
        .env("MAX_SHARDS", "1")
        .env("REDIS_URL", format!("redis://127.0.0.1:{}", redis.port))
        .env("PORT", free_port().to_string())
        .env("HOST", "127.0.0.1")
        .env("REDIS_TIMEOUT_MS", "300")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn")
        .wait_timeout_or_kill(Duration::from_secs(40));
    assert!(
        status.is_some_and(|status| !status.success()),
        "a replica without the password stops with an error"
    );
}

trait WaitTimeout {
    fn wait_timeout_or_kill(self, within: Duration) -> Option<std::process::ExitStatus>;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_or_kill(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.kill();
        let _ = self.wait();
        None
    }
}

#[test]
fn replicas_work_behind_sentinels_that_ask_for_a_password_in_front_of_a_master_that_does_too() {
    let master = RedisServer::start_with(RedisOptions {
        password: Some("master-pass".into()),
        ..Default::default()
    });
    let sentinels = Sentinels::start_with(
        master.port,
        2,
        SentinelPasswords {
            sentinels: Some("sentinel-pass".into()),
            master: Some("master-pass".into()),
        },
    );
    let replica = Deployment::new("", 3, 4)
        .set("REDIS_URL", "")
        .set("REDIS_SENTINELS", &sentinels.addresses())
        .set("REDIS_SENTINEL_MASTER", Sentinels::MASTER)
        .set("REDIS_SENTINEL_PASSWORD", "sentinel-pass")
        .set("REDIS_SENTINEL_MASTER_PASSWORD", "master-pass")
        .start();
    let (acked, failed, safe) = short_run(&replica);
    assert!(
        acked > 0 && failed == 0 && safe,
        "acked {acked}, failed {failed}"
    );
    assert!(
        master.script_calls() > 0,
        "the service writes to the master"
    );
    assert!(
        !replica.log().contains("master-pass") && !replica.log().contains("sentinel-pass"),
        "no password in the log: {}",
        replica.log()
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with openssl.
fn make_certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=shardman test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("extensions");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    )
}

#[test]
fn replicas_work_with_redis_over_tls() {
    let certificates = Scratch::new("tls");
    let (cert, key, ca) = make_certificates(&certificates.0);
    let redis = RedisServer::start_with(RedisOptions {
        tls: Some((cert, key, ca.clone())),
        password: Some("tls-pass".into()),
        ..Default::default()
    });
    assert!(redis.url().starts_with("rediss://"));
    // The replica trusts the throwaway CA through the standard SSL_CERT_FILE variable.
    let replica = Deployment::new(&redis.url(), 3, 4)
        .set("SSL_CERT_FILE", ca.to_str().expect("utf-8 path"))
        .start();
    let (acked, failed, safe) = short_run(&replica);
    assert!(
        acked > 0 && failed == 0 && safe,
        "acked {acked}, failed {failed}"
    );
}
