//! The Redis Cluster engine (`REDIS_CLUSTER`): the `redis` crate's cluster client, which follows
//! `MOVED` / `ASK`, slot migrations and failovers, with the same guarantees as the single-node
//! engine: every round trip bounded by `REDIS_TIMEOUT_MS` (503 past it), NOSCRIPT recovery on the
//! node that answered, and a new epoch with a quarantine when the master of the bot's slot changes.
//!
//! Every key of one bot carries the hash tag `{KEY_PREFIX}`, so all of them live in one slot and
//! each script runs on one node. Everything this engine sends, keyless commands (`TIME`, `INFO`,
//! `PUBLISH`) included, goes to the master of that slot; only the wake-up subscription
//! (`store/wakeups.rs`) connects to a seed of its own, since a classic `PUBLISH` reaches every node.
//!
//! **Master moves.** Replication is asynchronous: a replica promoted after its master died may
//! lack writes the master acknowledged (a grant, say). Each script call is pipelined behind
//! `CLUSTER MYID` on the same connection, so the reply names the node that ran the script. When
//! that is not the master seen before, the call answers 503 (the bot retries) and the move is
//! counted; the store then starts a new epoch with a quarantine before anything else runs, as
//! after a Sentinel failover. No write on an unchecked master is ever acknowledged to a client:
//! a grant made there is never handed out, and expires with its lease.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value};
use tokio::sync::OnceCell;

use super::errors::classify;
use crate::store::StoreError;
use crate::store::scripts::LuaScript;

/// The cluster connection of one replica: made on first use, shared by every bot it serves
/// (cloning a cluster connection shares its node connections).
pub(in crate::store) struct ClusterLink {
    client: ClusterClient,
    /// Each seed's client, for subscriptions (a classic `PUBLISH` reaches every node).
    seeds: Vec<redis::Client>,
    connection: OnceCell<ClusterConnection>,
    timeout: Duration,
}

/// The links of this process, by seeds and timeout: the bots of one replica (`BOTS_FILE`) share
/// one cluster connection instead of opening one each to every node.
static LINKS: Mutex<Vec<KnownLink>> = Mutex::new(Vec::new());

/// A link of [`LINKS`]: its seeds, its timeout in ms, and the link while a store holds it.
type KnownLink = (Vec<String>, u64, Weak<ClusterLink>);

impl ClusterLink {
    /// The link of this process to the cluster of `seeds`, made by [`ClusterLink::new`] if no
    /// store holds one now.
    pub(in crate::store) fn shared(
        seeds: &[String],
        timeout_ms: u64,
    ) -> Result<Arc<Self>, StoreError> {
        let mut links = LINKS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        links.retain(|(_, _, link)| link.strong_count() > 0);
        if let Some(link) = links
            .iter()
            .find(|(known, timeout, _)| known == seeds && *timeout == timeout_ms)
            .and_then(|(_, _, link)| link.upgrade())
        {
            return Ok(link);
        }
        let link = Arc::new(Self::new(seeds, timeout_ms)?);
        links.push((seeds.to_vec(), timeout_ms, Arc::downgrade(&link)));
        Ok(link)
    }

    /// A link to the cluster that `seeds` (`REDIS_CLUSTER` entries) belong to; nothing is connected
    /// yet. A bare `host:port` takes the scheme and credentials of the first entry written as a URL
    /// (`rediss://:password@host:port`), so password and TLS are given once.
    fn new(seeds: &[String], timeout_ms: u64) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(timeout_ms);
        let urls = seed_urls(seeds);
        if urls.is_empty() {
            return Err(StoreError::Internal("REDIS_CLUSTER names no node".into()));
        }
        // Fails here on a malformed URL or mismatched credentials; connects on first use.
        let client = ClusterClientBuilder::new(urls.clone())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_CLUSTER: {error}")))?;
        let seeds = urls
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|error| StoreError::Internal(format!("invalid REDIS_CLUSTER: {error}")))?;
        Ok(Self {
            client,
            seeds,
            connection: OnceCell::new(),
            timeout,
        })
    }

    /// The shared connection, made (bounded by the timeout) when first needed.
    async fn connection(&self) -> Result<ClusterConnection, StoreError> {
        self.connection
            .get_or_try_init(|| async {
                self.client.get_async_connection().await.map_err(classify)
            })
            .await
            .cloned()
    }
}

/// Seed entries as URLs: `host:port` gets the scheme and credentials of the first URL entry (or
/// `redis://`).
fn seed_urls(seeds: &[String]) -> Vec<String> {
    let template = seeds
        .iter()
        .find_map(|seed| {
            let (scheme, rest) = seed.split_once("://")?;
            let credentials = rest.rsplit_once('@').map(|(user, _)| format!("{user}@"));
            Some(format!("{scheme}://{}", credentials.unwrap_or_default()))
        })
        .unwrap_or_else(|| "redis://".to_owned());
    seeds
        .iter()
        .map(|seed| {
            if seed.contains("://") {
                seed.clone()
            } else {
                format!("{template}{seed}")
            }
        })
        .collect()
}

/// One bot's view of the cluster: its slot, and the master last seen serving it.
pub(in crate::store) struct ClusterEngine {
    link: Arc<ClusterLink>,
    /// The master of the bot's slot (the slot of its hash tag).
    route: Route,
    /// `CLUSTER MYID` of the node that last ran one of this bot's scripts.
    master: Mutex<Option<String>>,
    /// How many times that node has changed since this engine started.
    moves: AtomicU64,
    /// Subscriptions made so far: each starts at the next seed.
    subscriptions: AtomicUsize,
}

impl ClusterEngine {
    /// A subscription to `channel` on the first seed that answers (a classic `PUBLISH` reaches
    /// every node, so any will do), starting one seed further on each time: a seed that answers
    /// but no longer hears the cluster is left for the next.
    pub(in crate::store) async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<super::Subscription, StoreError> {
        let seeds = &self.link.seeds;
        let first = self.subscriptions.fetch_add(1, Ordering::Relaxed);
        let mut last = StoreError::Unavailable("REDIS_CLUSTER names no node".into());
        for offset in 0..seeds.len() {
            let seed = &seeds[(first + offset) % seeds.len()];
            match super::Subscription::open(seed, channel, self.link.timeout).await {
                Ok(subscription) => return Ok(subscription),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// The engine of the bot whose keys start with `key_base` (`{prefix}:`).
    pub(in crate::store) fn new(link: Arc<ClusterLink>, key_base: &str) -> Self {
        Self {
            link,
            route: Route::with_key(key_base, SlotAddr::Master),
            master: Mutex::new(None),
            moves: AtomicU64::new(0),
            subscriptions: AtomicUsize::new(0),
        }
    }

    /// How many times the master of this bot's slot has changed (a failover, or the slot moved):
    /// the store treats each like a possible data loss.
    pub(in crate::store) fn master_moves(&self) -> u64 {
        self.moves.load(Ordering::SeqCst)
    }

    fn node(&self) -> SingleNodeRoutingInfo {
        SingleNodeRoutingInfo::SpecificNode(self.route)
    }

    /// SCRIPT LOAD on the bot's master: a broken script fails startup.
    pub(in crate::store) async fn load(&self, script: &LuaScript) -> Result<(), StoreError> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(script.source);
        self.send(load).await.map(|_| ())
    }

    /// EVALSHA on the bot's master, behind `CLUSTER MYID` (see the module's documentation); a
    /// NOSCRIPT (SCRIPT FLUSH, a restart, a promoted replica) loads the script there and retries.
    pub(in crate::store) async fn eval(
        &self,
        script: &LuaScript,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(script.sha.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        self.bounded(async {
            let mut connection = self.link.connection().await?;
            let mut loaded = false;
            loop {
                let mut pipeline = redis::pipe();
                pipeline
                    .cmd("CLUSTER")
                    .arg("MYID")
                    .add_command(evalsha.clone());
                let replies = connection
                    .route_pipeline(pipeline, 0, 2, self.node())
                    .await
                    .map_err(classify)?;
                let [node, reply]: [Value; 2] = replies
                    .try_into()
                    .map_err(|replies| unexpected_reply("EVALSHA", &replies))?;
                self.check_master(&node)?;
                match reply {
                    Value::ServerError(error) if !loaded && error.code() == "NOSCRIPT" => {
                        let mut load = redis::cmd("SCRIPT");
                        load.arg("LOAD").arg(script.source);
                        connection
                            .route_command(
                                load,
                                redis::cluster_routing::RoutingInfo::SingleNode(self.node()),
                            )
                            .await
                            .map_err(classify)?;
                        loaded = true;
                    }
                    Value::ServerError(error) => {
                        return Err(classify(redis::RedisError::from(error)));
                    }
                    reply => return Ok(reply),
                }
            }
        })
        .await
    }

    /// A plain command, on the bot's master whatever its keys.
    pub(in crate::store) async fn command(&self, args: &[&str]) -> Result<Value, StoreError> {
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        self.send(command).await
    }

    async fn send(&self, command: Cmd) -> Result<Value, StoreError> {
        self.bounded(async {
            let mut connection = self.link.connection().await?;
            connection
                .route_command(
                    command,
                    redis::cluster_routing::RoutingInfo::SingleNode(self.node()),
                )
                .await
                .map_err(classify)
        })
        .await
    }

    /// Records the node that ran a script; a different one than before is a master move, and the
    /// call answers 503 so that nothing it did is acknowledged before the store has reacted.
    fn check_master(&self, node: &Value) -> Result<(), StoreError> {
        let Some(node) = crate::store::scripts::reply::text(node) else {
            return Err(unexpected_reply("CLUSTER MYID", node));
        };
        let mut master = self
            .master
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match master.replace(node.clone()) {
            Some(previous) if previous != node => {
                self.moves.fetch_add(1, Ordering::SeqCst);
                log::warn!(
                    "Redis Cluster: the master of slot {} changed (node {previous} -> {node})",
                    self.route_slot()
                );
                Err(StoreError::Unavailable(
                    "the master of this bot's Redis Cluster slot changed".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn route_slot(&self) -> String {
        format!("{:?}", self.route)
    }

    /// One deadline for the whole round trip, connecting and the client's own retries included.
    async fn bounded<T>(
        &self,
        request: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.link.timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "Redis Cluster did not answer in time".into(),
                ))
            })
    }
}

fn unexpected_reply(command: &str, reply: &impl std::fmt::Debug) -> StoreError {
    StoreError::Internal(format!("unexpected reply to {command}: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_seeds_take_the_scheme_and_credentials_of_the_first_url() {
        let seeds = [
            "10.0.0.1:6379".to_owned(),
            "rediss://user:pw@10.0.0.2:6379".to_owned(),
            "10.0.0.3:6380".to_owned(),
        ];
        assert_eq!(
            seed_urls(&seeds),
            [
                "rediss://user:pw@10.0.0.1:6379",
                "rediss://user:pw@10.0.0.2:6379",
                "rediss://user:pw@10.0.0.3:6380"
            ]
        );
        assert_eq!(
            seed_urls(&["127.0.0.1:7000".to_owned()]),
            ["redis://127.0.0.1:7000"]
        );
    }

    /// Commands the scripts may run whose only key is their first argument; any other command
    /// must be added here once checked (a second key could lie in another slot).
    const ONE_KEY_COMMANDS: &[&str] = &[
        "DEL",
        "EXISTS",
        "GET",
        "GETDEL",
        "HDEL",
        "HGET",
        "HGETALL",
        "HINCRBY",
        "HMGET",
        "HSET",
        "HSETNX",
        "INCR",
        "LPUSH",
        "LRANGE",
        "LTRIM",
        "PEXPIRE",
        "PTTL",
        "RPOP",
        "SADD",
        "SCARD",
        "SET",
        "SMEMBERS",
        "SREM",
        "ZADD",
        "ZCARD",
        "ZPOPMIN",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZRANK",
        "ZREM",
        "ZSCORE",
    ];
    const KEYLESS_COMMANDS: &[&str] = &["TIME"];

    /// The argument list of the call whose `(` ends `source[..open]`, split at top-level commas.
    fn arguments(source: &str, open: usize) -> Vec<String> {
        let mut depth = 0;
        let mut current = String::new();
        let mut arguments = Vec::new();
        let mut quote = None;
        for c in source[open..].chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        arguments.push(current.trim().to_owned());
                        return arguments;
                    }
                }
                (None, ',') if depth == 1 => {
                    arguments.push(current.trim().to_owned());
                    current.clear();
                    continue;
                }
                _ => {}
            }
            if depth >= 1 && !(depth == 1 && c == '(' && current.is_empty() && arguments.is_empty())
            {
                current.push(c);
            }
        }
        arguments
    }

    fn is_identifier(text: &str) -> bool {
        !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// Whether the Lua expression `expression` is a key of the bot's slot: one of `KEYS`, or built
    /// by `key` / `gen_key` (which prefix the base, ARGV[1]), or a local or parameter bound only to
    /// such expressions.
    /// `checking`: the identifiers whose bindings are being checked further up; one met again
    /// adds nothing (its other bindings decide).
    fn is_bot_key<'a>(source: &str, expression: &'a str, checking: &mut Vec<&'a str>) -> bool {
        let expression = expression.trim();
        if checking.contains(&expression) {
            return true;
        }
        if let Some(index) = expression
            .strip_prefix("KEYS[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            return index.parse::<u32>().is_ok();
        }
        if expression.starts_with("key(") || expression.starts_with("gen_key(") {
            return true;
        }
        if !is_identifier(expression) {
            return false;
        }
        let assignments: Vec<&str> = source
            .match_indices(&format!("local {expression} = "))
            .map(|(at, found)| {
                source[at + found.len()..]
                    .lines()
                    .next()
                    .unwrap_or_default()
            })
            .collect();
        let parameters: Vec<(&str, usize)> = source
            .match_indices("local function ")
            .filter_map(|(at, found)| {
                let header = source[at + found.len()..].lines().next()?;
                let (name, rest) = header.split_once('(')?;
                let params = rest.split_once(')')?.0;
                let position = params
                    .split(',')
                    .map(str::trim)
                    .position(|p| p == expression)?;
                Some((name.trim(), position))
            })
            .collect();
        if assignments.is_empty() && parameters.is_empty() {
            return false;
        }
        checking.push(expression);
        let bound = assignments
            .iter()
            .all(|assigned| is_bot_key(source, assigned, &mut checking.clone()))
            && parameters.iter().all(|(function, position)| {
                source
                    .match_indices(&format!("{function}("))
                    .filter(|(at, _)| !source[..*at].ends_with("function "))
                    .all(|(at, found)| {
                        arguments(source, at + found.len() - 1)
                            .get(*position)
                            .is_some_and(|argument| {
                                is_bot_key(source, argument, &mut checking.clone())
                            })
                    })
            });
        checking.pop();
        bound
    }

    /// Every `redis.call` / `redis.pcall` of `source` whose key is not the bot's, as text.
    fn foreign_keys(source: &str) -> Vec<String> {
        let mut foreign = Vec::new();
        for pattern in ["redis.call(", "redis.pcall("] {
            for (at, found) in source.match_indices(pattern) {
                let arguments = arguments(source, at + found.len() - 1);
                let command = arguments
                    .first()
                    .map(|name| name.trim_matches(['\'', '"']).to_ascii_uppercase())
                    .unwrap_or_default();
                if KEYLESS_COMMANDS.contains(&command.as_str()) {
                    continue;
                }
                let valid = ONE_KEY_COMMANDS.contains(&command.as_str())
                    && arguments
                        .get(1)
                        .is_some_and(|key| is_bot_key(source, key, &mut Vec::new()));
                if !valid {
                    foreign.push(arguments.join(", "));
                }
            }
        }
        foreign
    }

    /// Each script runs on the node of the slot of its first key; a key of another slot would fail
    /// there (Redis refuses non-local keys in a cluster), so every key must be the bot's.
    #[test]
    fn every_key_a_script_touches_is_declared_in_keys_or_derived_from_the_bots_base() {
        for script in &crate::store::scripts::every_script() {
            assert!(
                script.source.contains("local base = ARGV[1]")
                    && script.source.contains("return base .. name")
                    && script.source.contains("return base .. 'g:' .. generation"),
                "{}: key() and gen_key() build on the base",
                script.name
            );
            let foreign = foreign_keys(script.source);
            assert!(
                foreign.is_empty(),
                "{} touches keys that are neither in KEYS nor derived from the base: {foreign:?}",
                script.name
            );
        }
    }

    #[test]
    fn the_key_check_rejects_keys_from_arguments_literals_and_unchecked_commands() {
        let common = "local base = ARGV[1]\nlocal function key(name)\n  return base .. name\nend\n";
        let ok = format!(
            "{common}local plan_key = KEYS[2]\nlocal function touch(k, n)\n  redis.call('DEL', k)\nend\n\
             redis.call('HGET', plan_key, 'x')\ntouch(key('a'), 1)\nredis.call('TIME')\n"
        );
        assert!(foreign_keys(&ok).is_empty(), "{:?}", foreign_keys(&ok));
        for bad in [
            "redis.call('GET', 'elsewhere')",
            "local other = ARGV[5]\nredis.call('GET', other)",
            "redis.call('GET', ARGV[1] .. 'x')",
            "local function touch(k)\n  redis.call('DEL', k)\nend\ntouch(ARGV[6])",
            "redis.call('RENAME', KEYS[2], KEYS[3])",
        ] {
            let source = format!("{common}{bad}\n");
            assert!(!foreign_keys(&source).is_empty(), "must be rejected: {bad}");
        }
    }
}
