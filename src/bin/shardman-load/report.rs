//! Measurements shared by every simulated process: per-route latency histograms, status counts, a
//! timeline of the run, and the JSON / human renderings of it all.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::checker::SafetyReport;

/// Width of one timeline bucket.
pub const BUCKET: Duration = Duration::from_millis(100);

/// The routes the tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Connect,
    Beat,
    Disconnect,
}

impl Route {
    pub const ALL: [Route; 3] = [Route::Connect, Route::Beat, Route::Disconnect];

    pub fn name(self) -> &'static str {
        match self {
            Route::Connect => "connect",
            Route::Beat => "beat",
            Route::Disconnect => "disconnect",
        }
    }
}

/// How a request ended: an HTTP status, or no answer at all.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    Status(u16),
    /// Connection refused or reset, or the request timed out.
    Transport,
}

impl Outcome {
    fn label(self) -> String {
        match self {
            Outcome::Status(code) => code.to_string(),
            Outcome::Transport => "transport".into(),
        }
    }

    /// A failure of the service, as opposed to an answer (even a refusal such as 401 or 404).
    pub fn is_error(self) -> bool {
        matches!(self, Outcome::Transport | Outcome::Status(500..))
    }
}

struct RouteStats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
}

/// Everything the run measures. Shared by all tasks; every lock is held for a few instructions.
pub struct Recorder {
    pub started: Instant,
    routes: Mutex<BTreeMap<Route, RouteStats>>,
    /// When the route statistics started (the run's start, or the last reset).
    routes_since: Mutex<Instant>,
    /// Per bucket: answered requests, failed requests, processes holding a shard (sampled).
    timeline: Mutex<Vec<[u64; 3]>>,
    /// Processes that currently believe they hold a shard.
    pub holders: AtomicI64,
    pub beats_acked: AtomicU64,
    pub beats_failed: AtomicU64,
    pub lost_acknowledged_beats: AtomicU64,
    pub retired: AtomicU64,
    pub expired_in_client_view: AtomicU64,
    pub crashes: AtomicU64,
    pub disconnects: AtomicU64,
    /// When every process first held a shard at once, in ms since the start.
    pub time_to_full_ms: AtomicU64,
}

impl Recorder {
    pub fn new(started: Instant) -> Self {
        let routes = Route::ALL
            .into_iter()
            .map(|route| {
                let stats = RouteStats {
                    latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)
                        .expect("valid histogram bounds"),
                    statuses: BTreeMap::new(),
                };
                (route, stats)
            })
            .collect();
        Self {
            started,
            routes: Mutex::new(routes),
            routes_since: Mutex::new(started),
            timeline: Mutex::new(Vec::new()),
            holders: AtomicI64::new(0),
            beats_acked: AtomicU64::new(0),
            beats_failed: AtomicU64::new(0),
            lost_acknowledged_beats: AtomicU64::new(0),
            retired: AtomicU64::new(0),
            expired_in_client_view: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            time_to_full_ms: AtomicU64::new(u64::MAX),
        }
    }

    fn bucket_of(&self, at: Instant) -> usize {
        (at.saturating_duration_since(self.started).as_millis() / BUCKET.as_millis()) as usize
    }

    fn with_bucket(&self, at: Instant, update: impl FnOnce(&mut [u64; 3])) {
        let index = self.bucket_of(at);
        let mut timeline = self.timeline.lock().expect("timeline lock");
        if timeline.len() <= index {
            timeline.resize(index + 1, [0; 3]);
        }
        update(&mut timeline[index]);
    }

    /// Records one request: its latency, its outcome, and the bucket it finished in.
    pub fn request(&self, route: Route, sent: Instant, outcome: Outcome) {
        let now = Instant::now();
        let micros = now.saturating_duration_since(sent).as_micros() as u64;
        {
            let mut routes = self.routes.lock().expect("routes lock");
            let stats = routes.get_mut(&route).expect("every route has stats");
            stats.latency_us.saturating_record(micros.max(1));
            *stats.statuses.entry(outcome.label()).or_default() += 1;
        }
        let failed = outcome.is_error();
        self.with_bucket(now, |bucket| bucket[usize::from(failed)] += 1);
    }

    /// Forgets every request recorded so far (a warm-up or fill phase).
    pub fn reset_routes(&self) {
        *self.routes_since.lock().expect("routes lock") = Instant::now();
        let mut routes = self.routes.lock().expect("routes lock");
        for stats in routes.values_mut() {
            stats.latency_us.reset();
            stats.statuses.clear();
        }
    }

    /// Samples how many processes hold a shard (called every bucket by one task).
    pub fn sample_holders(&self, processes: usize) {
        let now = Instant::now();
        let holders = self.holders.load(Ordering::Relaxed).max(0) as u64;
        self.with_bucket(now, |bucket| bucket[2] = bucket[2].max(holders));
        if holders as usize >= processes {
            let elapsed = now.saturating_duration_since(self.started).as_millis() as u64;
            self.time_to_full_ms.fetch_min(elapsed, Ordering::Relaxed);
        }
    }

    /// Notes that every process holds a shard right now (exact, not sampled).
    pub fn full_now(&self) {
        let elapsed = self.started.elapsed().as_millis() as u64;
        self.time_to_full_ms.fetch_min(elapsed, Ordering::Relaxed);
    }

    pub fn finish(&self, config: serde_json::Value, safety: SafetyReport) -> Report {
        let elapsed = self.started.elapsed().as_secs_f64();
        let measured = self
            .routes_since
            .lock()
            .expect("routes lock")
            .elapsed()
            .as_secs_f64();
        let routes = self.routes.lock().expect("routes lock");
        let routes = routes
            .iter()
            .map(|(route, stats)| {
                let histogram = &stats.latency_us;
                let count = histogram.len();
                let quantile = |q: f64| {
                    if count == 0 {
                        0.0
                    } else {
                        histogram.value_at_quantile(q) as f64 / 1000.0
                    }
                };
                let summary = RouteSummary {
                    count,
                    per_second: count as f64 / measured.max(1e-9),
                    statuses: stats.statuses.clone(),
                    latency_ms: Percentiles {
                        mean: if count == 0 {
                            0.0
                        } else {
                            histogram.mean() / 1000.0
                        },
                        p50: quantile(0.50),
                        p90: quantile(0.90),
                        p99: quantile(0.99),
                        p999: quantile(0.999),
                        max: if count == 0 {
                            0.0
                        } else {
                            histogram.max() as f64 / 1000.0
                        },
                    },
                };
                (route.name().to_owned(), summary)
            })
            .collect();
        let timeline = self.timeline.lock().expect("timeline lock");
        let time_to_full = self.time_to_full_ms.load(Ordering::Relaxed);
        Report {
            config,
            started_unix_ms: unix_ms_at(self.started),
            elapsed_s: elapsed,
            routes,
            beats: BeatCounts {
                acked: self.beats_acked.load(Ordering::Relaxed),
                failed: self.beats_failed.load(Ordering::Relaxed),
                lost_acknowledged: self.lost_acknowledged_beats.load(Ordering::Relaxed),
                retired: self.retired.load(Ordering::Relaxed),
                expired_in_client_view: self.expired_in_client_view.load(Ordering::Relaxed),
            },
            churn: Churn {
                crashes: self.crashes.load(Ordering::Relaxed),
                disconnects: self.disconnects.load(Ordering::Relaxed),
            },
            time_to_full_ms: (time_to_full != u64::MAX).then_some(time_to_full),
            safety,
            timeline: Timeline {
                bucket_ms: BUCKET.as_millis() as u64,
                ok: timeline.iter().map(|bucket| bucket[0]).collect(),
                errors: timeline.iter().map(|bucket| bucket[1]).collect(),
                holders: timeline.iter().map(|bucket| bucket[2]).collect(),
            },
        }
    }
}

/// Wall-clock time of an `Instant` of this process, in ms since the Unix epoch.
pub fn unix_ms_at(at: Instant) -> u64 {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ago = Instant::now().saturating_duration_since(at);
    now_unix.saturating_sub(ago).as_millis() as u64
}

#[derive(Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Serialize)]
pub struct RouteSummary {
    pub count: u64,
    pub per_second: f64,
    pub statuses: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
}

#[derive(Serialize)]
pub struct BeatCounts {
    pub acked: u64,
    /// 5xx or no answer; the process retried.
    pub failed: u64,
    /// 404 for a beat sent while the client's own view said its lease was still valid: the service
    /// lost a lease that was being kept alive.
    pub lost_acknowledged: u64,
    /// 401: the session's generation was retired (resharding), the process stopped and reconnected.
    pub retired: u64,
    /// The client's lease ran out (no acknowledged beat within `MAX_SECONDS`), so it stopped.
    pub expired_in_client_view: u64,
}

#[derive(Serialize)]
pub struct Churn {
    pub crashes: u64,
    pub disconnects: u64,
}

#[derive(Serialize)]
pub struct Timeline {
    pub bucket_ms: u64,
    pub ok: Vec<u64>,
    pub errors: Vec<u64>,
    pub holders: Vec<u64>,
}

#[derive(Serialize)]
pub struct Report {
    pub config: serde_json::Value,
    pub started_unix_ms: u64,
    pub elapsed_s: f64,
    pub routes: BTreeMap<String, RouteSummary>,
    pub beats: BeatCounts,
    pub churn: Churn,
    pub time_to_full_ms: Option<u64>,
    pub safety: SafetyReport,
    pub timeline: Timeline,
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("shardman-load: {:.1} s\n", self.elapsed_s));
        out.push_str(&format!(
            "{:<11} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8}  statuses\n",
            "route", "count", "req/s", "p50 ms", "p99 ms", "p999 ms", "max ms"
        ));
        for (name, route) in &self.routes {
            if route.count == 0 {
                continue;
            }
            let statuses: Vec<String> = route
                .statuses
                .iter()
                .map(|(status, count)| format!("{status}:{count}"))
                .collect();
            out.push_str(&format!(
                "{:<11} {:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
                name,
                route.count,
                route.per_second,
                route.latency_ms.p50,
                route.latency_ms.p99,
                route.latency_ms.p999,
                route.latency_ms.max,
                statuses.join(" ")
            ));
        }
        out.push_str(&format!(
            "beats: {} acked, {} failed, {} lost while valid, {} retired, {} expired in client view\n",
            self.beats.acked,
            self.beats.failed,
            self.beats.lost_acknowledged,
            self.beats.retired,
            self.beats.expired_in_client_view
        ));
        out.push_str(&format!(
            "churn: {} crashes, {} disconnects; time to full: {}\n",
            self.churn.crashes,
            self.churn.disconnects,
            self.time_to_full_ms
                .map(|ms| format!("{ms} ms"))
                .unwrap_or_else(|| "never".into())
        ));
        let safety = &self.safety;
        out.push_str(&format!(
            "safety: {} sessions, {} distinct shards; double grants {}, fence regressions {} -> {}\n",
            safety.sessions,
            safety.distinct_shards,
            safety.double_grants,
            safety.fence_regressions,
            if safety.safe() { "SAFE" } else { "UNSAFE" }
        ));
        for violation in &safety.examples {
            out.push_str(&format!("  {violation}\n"));
        }
        out
    }
}
