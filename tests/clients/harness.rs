//! The example bots as real processes, and a deployment for them: the stand-in Discord, three
//! shardman replicas on the shared Redis, each behind a recording proxy, and bot processes handed
//! the replicas round-robin.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::discord::{self, Config, Discord, Dispatches, Event};
use crate::proxy::Proxy;
use crate::sockets::Processes;
use crate::support::process::{Scratch, die_with_parent, signal};
use crate::support::redis::{RedisServer, shared_redis};
use crate::support::replicas::{Deployment, Replica, SECRET};

/// Lease length of the test deployments: short, so hand-overs take seconds, and long enough that
/// a bot on a busy 2-core machine does not miss it.
pub const MAX_SECONDS: u64 = 5;
/// Identify buckets of the stand-in Discord.
pub const MAX_CONCURRENCY: u32 = 2;
/// The gateway's heartbeat interval (Discord's is 41.25 s against a default lease of 60 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(3000);
const REPLICAS: usize = 3;

/// Which example bot, and how the contract says to run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BotKind {
    Python,
    /// The same bot on the oldest discord.py and aiohttp the package allows (`.venv-oldest`).
    PythonOldest,
    /// The Python package's example bot on a fork of discord.py, each in its own venv.
    Disnake,
    Nextcord,
    Pycord,
    /// The hikari adapter of the Python package, in its own venv (`.venv-hikari`).
    Hikari,
    Js,
    /// The same JS package's Discordeno adapter (`clients/js/examples/discordeno-bot.js`).
    Discordeno,
    Rust,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// How the contract runs one example bot: one row per [`BotKind`].
struct BotSpec {
    name: &'static str,
    /// Under the repository root; a bare name is looked up on `PATH`.
    program: &'static str,
    /// Under the repository root.
    script: Option<&'static str>,
    /// What must be installed besides (under the repository root).
    needs: &'static [&'static str],
    /// `SHARDMAN_PY_LIBRARY`: the library the Python example imports (py-cord installs as
    /// `discord`).
    python_library: Option<&'static str>,
    /// Whether a claim that inherits resume data must RESUME (the contract leaves it to the
    /// discord.py family, which IDENTIFYs a handed-over shard).
    must_resume: bool,
    /// What scripts/test.sh installs for it, under clients/.
    installed_by: &'static str,
}

impl BotKind {
    /// Every example bot, for the benchmarks that name them (`PACING_BOTS`).
    pub const ALL: [BotKind; 9] = [
        Self::Python,
        Self::PythonOldest,
        Self::Disnake,
        Self::Nextcord,
        Self::Pycord,
        Self::Hikari,
        Self::Js,
        Self::Discordeno,
        Self::Rust,
    ];

    fn spec(self) -> BotSpec {
        let python = |name, venv: &'static str, library| BotSpec {
            name,
            program: venv,
            script: Some("clients/python/examples/bot.py"),
            needs: &[],
            python_library: Some(library),
            must_resume: false,
            installed_by: "python",
        };
        match self {
            Self::Python => python("python", "clients/python/.venv/bin/python", "discord"),
            Self::PythonOldest => python(
                "python-oldest",
                "clients/python/.venv-oldest/bin/python",
                "discord",
            ),
            Self::Disnake => python(
                "disnake",
                "clients/python/.venv-disnake/bin/python",
                "disnake",
            ),
            Self::Nextcord => python(
                "nextcord",
                "clients/python/.venv-nextcord/bin/python",
                "nextcord",
            ),
            Self::Pycord => python(
                "pycord",
                "clients/python/.venv-pycord/bin/python",
                "discord",
            ),
            Self::Hikari => BotSpec {
                name: "hikari",
                program: "clients/python/.venv-hikari/bin/python",
                script: Some("clients/python/examples/hikari_bot.py"),
                needs: &[],
                python_library: None,
                must_resume: true,
                installed_by: "python (.venv-hikari)",
            },
            Self::Js => BotSpec {
                name: "js",
                program: "node",
                script: Some("clients/js/examples/bot.js"),
                needs: &["clients/js/node_modules"],
                python_library: None,
                must_resume: true,
                installed_by: "js",
            },
            Self::Discordeno => BotSpec {
                name: "discordeno",
                program: "node",
                script: Some("clients/js/examples/discordeno-bot.js"),
                needs: &["clients/js/node_modules/@discordeno/gateway"],
                python_library: None,
                must_resume: true,
                installed_by: "js",
            },
            Self::Rust => BotSpec {
                name: "rust",
                program: "clients/rust/target/debug/examples/bot",
                script: None,
                needs: &[],
                python_library: None,
                must_resume: true,
                installed_by: "rust",
            },
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Whether a claim that inherits resume data must RESUME (the contract leaves it to Python).
    pub fn must_resume(self) -> bool {
        self.spec().must_resume
    }

    /// The library the Python example imports (`SHARDMAN_PY_LIBRARY`), for the discord.py family.
    fn python_library(self) -> Option<&'static str> {
        self.spec().python_library
    }

    /// The command line of the contract; panics with what to do when the package is not installed.
    fn command(self) -> Command {
        let spec = self.spec();
        let program = if spec.program.contains('/') {
            root().join(spec.program)
        } else {
            PathBuf::from(spec.program)
        };
        let args: Vec<PathBuf> = spec
            .script
            .map(|script| root().join(script))
            .into_iter()
            .collect();
        let needs = spec.needs.iter().map(|need| root().join(need));
        let missing: Vec<String> = std::iter::once(program.clone())
            .filter(|path| path.is_absolute())
            .chain(args.iter().cloned())
            .chain(needs)
            .filter(|path| !path.exists())
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "the {} example bot is not installed (missing {}): scripts/test.sh installs clients/{}",
            spec.name,
            missing.join(", "),
            spec.installed_by
        );
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

/// Scenarios running at once, at most. libtest runs one test per thread and as many threads as
/// cores (2 on CI), so this bounds bigger machines: each scenario runs up to 16 bot processes and
/// three replicas. Most of a scenario is waiting (identify pacing, leases), so two or three
/// overlap without slowing each other down; a per-kind lock would leave a libtest thread blocked
/// whenever the next test in name order is of the same kind, running the suite nearly serially.
const AT_ONCE: usize = 3;

/// A place among the `AT_ONCE` running scenarios, given back when dropped.
pub struct Slot;

static SLOTS_TAKEN: Mutex<usize> = Mutex::new(0);
static SLOT_FREED: Condvar = Condvar::new();

pub fn scenario_slot() -> Slot {
    let mut taken = SLOTS_TAKEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    while *taken >= AT_ONCE {
        taken = SLOT_FREED
            .wait(taken)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    *taken += 1;
    Slot
}

impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS_TAKEN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
        SLOT_FREED.notify_one();
    }
}

/// What a bot printed on stdout, with the time each line arrived.
#[derive(Default)]
struct Output {
    events: Vec<(Instant, Value)>,
    /// Lines that were not JSON objects (the contract allows none).
    stray: Vec<String>,
}

/// One example bot process.
pub struct Bot {
    child: Option<Child>,
    pub pid: u32,
    output: Arc<Mutex<Output>>,
    exit: Option<ExitStatus>,
    dir: Scratch,
}

impl Bot {
    fn spawn(kind: BotKind, shardman_url: &str, api_base: &str) -> Self {
        let dir = Scratch::new("bot");
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).expect("log file");
        let mut command = kind.command();
        command
            .current_dir(root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("SHARDMAN_URL", shardman_url)
            .env("SHARDMAN_SECRET", SECRET)
            .env("DISCORD_TOKEN", discord::TOKEN)
            .env("DISCORD_API_BASE", api_base)
            .env("PYTHONUNBUFFERED", "1")
            .envs(
                kind.python_library()
                    .map(|library| ("SHARDMAN_PY_LIBRARY", library)),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        die_with_parent(&mut command);
        let mut child = command.spawn().expect("start the example bot");
        let stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(Output::default()));
        let sink = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut output = sink.lock().expect("output");
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.is_object() => output.events.push((Instant::now(), value)),
                    _ => output.stray.push(line),
                }
            }
        });
        Self {
            pid: child.id(),
            child: Some(child),
            output,
            exit: None,
            dir,
        }
    }

    pub fn events(&self) -> Vec<(Instant, Value)> {
        self.output.lock().expect("output").events.clone()
    }

    pub fn stray_stdout(&self) -> Vec<String> {
        self.output.lock().expect("output").stray.clone()
    }

    pub fn events_named(&self, name: &str) -> Vec<(Instant, Value)> {
        self.events()
            .into_iter()
            .filter(|(_, event)| event["event"] == name)
            .collect()
    }

    /// The shard ids of its claim now, by its own account (the last line is a "claimed").
    pub fn holds(&self) -> Option<(Vec<u32>, u32)> {
        let events = self.events();
        let (_, last) = events.last()?;
        (last["event"] == "claimed").then(|| {
            let ids = last["shard_ids"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|id| id as u32)
                .collect();
            (ids, last["shard_count"].as_u64().unwrap_or(0) as u32)
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("running bot")
    }

    pub fn kill9(&mut self) {
        crate::support::process::kill(&mut self.child);
    }

    pub fn sigstop(&self) {
        signal(self.child(), libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        signal(self.child(), libc::SIGCONT);
    }

    /// What Kubernetes sends a pod it stops.
    pub fn sigterm(&self) {
        signal(self.child(), libc::SIGTERM);
    }

    /// Its exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.as_mut()?.try_wait().ok().flatten();
        }
        self.exit
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        crate::support::process::kill(&mut self.child);
    }
}

/// `SHARDS_PER_PROCESS`: fixed groups of this many shards, or `auto` (one shard a session,
/// placed by load).
#[derive(Clone, Copy, Debug)]
pub enum ShardsPerProcess {
    Fixed(u32),
    Auto,
}

impl std::fmt::Display for ShardsPerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(size) => write!(f, "{size}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Placement's settings in a fleet placed by load ([`Setup::by_load`]), short so a test sees a
/// fleet sized and balanced within seconds: (variable, value).
pub const BY_LOAD: &[(&str, &str)] = &[
    ("AUTOSCALE_INTERVAL", "1"),
    // Each evaluation answers the load it sees: the tests check the rule, not its patience.
    ("SCALE_IN_AFTER", "0"),
    ("PLACEMENT_INTERVAL", "1"),
    // Long enough that a moved shard has a rate again (two beats) before it may move on.
    ("MOVE_SETTLE", "10"),
    // MAX_MOVES stays at its default (4): placement counts a shard marked to move at its target,
    // so moves under way are not planned again (before, more than one overshot and ping-ponged).
];

/// The lease of a fleet placed by load. A rate spans a beat interval (`MAX_SECONDS / 3`): over
/// 1.7 s a bot starved by a busy machine reads 20 % behind and then as far ahead; over 5 s that
/// evens out.
pub const BY_LOAD_MAX_SECONDS: u64 = 3 * MAX_SECONDS;

/// What a fleet runs on.
#[derive(Clone)]
pub struct Setup {
    /// `MAX_SHARDS` (and Discord's recommended count).
    pub max_shards: u32,
    pub shards_per_process: ShardsPerProcess,
    /// Discord's identify buckets.
    pub max_concurrency: u32,
    /// A Redis of the fleet's own (one a test may restart) instead of the shared one.
    pub own_redis: bool,
    /// `MAX_SECONDS`, the lease.
    pub max_seconds: u64,
    /// Further variables of the replicas (e.g. `SECRET_PREVIOUS`).
    pub variables: Vec<(String, String)>,
    /// The stand-in Discord's dispatch rate per shard.
    pub dispatches: Dispatches,
}

impl Setup {
    pub fn new(max_shards: u32, shards_per_process: u32) -> Self {
        Self {
            max_shards,
            shards_per_process: ShardsPerProcess::Fixed(shards_per_process),
            max_concurrency: MAX_CONCURRENCY,
            own_redis: false,
            max_seconds: MAX_SECONDS,
            variables: Vec::new(),
            dispatches: Dispatches::every(discord::DISPATCH_EVERY),
        }
    }

    /// `SHARDS_PER_PROCESS=auto` with `LOAD_TARGET` and the [`BY_LOAD`] settings, the stand-in
    /// sending `dispatches`.
    pub fn by_load(max_shards: u32, load_target: f64, dispatches: Dispatches) -> Self {
        let mut variables: Vec<(String, String)> = BY_LOAD
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        variables.push(("LOAD_TARGET".into(), load_target.to_string()));
        Self {
            shards_per_process: ShardsPerProcess::Auto,
            max_seconds: BY_LOAD_MAX_SECONDS,
            variables,
            dispatches,
            ..Self::new(max_shards, 1)
        }
    }
}

/// `GET /status`, the parts the load tests read.
#[derive(Clone, Debug, Deserialize)]
pub struct Status {
    pub shards: Vec<ShardStatus>,
    pub processes: Vec<ProcessStatus>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ShardStatus {
    pub shard_id: u32,
    pub events_per_second: Option<f64>,
    /// Its holder's process label.
    pub process: Option<String>,
    /// The process it is being moved to.
    #[serde(default)]
    pub moving_to: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ProcessStatus {
    /// Its label (`None`: a session without one).
    pub process: Option<String>,
    pub shard_ids: Vec<u32>,
}

/// `GET /autoscale`, the parts the load tests read.
#[derive(Clone, Debug, Deserialize)]
pub struct Autoscale {
    pub desired_processes: u32,
    /// Present with a target.
    pub load: Option<AutoscaleLoad>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AutoscaleLoad {
    pub events_per_second: f64,
}

/// A deployment of one bot kind: Discord, replicas behind proxies, bots.
pub struct Fleet {
    pub kind: BotKind,
    pub max_concurrency: u32,
    pub discord: Discord,
    pub replicas: Vec<Replica>,
    pub proxies: Vec<Proxy>,
    pub bots: Vec<Bot>,
    processes: Processes,
    pub started: Instant,
    /// The replicas' settings, for a rolling restart with other ones.
    deployment: Deployment,
    /// The fleet's own Redis, when its setup asked for one (declared last: dropped after the
    /// processes that use it).
    pub redis: Option<RedisServer>,
}

impl Fleet {
    /// Starts the stand-in Discord and three replicas planning `max_shards` shards in groups of
    /// `shards_per_process`, and waits until shardman has read Discord's gateway info (so every
    /// `/connect` answers `gateway_url` and books slots in Discord's buckets).
    pub fn start(kind: BotKind, max_shards: u32, shards_per_process: u32) -> Self {
        Self::start_with(kind, Setup::new(max_shards, shards_per_process))
    }

    pub fn start_with(kind: BotKind, setup: Setup) -> Self {
        let processes = Processes::default();
        let discord = Discord::start(
            Config::new(setup.max_concurrency, HEARTBEAT_INTERVAL, setup.max_shards)
                .dispatches(setup.dispatches.clone()),
            processes.clone(),
        );
        let redis = setup.own_redis.then(RedisServer::start);
        let redis_url = redis
            .as_ref()
            .map_or_else(|| shared_redis().url(), RedisServer::url);
        let deployment = Deployment::new(&redis_url, setup.max_seconds, setup.max_shards)
            .set("SHARDS_PER_PROCESS", &setup.shards_per_process.to_string())
            .set("BOT_TOKEN", discord::TOKEN)
            .set("DISCORD_API_BASE", &discord.api_base())
            // Redis faults are the fault suite's; here a Redis slowed by a busy machine must not
            // turn beats into 503s and cost a bot its shard.
            .set("REDIS_TIMEOUT_MS", "2000");
        let deployment = setup
            .variables
            .iter()
            .fold(deployment, |deployment, (name, value)| {
                deployment.set(name, value)
            });
        let replicas = deployment.start_many(REPLICAS);
        let proxies = replicas
            .iter()
            .map(|replica| Proxy::start(replica.url(), processes.clone()))
            .collect();
        let fleet = Self {
            kind,
            max_concurrency: setup.max_concurrency,
            redis,
            discord,
            replicas,
            proxies,
            bots: Vec::new(),
            processes,
            started: Instant::now(),
            deployment,
        };
        fleet.wait_for(
            "shardman to read /gateway/bot",
            Duration::from_secs(15),
            |fleet| {
                fleet.replicas.iter().all(|replica| {
                    http(replica.port, "GET", "/metrics", None).is_some_and(|(_, body)| {
                        // `name{bot="..."} value`: the series carries its bot's label.
                        body.lines().any(|line| {
                            line.rsplit_once(' ').is_some_and(|(series, value)| {
                                series.split('{').next()
                                    == Some("shardman_identify_max_concurrency")
                                    && value == fleet.max_concurrency.to_string()
                            })
                        })
                    })
                })
            },
        );
        fleet
    }

    /// `GET <path>` of the first replica that answers 200, parsed; `None` when none does.
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Option<T> {
        self.replicas.iter().find_map(|replica| {
            let (status, body) = http(replica.port, "GET", path, None)?;
            if status != 200 {
                return None;
            }
            Some(
                serde_json::from_str(&body)
                    .unwrap_or_else(|error| panic!("{path} answered {body}: {error}")),
            )
        })
    }

    pub fn status(&self) -> Option<Status> {
        self.get("/status")
    }

    pub fn autoscale(&self) -> Option<Autoscale> {
        self.get("/autoscale")
    }

    /// The bot whose process label (`<host>:<pid>`) this is.
    pub fn bot_labelled(&self, label: &str) -> Option<usize> {
        let pid: u32 = label.rsplit_once(':')?.1.parse().ok()?;
        self.bots.iter().position(|bot| bot.pid == pid)
    }

    /// The deployment's key prefix.
    pub fn key_prefix(&self) -> String {
        self.deployment
            .env
            .iter()
            .find(|(name, _)| name == "KEY_PREFIX")
            .map(|(_, value)| value.clone())
            .expect("KEY_PREFIX")
    }

    /// A rolling restart with these variables set (an empty value unsets one): replica by replica,
    /// a successor starts and is ready, its proxy sends it the requests from then on, and once
    /// the requests under way have had time to finish the replica it replaces is stopped.
    pub fn roll(&mut self, variables: &[(&str, &str)]) {
        self.deployment = variables
            .iter()
            .fold(self.deployment.clone(), |deployment, (name, value)| {
                deployment.set(name, value)
            });
        for index in 0..self.replicas.len() {
            // `start` returns once the successor answers /readyz 200: it is the deployment's.
            let successor = self.deployment.start();
            self.proxies[index].retarget(successor.url());
            std::thread::sleep(Duration::from_millis(500));
            drop(std::mem::replace(&mut self.replicas[index], successor));
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Starts `count` more bots, each on the next replica (round-robin).
    pub fn spawn_bots(&mut self, count: usize) {
        self.spawn_bots_apart(count, Duration::ZERO);
    }

    /// Starts `count` more bots `apart` from each other.
    pub fn spawn_bots_apart(&mut self, count: usize, apart: Duration) {
        for index in 0..count {
            if index > 0 {
                std::thread::sleep(apart);
            }
            let proxy = &self.proxies[self.bots.len() % self.proxies.len()];
            let bot = Bot::spawn(self.kind, &proxy.url(), &self.discord.api_base());
            self.processes.add(bot.pid);
            self.bots.push(bot);
        }
    }

    /// Waits until `done` holds, or fails with the gateway's records and the bots' logs.
    pub fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Fleet) -> bool) {
        let deadline = Instant::now() + within;
        while !done(self) {
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {within:?} waiting for {what}\n{}",
                    self.kind.name(),
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every proxied request, all replicas.
    pub fn exchanges(&self) -> Vec<crate::proxy::Exchange> {
        let mut all: Vec<_> = self.proxies.iter().flat_map(Proxy::exchanges).collect();
        all.sort_by_key(|exchange| exchange.at);
        all
    }

    /// The bot whose claim includes shard `id` of `count`, by its own account.
    pub fn holder_of(&self, id: u32, count: u32) -> Option<usize> {
        self.bots.iter().position(|bot| {
            bot.holds()
                .is_some_and(|(ids, held_count)| held_count == count && ids.contains(&id))
        })
    }

    /// The slot shardman gave `pid` for shard `id` last before `before`.
    fn slot_of(&self, pid: Option<u32>, id: u32, before: Instant) -> Option<Instant> {
        self.exchanges()
            .into_iter()
            .filter(|exchange| exchange.pid == pid && exchange.at <= before)
            .flat_map(|exchange| exchange.slots)
            .filter(|(shard, _)| shard.is_none_or(|shard| shard == id))
            .map(|(_, slot)| slot)
            .next_back()
    }

    /// For each IDENTIFY too early: its slot, and the bucket's previous IDENTIFY and that one's
    /// slot (how late it came).
    pub fn explain_too_early(&self) -> String {
        let records = self.discord.records();
        let ms = |at: Instant| at.saturating_duration_since(self.started).as_millis();
        let slot_text = |slot: Option<Instant>, at: Instant| match slot {
            Some(slot) if slot <= at => {
                format!(
                    "its slot {} ms, {} ms late",
                    ms(slot),
                    (at - slot).as_millis()
                )
            }
            Some(slot) => format!(
                "its slot {} ms, {} ms EARLY",
                ms(slot),
                (slot - at).as_millis()
            ),
            None => "no slot seen".into(),
        };
        let mut text = String::new();
        for early in records
            .iter()
            .filter(|record| record.event == Event::Identify { too_early: true })
        {
            let Some(shard) = early.shard else { continue };
            let bucket = shard.id % self.max_concurrency;
            let previous = records.iter().rev().find(|record| {
                record.at < early.at
                    && record.event == Event::Identify { too_early: false }
                    && record
                        .shard
                        .is_some_and(|other| other.id % self.max_concurrency == bucket)
            });
            text.push_str(&format!(
                "IDENTIFY of {shard} at {} ms ({})",
                ms(early.at),
                slot_text(self.slot_of(early.pid, shard.id, early.at), early.at)
            ));
            if let Some(previous) = previous {
                let other = previous.shard.expect("shard");
                text.push_str(&format!(
                    " came {} ms after the IDENTIFY of {other} in bucket {bucket} at {} ms ({})",
                    (early.at - previous.at).as_millis(),
                    ms(previous.at),
                    slot_text(
                        self.slot_of(previous.pid, other.id, previous.at),
                        previous.at
                    )
                ));
            }
            text.push('\n');
        }
        text
    }

    /// What to look at when a scenario fails: the gateway's records, the IDENTIFY slots shardman
    /// gave, each bot's output and log.
    pub fn report(&self) -> String {
        let mut text = format!("gateway records:\n{}\n", self.discord.dump(self.started));
        text.push_str("identify slots shardman handed out (shard: slot time):\n");
        for exchange in self.exchanges() {
            for (shard, slot) in &exchange.slots {
                text.push_str(&format!(
                    "  {} ms: {} to pid {:?}: shard {} at {} ms\n",
                    exchange
                        .at
                        .saturating_duration_since(self.started)
                        .as_millis(),
                    exchange.path,
                    exchange.pid,
                    shard.map_or("first".into(), |id| id.to_string()),
                    slot.saturating_duration_since(self.started).as_millis()
                ));
            }
        }
        for bot in &self.bots {
            text.push_str(&format!(
                "--- bot pid {} stdout: {:?}\nstray stdout: {:?}\nstderr (last 3000 bytes):\n{}\n",
                bot.pid,
                bot.events()
                    .iter()
                    .map(|(at, event)| format!(
                        "{} ms {event}",
                        at.saturating_duration_since(self.started).as_millis()
                    ))
                    .collect::<Vec<_>>(),
                bot.stray_stdout(),
                tail(&bot.log(), 3000)
            ));
        }
        for replica in &self.replicas {
            text.push_str(&format!(
                "--- replica {} log:\n{}\n",
                replica.port,
                tail(&replica.log(), 2000)
            ));
        }
        text
    }
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A bare HTTP/1.1 request to a replica with the secret: (status, body).
pub fn http(port: u16, method: &str, path: &str, json: Option<&Value>) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = json.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    // Chunked bodies are rare here (/metrics is one block); keep the text either way.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut text = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        text.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    text
}
