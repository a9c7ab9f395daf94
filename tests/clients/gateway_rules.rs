//! The stand-in Discord itself, spoken to frame by frame with a plain WebSocket client: the rules
//! the scenarios rely on hold (identify buckets, resume, close codes, zombies, REST auth).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::discord::{Config, Discord, Dispatches, Event, Shard, TICK, TOKEN};
use crate::sockets::Processes;

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// A gateway without dispatches of its own, so each answer is the next frame.
fn discord(heartbeat_interval: Duration) -> Discord {
    Discord::start(
        Config::new(2, heartbeat_interval, 4).dispatches(Dispatches::none()),
        Processes::default(),
    )
}

/// A connection past HELLO (checked).
fn open(discord: &Discord) -> Socket {
    let url = format!(
        "ws://127.0.0.1:{}/?v=10&encoding=json&compress=zlib-stream",
        discord.port
    );
    let (mut socket, _) = tungstenite::connect(url).expect("connect to the gateway");
    if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    let hello = next(&mut socket);
    assert_eq!(hello["op"], 10, "{hello}");
    assert!(
        hello["d"]["heartbeat_interval"].as_u64().is_some(),
        "{hello}"
    );
    socket
}

fn send(socket: &mut Socket, payload: Value) {
    socket
        .send(Message::Text(payload.to_string().into()))
        .expect("send");
}

/// The next text frame as JSON, or `{"close": code}` for a close frame, `{"closed": true}` when the
/// connection ended without one.
fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).expect("JSON frame"),
            Ok(Message::Close(frame)) => {
                return json!({"close": frame.map(|frame| u16::from(frame.code))});
            }
            Ok(_) => continue,
            Err(_) => return json!({"closed": true}),
        }
    }
}

fn identify(socket: &mut Socket, token: &str, shard: [u32; 2]) -> Value {
    send(
        socket,
        json!({"op": 2, "d": {"token": token, "intents": 1, "shard": shard,
                "properties": {"os": "linux", "browser": "test", "device": "test"}}}),
    );
    next(socket)
}

fn resume(socket: &mut Socket, session_id: &str, seq: u64) -> Value {
    send(
        socket,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": seq}}),
    );
    next(socket)
}

#[test]
fn an_identify_inside_its_buckets_five_seconds_gets_op_9_and_counts_as_too_early() {
    let discord = discord(Duration::from_secs(30));
    let mut first = open(&discord);
    let ready = identify(&mut first, TOKEN, [0, 4]);
    assert_eq!(
        (ready["op"].clone(), ready["t"].clone(), ready["s"].clone()),
        (json!(0), json!("READY"), json!(1))
    );
    let data = &ready["d"];
    assert_eq!(data["shard"], json!([0, 4]));
    assert_eq!(data["v"], 10);
    assert!(data["session_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        data["resume_gateway_url"],
        format!("ws://127.0.0.1:{}/resume", discord.port)
    );
    assert!(data["user"]["id"].is_string() && data["user"]["bot"] == true);
    assert!(data["application"]["id"].is_string() && data["application"]["flags"] == 0);
    assert_eq!(data["guilds"], json!([]));

    // Shard 2 shares bucket 0 with shard 0 (2 % 2); shard 1 has bucket 1 to itself.
    let mut same_bucket = open(&discord);
    assert_eq!(
        identify(&mut same_bucket, TOKEN, [2, 4]),
        json!({"op": 9, "d": false, "s": null, "t": null})
    );
    let mut other_bucket = open(&discord);
    assert_eq!(identify(&mut other_bucket, TOKEN, [1, 4])["t"], "READY");

    let early = discord.too_early_identifies();
    assert_eq!(early.len(), 1, "{early:?}");
    assert_eq!(early[0].shard, Some(Shard { id: 2, count: 4 }));
    assert_eq!(
        discord.live_shards(),
        vec![Shard { id: 0, count: 4 }, Shard { id: 1, count: 4 }]
    );
}

#[test]
fn a_wrong_token_closes_4004_and_a_shard_outside_its_count_4010() {
    let discord = discord(Duration::from_secs(30));
    let mut socket = open(&discord);
    assert_eq!(
        identify(&mut socket, "not-the-token", [0, 1]),
        json!({"close": 4004})
    );
    let mut socket = open(&discord);
    assert_eq!(identify(&mut socket, TOKEN, [4, 4]), json!({"close": 4010}));
    // twilight sends the token with the REST prefix; Discord takes it.
    let mut socket = open(&discord);
    assert_eq!(
        identify(&mut socket, &format!("Bot {TOKEN}"), [0, 1])["t"],
        "READY"
    );
    assert_eq!(identify(&mut socket, TOKEN, [0, 1]), json!({"close": 4005}));
}

#[test]
fn a_resume_moves_the_session_off_its_old_connection_and_an_unknown_one_gets_op_9() {
    let discord = discord(Duration::from_secs(30));
    let mut holder = open(&discord);
    let ready = identify(&mut holder, TOKEN, [1, 4]);
    let session_id = ready["d"]["session_id"]
        .as_str()
        .expect("session")
        .to_owned();

    let mut successor = open(&discord);
    let resumed = resume(&mut successor, &session_id, 1);
    assert_eq!(
        (resumed["t"].clone(), resumed["s"].clone()),
        (json!("RESUMED"), json!(2))
    );
    assert_eq!(next(&mut holder), json!({"close": 4009}));
    assert_eq!(discord.live_shards(), vec![Shard { id: 1, count: 4 }]);
    assert_eq!(discord.longest_double_session().0, Duration::ZERO);

    let mut stranger = open(&discord);
    assert_eq!(resume(&mut stranger, "no-such-session", 0)["op"], 9);
    let mut ahead = open(&discord);
    assert_eq!(resume(&mut ahead, &session_id, 99), json!({"close": 4007}));

    // A client's own close with 1000 logs the session out: it cannot be resumed any more.
    successor
        .close(Some(tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .expect("close");
    let _ = next(&mut successor);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !discord.live_shards().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut late = open(&discord);
    assert_eq!(resume(&mut late, &session_id, 2)["op"], 9);
}

#[test]
fn a_connection_without_heartbeats_is_dropped_and_its_session_stays_resumable() {
    let discord = discord(Duration::from_millis(200));
    let mut beating = open(&discord);
    let mut silent = open(&discord);
    let ready = identify(&mut silent, TOKEN, [0, 1]);
    let session_id = ready["d"]["session_id"]
        .as_str()
        .expect("session")
        .to_owned();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        send(&mut beating, json!({"op": 1, "d": null}));
        assert_eq!(next(&mut beating)["op"], 11);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Two intervals without a heartbeat: dropped without a close frame.
    assert_eq!(next(&mut silent), json!({"closed": true}));
    assert!(discord.records().iter().any(|record| matches!(
        &record.event,
        Event::Closed { by_server: true, reason, .. } if reason.starts_with("zombie")
    )));
    let mut again = open(&discord);
    assert_eq!(resume(&mut again, &session_id, 1)["t"], "RESUMED");
}

/// GET on the stand-in's REST API: (status, JSON body).
fn rest(discord: &Discord, path: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", discord.port)).expect("connect");
    let header = authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    write!(
        stream,
        "GET /api/v10{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}Connection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let status = answer[9..12].parse().expect("status");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn the_rest_api_answers_as_discord_with_the_bot_token_only() {
    let discord = discord(Duration::from_secs(30));
    let bot = format!("Bot {TOKEN}");
    let (status, gateway_bot) = rest(&discord, "/gateway/bot", Some(&bot));
    assert_eq!(status, 200);
    assert_eq!(
        gateway_bot["url"],
        format!("ws://127.0.0.1:{}", discord.port)
    );
    assert_eq!(gateway_bot["shards"], 4);
    assert_eq!(gateway_bot["session_start_limit"]["max_concurrency"], 2);
    assert_eq!(
        rest(&discord, "/gateway/bot", None),
        (401, json!({"message": "401: Unauthorized", "code": 0}))
    );
    assert_eq!(rest(&discord, "/users/@me", Some("Bot wrong")).0, 401);
    assert_eq!(rest(&discord, "/users/@me", Some(&bot)).1["bot"], true);
    assert!(rest(&discord, "/oauth2/applications/@me", Some(&bot)).1["id"].is_string());
    assert_eq!(rest(&discord, "/gateway", None).0, 200);
    assert_eq!(
        rest(&discord, "/nowhere", Some(&bot)),
        (404, json!({"message": "404: Not Found", "code": 0}))
    );
}

/// A gateway with `dispatches` and room for `replay_buffer` of them per session.
fn busy_discord(dispatches: Dispatches, replay_buffer: usize) -> Discord {
    Discord::start(
        Config::new(2, Duration::from_secs(30), 4)
            .dispatches(dispatches)
            .replay_buffer(replay_buffer),
        Processes::default(),
    )
}

fn session_of(ready: &Value) -> String {
    ready["d"]["session_id"]
        .as_str()
        .expect("session")
        .to_owned()
}

fn close_with(socket: &mut Socket, code: u16) {
    socket
        .close(Some(tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        }))
        .expect("close");
    // Until the gateway's own close frame (frames it sent before it are read and dropped).
    loop {
        let frame = next(socket);
        if frame.get("close").is_some() || frame.get("closed").is_some() {
            break;
        }
    }
}

#[test]
fn each_live_session_gets_dispatches_at_its_shards_rate_and_a_quiet_shard_none() {
    // Shard 0 busy (every 20 ms), every other shard quiet.
    let discord = busy_discord(
        Dispatches::none().shard(0, Some(Duration::from_millis(20))),
        64,
    );
    let mut quiet = open(&discord);
    assert_eq!(identify(&mut quiet, TOKEN, [1, 4])["s"], 1);
    let mut busy = open(&discord);
    let started = Instant::now();
    assert_eq!(identify(&mut busy, TOKEN, [0, 4])["s"], 1);

    let mut expected = 2;
    while started.elapsed() < Duration::from_millis(600) {
        let frame = next(&mut busy);
        assert_eq!(
            (frame["op"].clone(), frame["t"].clone(), frame["s"].clone()),
            (json!(0), json!(TICK), json!(expected)),
            "{frame}"
        );
        assert_eq!(frame["d"]["shard"], json!([0, 4]));
        expected += 1;
    }
    let ticks = expected - 2;
    // 30 due in the first 600 ms, and the one read last may be the 31st; a busy machine may skip
    // some, never add any.
    assert!((5..=31).contains(&ticks), "{ticks} dispatches in 600 ms");

    // The quiet shard's next frame is the answer to its heartbeat: nothing came before it.
    send(&mut quiet, json!({"op": 1, "d": 1}));
    assert_eq!(next(&mut quiet)["op"], 11);
}

#[test]
fn a_resume_replays_the_dispatches_after_its_seq_and_records_what_the_old_connection_was_sent() {
    let discord = busy_discord(Dispatches::every(Duration::from_millis(20)), 1024);
    let started = Instant::now();
    let mut old = open(&discord);
    let session_id = session_of(&identify(&mut old, TOKEN, [0, 4]));
    let mut handled = 1;
    while handled < 5 {
        handled = next(&mut old)["s"].as_u64().expect("a dispatch");
    }
    // Resumable; dispatches written after `handled` (in flight) and while no connection holds
    // the session (buffered) are replayed.
    close_with(&mut old, 4000);
    std::thread::sleep(Duration::from_millis(200));

    let mut new = open(&discord);
    send(
        &mut new,
        json!({"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": handled}}),
    );
    let mut replayed = Vec::new();
    let resumed = loop {
        let frame = next(&mut new);
        if frame["t"] == "RESUMED" {
            break frame;
        }
        assert_eq!(frame["t"], TICK, "{frame}");
        replayed.push(frame["s"].as_u64().expect("s"));
    };
    let resumed_at = resumed["s"].as_u64().expect("s");
    assert_eq!(
        replayed,
        (handled + 1..resumed_at).collect::<Vec<_>>(),
        "every dispatch after the seq given, in order, then RESUMED"
    );
    assert!(
        replayed.len() >= 5,
        "200 ms without a connection: {replayed:?}"
    );
    assert_eq!(next(&mut new)["s"], resumed_at + 1, "and on it goes");

    let records = discord.records();
    let (old_connection, last_sent) = records
        .iter()
        .find_map(|record| match &record.event {
            Event::Closed {
                code: Some(4000),
                by_server: false,
                last_sent,
                ..
            } => Some((
                record.connection,
                last_sent.expect("the old connection was sent dispatches"),
            )),
            _ => None,
        })
        .expect("the old connection's close");
    assert!(last_sent >= handled && last_sent < resumed_at);
    // What the old connection was written, in order, each once: READY, then every dispatch.
    let sent: Vec<u64> = discord
        .sent_on(old_connection)
        .iter()
        .map(|(sequence, _)| *sequence)
        .collect();
    assert_eq!(sent, (1..=last_sent).collect::<Vec<_>>());
    let resume = records
        .iter()
        .find(|record| matches!(record.event, Event::Resume { .. }))
        .expect("the RESUME");
    assert_eq!(
        resume.event,
        Event::Resume {
            accepted: true,
            sequence: Some(handled),
            last_sent: Some(last_sent),
            previous_connection: Some(old_connection),
            replayed: replayed.len(),
        }
    );

    // One gap for shard 0: from the old connection's close to RESUMED.
    let gaps = discord.gaps(started);
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].shard, Shard { id: 0, count: 4 });
    assert!(matches!(gaps[0].came_back, Some(Event::Resumed { .. })));
    assert!(gaps[0].length() >= Duration::from_millis(200));
    assert!(discord.overlaps().is_empty());
}

#[test]
fn a_resume_from_before_the_replay_buffer_gets_op_9() {
    let discord = busy_discord(Dispatches::every(Duration::from_millis(10)), 5);
    let mut old = open(&discord);
    let session_id = session_of(&identify(&mut old, TOKEN, [0, 4]));
    close_with(&mut old, 4000);
    // Far more than 5 dispatches queue up while nobody holds the session.
    std::thread::sleep(Duration::from_millis(300));
    let mut late = open(&discord);
    assert_eq!(
        resume(&mut late, &session_id, 1),
        json!({"op": 9, "d": false, "s": null, "t": null})
    );
    assert!(discord.records().iter().any(|record| matches!(
        record.event,
        Event::Resume {
            accepted: false,
            sequence: Some(1),
            ..
        }
    )));
    // A shard that went down and stayed down is one open gap.
    let gaps = discord.gaps(Instant::now());
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0].to, None);
}
