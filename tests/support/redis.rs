//! Real `redis-server` and `redis-sentinel` processes on free ports of 127.0.0.1, killed when
//! dropped and with the test process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::process::{Scratch, die_with_parent, free_port, kill, signal};

/// How to start a Redis.
#[derive(Clone, Default)]
pub struct RedisOptions {
    pub password: Option<String>,
    /// (certificate, key, CA) paths: serve TLS only.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// `replicaof 127.0.0.1 <port>`.
    pub replica_of: Option<u16>,
    /// Persistence by AOF (`appendonly yes`), as docker-compose runs it.
    pub append_only: bool,
}

/// A `redis-server` child process (without persistence unless asked), killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    options: RedisOptions,
    dir: Scratch,
}

impl RedisServer {
    /// A plain server of the caller's own (one it may pause, stop or flush).
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    pub fn start_with(options: RedisOptions) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            options,
            dir: Scratch::new("redis"),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args([
                "--appendonly",
                if self.options.append_only {
                    "yes"
                } else {
                    "no"
                },
            ])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match &self.options.tls {
            Some((cert, key, ca)) => {
                command
                    .args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(cert)
                    .arg("--tls-key-file")
                    .arg(key)
                    .arg("--tls-ca-cert-file")
                    .arg(ca)
                    .args(["--tls-auth-clients", "no"]);
            }
            None => {
                command.args(["--port", &self.port.to_string()]);
            }
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        if let Some(master) = self.options.replica_of {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        die_with_parent(&mut command);
        self.child = Some(
            command
                .spawn()
                .expect("redis-server must be installed (scripts/test.sh installs it)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.options.tls.is_some() {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
            } else if self.try_query(&["PING"]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// The URL replicas use.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.options.password {
            Some(password) => format!("{scheme}://:{password}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Runs one command on a connection of its own and returns the reply.
    pub fn try_query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        query_url(&self.url(), args)
    }

    pub fn query(&self, args: &[&str]) -> redis::Value {
        self.try_query(args)
            .unwrap_or_else(|error| panic!("redis {args:?}: {error}"))
    }

    /// SIGSTOP: the sockets stay open, nothing answers.
    pub fn pause(&self) {
        signal(
            self.child.as_ref().expect("redis is running"),
            libc::SIGSTOP,
        );
    }

    pub fn resume(&self) {
        signal(
            self.child.as_ref().expect("redis is running"),
            libc::SIGCONT,
        );
    }

    /// kill -9; the data is gone (no persistence).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts again, empty, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Scripts run so far (EVAL and EVALSHA calls, from `INFO commandstats`): a replica never runs
    /// one, so this tells which server the service writes to.
    pub fn script_calls(&self) -> u64 {
        let info: String =
            redis::from_redis_value(self.query(&["INFO", "commandstats"])).expect("info");
        info.lines()
            .filter(|line| {
                line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:")
            })
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// `INFO memory`'s `used_memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        let info: String = redis::from_redis_value(self.query(&["INFO", "memory"])).expect("info");
        info.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .expect("used_memory")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server for the whole test binary, for every test that does not disturb Redis (each keeps to
/// a key prefix of its own). It is started from a thread that lives as long as the process, so it
/// dies with the process and not with the first test's thread.
pub fn shared_redis() -> &'static RedisServer {
    static SHARED: OnceLock<&'static RedisServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let server: &'static RedisServer = Box::leak(Box::new(RedisServer::start()));
            sender.send(server).expect("send shared redis");
            loop {
                std::thread::park();
            }
        });
        receiver.recv().expect("shared redis started")
    })
}

/// Runs one command on a fresh connection to `url`.
fn query_url(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query(&mut conn)
}

/// `redis-sentinel`s watching one master under the name `shardman`.
pub struct Sentinels {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: Scratch,
}

impl Sentinels {
    pub const MASTER: &'static str = "shardman";

    /// `count` sentinels (a quorum of two) watching `127.0.0.1:<master_port>`; returns once the
    /// first one names that master.
    pub fn start(master_port: u16, count: usize) -> Self {
        let dir = Scratch::new("sentinel");
        let mut children = Vec::new();
        let mut ports = Vec::new();
        for index in 0..count {
            let port = free_port();
            let config = dir.0.join(format!("sentinel-{index}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {name} 1000\n\
                     sentinel failover-timeout {name} 5000\n\
                     sentinel parallel-syncs {name} 1\n",
                    dir = dir.0.display(),
                    name = Self::MASTER,
                ),
            )
            .expect("sentinel config");
            let mut command = Command::new("redis-sentinel");
            command
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut command);
            children.push(
                command
                    .spawn()
                    .expect("redis-sentinel (scripts/test.sh installs it)"),
            );
            ports.push(port);
        }
        let sentinels = Self {
            children,
            ports,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if sentinels.master_port() == Some(master_port) {
                return sentinels;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sentinels did not come up");
    }

    fn query(&self, index: usize, args: &[&str]) -> redis::RedisResult<redis::Value> {
        query_url(&format!("redis://127.0.0.1:{}", self.ports[index]), args)
    }

    /// The master's port as the first sentinel sees it.
    pub fn master_port(&self) -> Option<u16> {
        let reply = self
            .query(0, &["SENTINEL", "get-master-addr-by-name", Self::MASTER])
            .ok()?;
        let (_, port): (String, String) = redis::from_redis_value(reply).ok()?;
        port.parse().ok()
    }

    pub fn failover(&self) {
        self.query(0, &["SENTINEL", "FAILOVER", Self::MASTER])
            .expect("SENTINEL FAILOVER");
    }

    /// `REDIS_SENTINELS`.
    pub fn addresses(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
