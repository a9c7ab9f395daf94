//! Logging and per-replica request metrics.
//!
//! * [`init_logging`]: `env_logger` in text or JSON (`LOG_FORMAT=json`, one object per line).
//! * [`Telemetry`]: this replica's id and its Prometheus registry (request counts and latencies by
//!   route pattern and status). It is app data of its own, where the middleware and `/metrics` find
//!   it.
//! * [`record_requests`]: the middleware that writes one log line per request and feeds the metrics.
//!   It logs the method, the route pattern, the path without its query, the status, the latency and
//!   the replica id: never a header, so neither `SECRET` nor `BOT_TOKEN` can reach the log.

use std::io::Write;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use rand::RngExt;

use crate::config::LogFormat;

/// The `target` of request log lines, so they can be filtered (`RUST_LOG=shardman::request=warn`).
pub const REQUEST_LOG_TARGET: &str = "shardman::request";

/// Label for requests that matched no route (scanners, typos): keeps label cardinality bounded.
const UNMATCHED_ROUTE: &str = "unmatched";

/// Installs the global logger. `RUST_LOG` filters as usual (default `info`).
pub fn init_logging(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let mut line = serde_json::Map::new();
            line.insert(
                "ts".into(),
                chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .into(),
            );
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            line.insert("msg".into(), record.args().to_string().into());
            let mut fields = JsonFields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", serde_json::Value::Object(line))
        });
    }
    // A second call (tests start many replicas in one process) keeps the first logger.
    let _ = builder.try_init();
}

/// Copies a record's key-values into the JSON line, numbers as numbers.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(number) = value.to_u64() {
            number.into()
        } else if let Some(number) = value.to_i64() {
            number.into()
        } else if let Some(number) = value.to_f64() {
            serde_json::Number::from_f64(number)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)
        } else if let Some(flag) = value.to_bool() {
            flag.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

/// One replica's identity and request metrics. Cluster-wide figures are not kept here: `/metrics`
/// reads them from the store at scrape time (see `http::routes::metrics`).
pub struct Telemetry {
    pub replica_id: String,
    pub registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    in_flight: IntGaugeVec,
}

impl Telemetry {
    pub fn new() -> Self {
        let replica_id = replica_id();
        let registry = Registry::new_custom(
            None,
            Some([("replica".to_owned(), replica_id.clone())].into()),
        )
        .expect("static registry labels are valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "shardman_http_requests_total",
                "HTTP requests served by this replica, by method, route pattern and status.",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let durations = HistogramVec::new(
            HistogramOpts::new(
                "shardman_http_request_duration_seconds",
                "Time to answer an HTTP request on this replica, by method, route pattern and status.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let in_flight = IntGaugeVec::new(
            Opts::new(
                "shardman_http_requests_in_flight",
                "HTTP requests this replica is answering now.",
            ),
            &["method", "route"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(durations.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric registered once");
        }
        Self {
            replica_id,
            registry,
            requests,
            durations,
            in_flight,
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// `HOSTNAME` (the pod or container name) when set, plus a random suffix so that two processes on
/// one host, or a restarted process, never share an id.
fn replica_id() -> String {
    let suffix: u32 = rand::rng().random();
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.trim().is_empty() => format!("{}-{:08x}", host.trim(), suffix),
        _ => format!("replica-{suffix:08x}"),
    }
}

/// Middleware: one log line and one observation per request.
pub async fn record_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let telemetry = request.app_data::<web::Data<Telemetry>>().cloned();
    let method = request.method().clone();
    // Copied only when the line is logged (most deployments log requests at info, some do not).
    let path = log::log_enabled!(target: REQUEST_LOG_TARGET, log::Level::Info)
        .then(|| request.path().to_owned());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let in_flight = telemetry.as_ref().map(|telemetry| {
        let gauge = telemetry
            .in_flight
            .with_label_values(&[method.as_str(), route.as_str()]);
        gauge.inc();
        gauge
    });
    let outcome = next.call(request).await;
    if let Some(gauge) = in_flight {
        gauge.dec();
    }
    let elapsed = started.elapsed();
    let status = match &outcome {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    let replica = telemetry
        .as_ref()
        .map(|telemetry| telemetry.replica_id.as_str())
        .unwrap_or("unknown");
    if let Some(telemetry) = &telemetry {
        let labels = [method.as_str(), route.as_str(), status.as_str()];
        telemetry.requests.with_label_values(&labels).inc();
        telemetry
            .durations
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }
    if let Some(path) = path {
        let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        let status = status.as_u16();
        log::info!(
            target: REQUEST_LOG_TARGET,
            method = method.as_str(),
            route = route.as_str(),
            path = path.as_str(),
            status = status,
            latency_ms = latency_ms,
            replica = replica;
            // The fields follow the message in text logs and are keys of their own in JSON.
            "{method} {path} {status}"
        );
    }
    outcome
}
