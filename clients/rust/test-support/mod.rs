//! A scripted HTTP server playing shardman, for the answers a real one gives only under failure
//! (503, 429, 401 on a beat...). Plain HTTP/1.1 on tokio, one request per connection.
#![allow(dead_code)] // each test file uses a part of it

pub mod shardman;

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    /// Held back this long (a shardman that waits before answering).
    delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same reply, given `delay` after the request arrived.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The path with its query, as sent.
    pub target: String,
    /// The query string, without `?`.
    pub query: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Script {
    /// Per path: the replies still to give; the last one repeats.
    replies: HashMap<String, VecDeque<Reply>>,
    requests: Vec<Request>,
}

#[derive(Clone)]
pub struct FakeShardman {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl FakeShardman {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(Script::default()));
        let serving = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, serving.clone()));
            }
        });
        Self { url, script }
    }

    /// Answers `path` for the session `session_id` (the JSON body's) with `replies` in order, the
    /// last one from then on; other sessions get the replies of [`FakeShardman::on`].
    pub fn on_session(&self, path: &str, session_id: &str, replies: Vec<Reply>) {
        self.on(&session_key(path, session_id), replies);
    }

    /// Answers `path` with `replies` in order, the last one from then on.
    pub fn on(&self, path: &str, replies: Vec<Reply>) {
        self.script
            .lock()
            .unwrap()
            .replies
            .insert(path.to_owned(), replies.into());
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        let script = self.script.lock().unwrap();
        script
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn serve(mut stream: TcpStream, script: Arc<Mutex<Script>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let session = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json["session_id"].as_str().map(|id| session_key(&path, id)));
    let reply = {
        let mut script = script.lock().unwrap();
        script.requests.push(Request {
            method,
            path: path.clone(),
            target: target.to_owned(),
            query,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
        let key = session
            .filter(|key| script.replies.contains_key(key))
            .unwrap_or_else(|| path.clone());
        match script.replies.get_mut(&key) {
            Some(replies) if replies.len() > 1 => replies.pop_front(),
            Some(replies) => replies.front().cloned(),
            None => None,
        }
        .unwrap_or_else(|| Reply::json(404, json!({"detail": "Not Found"})))
    };
    tokio::time::sleep(reply.delay).await;
    let mut response = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    if !reply.body.is_empty() {
        response.push_str("content-type: application/json\r\n");
    }
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&reply.body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn session_key(path: &str, session_id: &str) -> String {
    format!("{path}#{session_id}")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A `/connect` answer as shardman gives it, for a group of `shard_ids`.
pub fn claim_answer(shard_ids: &[u32], sleeps: &[f64], lease: f64, beat_interval: f64) -> Value {
    json!({
        "shard_id": shard_ids[0],
        "max_shards": 4,
        "session_id": "session-1",
        "fence": 7,
        "generation": 1,
        "state": "active",
        "sleep_duration": sleeps[0],
        "resume": null,
        "shard_ids": shard_ids,
        "sleep_durations": sleeps,
        "resumes": shard_ids.iter().map(|_| Value::Null).collect::<Vec<_>>(),
        "lease_seconds": lease,
        "beat_interval": beat_interval,
        "gateway_url": null,
    })
}

pub fn beat_answer(state: &str) -> Value {
    json!({"shard_id": 0, "max_shards": 4, "generation": 1, "state": state, "fence": 7})
}
