//! `GET /metrics`: Prometheus text format.
//!
//! Cluster-wide figures are read from the store at scrape time (page by page, see
//! `store::overview`), so every replica reports the same values and none of them carries a
//! `replica` label. Request metrics are this replica's own and carry `replica="<id>"`.

use std::time::Instant;

use actix_web::{HttpResponse, web};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::domain::{FleetStatus, GatewayInfo, events_per_second_total, process_loads};
use crate::http::auth::{AdminAccess, Bots, MaybeAuthorized, RefusedCredentials};
use crate::http::error::{Internal, ValidationFailed, error_set};
use crate::http::routes::autoscale::{AutoscaleReport, require_metrics_access};
use crate::http::state::AppState;
use crate::telemetry::Telemetry;

/// Buckets for the gateway latency bots report (seconds).
const LATENCY_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0];
/// Buckets for the time since each held shard's last beat (seconds).
const BEAT_AGE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0];
/// Buckets for each held shard's gateway dispatches per second.
const EVENT_RATE_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
];
/// Buckets for each bot process's CPU use (cores).
const CPU_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0];
/// Buckets for each bot process's resident memory (bytes): 64 MiB to 16 GiB, doubling.
const MEMORY_BUCKETS: &[f64] = &[
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    2_147_483_648.0,
    4_294_967_296.0,
    8_589_934_592.0,
    17_179_869_184.0,
];

error_set! {
    /// What `GET /metrics` answers instead of the metrics (the store's failures only leave the
    /// cluster figures out).
    pub MetricsError {
        RefusedCredentials,
        ValidationFailed = "No `Authorization` header (and `PUBLIC_METRICS` is false)",
        Internal = "The metrics could not be encoded",
    }
}

/// Metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    description = "Prometheus text format. Cluster-wide figures (`shardman_shards_total`, \
        `shardman_shards_held`, `shardman_guilds`, `shardman_shard_latency_seconds`, \
        `shardman_events_per_second`, `shardman_shard_events_per_second`, \
        `shardman_process_cpu_cores`, `shardman_process_resident_memory_bytes`, \
        `shardman_generation`, ...) are read from the store at scrape time, so every replica \
        reports the same; request counts and latencies (`shardman_http_requests_total`, \
        `shardman_http_request_duration_seconds`) are this replica's, labelled by route pattern and \
        status, as are `shardman_previous_secret_uses_total` and `shardman_wakeups_heard`. When the store does not answer, `shardman_store_up` is 0 and the cluster figures are \
        left out. Needs the secret unless `PUBLIC_METRICS=true`.",
    security((), ("secret" = [])),
    responses(
        (status = 200, description = "Metrics", content_type = "text/plain; version=0.0.4",
            body = String,
            example = "# TYPE shardman_shards_total gauge\nshardman_shards_total 16\n"),
        MetricsError,
    )
)]
pub async fn metrics(
    caller: MaybeAuthorized<MetricsError>,
    state: web::Data<AppState>,
    telemetry: web::Data<Telemetry>,
    bots: Option<web::Data<Bots>>,
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, MetricsError> {
    require_metrics_access(&caller, &state)?;
    // The admin secret reads every bot; a bot's secret (or a public scrape) its own bot only.
    let every_bot = request.app_data::<web::Data<AdminAccess>>().is_some();
    let states: Vec<web::Data<AppState>> = match (&bots, every_bot) {
        (Some(bots), true) => bots
            .current()
            .bots
            .iter()
            .map(|entry| entry.state.clone())
            .collect(),
        _ => vec![state.clone()],
    };
    let mut families = Vec::new();
    for state in &states {
        families.extend(bot_families(state).await?);
        families.extend(per_replica_families(state, &telemetry.replica_id).map_err(internal)?);
    }
    let mut families = merge(families);
    families.extend(telemetry.registry.gather());
    let mut text = Vec::new();
    let encoder = TextEncoder::new();
    encoder.encode(&families, &mut text).map_err(internal)?;
    Ok(HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(text))
}

/// One bot's fleet figures, labelled `bot="<name>"`.
async fn bot_families(state: &AppState) -> Result<Vec<MetricFamily>, Internal> {
    let started = Instant::now();
    // Paged, so a scrape never holds Redis for long (see store::overview).
    let fleet = state.store.overview().await;
    let read_seconds = started.elapsed().as_secs_f64();
    let registry = Registry::new_custom(
        None,
        Some(std::collections::HashMap::from([(
            "bot".to_owned(),
            state.bot.clone(),
        )])),
    )
    .map_err(internal)?;
    match fleet {
        Ok(fleet) => {
            // The identify budget is known once a replica has asked Discord; a failed read only
            // leaves these figures out.
            let gateway = state.store.gateway().await.unwrap_or_default();
            match AutoscaleReport::read(state, &fleet).await {
                Ok(plan) => {
                    cluster_families(registry, &fleet, &plan, gateway.as_ref(), read_seconds)
                }
                Err(error) => {
                    log::warn!("metrics: bot {}: store unavailable: {error}", state.bot);
                    store_down_families(registry)
                }
            }
        }
        Err(error) => {
            log::warn!("metrics: bot {}: store unavailable: {error}", state.bot);
            store_down_families(registry)
        }
    }
    .map_err(internal)
}

/// This replica's own figures for the bot (unlike the fleet figures): its uses of the bot's
/// `SECRET_PREVIOUS` (a rotation's second phase is complete once they stay flat on every replica),
/// and whether it hears the other replicas' wake-ups.
fn per_replica_families(
    state: &AppState,
    replica_id: &str,
) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let registry = Registry::new_custom(
        None,
        Some(std::collections::HashMap::from([
            ("bot".to_owned(), state.bot.clone()),
            ("replica".to_owned(), replica_id.to_owned()),
        ])),
    )?;
    let uses = IntCounterVec::new(
        Opts::new(
            "shardman_previous_secret_uses_total",
            "Uses of the bot's SECRET_PREVIOUS on this replica: requests that sent it in \
             Authorization (use=\"authorization\") and session ids signed under it (use=\"session\").",
        ),
        &["use"],
    )?;
    let counts = state.store.previous_secret_uses();
    for (name, count) in [
        ("authorization", &counts.authorization),
        ("session", &counts.session),
    ] {
        uses.with_label_values(&[name])
            .inc_by(count.load(std::sync::atomic::Ordering::Relaxed));
    }
    registry.register(Box::new(uses))?;
    if let Some(heard) = state.store.wakeups_heard() {
        let listening = IntGauge::new(
            "shardman_wakeups_heard",
            "1 while this replica hears the other replicas' wake-ups (Redis pub/sub); 0: its \
             waiting requests learn of freed shards by their poll (WAITER_POLL_MS) only.",
        )?;
        listening.set(heard.into());
        registry.register(Box::new(listening))?;
    }
    Ok(registry.gather())
}

/// Families of several bots joined by name, so each metric is written once with all its series.
fn merge(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut merged: Vec<MetricFamily> = Vec::new();
    for mut family in families {
        match merged
            .iter_mut()
            .find(|known| known.name() == family.name())
        {
            Some(known) => known.mut_metric().extend(family.take_metric()),
            None => merged.push(family),
        }
    }
    merged
}

fn internal(error: prometheus::Error) -> Internal {
    Internal {
        reason: format!("metrics: {error}"),
    }
}

/// The fleet as gauges and histograms, built fresh for each scrape. Add a figure here (the
/// identify budget, a pending generation) by registering one more collector.
fn cluster_families(
    registry: Registry,
    fleet: &FleetStatus,
    plan: &AutoscaleReport,
    gateway: Option<&GatewayInfo>,
    read_seconds: f64,
) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let gauge = |name: &str, help: &str, value: i64| -> Result<(), prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        gauge.set(value);
        registry.register(Box::new(gauge))
    };
    gauge(
        "shardman_store_up",
        "1 when the store answered this scrape.",
        1,
    )?;
    gauge(
        "shardman_shards_total",
        "Shards planned in the active generation.",
        fleet.total_shards.into(),
    )?;
    gauge(
        "shardman_shards_held",
        "Shards held by a live session.",
        plan.held.into(),
    )?;
    gauge(
        "shardman_shards_missing",
        "Planned shards that nobody holds.",
        plan.missing.into(),
    )?;
    gauge(
        "shardman_desired_processes",
        "Bot processes the plan needs now (what /autoscale answers).",
        plan.desired_processes.into(),
    )?;
    gauge(
        "shardman_generation",
        "The active generation of the shard plan.",
        i64::try_from(fleet.generation).unwrap_or(i64::MAX),
    )?;
    let silent = fleet
        .shards
        .iter()
        .filter(|shard| shard.silent_since.is_some())
        .count();
    gauge(
        "shardman_silent_shards",
        "Held shards of the active generation that are silent (SHARD_SILENT_AFTER).",
        i64::try_from(silent).unwrap_or(i64::MAX),
    )?;
    let guilds: u64 = fleet
        .shards
        .iter()
        .filter_map(|shard| shard.guild_count)
        .sum();
    gauge(
        "shardman_guilds",
        "Guilds reported by the held shards, summed.",
        i64::try_from(guilds).unwrap_or(i64::MAX),
    )?;

    if let Some(pending) = &fleet.pending {
        gauge(
            "shardman_pending_generation",
            "The generation a reshard is starting (absent when none is).",
            i64::try_from(pending.generation).unwrap_or(i64::MAX),
        )?;
        gauge(
            "shardman_pending_shards_total",
            "Shards planned in the pending generation.",
            pending.max_shards.into(),
        )?;
        gauge(
            "shardman_pending_shards_held",
            "Shards of the pending generation held by a live session.",
            i64::try_from(pending.held()).unwrap_or(i64::MAX),
        )?;
    }
    if let Some(gateway) = gateway {
        gauge(
            "shardman_identify_budget_total",
            "Discord's daily session-start budget.",
            gateway.session_start_total.into(),
        )?;
        gauge(
            "shardman_identify_budget_remaining",
            "Session starts left in Discord's current budget window.",
            gateway.session_start_remaining.into(),
        )?;
        gauge(
            "shardman_identify_max_concurrency",
            "Discord's max_concurrency: identify buckets per 5 seconds.",
            gateway.max_concurrency.into(),
        )?;
        gauge(
            "shardman_discord_recommended_shards",
            "Discord's recommended shard count.",
            gateway.shards.into(),
        )?;
    }

    let latency = Histogram::with_opts(
        HistogramOpts::new(
            "shardman_shard_latency_seconds",
            "Gateway latency last reported by each held shard.",
        )
        .buckets(LATENCY_BUCKETS.to_vec()),
    )?;
    let beat_age = Histogram::with_opts(
        HistogramOpts::new(
            "shardman_shard_beat_age_seconds",
            "Time since each held shard's last beat, at scrape time.",
        )
        .buckets(BEAT_AGE_BUCKETS.to_vec()),
    )?;
    let now = chrono::Utc::now();
    for shard in &fleet.shards {
        if let Some(seconds) = shard.latency.filter(|value| value.is_finite()) {
            latency.observe(seconds);
        }
        let age = (now - shard.last_beat).num_milliseconds().max(0) as f64 / 1000.0;
        beat_age.observe(age);
    }
    registry.register(Box::new(latency))?;
    registry.register(Box::new(beat_age))?;
    load_families(&registry, fleet)?;

    let read = Gauge::new(
        "shardman_store_read_seconds",
        "How long this scrape's read of the fleet from the store took.",
    )?;
    read.set(read_seconds);
    registry.register(Box::new(read))?;
    Ok(registry.gather())
}

/// The load the shards and processes report: histograms only, as process labels (and with them
/// any per-process series) change with every restart.
fn load_families(registry: &Registry, fleet: &FleetStatus) -> Result<(), prometheus::Error> {
    let total = Gauge::new(
        "shardman_events_per_second",
        "Gateway dispatches per second of the active generation's held shards, summed.",
    )?;
    total.set(events_per_second_total(&fleet.shards));
    registry.register(Box::new(total))?;
    let histogram = |name: &str, help: &str, buckets: &[f64]| {
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
    };
    let shard_rates = histogram(
        "shardman_shard_events_per_second",
        "Gateway dispatches per second of each held shard that reported them.",
        EVENT_RATE_BUCKETS,
    )?;
    for rate in fleet
        .shards
        .iter()
        .filter_map(|shard| shard.events_per_second)
    {
        shard_rates.observe(rate);
    }
    let cpu = histogram(
        "shardman_process_cpu_cores",
        "CPU use of each bot process that reported it, in cores.",
        CPU_BUCKETS,
    )?;
    let memory = histogram(
        "shardman_process_resident_memory_bytes",
        "Resident memory of each bot process that reported it.",
        MEMORY_BUCKETS,
    )?;
    let pending = fleet.pending.iter().flat_map(|pending| {
        process_loads(
            pending.generation,
            pending.shards_per_process,
            &pending.shards,
        )
    });
    for process in process_loads(fleet.generation, fleet.shards_per_process, &fleet.shards)
        .into_iter()
        .chain(pending)
    {
        if let Some(cores) = process.cpu {
            cpu.observe(cores);
        }
        if let Some(bytes) = process.rss_bytes {
            memory.observe(bytes as f64);
        }
    }
    for collector in [shard_rates, cpu, memory] {
        registry.register(Box::new(collector))?;
    }
    Ok(())
}

fn store_down_families(registry: Registry) -> Result<Vec<MetricFamily>, prometheus::Error> {
    let up = IntGauge::new(
        "shardman_store_up",
        "1 when the store answered this scrape.",
    )?;
    up.set(0);
    registry.register(Box::new(up))?;
    Ok(registry.gather())
}
