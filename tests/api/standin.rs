//! Local stand-ins for the only outside services shardman talks to: Discord's REST API and a
//! webhook. Each is an HTTP server on 127.0.0.1:0 that records every request and answers as the
//! test scripts it. Nothing in the tests reaches Discord.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
    /// Wait this long before answering (a slow or hanging service).
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }

    pub fn no_content() -> Self {
        Self::json(204, Value::Null)
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Decides the reply to the request numbered `n` (from 0).
type Script = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

struct Shared {
    log: Mutex<Vec<Recorded>>,
    script: Box<Script>,
}

pub struct StandIn {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base: String,
    shared: Arc<Shared>,
}

impl StandIn {
    pub async fn start(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            log: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let data = web::Data::from(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stand-in");
        let port = listener.local_addr().expect("address").port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("log").clone()
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let recorded = Recorded {
        at: Instant::now(),
        method: request.method().to_string(),
        path: request.path().to_owned(),
        authorization: request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = {
        let mut log = shared.log.lock().expect("log");
        let reply = (shared.script)(log.len(), &recorded);
        log.push(recorded);
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response =
        HttpResponse::build(StatusCode::from_u16(reply.status).expect("status code"));
    for (name, value) in &reply.headers {
        response.insert_header((*name, value.as_str()));
    }
    if reply.body.is_null() {
        response.finish()
    } else {
        response.json(reply.body)
    }
}

/// Discord's `GET /gateway/bot` answer.
pub fn gateway_bot(shards: u32, max_concurrency: u32, remaining: u32) -> Value {
    json!({
        "url": "wss://gateway.discord.gg",
        "shards": shards,
        "session_start_limit": {
            "total": 1000,
            "remaining": remaining,
            "reset_after": 3_600_000,
            "max_concurrency": max_concurrency,
        },
    })
}

/// Discord's 429 for a bucket: both the `Retry-After` header and the JSON `retry_after`.
pub fn rate_limited(seconds: f64) -> Reply {
    Reply::json(
        429,
        json!({
            "message": "You are being rate limited.",
            "retry_after": seconds,
            "global": false,
        }),
    )
    .header("Retry-After", &seconds.ceil().to_string())
}

/// A stand-in for Discord's API that always answers `/gateway/bot` with this.
pub async fn discord(shards: u32, max_concurrency: u32) -> StandIn {
    StandIn::start(move |_, _| Reply::json(200, gateway_bot(shards, max_concurrency, 1000))).await
}

/// The value of the embed field `name` in a webhook message.
pub fn embed_field(message: &Value, name: &str) -> Option<String> {
    message["embeds"][0]["fields"]
        .as_array()?
        .iter()
        .find(|field| field["name"] == name)
        .and_then(|field| field["value"].as_str())
        .map(str::to_owned)
}

/// `(event, shard id)` of a webhook message.
pub fn alert_of(message: &Value) -> (String, String) {
    (
        embed_field(message, "Event").unwrap_or_default(),
        embed_field(message, "Shard ID").unwrap_or_default(),
    )
}
