//! `shardman` replicas as real processes (the binary cargo built for this test run), shared by the
//! suites that run several of them on one Redis (`tests/faults`, `tests/clients`). Everything listens
//! on 127.0.0.1 and dies with the test process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::process::{Scratch, die_with_parent, free_port, kill, signal};
use super::redis::fresh_prefix;
use super::sockets;

pub const SECRET: &str = "replica-secret";

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// One `shardman` process (the binary cargo built for this test run).
pub struct Replica {
    child: Option<Child>,
    pub port: u16,
    env: Vec<(String, String)>,
    dir: Scratch,
}

/// Settings shared by a deployment's replicas.
#[derive(Clone)]
pub struct Deployment {
    pub env: Vec<(String, String)>,
}

impl Deployment {
    /// A deployment on `redis_url` with `MAX_SECONDS` and `MAX_SHARDS`.
    pub fn new(redis_url: &str, max_seconds: u64, max_shards: u32) -> Self {
        let prefix = fresh_prefix("tests");
        Self {
            env: vec![
                ("SECRET".into(), SECRET.into()),
                ("REDIS_URL".into(), redis_url.into()),
                ("MAX_SECONDS".into(), max_seconds.to_string()),
                ("MAX_SHARDS".into(), max_shards.to_string()),
                ("KEY_PREFIX".into(), prefix),
                ("REDIS_TIMEOUT_MS".into(), "500".into()),
                ("HOST".into(), "127.0.0.1".into()),
                ("RUST_LOG".into(), "warn".into()),
                ("DRAIN_SECONDS".into(), "0".into()),
                // Each scenario starts its own Redis: do not treat its youth as a data loss.
                ("QUARANTINE_FRESH_REDIS".into(), "false".into()),
            ],
        }
    }

    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.env.retain(|(key, _)| key != name);
        self.env.push((name.into(), value.into()));
        self
    }

    /// Leaves `name` unset (its default applies).
    pub fn without(mut self, name: &str) -> Self {
        self.env.retain(|(key, _)| key != name);
        self
    }

    pub fn start(&self) -> Replica {
        Replica::start(self.env.clone())
    }

    /// `count` replicas launched at the same moment, returned once all are ready: they race
    /// through startup as a fleet's pods do. They die with the calling thread (PDEATHSIG), so
    /// call it from the test's own thread (`tokio::task::block_in_place` in an async test).
    pub fn start_together(&self, count: usize) -> Vec<Replica> {
        let mut replicas: Vec<Replica> = (0..count)
            .map(|_| {
                let mut replica = Replica {
                    child: None,
                    port: free_port(),
                    env: self.env.clone(),
                    dir: Scratch::new("replica"),
                };
                replica.spawn();
                replica
            })
            .collect();
        for replica in &mut replicas {
            replica.wait_ready();
        }
        replicas
    }

    pub fn start_many(&self, count: usize) -> Vec<Replica> {
        (0..count).map(|_| self.start()).collect()
    }
}

impl Replica {
    fn start(env: Vec<(String, String)>) -> Self {
        let mut replica = Self {
            child: None,
            port: free_port(),
            env,
            dir: Scratch::new("replica"),
        };
        replica.launch(5);
        replica
    }

    /// Starts the process; `tries` > 1 moves to another free port when this one was taken.
    fn launch(&mut self, tries: usize) {
        // `free_port` can hand one port to two tests before either binds it: the replica that
        // loses exits on its bind, and the `/readyz` answer on that port is the other test's. So
        // a replica is ready only when it is the process listening there; else it tries anew.
        for attempt in 1..=tries {
            self.spawn();
            if self.wait_listening() {
                return;
            }
            if self
                .child
                .as_mut()
                .map(Child::try_wait)
                .is_some_and(|status| matches!(status, Ok(None)))
            {
                panic!(
                    "replica on port {} never became ready: {}",
                    self.port,
                    self.log()
                );
            }
            if attempt < tries {
                self.port = free_port();
            }
        }
        panic!(
            "port {} for the replica was taken ({tries} tries): {}",
            self.port,
            self.log()
        );
    }

    /// Waits for the spawned process to serve `/readyz` on its port: false when it exited because
    /// the port was taken, or when it is still not ready after 30 s.
    fn wait_listening(&mut self) -> bool {
        let pid = self.pid().expect("spawned");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                if self.log().contains("in use") {
                    return false;
                }
                panic!("replica exited with {status}: {}", self.log());
            }
            if http_status(self.port, "/readyz") == Some(200) && listens_on(pid, self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// [`Replica::wait_listening`] for a replica spawned already; one whose port was taken is
    /// launched again on another.
    fn wait_ready(&mut self) {
        if self.wait_listening() {
            return;
        }
        if self
            .child
            .as_mut()
            .map(Child::try_wait)
            .is_some_and(|status| matches!(status, Ok(None)))
        {
            panic!(
                "replica on port {} never became ready: {}",
                self.port,
                self.log()
            );
        }
        self.port = free_port();
        self.launch(5);
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("replica.log")).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shardman"));
        // Its own empty working directory: no stray `.env` is read.
        command
            .current_dir(&self.dir.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .env("PORT", self.port.to_string())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut command);
        self.child = Some(command.spawn().expect("shardman binary"));
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("replica.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGHUP (the replica reloads `BOTS_FILE`).
    pub fn hang_up(&self) {
        if let Some(child) = &self.child {
            signal(child, libc::SIGHUP);
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    pub fn restart(&mut self) {
        self.kill();
        // Same port: clients of the test know the replica by its URL.
        self.launch(1);
    }

    pub fn ready(&self) -> bool {
        http_status(self.port, "/readyz") == Some(200)
    }

    /// Resident memory, in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A bare-bones HTTP GET with the deployment's secret (no client library needed in a blocking
/// context).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_status_as(port, path, SECRET)
}

/// [`http_status`] with another `Authorization`.
pub fn http_status_as(port: u16, path: &str, authorization: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Whether process `pid` holds the socket listening on `port`.
fn listens_on(pid: u32, port: u16) -> bool {
    sockets::tcp_sockets().iter().any(|socket| {
        socket.listening && socket.local_port == port && sockets::holds(pid, socket.inode)
    })
}
