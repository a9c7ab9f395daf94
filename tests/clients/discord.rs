//! The stand-in Discord: REST under `/api/v10` and a WebSocket gateway on one port of 127.0.0.1,
//! enforcing Discord's rules the way Discord does, and recording everything the tests judge by.
//!
//! Gateway rules modelled:
//! - HELLO first; heartbeats (op 1) are ACKed (op 11); a connection that sends none for
//!   `ZOMBIE_INTERVALS` heartbeat intervals is dropped without a close frame (the session stays
//!   resumable, as after any connection loss).
//! - IDENTIFY (op 2): a wrong token (bare or `Bot `-prefixed) closes 4004, a shard outside its count closes 4010, a second
//!   IDENTIFY/RESUME on an authenticated connection closes 4005. One IDENTIFY per 5 s per bucket
//!   (`shard_id % max_concurrency`), counted from the last accepted one: an earlier one gets op 9
//!   (`d: false`) and is recorded as too early. Otherwise READY, a new session.
//! - Every valid session gets a dispatch (`STAND_IN_TICK`, an event name no library knows, which
//!   each of them skips after taking its `s`: discord.py logs it at debug, twilight's `parse` answers
//!   `None`, @discordjs/ws emits it as a plain dispatch) at its shard's rate ([`Config::dispatches`],
//!   every 50 ms by default), so sequences move as on a busy bot. A session without a connection
//!   keeps getting them into its buffer, as Discord queues a disconnected session's events.
//! - RESUME (op 6): a known, still valid session replays the dispatches after the `seq` given, in
//!   order, then RESUMED. Each session keeps its last [`Config::replay_buffer`] dispatches; a `seq`
//!   from before them (too much missed) gets op 9, as does an unknown or invalidated session; a
//!   `seq` beyond the session's closes 4007. A session lives on one connection only: a RESUME of a
//!   session still attached to another connection (a frozen process that has not been found a
//!   zombie yet) moves it to the new connection, and the old one is closed with 4009 ("session
//!   timed out, start a new one"), so its client does not fight to resume it back.
//! - A client closing with 1000 or 1001 ends its session (Discord takes those codes as "log out");
//!   any other close, or none, leaves it resumable. A session left without a connection for
//!   `SESSION_EXPIRY` ends too.
//! - Every dispatch (READY, RESUMED, the ticks) carries the session's next `s`.
//!
//! Recorded ([`Record`]): each connection opened and closed (with its code, who closed it and the
//! last sequence it was sent), each IDENTIFY (too early or not), each RESUME (the `seq` given, the
//! last sequence the session's previous connection was sent, how many dispatches were replayed),
//! each READY and RESUMED. From them: who was live as which shard when ([`Discord::live`]), the
//! times a shard had no live session ([`Discord::gaps`]) and two live sessions of one shard at once
//! ([`Discord::overlaps`]). A dispatch counts as sent once it was written to the connection; when
//! each was written is kept per connection ([`Discord::sent_on`]), so a test can tell a dispatch
//! that was in flight while its client closed (unread, rightly replayed to the next holder) from one
//! the client had long received.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_ws::{CloseCode, CloseReason, Message};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use crate::sockets::Processes;

/// The bot token the stand-in accepts (and shardman's `BOT_TOKEN`). Shaped like Discord's (its
/// first part is the bot id in base64): hikari reads the id from it and refuses any other shape.
pub const TOKEN: &str = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.stand-in.bot-token";
const BOT_ID: &str = "1100000000000000001";
/// Discord's identify rate limit: one per bucket per this long.
const IDENTIFY_WINDOW: Duration = Duration::from_secs(5);
/// Heartbeat intervals without a heartbeat after which a connection is a zombie.
const ZOMBIE_INTERVALS: u32 = 2;
const SESSION_START_TOTAL: u32 = 1000;
/// How often a busy bot's shard gets a dispatch, by default (20 a second).
pub const DISPATCH_EVERY: Duration = Duration::from_millis(50);
/// Dispatches a session keeps for RESUME, by default: at 20 a second, 51 s of them, more than any
/// handover of the tests takes.
pub const REPLAY_BUFFER: usize = 1024;
/// The name of the stand-in's own dispatches; no library knows it, so each skips it.
pub const TICK: &str = "STAND_IN_TICK";
/// How long a session without a connection stays resumable (and keeps getting dispatches).
const SESSION_EXPIRY: Duration = Duration::from_secs(120);
/// Dispatches remembered per connection with the time each was written ([`Discord::sent_on`]):
/// 25 s of them at the default rate.
const SENT_LOG: usize = 512;
/// How often the dispatch clock looks for due dispatches.
const CLOCK_TICK: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shard {
    pub id: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.id, self.count)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Opened,
    /// An IDENTIFY; `too_early` ones were answered with op 9.
    Identify {
        too_early: bool,
    },
    /// A RESUME with the `seq` it gave; `last_sent` is the last sequence the session's previous
    /// connection was sent (`None` if it was sent nothing, or the session is unknown), `replayed`
    /// the dispatches sent again before RESUMED.
    Resume {
        accepted: bool,
        sequence: Option<u64>,
        last_sent: Option<u64>,
        /// The connection `last_sent` was written to ([`Discord::sent_on`] tells when).
        previous_connection: Option<u64>,
        replayed: usize,
    },
    Ready {
        session: String,
    },
    Resumed {
        session: String,
    },
    /// The end of a connection; `last_sent` is the last sequence written to it.
    Closed {
        code: Option<u16>,
        by_server: bool,
        reason: String,
        last_sent: Option<u64>,
    },
}

/// One thing the gateway saw or did.
#[derive(Clone, Debug)]
pub struct Record {
    pub at: Instant,
    pub connection: u64,
    /// The bot process at the other end, when it is one of the test's.
    pub pid: Option<u32>,
    /// The shard the connection identified or resumed as, once known.
    pub shard: Option<Shard>,
    pub event: Event,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub max_concurrency: u32,
    pub heartbeat_interval: Duration,
    /// `shards` of `/gateway/bot`.
    pub recommended_shards: u32,
    /// How often each session gets a dispatch; see [`Dispatches`].
    pub dispatches: Dispatches,
    /// How many dispatches each session keeps for RESUME.
    pub replay_buffer: usize,
}

impl Config {
    /// A gateway with a dispatch every [`DISPATCH_EVERY`] on every session and a
    /// [`REPLAY_BUFFER`] per session.
    pub fn new(
        max_concurrency: u32,
        heartbeat_interval: Duration,
        recommended_shards: u32,
    ) -> Self {
        Self {
            max_concurrency,
            heartbeat_interval,
            recommended_shards,
            dispatches: Dispatches::every(DISPATCH_EVERY),
            replay_buffer: REPLAY_BUFFER,
        }
    }

    pub fn dispatches(mut self, dispatches: Dispatches) -> Self {
        self.dispatches = dispatches;
        self
    }

    pub fn replay_buffer(mut self, dispatches: usize) -> Self {
        self.replay_buffer = dispatches;
        self
    }
}

/// The dispatch rate of each shard id (of any shard count): one default, and overrides per shard,
/// e.g. `Dispatches::every(200 ms).shard(0, Some(25 ms)).shard(1, Some(25 ms))` for two busy
/// shards at 40 a second and the rest at 5. `None`: no dispatches but READY and RESUMED.
#[derive(Clone, Debug, Default)]
pub struct Dispatches {
    every: Option<Duration>,
    shards: BTreeMap<u32, Option<Duration>>,
}

impl Dispatches {
    pub fn every(interval: Duration) -> Self {
        Self {
            every: Some(interval),
            shards: BTreeMap::new(),
        }
    }

    /// None at all (frame-by-frame tests of the gateway rules).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn shard(mut self, id: u32, every: Option<Duration>) -> Self {
        self.shards.insert(id, every);
        self
    }

    fn interval(&self, shard_id: u32) -> Option<Duration> {
        self.shards
            .get(&shard_id)
            .copied()
            .unwrap_or(self.every)
            .filter(|every| !every.is_zero())
    }
}

struct Session {
    shard: Shard,
    /// The last sequence given out.
    sequence: u64,
    connection: Option<u64>,
    valid: bool,
    /// The last dispatches (sequence, frame), for RESUME.
    buffer: VecDeque<(u64, String)>,
    /// The highest sequence dropped from the buffer: a RESUME from before it cannot be replayed.
    evicted_through: u64,
    /// When its next dispatch is due (`None`: its shard gets none).
    next_dispatch: Option<Instant>,
    /// The last sequence written to one of its connections, and to which.
    last_sent: Option<u64>,
    last_connection: Option<u64>,
    /// Since when it has had no connection.
    detached_since: Option<Instant>,
}

impl Session {
    fn new(shard: Shard, connection: u64, next_dispatch: Option<Instant>) -> Self {
        Self {
            shard,
            sequence: 0,
            connection: Some(connection),
            valid: true,
            buffer: VecDeque::new(),
            evicted_through: 0,
            next_dispatch,
            last_sent: None,
            last_connection: None,
            detached_since: None,
        }
    }
}

/// What a connection's task is told to do by others (the dispatch clock, another connection's
/// RESUME).
enum Outgoing {
    Dispatch { sequence: u64, frame: String },
    Close(u16, &'static str),
}

struct Connection {
    pid: Option<u32>,
    shard: Option<Shard>,
    session: Option<String>,
    /// The last sequence written to it.
    last_sent: Option<u64>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
}

struct State {
    config: Config,
    port: u16,
    next_connection: u64,
    records: Vec<Record>,
    sessions: HashMap<String, Session>,
    /// Last accepted IDENTIFY per bucket.
    buckets: HashMap<u32, Instant>,
    /// Open connections.
    connections: HashMap<u64, Connection>,
    /// The last `SENT_LOG` dispatches written to each connection: (sequence, when).
    sent: HashMap<u64, VecDeque<(u64, Instant)>>,
    identifies_left: u32,
}

struct Shared {
    state: Mutex<State>,
    processes: Processes,
}

/// What the connection task does after a client frame.
enum Action {
    /// A frame; a dispatch carries its sequence.
    Send(String, Option<u64>),
    Close(u16, &'static str),
}

pub struct Discord {
    pub port: u16,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
}

impl Discord {
    pub fn start(config: Config, processes: Processes) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stand-in Discord");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                config,
                port,
                next_connection: 1,
                records: Vec::new(),
                sessions: HashMap::new(),
                buckets: HashMap::new(),
                connections: HashMap::new(),
                sent: HashMap::new(),
                identifies_left: SESSION_START_TOTAL,
            }),
            processes,
        });
        let data = web::Data::from(shared.clone());
        let clock = shared.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                actix_web::rt::spawn(dispatch_clock(clock));
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .service(
                            web::scope("/api/v10")
                                .route("/gateway", web::get().to(gateway))
                                .route("/gateway/bot", web::get().to(gateway_bot))
                                .route("/users/@me", web::get().to(current_user))
                                .route(
                                    "/oauth2/applications/@me",
                                    web::get().to(current_application),
                                )
                                .default_service(web::to(not_found)),
                        )
                        .default_service(web::to(websocket))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                sender.send(server.handle()).expect("send handle");
                let _ = server.await;
            });
        });
        let server = receiver.recv().expect("stand-in Discord started");
        Self {
            port,
            shared,
            server,
        }
    }

    /// `DISCORD_API_BASE` for shardman and the bots.
    pub fn api_base(&self) -> String {
        format!("http://127.0.0.1:{}/api/v10", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().expect("stand-in state")
    }

    pub fn records(&self) -> Vec<Record> {
        self.state().records.clone()
    }

    /// The sessions live right now (READY or RESUMED on a connection still open): shard and pid.
    pub fn live(&self) -> Vec<(Shard, Option<u32>)> {
        let mut live: Vec<_> = self
            .state()
            .connections
            .values()
            .filter(|connection| connection.session.is_some())
            .filter_map(|connection| Some((connection.shard?, connection.pid)))
            .collect();
        live.sort();
        live
    }

    pub fn live_shards(&self) -> Vec<Shard> {
        self.live().into_iter().map(|(shard, _)| shard).collect()
    }

    /// The dispatches written to `connection` (its last `SENT_LOG`): sequence and when.
    pub fn sent_on(&self, connection: u64) -> Vec<(u64, Instant)> {
        self.state()
            .sent
            .get(&connection)
            .map(|log| log.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Connections open right now from `pid` (authenticated or not).
    pub fn open_connections_of(&self, pid: u32) -> usize {
        self.state()
            .connections
            .values()
            .filter(|connection| connection.pid == Some(pid))
            .count()
    }

    /// READY dispatches sent per shard.
    pub fn ready_counts(&self) -> HashMap<Shard, usize> {
        let mut counts = HashMap::new();
        for record in self.records() {
            if let (Event::Ready { .. }, Some(shard)) = (&record.event, record.shard) {
                *counts.entry(shard).or_default() += 1;
            }
        }
        counts
    }

    pub fn too_early_identifies(&self) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|record| record.event == Event::Identify { too_early: true })
            .collect()
    }

    /// The first READY or RESUMED of `shard` at or after `after`.
    pub fn first_live_after(&self, shard: Shard, after: Instant) -> Option<Record> {
        self.records().into_iter().find(|record| {
            record.at >= after
                && record.shard == Some(shard)
                && matches!(record.event, Event::Ready { .. } | Event::Resumed { .. })
        })
    }

    /// IDENTIFYs (accepted or not) of `shard` at or after `after`.
    pub fn identifies_after(&self, shard: Shard, after: Instant) -> usize {
        self.records()
            .iter()
            .filter(|record| {
                record.at >= after
                    && record.shard == Some(shard)
                    && matches!(record.event, Event::Identify { .. })
            })
            .count()
    }

    /// When `pid`'s last connection closed, or `None` while one is still open (or it never had
    /// one).
    pub fn last_close_of(&self, pid: u32) -> Option<Instant> {
        if self.open_connections_of(pid) > 0 {
            return None;
        }
        self.records()
            .into_iter()
            .filter(|record| {
                record.pid == Some(pid) && matches!(record.event, Event::Closed { .. })
            })
            .map(|record| record.at)
            .max()
    }

    /// Each live session's interval per shard: (pid, start, end or `None` while live), by start.
    fn live_intervals(&self) -> BTreeMap<Shard, Vec<LiveInterval>> {
        let records = self.records();
        let mut intervals: BTreeMap<Shard, Vec<_>> = BTreeMap::new();
        for record in &records {
            let (Event::Ready { .. } | Event::Resumed { .. }, Some(shard)) =
                (&record.event, record.shard)
            else {
                continue;
            };
            let end = records
                .iter()
                .find(|later| {
                    later.connection == record.connection
                        && matches!(later.event, Event::Closed { .. })
                })
                .map(|closed| closed.at);
            intervals
                .entry(shard)
                .or_default()
                .push((record.pid, record.at, end));
        }
        intervals
    }

    /// The times a shard that had been live had no live session, ending at or after `since`
    /// (one still open has no `to`), by shard and time.
    pub fn gaps(&self, since: Instant) -> Vec<Gap> {
        let records = self.records();
        let mut gaps = Vec::new();
        for (shard, intervals) in self.live_intervals() {
            let mut covered: Option<Instant> = None;
            let mut open_ended = false;
            for (_, start, end) in intervals {
                if let Some(from) = covered.filter(|from| !open_ended && *from < start) {
                    let came_back = records
                        .iter()
                        .find(|record| {
                            record.at == start
                                && record.shard == Some(shard)
                                && matches!(
                                    record.event,
                                    Event::Ready { .. } | Event::Resumed { .. }
                                )
                        })
                        .map(|record| record.event.clone());
                    gaps.push(Gap {
                        shard,
                        from,
                        to: Some(start),
                        came_back,
                    });
                }
                match end {
                    None => open_ended = true,
                    Some(end) => covered = Some(covered.map_or(end, |covered| covered.max(end))),
                }
            }
            if !open_ended && let Some(from) = covered {
                gaps.push(Gap {
                    shard,
                    from,
                    to: None,
                    came_back: None,
                });
            }
        }
        gaps.retain(|gap| gap.to.is_none_or(|to| to >= since));
        gaps
    }

    /// Every time two live sessions of one (shard id, shard count) overlapped: the shard, how
    /// long, and the two processes.
    pub fn overlaps(&self) -> Vec<Overlap> {
        let now = Instant::now();
        let mut overlaps = Vec::new();
        for (shard, intervals) in self.live_intervals() {
            for (index, (pid, start, end)) in intervals.iter().enumerate() {
                for (other_pid, other_start, other_end) in &intervals[index + 1..] {
                    let overlap = end
                        .unwrap_or(now)
                        .min(other_end.unwrap_or(now))
                        .saturating_duration_since(*start.max(other_start));
                    if !overlap.is_zero() {
                        overlaps.push(Overlap {
                            shard,
                            length: overlap,
                            pids: (*pid, *other_pid),
                        });
                    }
                }
            }
        }
        overlaps
    }

    /// The longest time two live sessions of one (shard id, shard count) overlapped, and which.
    pub fn longest_double_session(&self) -> (Duration, Option<Shard>) {
        self.overlaps()
            .into_iter()
            .max_by_key(|overlap| overlap.length)
            .map_or((Duration::ZERO, None), |overlap| {
                (overlap.length, Some(overlap.shard))
            })
    }

    /// Every record, one a line, for failure messages.
    pub fn dump(&self, since: Instant) -> String {
        self.records()
            .iter()
            .map(|record| {
                format!(
                    "{:>7} ms  conn {:<3} pid {:<7} shard {:<8} {:?}",
                    record.at.saturating_duration_since(since).as_millis(),
                    record.connection,
                    record.pid.map_or("-".into(), |pid| pid.to_string()),
                    record.shard.map_or("-".into(), |shard| shard.to_string()),
                    record.event
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One live session of a shard: its process, when it went live, when it ended (`None`: live).
type LiveInterval = (Option<u32>, Instant, Option<Instant>);

/// A time a shard had no live session.
#[derive(Clone, Debug)]
pub struct Gap {
    pub shard: Shard,
    /// When its live session(s) ended.
    pub from: Instant,
    /// When the next one went live (`None`: none yet).
    pub to: Option<Instant>,
    /// READY or RESUMED: how it came back.
    pub came_back: Option<Event>,
}

impl Gap {
    /// How long it lasted (so far).
    pub fn length(&self) -> Duration {
        self.to
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(self.from)
    }
}

/// Two live sessions of one shard at once.
#[derive(Clone, Debug)]
pub struct Overlap {
    pub shard: Shard,
    pub length: Duration,
    pub pids: (Option<u32>, Option<u32>),
}

impl Drop for Discord {
    fn drop(&mut self) {
        // Sends the stop at once; the returned future only reports completion.
        drop(self.server.stop(false));
    }
}

impl State {
    fn record(&mut self, connection: u64, event: Event) {
        let (pid, shard) = self
            .connections
            .get(&connection)
            .map_or((None, None), |open| (open.pid, open.shard));
        self.records.push(Record {
            at: Instant::now(),
            connection,
            pid,
            shard,
            event,
        });
    }

    /// Records the end of a connection once and detaches its session; `session_ends` for a
    /// client's own log-out (1000/1001).
    fn closed(&mut self, connection: u64, code: Option<u16>, by_server: bool, reason: &str) {
        let Some(last_sent) = self.connections.get(&connection).map(|open| open.last_sent) else {
            return;
        };
        self.record(
            connection,
            Event::Closed {
                code,
                by_server,
                reason: reason.into(),
                last_sent,
            },
        );
        let open = self
            .connections
            .remove(&connection)
            .expect("open connection");
        if let Some(session) = open.session.and_then(|id| self.sessions.get_mut(&id))
            && session.connection == Some(connection)
        {
            session.connection = None;
            session.detached_since = Some(Instant::now());
            if !by_server && matches!(code, Some(1000 | 1001)) {
                session.valid = false;
            }
        }
    }

    /// The next dispatch of `session` as a frame, with its sequence.
    fn dispatch(&mut self, session: &str, name: &str, data: Value) -> Action {
        let session = self.sessions.get_mut(session).expect("session");
        session.sequence += 1;
        let frame = json!({"op": 0, "t": name, "s": session.sequence, "d": data}).to_string();
        Action::Send(frame, Some(session.sequence))
    }

    /// Whether a frame for `connection` may still be written (it is open, and a dispatch's
    /// session is still on it), and if so counts a dispatch as sent. A dispatch queued before its
    /// session moved to another connection is not written.
    fn may_send(&mut self, connection: u64, sequence: Option<u64>) -> bool {
        let Some(open) = self.connections.get_mut(&connection) else {
            return false;
        };
        let Some(sequence) = sequence else {
            return true;
        };
        let Some(session) = open
            .session
            .as_ref()
            .and_then(|id| self.sessions.get_mut(id))
        else {
            return false;
        };
        if session.connection != Some(connection) {
            return false;
        }
        open.last_sent = Some(sequence);
        session.last_sent = Some(sequence);
        session.last_connection = Some(connection);
        let log = self.sent.entry(connection).or_default();
        log.push_back((sequence, Instant::now()));
        if log.len() > SENT_LOG {
            log.pop_front();
        }
        true
    }

    /// The dispatch clock: every valid session whose next dispatch is due gets one, into its
    /// buffer and, when it has a connection, onto that connection.
    fn tick(&mut self, now: Instant) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let session = self.sessions.get_mut(&id).expect("session");
            if session
                .detached_since
                .is_some_and(|since| session.connection.is_none() && now - since > SESSION_EXPIRY)
            {
                session.valid = false;
            }
            if !session.valid {
                continue;
            }
            let Some(every) = self.config.dispatches.interval(session.shard.id) else {
                continue;
            };
            let due = *session.next_dispatch.get_or_insert(now + every);
            if due > now {
                continue;
            }
            // One at a time: a clock held up (a busy machine) does not burst.
            session.next_dispatch = Some(if now - due > every {
                now + every
            } else {
                due + every
            });
            session.sequence += 1;
            let sequence = session.sequence;
            let frame = json!({
                "op": 0,
                "t": TICK,
                "s": sequence,
                "d": {"shard": [session.shard.id, session.shard.count]},
            })
            .to_string();
            session.buffer.push_back((sequence, frame.clone()));
            while session.buffer.len() > self.config.replay_buffer {
                if let Some((evicted, _)) = session.buffer.pop_front() {
                    session.evicted_through = evicted;
                }
            }
            if let Some(open) = session
                .connection
                .and_then(|connection| self.connections.get(&connection))
            {
                let _ = open.outgoing.send(Outgoing::Dispatch { sequence, frame });
            }
        }
    }

    /// Handles one text frame of `connection`.
    fn frame(&mut self, connection: u64, text: &str) -> Vec<Action> {
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return vec![Action::Close(4002, "Decode error")];
        };
        let data = &payload["d"];
        match payload["op"].as_u64() {
            Some(1) => vec![Action::Send(
                json!({"op": 11, "d": null, "s": null, "t": null}).to_string(),
                None,
            )],
            Some(2) => self.identify(connection, data),
            Some(6) => self.resume(connection, data),
            // Presence, voice state, member requests: nothing to answer.
            Some(3 | 4 | 8) => Vec::new(),
            _ => vec![Action::Close(4001, "Unknown opcode")],
        }
    }

    fn authenticated(&self, connection: u64) -> bool {
        self.connections
            .get(&connection)
            .is_some_and(|open| open.session.is_some())
    }

    fn identify(&mut self, connection: u64, data: &Value) -> Vec<Action> {
        if self.authenticated(connection) {
            return vec![Action::Close(4005, "Already authenticated")];
        }
        if !gateway_token_matches(data["token"].as_str()) {
            return vec![Action::Close(4004, "Authentication failed")];
        }
        let shard = match data.get("shard") {
            None | Some(Value::Null) => Some(Shard { id: 0, count: 1 }),
            Some(pair) => match (pair[0].as_u64(), pair[1].as_u64()) {
                (Some(id), Some(count)) if id < count && count <= 65_536 => Some(Shard {
                    id: id as u32,
                    count: count as u32,
                }),
                _ => None,
            },
        };
        let Some(shard) = shard else {
            return vec![Action::Close(4010, "Invalid shard")];
        };
        if let Some(open) = self.connections.get_mut(&connection) {
            open.shard = Some(shard);
        }
        let bucket = shard.id % self.config.max_concurrency;
        let now = Instant::now();
        if self
            .buckets
            .get(&bucket)
            .is_some_and(|last| now.duration_since(*last) < IDENTIFY_WINDOW)
        {
            self.record(connection, Event::Identify { too_early: true });
            return vec![invalid_session()];
        }
        self.buckets.insert(bucket, now);
        self.identifies_left = self.identifies_left.saturating_sub(1);
        self.record(connection, Event::Identify { too_early: false });
        let session_id = hex::encode(rand::random::<[u8; 16]>());
        let first_dispatch = self
            .config
            .dispatches
            .interval(shard.id)
            .map(|every| now + every);
        self.sessions.insert(
            session_id.clone(),
            Session::new(shard, connection, first_dispatch),
        );
        if let Some(open) = self.connections.get_mut(&connection) {
            open.session = Some(session_id.clone());
        }
        let ready = json!({
            "v": 10,
            "user": user(),
            "guilds": [],
            "session_id": session_id,
            "resume_gateway_url": format!("ws://127.0.0.1:{}/resume", self.port),
            "shard": [shard.id, shard.count],
            "application": {"id": BOT_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["[\"stand-in-gateway\",{\"micros\":0}]"],
        });
        let frame = self.dispatch(&session_id, "READY", ready);
        self.record(
            connection,
            Event::Ready {
                session: session_id,
            },
        );
        vec![frame]
    }

    fn resume(&mut self, connection: u64, data: &Value) -> Vec<Action> {
        if self.authenticated(connection) {
            return vec![Action::Close(4005, "Already authenticated")];
        }
        if !gateway_token_matches(data["token"].as_str()) {
            return vec![Action::Close(4004, "Authentication failed")];
        }
        let session_id = data["session_id"].as_str().unwrap_or_default().to_owned();
        let given = data["seq"].as_u64();
        let sequence = given.unwrap_or(0);
        let Some(session) = self
            .sessions
            .get(&session_id)
            .filter(|session| session.valid)
        else {
            self.record(
                connection,
                Event::Resume {
                    accepted: false,
                    sequence: given,
                    last_sent: None,
                    previous_connection: None,
                    replayed: 0,
                },
            );
            return vec![invalid_session()];
        };
        let (shard, known_sequence, attached, evicted_through) = (
            session.shard,
            session.sequence,
            session.connection,
            session.evicted_through,
        );
        let (last_sent, previous_connection) = (session.last_sent, session.last_connection);
        if let Some(open) = self.connections.get_mut(&connection) {
            open.shard = Some(shard);
        }
        let refused = |sequence_given| Event::Resume {
            accepted: false,
            sequence: sequence_given,
            last_sent,
            previous_connection,
            replayed: 0,
        };
        if sequence > known_sequence {
            self.record(connection, refused(given));
            return vec![Action::Close(4007, "Invalid seq")];
        }
        if sequence < evicted_through {
            // Discord too cannot replay what it no longer has: start a new session.
            self.record(connection, refused(given));
            return vec![invalid_session()];
        }
        if let Some(other) = attached.filter(|other| *other != connection) {
            // Recorded before the RESUMED, so the two never count as a double session.
            if let Some(open) = self.connections.get(&other) {
                let _ = open
                    .outgoing
                    .send(Outgoing::Close(4009, "Session timed out"));
            }
            self.closed(
                other,
                Some(4009),
                true,
                "session resumed on another connection",
            );
        }
        let session = self.sessions.get_mut(&session_id).expect("session");
        session.connection = Some(connection);
        session.detached_since = None;
        let mut actions: Vec<Action> = session
            .buffer
            .iter()
            .filter(|(buffered, _)| *buffered > sequence)
            .map(|(buffered, frame)| Action::Send(frame.clone(), Some(*buffered)))
            .collect();
        self.record(
            connection,
            Event::Resume {
                accepted: true,
                sequence: given,
                last_sent,
                previous_connection,
                replayed: actions.len(),
            },
        );
        if let Some(open) = self.connections.get_mut(&connection) {
            open.session = Some(session_id.clone());
        }
        actions.push(self.dispatch(
            &session_id,
            "RESUMED",
            json!({"_trace": ["[\"stand-in-gateway\",{\"micros\":0}]"]}),
        ));
        self.record(
            connection,
            Event::Resumed {
                session: session_id,
            },
        );
        actions
    }
}

fn invalid_session() -> Action {
    Action::Send(
        json!({"op": 9, "d": false, "s": null, "t": null}).to_string(),
        None,
    )
}

/// Drives [`State::tick`] for as long as the stand-in runs.
async fn dispatch_clock(shared: Arc<Shared>) {
    let mut clock = tokio::time::interval(CLOCK_TICK);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        clock.tick().await;
        shared.state.lock().expect("state").tick(Instant::now());
    }
}

fn token_matches(token: Option<&str>) -> bool {
    token.is_some_and(|token| bool::from(token.as_bytes().ct_eq(TOKEN.as_bytes())))
}

/// The gateway takes the token bare or with the `Bot ` prefix of the REST header (twilight
/// sends it prefixed, discord.py and discord.js bare).
fn gateway_token_matches(token: Option<&str>) -> bool {
    token_matches(token.map(|token| token.strip_prefix("Bot ").unwrap_or(token)))
}

fn authorized(request: &HttpRequest) -> bool {
    let header = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    token_matches(header.and_then(|value| value.strip_prefix("Bot ")))
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"message": "401: Unauthorized", "code": 0}))
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"message": "404: Not Found", "code": 0}))
}

fn user() -> Value {
    json!({
        "id": BOT_ID,
        "username": "stand-in-bot",
        "global_name": null,
        "discriminator": "0",
        "avatar": null,
        "banner": null,
        "accent_color": null,
        "bot": true,
        "system": false,
        "mfa_enabled": false,
        "verified": true,
        "email": null,
        "locale": "en-US",
        "flags": 0,
        "public_flags": 0,
        "premium_type": 0,
    })
}

fn gateway_url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}")
}

async fn gateway(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    // Discord answers /gateway without a token; a wrong one is still refused.
    if request.headers().contains_key("authorization") && !authorized(&request) {
        return unauthorized();
    }
    let port = shared.state.lock().expect("state").port;
    HttpResponse::Ok().json(json!({"url": gateway_url(port)}))
}

async fn gateway_bot(request: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !authorized(&request) {
        return unauthorized();
    }
    let state = shared.state.lock().expect("state");
    HttpResponse::Ok().json(json!({
        "url": gateway_url(state.port),
        "shards": state.config.recommended_shards,
        "session_start_limit": {
            "total": SESSION_START_TOTAL,
            "remaining": state.identifies_left,
            "reset_after": 86_400_000,
            "max_concurrency": state.config.max_concurrency,
        },
    }))
}

async fn current_user(request: HttpRequest) -> HttpResponse {
    if !authorized(&request) {
        return unauthorized();
    }
    HttpResponse::Ok().json(user())
}

async fn current_application(request: HttpRequest) -> HttpResponse {
    if !authorized(&request) {
        return unauthorized();
    }
    HttpResponse::Ok().json(json!({
        "id": BOT_ID,
        "name": "stand-in-bot",
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "0".repeat(64),
        "flags": 0,
        "owner": user(),
        "team": null,
        "bot": user(),
        "approximate_guild_count": 0,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "install_params": null,
        "integration_types_config": {},
    }))
}

/// Any path upgrades to the gateway (the query string is ignored); other requests are a 404.
async fn websocket(
    request: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let upgrade = request
        .headers()
        .get("upgrade")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return Ok(not_found().await);
    }
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let peer_port = request.peer_addr().map_or(0, |address| address.port());
    let (outgoing, control) = mpsc::unbounded_channel();
    let (connection, heartbeat_interval) = {
        let port = shared.state.lock().expect("state").port;
        let pid = shared.processes.owner(port, peer_port);
        let mut state = shared.state.lock().expect("state");
        let connection = state.next_connection;
        state.next_connection += 1;
        state.connections.insert(
            connection,
            Connection {
                pid,
                shard: None,
                session: None,
                last_sent: None,
                outgoing,
            },
        );
        state.record(connection, Event::Opened);
        (connection, state.config.heartbeat_interval)
    };
    actix_web::rt::spawn(serve(
        shared.into_inner(),
        connection,
        heartbeat_interval,
        session,
        stream.max_frame_size(1 << 20),
        control,
    ));
    Ok(response)
}

/// One gateway connection, from HELLO to its close.
async fn serve(
    shared: Arc<Shared>,
    connection: u64,
    heartbeat_interval: Duration,
    mut session: actix_ws::Session,
    mut stream: actix_ws::MessageStream,
    mut control: mpsc::UnboundedReceiver<Outgoing>,
) {
    let closed = |code: Option<u16>, by_server: bool, reason: &str| {
        shared
            .state
            .lock()
            .expect("state")
            .closed(connection, code, by_server, reason);
    };
    let hello = json!({
        "op": 10,
        "d": {"heartbeat_interval": heartbeat_interval.as_millis() as u64, "_trace": ["[\"stand-in-gateway\"]"]},
        "s": null,
        "t": null,
    });
    if session.text(hello.to_string()).await.is_err() {
        closed(None, true, "HELLO could not be sent");
        return;
    }
    let zombie_after = heartbeat_interval * ZOMBIE_INTERVALS;
    let mut deadline = tokio::time::Instant::now() + zombie_after;
    loop {
        let actions = tokio::select! {
            message = stream.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    received(&shared, connection, &text, &mut deadline, zombie_after)
                }
                // JSON in a binary frame: hikari sends its payloads so, and Discord takes them.
                Some(Ok(Message::Binary(bytes))) if std::str::from_utf8(&bytes).is_ok() => {
                    let text = std::str::from_utf8(&bytes).unwrap_or_default();
                    received(&shared, connection, text, &mut deadline, zombie_after)
                }
                Some(Ok(Message::Ping(bytes))) => {
                    let _ = session.pong(&bytes).await;
                    Vec::new()
                }
                Some(Ok(Message::Close(reason))) => {
                    let code = reason.as_ref().map(|reason| u16::from(reason.code));
                    closed(code, false, "client closed");
                    let _ = session.close(reason).await;
                    return;
                }
                Some(Ok(Message::Binary(_))) => vec![Action::Close(4002, "Decode error")],
                Some(Ok(_)) => Vec::new(),
                Some(Err(error)) => {
                    closed(None, false, &format!("protocol error: {error}"));
                    return;
                }
                None => {
                    closed(None, false, "connection lost");
                    return;
                }
            },
            Some(outgoing) = control.recv() => match outgoing {
                Outgoing::Dispatch { sequence, frame } => vec![Action::Send(frame, Some(sequence))],
                Outgoing::Close(code, reason) => vec![Action::Close(code, reason)],
            },
            _ = tokio::time::sleep_until(deadline) => {
                // Dropped without a close frame: the peer is not reading anyway.
                closed(None, true, "zombie: no heartbeat");
                return;
            }
        };
        for action in actions {
            match action {
                Action::Send(text, sequence) => {
                    // Counted as sent before the write, under the lock: a dispatch the clock
                    // queues next is counted after it, and the write itself may not be awaited
                    // holding the lock.
                    if !shared
                        .state
                        .lock()
                        .expect("state")
                        .may_send(connection, sequence)
                    {
                        continue;
                    }
                    if session.text(text).await.is_err() {
                        closed(None, false, "connection lost");
                        return;
                    }
                }
                Action::Close(code, reason) => {
                    closed(Some(code), true, reason);
                    let _ = session
                        .close(Some(CloseReason {
                            code: CloseCode::Other(code),
                            description: Some(reason.into()),
                        }))
                        .await;
                    return;
                }
            }
        }
    }
}

/// A client's JSON frame: a heartbeat moves the zombie deadline on; the gateway's answer.
fn received(
    shared: &Shared,
    connection: u64,
    text: &str,
    deadline: &mut tokio::time::Instant,
    zombie_after: Duration,
) -> Vec<Action> {
    if serde_json::from_str::<Value>(text).is_ok_and(|payload| payload["op"] == 1) {
        *deadline = tokio::time::Instant::now() + zombie_after;
    }
    shared.state.lock().expect("state").frame(connection, text)
}
