//! The OpenAPI document against the handlers: every error the routes answer when driven into it
//! is documented for that route (status, body, `Retry-After`), and every error status a route
//! documents is one the routes were driven into here.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use shardman::config::{Secret, Settings};
use shardman::domain::GatewayInfo;
use shardman::session_token::{SessionClaims, SessionSigner, new_nonce};
use shardman::store::Store;

use crate::helpers::{Backend, SECRET, TestApp, expect_json, settings, settings_on, spawn_app};
use crate::support::redis::RedisServer;

/// A route, as the document keys it.
type Route = (&'static str, &'static str);

/// One answer of a route.
#[derive(Debug)]
struct Answer {
    route: Route,
    status: StatusCode,
    body: Value,
    retry_after: bool,
}

/// What the routes answered, collected across the scenarios below.
#[derive(Default)]
struct Answers(Vec<Answer>);

impl Answers {
    async fn record(&mut self, route: Route, request: RequestBuilder) -> StatusCode {
        let response = request.send().await.expect("request");
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.0.push(Answer {
            route,
            status,
            body,
            retry_after,
        });
        status
    }
}

const CONNECT: Route = ("get", "/connect");
const BEAT: Route = ("post", "/beat");
const DISCONNECT_BY_QUERY: Route = ("get", "/disconnect");
const DISCONNECT_BY_BODY: Route = ("post", "/disconnect");
const IDENTIFY: Route = ("post", "/identify");
const PERMIT: Route = ("post", "/identify/permit");
const CONFIRM: Route = ("post", "/identify/confirm");
const RESHARD: Route = ("post", "/reshard");
const STATUS: Route = ("get", "/status");
const AUTOSCALE: Route = ("get", "/autoscale");
const METRICS: Route = ("get", "/metrics");
const READYZ: Route = ("get", "/readyz");

/// Every route that reads the secret.
const AUTHENTICATED: [Route; 11] = [
    CONNECT,
    BEAT,
    DISCONNECT_BY_QUERY,
    DISCONNECT_BY_BODY,
    IDENTIFY,
    PERMIT,
    CONFIRM,
    RESHARD,
    STATUS,
    AUTOSCALE,
    METRICS,
];

/// Routes that read a body.
const WITH_BODY: [Route; 6] = [BEAT, DISCONNECT_BY_BODY, IDENTIFY, PERMIT, CONFIRM, RESHARD];

fn method(route: Route) -> Method {
    route.0.to_uppercase().parse().expect("method")
}

/// `route` with the secret and a form body.
fn form(app: &TestApp, route: Route, fields: &[(&str, &str)]) -> RequestBuilder {
    app.request(method(route), route.1).form(fields)
}

/// Wrong secrets, missing headers and fields, oversized bodies, unknown sessions, a full plan and
/// a retired generation: one replica on the in-process store, with one shard.
async fn refusals(answers: &mut Answers) {
    let app = spawn_app(Settings {
        max_shards: 1,
        ..settings(Backend::Memory)
    })
    .await;
    for route in AUTHENTICATED {
        answers
            .record(route, app.request_as(method(route), route.1, "wrong"))
            .await;
        answers
            .record(route, app.anonymous(method(route), route.1))
            .await;
    }
    let oversized = "x".repeat(65 * 1024);
    for route in WITH_BODY {
        answers
            .record(route, form(&app, route, &[("session_id", &oversized)]))
            .await;
        answers.record(route, form(&app, route, &[])).await;
        answers
            .record(route, form(&app, route, &[("session_id", "unknown")]))
            .await;
    }
    answers
        .record(DISCONNECT_BY_QUERY, app.request(Method::GET, "/disconnect"))
        .await;
    answers
        .record(
            DISCONNECT_BY_QUERY,
            app.request(Method::GET, "/disconnect?session_id=unknown"),
        )
        .await;
    let extra = json!("x".repeat(17 * 1024)).to_string();
    answers
        .record(
            BEAT,
            form(&app, BEAT, &[("session_id", "unknown"), ("extra", &extra)]),
        )
        .await;

    // The one shard is held: a second connect gets none. A reshard to two shards, once both of
    // the new generation have beaten, retires the first session's generation.
    let retired = app.claim().await;
    answers
        .record(CONNECT, app.request(Method::GET, "/connect"))
        .await;
    answers
        .record(RESHARD, form(&app, RESHARD, &[("max_shards", "2")]))
        .await;
    let newcomers = [app.claim().await, app.claim().await];
    for newcomer in &newcomers {
        assert_eq!(
            app.beat(&newcomer.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }
    for route in [BEAT, IDENTIFY, PERMIT, CONFIRM] {
        let status = answers
            .record(
                route,
                form(&app, route, &[("session_id", &retired.session_id)]),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{route:?} of a retired session"
        );
    }
}

/// An address that failed to authenticate too often is refused on every route, secret or not.
async fn a_blocked_address(answers: &mut Answers) {
    let app = spawn_app(Settings {
        failed_auth_per_minute: 1,
        ..settings(Backend::Memory)
    })
    .await;
    // One failure is the budget; the next one blocks the address.
    for expected in [StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS] {
        assert_eq!(app.get_as("/connect", "wrong").await.status(), expected);
    }
    for route in AUTHENTICATED {
        let status = answers
            .record(route, app.request(method(route), route.1))
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{route:?} blocked");
    }
}

/// Discord's identify budget down to its reserve: connects, identifies and permits wait for the
/// reset.
async fn an_exhausted_identify_budget(answers: &mut Answers) {
    let settings = Settings {
        max_shards: 2,
        ..settings(Backend::Redis)
    };
    let store = Store::open(&settings).await.expect("store");
    store
        .save_gateway(&GatewayInfo {
            shards: 2,
            max_concurrency: 1,
            session_start_total: 100,
            session_start_remaining: 6,
            url: None,
            session_start_reset_after_ms: 3_600_000,
        })
        .await
        .expect("save");
    let app = spawn_app(settings).await;
    let granted = app.claim().await;
    for (route, request) in [
        (CONNECT, app.request(Method::GET, "/connect")),
        (
            IDENTIFY,
            form(&app, IDENTIFY, &[("session_id", &granted.session_id)]),
        ),
        (
            PERMIT,
            form(&app, PERMIT, &[("session_id", &granted.session_id)]),
        ),
    ] {
        let status = answers.record(route, request).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{route:?}");
    }
}

/// A store that just lost its data holds newcomers back; a store that is gone fails every route
/// that reads it.
async fn a_store_in_trouble(answers: &mut Answers) {
    let mut redis = RedisServer::start();
    let settings = Settings {
        quarantine_fresh_redis: true,
        ..settings_on(&redis)
    };
    // A session id this deployment would have signed, so the routes take it to the store.
    let session_id = SessionSigner::new(SECRET, &settings.key_prefix).sign(&SessionClaims {
        shard_id: 0,
        generation: 1,
        max_shards: 1,
        fence: 1,
        epoch: 1,
        nonce: new_nonce(),
        shards_per_process: 1,
    });
    let app = spawn_app(settings).await;
    let status = answers
        .record(CONNECT, app.request(Method::GET, "/connect"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "recovering");

    redis.stop();
    let store_routes = [
        CONNECT,
        BEAT,
        DISCONNECT_BY_QUERY,
        DISCONNECT_BY_BODY,
        IDENTIFY,
        PERMIT,
        CONFIRM,
        RESHARD,
        STATUS,
        AUTOSCALE,
    ];
    for route in store_routes {
        let fields = [("session_id", session_id.as_str()), ("max_shards", "2")];
        let request = match route {
            // Digits, dots and hex: nothing to escape.
            DISCONNECT_BY_QUERY => {
                app.request(Method::GET, &format!("/disconnect?session_id={session_id}"))
            }
            _ => form(&app, route, &fields),
        };
        let status = answers.record(route, request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{route:?}");
    }
    answers
        .record(READYZ, app.anonymous(Method::GET, "/readyz"))
        .await;
}

/// Secret drift: a replica whose `SECRET` is not the deployment's refuses the bot's writes (with
/// its own secret or the deployment's), anything asked with the deployment's secret, and
/// readiness. Two replicas of one deployment on one Redis.
async fn a_replica_whose_secret_differs(answers: &mut Answers) {
    let deployment = settings(Backend::Redis);
    let first = spawn_app(deployment.clone()).await;
    let session = first.claim().await;
    let refused = spawn_app(Settings {
        secret: Some(Secret::new("another-secret")),
        ..deployment
    })
    .await;
    let requests = |secret: &str, route: Route| match route {
        DISCONNECT_BY_QUERY => refused.request_as(
            Method::GET,
            &format!("/disconnect?session_id={}", session.session_id),
            secret,
        ),
        _ => refused.request_as(method(route), route.1, secret).form(&[
            ("session_id", session.session_id.as_str()),
            ("max_shards", "2"),
        ]),
    };
    for route in AUTHENTICATED {
        let status = answers.record(route, requests(SECRET, route)).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{route:?} with the deployment's secret"
        );
    }
    for route in [
        CONNECT,
        BEAT,
        DISCONNECT_BY_QUERY,
        DISCONNECT_BY_BODY,
        IDENTIFY,
        PERMIT,
        CONFIRM,
        RESHARD,
    ] {
        let status = answers
            .record(route, requests("another-secret", route))
            .await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{route:?} with the replica's own secret"
        );
    }
    let status = answers
        .record(READYZ, refused.anonymous(Method::GET, "/readyz"))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready");
}

/// The documented responses of a route, by status.
fn documented(document: &Value, (method, path): Route) -> &serde_json::Map<String, Value> {
    document["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

/// Asserts that an error answer is one its route documents: the status, a body among the
/// examples (or a 422 in the validation shape), and `Retry-After` exactly where documented.
fn assert_documented(document: &Value, answer: &Answer) {
    let (method, path) = answer.route;
    let code = answer.status.as_str();
    let response = documented(document, answer.route)
        .get(code)
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {code} {}, undocumented",
                answer.body
            )
        });
    let content = &response["content"]["application/json"];
    let documented_bodies: Vec<&Value> = content["examples"]
        .as_object()
        .map(|examples| examples.values().map(|example| &example["value"]).collect())
        .unwrap_or_default();
    if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
        assert_eq!(
            content["schema"]["$ref"], "#/components/schemas/ValidationError",
            "{method} {path} 422"
        );
        assert!(answer.body["detail"].is_array(), "{}", answer.body);
    } else {
        assert!(
            documented_bodies.contains(&&answer.body),
            "{method} {path} answered {code} {}, documented: {documented_bodies:?}",
            answer.body
        );
    }
    assert_eq!(
        response["headers"].get("Retry-After").is_some(),
        answer.retry_after,
        "{method} {path} {code}: Retry-After as documented"
    );
}

#[tokio::test]
async fn every_error_a_route_answers_is_documented_and_every_documented_error_is_answered() {
    let mut answers = Answers::default();
    refusals(&mut answers).await;
    a_blocked_address(&mut answers).await;
    an_exhausted_identify_budget(&mut answers).await;
    a_store_in_trouble(&mut answers).await;
    a_replica_whose_secret_differs(&mut answers).await;
    let app = spawn_app(settings(Backend::Memory)).await;
    let document: Value =
        expect_json(app.get_anonymous("/openapi.json").await, StatusCode::OK).await;

    let mut answered: BTreeMap<Route, BTreeSet<String>> = BTreeMap::new();
    for answer in answers
        .0
        .iter()
        .filter(|answer| answer.status.as_u16() >= 400)
    {
        assert_documented(&document, answer);
        answered
            .entry(answer.route)
            .or_default()
            .insert(answer.status.as_str().to_owned());
    }

    // An internal failure (a store reply this build cannot read, a metrics encoding failure)
    // cannot be provoked from outside; every other documented error was answered above.
    let unprovoked = ["500"];
    let mut missing = Vec::new();
    for route in AUTHENTICATED.into_iter().chain([READYZ]) {
        for code in documented(&document, route).keys() {
            let is_error = code.parse::<u16>().is_ok_and(|code| code >= 400);
            let seen = answered
                .get(&route)
                .is_some_and(|codes| codes.contains(code));
            if is_error && !seen && !unprovoked.contains(&code.as_str()) {
                missing.push(format!("{} {} {code}", route.0, route.1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but never answered here: {missing:#?}"
    );
}

#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let app = spawn_app(settings(Backend::Memory)).await;
    let document: Value =
        expect_json(app.get_anonymous("/openapi.json").await, StatusCode::OK).await;
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let pointer = reference.trim_start_matches('#');
        assert!(
            document.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn collect_references(value: &Value, references: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            if let Some(Value::String(reference)) = fields.get("$ref") {
                references.push(reference.clone());
            }
            fields
                .values()
                .for_each(|field| collect_references(field, references));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_references(item, references)),
        _ => {}
    }
}
