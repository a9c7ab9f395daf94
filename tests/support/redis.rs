//! Real `redis-server` and `redis-sentinel` processes on free ports of 127.0.0.1, killed when
//! dropped and with the test process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
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
        // `free_port` can hand one port to two tests before either binds it: the server that
        // loses exits on its bind, and try another port.
        for _ in 0..5 {
            if server.launch() {
                return server;
            }
            server.port = free_port();
        }
        panic!("redis-server found its port taken 5 times");
    }

    /// Starts the server on its port and waits until it answers; false when it exited (its port
    /// was taken).
    fn launch(&mut self) -> bool {
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
            // Whatever answers on the port is another test's server while ours has exited.
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if self.options.tls.is_some() {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return true;
                }
            } else if let Ok(info) = self.try_query(&["INFO", "server"]) {
                let ours = format!(
                    "process_id:{}\r\n",
                    self.child.as_ref().map_or(0, Child::id)
                );
                if redis::from_redis_value::<String>(info).is_ok_and(|info| info.contains(&ours)) {
                    return true;
                }
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
        assert!(self.launch(), "port {} was taken meanwhile", self.port);
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

/// A key prefix no other user of the shared Redis has in this test process, so tests sharing it
/// never see each other's keys. (A free port is no name: the kernel hands a released port out
/// again, and two fleets once shared their keys that way.)
pub fn fresh_prefix(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{stem}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
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

/// Passwords for [`Sentinels::start_with`].
#[derive(Default)]
pub struct SentinelPasswords {
    /// The sentinels' own (`requirepass`).
    pub sentinels: Option<String>,
    /// The master's, which the sentinels use (`sentinel auth-pass`).
    pub master: Option<String>,
}

/// `redis-sentinel`s watching one master under the name `shardman`.
pub struct Sentinels {
    children: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: Scratch,
    /// Their `requirepass`, if any.
    password: Option<String>,
}

impl Sentinels {
    pub const MASTER: &'static str = "shardman";

    /// `count` sentinels (a quorum of two) watching `127.0.0.1:<master_port>`; returns once the
    /// first one names that master.
    pub fn start(master_port: u16, count: usize) -> Self {
        Self::start_with(master_port, count, SentinelPasswords::default())
    }

    /// [`Sentinels::start`] with passwords: the sentinels' own, and the master's they use.
    pub fn start_with(master_port: u16, count: usize, passwords: SentinelPasswords) -> Self {
        let mut auth = String::new();
        if let Some(password) = &passwords.sentinels {
            auth.push_str(&format!("requirepass {password}\n"));
        }
        if let Some(password) = &passwords.master {
            auth.push_str(&format!("sentinel auth-pass {} {password}\n", Self::MASTER));
        }
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
                     sentinel parallel-syncs {name} 1\n{auth}",
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
            password: passwords.sentinels,
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
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |password| format!(":{password}@"));
        query_url(
            &format!("redis://{auth}127.0.0.1:{}", self.ports[index]),
            args,
        )
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

/// A Redis Cluster of `masters` masters with one replica each (`redis-server --cluster-enabled yes`
/// per node, joined by `redis-cli --cluster create --cluster-replicas 1`), every node on a free port
/// of 127.0.0.1 and killed when dropped. Nodes fail over fast (`cluster-node-timeout` 1 s) and a
/// master that is down leaves the other masters' slots served (`cluster-require-full-coverage no`),
/// and a replica always takes over from a dead master (`cluster-replica-validity-factor 0`).
pub struct RedisCluster {
    nodes: Vec<Option<Child>>,
    pub ports: Vec<u16>,
    _dir: Scratch,
}

impl RedisCluster {
    /// Node timeout: how long a master may be unreachable before its replica takes over.
    pub const NODE_TIMEOUT_MS: u64 = 1000;

    pub fn start(masters: usize) -> Self {
        let dir = Scratch::new("cluster");
        let ports: Vec<u16> = (0..masters * 2).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let node_dir = dir.0.join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                // The bus port defaults to port + 10000, which does not exist above 55535 (a free
                // port can be up to 60999) and may be taken: give it a free port of its own.
                .args(["--cluster-port", &free_port().to_string()])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", &Self::NODE_TIMEOUT_MS.to_string()])
                .args(["--cluster-require-full-coverage", "no"])
                // A replica takes over however long ago it last heard from its master (the
                // default refuses after ~10 node timeouts of an idle master).
                .args(["--cluster-replica-validity-factor", "0"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            die_with_parent(&mut command);
            nodes.push(Some(command.spawn().expect(
                "redis-server must be installed (scripts/test.sh installs it)",
            )));
        }
        let mut cluster = Self {
            nodes,
            ports,
            _dir: dir,
        };
        for port in cluster.ports.clone() {
            cluster.wait(
                |cluster| cluster.node_query(port, &["PING"]).is_ok(),
                &format!("node start on port {port}"),
            );
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli must be installed (scripts/test.sh installs redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait(Self::healthy, "cluster state ok on every node");
        cluster
    }

    /// `REDIS_CLUSTER`: every node as a seed.
    pub fn seeds(&self) -> String {
        self.ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_query(&self, port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
        query_url(&format!("redis://127.0.0.1:{port}"), args)
    }

    /// Every running node reports `cluster_state:ok` and sees every slot served by a live master
    /// with its replica attached.
    fn healthy(&self) -> bool {
        self.live_ports().iter().all(|port| {
            self.node_query(*port, &["CLUSTER", "INFO"])
                .ok()
                .and_then(|info| redis::from_redis_value::<String>(info).ok())
                .is_some_and(|info| info.contains("cluster_state:ok"))
        })
    }

    fn live_ports(&self) -> Vec<u16> {
        self.ports
            .iter()
            .zip(&self.nodes)
            .filter(|(_, node)| node.is_some())
            .map(|(port, _)| *port)
            .collect()
    }

    fn wait(&mut self, ready: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ready(self) {
                return;
            }
            self.fail_if_a_node_exited(what);
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Redis Cluster: {what} did not happen within 30 s");
    }

    /// A node that exited on its own (a port taken meanwhile, a bad option) will never answer:
    /// say so at once instead of waiting out the deadline.
    fn fail_if_a_node_exited(&mut self, what: &str) {
        for (port, node) in self.ports.iter().zip(&mut self.nodes) {
            if let Some(child) = node
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "Redis Cluster: node on port {port} exited ({status}) while waiting for {what}"
                );
            }
        }
    }

    /// Subscribers of `channel` over every live node.
    pub fn subscribers(&self, channel: &str) -> i64 {
        self.live_ports()
            .iter()
            .map(|port| self.node_subscribers(*port, channel))
            .sum()
    }

    /// Subscribers of `channel` on the node `port` (`PUBSUB NUMSUB` counts a node's own).
    pub fn node_subscribers(&self, port: u16, channel: &str) -> i64 {
        self.node_query(port, &["PUBSUB", "NUMSUB", channel])
            .ok()
            .and_then(|reply| redis::from_redis_value::<(String, i64)>(reply).ok())
            .map_or(0, |(_, count)| count)
    }

    /// The slot a key hashes to (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        let slot: i64 = redis::from_redis_value(
            self.node_query(port, &["CLUSTER", "KEYSLOT", key])
                .expect("CLUSTER KEYSLOT"),
        )
        .expect("slot");
        slot as u16
    }

    /// The port of the master serving `slot`, as a live node sees it (`CLUSTER SLOTS`).
    pub fn master_of_slot(&self, slot: u16) -> Option<u16> {
        for port in self.live_ports() {
            let Ok(reply) = self.node_query(port, &["CLUSTER", "SLOTS"]) else {
                continue;
            };
            let Ok(ranges) = redis::from_redis_value::<Vec<redis::Value>>(reply) else {
                continue;
            };
            for range in ranges {
                let Ok(fields) = redis::from_redis_value::<Vec<redis::Value>>(range) else {
                    continue;
                };
                let number = |value: &redis::Value| redis::from_redis_value::<i64>(value.clone());
                let (Some(Ok(start)), Some(Ok(end)), Some(master)) = (
                    fields.first().map(number),
                    fields.get(1).map(number),
                    fields.get(2),
                ) else {
                    continue;
                };
                if (start..=end).contains(&i64::from(slot)) {
                    let master: Vec<redis::Value> = redis::from_redis_value(master.clone()).ok()?;
                    return master
                        .get(1)
                        .and_then(|port| number(port).ok())
                        .map(|p| p as u16);
                }
            }
        }
        None
    }

    /// The masters' ports, one per slot range, in slot order.
    pub fn masters(&self) -> Vec<u16> {
        let mut masters = Vec::new();
        for slot in (0..16384u16).step_by(64) {
            if let Some(port) = self.master_of_slot(slot)
                && !masters.contains(&port)
            {
                masters.push(port);
            }
        }
        masters
    }

    /// A key prefix starting with `stem` whose hash tag (`{prefix}:`) lands on the master `port`,
    /// so tests can place bots on chosen masters.
    pub fn prefix_on(&self, port: u16, stem: &str) -> String {
        (0..10_000)
            .map(|index| format!("{stem}-{index}"))
            .find(|prefix| {
                self.master_of_slot(self.slot_of(&format!("{{{prefix}}}:"))) == Some(port)
            })
            .expect("some prefix lands on every master")
    }

    /// kill -9 of the node on `port`; returns once another node has taken over its slots (when it
    /// was a master) and the cluster is healthy again.
    pub fn kill(&mut self, port: u16) {
        let index = self
            .ports
            .iter()
            .position(|candidate| *candidate == port)
            .expect("a node of this cluster");
        kill(&mut self.nodes[index]);
    }

    /// Waits until `slot` is served by a master other than `old` and every live node says ok.
    pub fn wait_for_failover(&mut self, slot: u16, old: u16) -> u16 {
        self.wait(
            |cluster| {
                cluster.master_of_slot(slot).is_some_and(|port| port != old) && cluster.healthy()
            },
            "failover",
        );
        self.master_of_slot(slot).expect("new master")
    }

    /// Scripts run so far on the node `port` (EVAL and EVALSHA calls, from `INFO commandstats`).
    pub fn script_calls(&self, port: u16) -> u64 {
        let info: String = redis::from_redis_value(
            self.node_query(port, &["INFO", "commandstats"])
                .expect("INFO commandstats"),
        )
        .expect("info");
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
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill(node);
        }
    }
}
