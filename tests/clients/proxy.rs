//! A recording reverse proxy in front of one shardman replica: the bots talk to shardman through
//! it, unchanged, and the tests read who asked what (which process, which session id, which
//! answer), e.g. that a process woken from SIGSTOP never beats its old session again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::sockets::Processes;

/// One request as the proxy passed it on.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// When the request arrived.
    pub at: Instant,
    pub pid: Option<u32>,
    pub path: String,
    /// The `session_id` the request named (JSON or form body, or query).
    pub session_id: Option<String>,
    pub status: u16,
    /// The `session_id` a `/connect` answer granted.
    pub granted: Option<String>,
    /// The IDENTIFY slots a `/connect` or `/identify` answer gave: shard id (`None`: the group's
    /// first) and the moment its `sleep_duration` ends, counted from when the proxy got the answer.
    pub slots: Vec<(Option<u32>, Instant)>,
    /// The `Session-Id` a beat answer carried: the session re-signed during a secret rotation.
    pub resigned: Option<String>,
}

struct Shared {
    /// The replica requests go to; a rolling restart points it at the replica's successor.
    target: Mutex<String>,
    port: u16,
    client: reqwest::Client,
    processes: Processes,
    exchanges: Mutex<Vec<Exchange>>,
}

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    server: actix_web::dev::ServerHandle,
}

/// Headers passed through each way (everything shardman and the clients read).
const REQUEST_HEADERS: [&str; 4] = ["authorization", "content-type", "prefer", "accept"];
const RESPONSE_HEADERS: [&str; 3] = ["content-type", "retry-after", "session-id"];

impl Proxy {
    pub fn start(target: String, processes: Processes) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        // reqwest is built without a default TLS provider (shardman picks ring); plain HTTP here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            port,
            client: reqwest::Client::new(),
            processes,
            exchanges: Mutex::new(Vec::new()),
        });
        let data = web::Data::from(shared.clone());
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(forward))
                })
                .workers(1)
                // As a real proxy does: a bot that hangs up drops its request to shardman too,
                // so a `/connect?wait=` of a killed bot stops waiting (src/startup.rs).
                .h1_allow_half_closed(false)
                // As load balancers keep idle connections (60 s): shorter than shardman's own.
                .keep_alive(std::time::Duration::from_secs(60))
                .disable_signals()
                .listen(listener)
                .expect("listen")
                .run();
                sender.send(server.handle()).expect("send handle");
                let _ = server.await;
            });
        });
        let server = receiver.recv().expect("proxy started");
        Self {
            port,
            shared,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends the requests that arrive from now on to `target` (a load balancer taking a replica
    /// out of its rotation and its successor in).
    pub fn retarget(&self, target: String) {
        *self.shared.target.lock().expect("target") = target;
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared.exchanges.lock().expect("exchanges").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

fn session_of(query: &str, body: &[u8]) -> Option<String> {
    let from_json = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| value["session_id"].as_str().map(str::to_owned));
    let from_form = |text: &[u8]| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(text)
            .ok()?
            .into_iter()
            .find_map(|(key, value)| (key == "session_id").then_some(value))
    };
    from_json
        .or_else(|| from_form(body))
        .or_else(|| from_form(query.as_bytes()))
}

async fn forward(
    request: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let at = Instant::now();
    let pid = request
        .peer_addr()
        .and_then(|peer| shared.processes.owner(shared.port, peer.port()));
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |value| value.as_str())
        .to_owned();
    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let target = shared.target.lock().expect("target").clone();
    let mut outgoing = shared
        .client
        .request(method, format!("{target}{path_and_query}"))
        .body(body.to_vec());
    for name in REQUEST_HEADERS {
        if let Some(value) = request.headers().get(name) {
            outgoing = outgoing.header(name, value.as_bytes());
        }
    }
    let mut exchange = Exchange {
        at,
        pid,
        path: request.path().to_owned(),
        session_id: session_of(request.query_string(), &body),
        status: 502,
        granted: None,
        slots: Vec::new(),
        resigned: None,
    };
    let named_shard = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|value| value["shard_id"].as_u64())
        .map(|id| id as u32);
    let response = match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let headers: Vec<(String, Vec<u8>)> = RESPONSE_HEADERS
                .iter()
                .filter_map(|name| {
                    Some((
                        name.to_string(),
                        answer.headers().get(*name)?.as_bytes().to_vec(),
                    ))
                })
                .collect();
            let bytes = answer.bytes().await.unwrap_or_default();
            exchange.status = status;
            exchange.resigned = headers
                .iter()
                .find(|(name, _)| name == "session-id")
                .and_then(|(_, value)| String::from_utf8(value.clone()).ok());
            let answered = Instant::now();
            let answer = serde_json::from_slice::<Value>(&bytes).unwrap_or_default();
            let after = |seconds: &Value| {
                answered + Duration::from_secs_f64(seconds.as_f64().unwrap_or(0.0).max(0.0))
            };
            if exchange.path == "/connect" && status == 200 {
                exchange.granted = answer["session_id"].as_str().map(str::to_owned);
                let ids = answer["shard_ids"].as_array().cloned().unwrap_or_default();
                let sleeps = answer["sleep_durations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let resumes = answer["resumes"].as_array().cloned().unwrap_or_default();
                for (index, (id, sleep)) in ids.iter().zip(&sleeps).enumerate() {
                    // A shard that inherits resume data has no slot.
                    if resumes.get(index).is_none_or(Value::is_null) {
                        exchange
                            .slots
                            .push((id.as_u64().map(|id| id as u32), after(sleep)));
                    }
                }
            }
            if exchange.path == "/identify" && status == 200 {
                exchange
                    .slots
                    .push((named_shard, after(&answer["sleep_duration"])));
            }
            let mut reply = HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            );
            for (name, value) in headers {
                reply.insert_header((name, value));
            }
            reply.body(bytes)
        }
        Err(_) => HttpResponse::BadGateway().finish(),
    };
    shared.exchanges.lock().expect("exchanges").push(exchange);
    response
}
