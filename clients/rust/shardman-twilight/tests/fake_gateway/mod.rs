//! A minimal Discord gateway for the adapter's own tests: HELLO, heartbeat ACK, IDENTIFY ->
//! READY (close 4004 unless the token is `Bot token`), RESUME of a known session -> RESUMED (else
//! op 9), and a record of what each connection did. (The repository's stand-in Discord in tests/clients is the full one.)
#![allow(dead_code)] // each test file uses a part of it

use futures_core::Stream;
use futures_sink::Sink;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{CloseCode, Message, ServerBuilder, WebSocketStream};

#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    Connected {
        path: String,
    },
    Identify {
        shard: [u32; 2],
    },
    Resume {
        session_id: String,
        sequence: u64,
    },
    /// A close frame from the client, with its code.
    Closed {
        code: u16,
    },
    /// The TCP connection ended.
    Gone,
    /// An IDENTIFY with a wrong token, closed with 4004.
    Rejected,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub connection: u32,
    pub seen: Seen,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    records: Vec<Record>,
    sessions: HashSet<String>,
    connections: u32,
    /// How long READY follows an IDENTIFY (Discord takes a while for a bot in many guilds).
    ready_after: Duration,
    /// Dispatches sent right after each READY.
    dispatches_after_ready: u64,
}

#[derive(Clone)]
pub struct FakeGateway {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("address"));
        let state = Arc::new(Mutex::new(State::default()));
        let gateway = Self { url, state };
        let serving = gateway.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(stream));
            }
        });
        gateway
    }

    /// A Discord session that a RESUME may name.
    pub fn known_session(&self, session_id: &str) {
        self.state
            .lock()
            .unwrap()
            .sessions
            .insert(session_id.to_owned());
    }

    /// READY follows each IDENTIFY `delay` later.
    pub fn hold_ready(&self, delay: Duration) {
        self.state.lock().unwrap().ready_after = delay;
    }

    /// Each READY is followed by `count` more dispatches (GUILD_DELETE of an unavailable guild:
    /// an outage, which changes nothing).
    pub fn dispatch_after_ready(&self, count: u64) {
        self.state.lock().unwrap().dispatches_after_ready = count;
    }

    pub fn records(&self) -> Vec<Record> {
        self.state.lock().unwrap().records.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.records().into_iter().map(|r| r.seen).collect()
    }

    fn record(&self, connection: u32, seen: Seen) {
        self.state.lock().unwrap().records.push(Record {
            connection,
            seen,
            at: Instant::now(),
        });
    }

    async fn serve(self, stream: TcpStream) {
        let Ok((request, mut ws)) = ServerBuilder::new().accept(stream).await else {
            return;
        };
        let connection = {
            let mut state = self.state.lock().unwrap();
            state.connections += 1;
            state.connections
        };
        self.record(
            connection,
            Seen::Connected {
                path: request.uri().path().to_owned(),
            },
        );
        send(
            &mut ws,
            json!({"op": 10, "d": {"heartbeat_interval": 1000}}),
        )
        .await;
        let mut sequence = 0u64;
        loop {
            let Some(Ok(message)) = poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)).await else {
                self.record(connection, Seen::Gone);
                return;
            };
            if message.is_close() {
                let code = message.as_close().map_or(0, |(code, _)| u16::from(code));
                self.record(connection, Seen::Closed { code });
                let _ = poll_fn(|cx| Pin::new(&mut ws).poll_close(cx)).await;
                return;
            }
            let Some(text) = message.as_text() else {
                continue;
            };
            let payload: Value = serde_json::from_str(text).expect("JSON from the client");
            match payload["op"].as_u64() {
                Some(1) => send(&mut ws, json!({"op": 11})).await,
                Some(2) if payload["d"]["token"] != "Bot token" => {
                    let code = CloseCode::try_from(4004).expect("a close code");
                    send_message(&mut ws, Message::close(Some(code), "Authentication failed"))
                        .await;
                    let _ = poll_fn(|cx| Pin::new(&mut ws).poll_close(cx)).await;
                    self.record(connection, Seen::Rejected);
                    return;
                }
                Some(2) => {
                    let shard = &payload["d"]["shard"];
                    let shard = [
                        shard[0].as_u64().unwrap() as u32,
                        shard[1].as_u64().unwrap() as u32,
                    ];
                    self.record(connection, Seen::Identify { shard });
                    let session_id = format!("session-{connection}");
                    self.known_session(&session_id);
                    sequence += 1;
                    let ready = json!({"op": 0, "t": "READY", "s": sequence, "d": {
                        "v": 10,
                        "user": {"id": "100", "username": "bot", "discriminator": "0",
                                 "avatar": null, "bot": true, "mfa_enabled": false,
                                 "accent_color": null, "banner": null},
                        "guilds": [{"id": "1", "unavailable": true}, {"id": "2", "unavailable": true}],
                        "session_id": session_id,
                        "resume_gateway_url": format!("{}/resume", self.url),
                        "shard": shard,
                        "application": {"id": "100", "flags": 0},
                    }});
                    let (ready_after, dispatches) = {
                        let state = self.state.lock().unwrap();
                        (state.ready_after, state.dispatches_after_ready)
                    };
                    tokio::time::sleep(ready_after).await;
                    send(&mut ws, ready).await;
                    for _ in 0..dispatches {
                        sequence += 1;
                        let dispatch = json!({"op": 0, "t": "GUILD_DELETE", "s": sequence,
                                              "d": {"id": "1", "unavailable": true}});
                        send(&mut ws, dispatch).await;
                    }
                }
                Some(6) => {
                    let session_id = payload["d"]["session_id"].as_str().unwrap_or_default();
                    let resumed_from = payload["d"]["seq"].as_u64().unwrap_or_default();
                    self.record(
                        connection,
                        Seen::Resume {
                            session_id: session_id.to_owned(),
                            sequence: resumed_from,
                        },
                    );
                    let known = self.state.lock().unwrap().sessions.contains(session_id);
                    if known {
                        sequence = resumed_from + 1;
                        let resumed = json!({"op": 0, "t": "RESUMED", "s": sequence, "d": {}});
                        send(&mut ws, resumed).await;
                    } else {
                        send(&mut ws, json!({"op": 9, "d": false})).await;
                    }
                }
                _ => {}
            }
        }
    }
}

async fn send(ws: &mut WebSocketStream<TcpStream>, payload: Value) {
    send_message(ws, Message::text(payload.to_string())).await;
}

async fn send_message(ws: &mut WebSocketStream<TcpStream>, message: Message) {
    let mut message = Some(message);
    let _ = poll_fn(|cx| {
        let mut sink = Pin::new(&mut *ws);
        if message.is_some() {
            std::task::ready!(sink.as_mut().poll_ready(cx))?;
            sink.as_mut().start_send(message.take().expect("checked"))?;
        }
        sink.poll_flush(cx)
    })
    .await;
}
