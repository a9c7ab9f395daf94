//! Brute-force protection: failed authentications are limited per client address, and a blocked
//! address still serves the requests that carry a session id signed for their bot.

use std::time::{Duration, Instant};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Claim, SECRET, TestApp, both_stores, expect_json, held_ids, settings, spawn_app,
};
use crate::support::process::Scratch;

both_stores!(
    a_session_holder_on_a_blocked_address_is_served_and_nothing_else_is,
    eight_processes_on_one_address_keep_their_shards_while_a_ninth_sends_wrong_secrets,
);

async fn spawn_limited(budget: u32, trusted_proxies: &str) -> TestApp {
    let mut settings = settings(Backend::Memory);
    settings.failed_auth_per_minute = budget;
    settings.trusted_proxies =
        shardman::http::rate_limit::parse_trusted_proxies(trusted_proxies).expect("valid proxies");
    spawn_app(settings).await
}

async fn connect_as(app: &TestApp, secret: &str, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request = app.request_as(Method::GET, "/connect", secret);
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn an_address_that_keeps_guessing_gets_429_with_retry_after() {
    let app = spawn_limited(3, "").await;
    for _ in 0..3 {
        assert_eq!(
            connect_as(&app, "guess", None).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    let blocked = connect_as(&app, "guess", None).await;
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = blocked
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = blocked.json().await.expect("json");
    assert!(body["detail"].is_string());

    // Blocked means blocked: even the right secret is not looked at, so a lucky guess shows nothing.
    assert_eq!(
        connect_as(&app, SECRET, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_right_secret_does_not_count_against_the_budget() {
    let app = spawn_limited(2, "").await;
    for _ in 0..10 {
        let response = app.get("/status").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        connect_as(&app, "guess", None).await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_cannot_dodge_the_limit() {
    let app = spawn_limited(3, "").await;
    for attempt in 0..3 {
        let spoofed = format!("203.0.113.{attempt}");
        let response = connect_as(&app, "guess", Some(&spoofed)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let response = connect_as(&app, "guess", Some("203.0.113.99")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = spawn_limited(3, "127.0.0.1/32").await;
    for _ in 0..3 {
        let response = connect_as(&app, "guess", Some("198.51.100.1")).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let attacker = connect_as(&app, "guess", Some("198.51.100.1")).await;
    assert_eq!(attacker.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another client behind the same proxy is not blocked, and the right-most untrusted hop counts:
    // a client cannot pose as someone else by prepending entries.
    let bot = connect_as(&app, SECRET, Some("198.51.100.1, 198.51.100.2")).await;
    assert_eq!(bot.status(), StatusCode::OK);
    let impostor = connect_as(&app, "guess", Some("198.51.100.2, 198.51.100.1")).await;
    assert_eq!(impostor.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Sends wrong secrets to `/connect` until the address is blocked; returns the 403s it took.
async fn block_this_address(app: &TestApp) -> u32 {
    let mut refused = 0;
    loop {
        match connect_as(app, "guess", None).await.status() {
            StatusCode::FORBIDDEN => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => return refused,
            other => panic!("a wrong secret answered {other}"),
        }
        assert!(refused < 1000, "never blocked");
    }
}

async fn beat_as(app: &TestApp, secret: &str, session_id: &str) -> Response {
    app.request_as(Method::POST, "/beat", secret)
        .form(&[("session_id", session_id)])
        .send()
        .await
        .expect("request")
}

/// `/status` as an anonymous caller sees it with `PUBLIC_STATUS=true`: a blocked address only
/// blocks requests that present a secret.
async fn public_status(app: &TestApp) -> Value {
    expect_json(app.get_anonymous("/status").await, StatusCode::OK).await
}

async fn a_session_holder_on_a_blocked_address_is_served_and_nothing_else_is(backend: Backend) {
    let mut limited = settings(backend);
    limited.failed_auth_per_minute = 3;
    limited.max_shards = 2;
    limited.public_status = true;
    let app = spawn_app(limited).await;
    let claim = app.claim().await;
    // Another deployment with the same secret: its session ids are not this one's.
    let elsewhere = spawn_app(settings(backend)).await;
    let foreign = elsewhere.claim().await;
    assert_eq!(block_this_address(&app).await, 3);

    // The holder goes on: a form beat, a JSON beat whose report is stored whole (the body read
    // for the session id reaches the handler intact), /identify, the permit routes and /disconnect.
    assert_eq!(
        app.beat(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    let report =
        json!({"session_id": claim.session_id, "guild_count": 42, "extra": {"region": "eu"}});
    assert_eq!(
        app.beat_json(&report).await.status(),
        StatusCode::NO_CONTENT
    );
    let status = public_status(&app).await;
    assert_eq!(status["shards"][0]["guild_count"], 42, "{status}");
    let slot = app
        .post_form("/identify", &[("session_id", &claim.session_id)])
        .await;
    assert_eq!(slot.status(), StatusCode::OK);
    for route in ["/identify/permit", "/identify/confirm"] {
        let answer = app
            .post_form(route, &[("session_id", &claim.session_id), ("wait", "0")])
            .await;
        assert_eq!(answer.status(), StatusCode::OK, "{route}");
    }

    // Everything else is refused before the secret is compared, the right secret included.
    assert_eq!(app.connect().await.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.get("/status").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        app.post_json("/reshard", &json!({"max_shards": 4}))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for unsigned in [
        "4f2a9c0e8b7d4a35a1f0c2d3e4b5a697",
        &claim.session_id.replacen("0.", "1.", 1),
        &foreign.session_id,
    ] {
        assert_eq!(
            app.beat(unsigned).await.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{unsigned} is not this deployment's"
        );
    }
    let padding = "x".repeat(70 * 1024);
    let oversized = app
        .post_form(
            "/beat",
            &[("session_id", claim.session_id.as_str()), ("pad", &padding)],
        )
        .await;
    assert_eq!(
        oversized.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a body over the limit is not read for its session id"
    );

    // A holder's wrong secret is compared like any other: a 403 (which counts as a failure).
    let wrong = beat_as(&app, "guess", &claim.session_id).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let no_session = beat_as(&app, "guess", "4f2a9c0e8b7d4a35a1f0c2d3e4b5a697").await;
    assert_eq!(no_session.status(), StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(
        app.disconnect(&claim.session_id).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(held_ids(&public_status(&app).await).is_empty());
}

/// The scenario: several processes on one host (one NAT, one address) beat every beat
/// interval while one of them, with a typo in its secret, retries as fast as it can for longer
/// than a lease. The healthy ones must not notice.
async fn eight_processes_on_one_address_keep_their_shards_while_a_ninth_sends_wrong_secrets(
    backend: Backend,
) {
    const PROCESSES: u64 = 8;
    let mut settings = settings(backend);
    settings.max_shards = PROCESSES as u32;
    settings.max_seconds = 3;
    settings.public_status = true;
    assert_eq!(settings.failed_auth_per_minute, 20, "the default budget");
    let lease = Duration::from_secs(settings.max_seconds);
    let app = spawn_app(settings).await;
    let mut claims: Vec<Claim> = Vec::new();
    for _ in 0..PROCESSES {
        claims.push(app.claim().await);
    }
    let beat_interval = lease / 3;
    let attack_ends = Instant::now() + lease + Duration::from_millis(1500);

    let holders = claims.iter().map(|claim| {
        let app = &app;
        async move {
            let mut answers = Vec::new();
            while Instant::now() < attack_ends {
                answers.push(app.beat(&claim.session_id).await.status());
                tokio::time::sleep(beat_interval).await;
            }
            answers
        }
    });
    let typo = async {
        let (mut forbidden, mut limited) = (0u32, 0u32);
        while Instant::now() < attack_ends {
            for response in [
                connect_as(&app, "tpyo", None).await,
                beat_as(&app, "tpyo", "4f2a9c0e8b7d4a35a1f0c2d3e4b5a697").await,
            ] {
                match response.status() {
                    StatusCode::FORBIDDEN => forbidden += 1,
                    StatusCode::TOO_MANY_REQUESTS => limited += 1,
                    other => panic!("a wrong secret answered {other}"),
                }
            }
        }
        (forbidden, limited)
    };
    let (answers, (forbidden, limited)) =
        tokio::join!(futures_util::future::join_all(holders), typo);

    let beats: Vec<StatusCode> = answers.into_iter().flatten().collect();
    eprintln!(
        "{} beats, {} answered 204; the typo got {forbidden} 403s and {limited} 429s",
        beats.len(),
        beats
            .iter()
            .filter(|status| **status == StatusCode::NO_CONTENT)
            .count()
    );
    assert!(
        beats.len() >= (PROCESSES * 4) as usize,
        "{} beats",
        beats.len()
    );
    assert!(
        beats.iter().all(|status| *status == StatusCode::NO_CONTENT),
        "every beat is answered 204: {beats:?}"
    );
    assert!(limited > 0, "the typo is blocked");
    assert!(
        forbidden <= 25,
        "the typo gets its budget of 20 (and what refills while it runs), then 429: {forbidden}"
    );
    let mut held = held_ids(&public_status(&app).await);
    held.sort_unstable();
    assert_eq!(
        held,
        (0..PROCESSES).collect::<Vec<_>>(),
        "no shard was lost"
    );
    for claim in &claims {
        assert_eq!(
            app.beat(&claim.session_id).await.status(),
            StatusCode::NO_CONTENT
        );
    }
}

/// With `BOTS_FILE` the secret selects the bot; from a blocked address a session lets a request
/// in only for the bot that signed it, and a guess at another bot's secret answers as any wrong
/// secret does.
#[tokio::test]
async fn with_several_bots_a_blocked_request_is_checked_against_the_bot_that_signed_its_session() {
    let dir = Scratch::new("limiter-bots");
    let file = dir.0.join("bots.toml");
    let (music, moderation) = ("music-secret", "moderation-secret");
    std::fs::write(
        &file,
        format!(
            "[[bot]]\nname = \"music\"\nsecret = \"{music}\"\nkey_prefix = \"{}\"\nmax_shards = 2\n\n\
             [[bot]]\nname = \"moderation\"\nsecret = \"{moderation}\"\nkey_prefix = \"{}\"\nmax_shards = 2\n",
            crate::helpers::fresh_prefix(),
            crate::helpers::fresh_prefix(),
        ),
    )
    .expect("bots file");
    let mut settings = settings(Backend::Memory);
    settings.secret = None;
    settings.bots_file = Some(file.display().to_string());
    settings.failed_auth_per_minute = 3;
    let app = spawn_app(settings).await;
    let session_of = |secret: &'static str| {
        let app = &app;
        async move {
            let grant = expect_json(app.get_as("/connect", secret).await, StatusCode::OK).await;
            grant["session_id"].as_str().expect("session_id").to_owned()
        }
    };
    let music_session = session_of(music).await;
    let moderation_session = session_of(moderation).await;
    block_this_address(&app).await;

    for (secret, session, expected) in [
        (music, &music_session, StatusCode::NO_CONTENT),
        (moderation, &moderation_session, StatusCode::NO_CONTENT),
        // The first bot's session: its secret is compared, and another bot's is as wrong as any.
        (moderation, &music_session, StatusCode::FORBIDDEN),
        ("guess", &music_session, StatusCode::FORBIDDEN),
        // Another bot's session: nothing is compared.
        (music, &moderation_session, StatusCode::TOO_MANY_REQUESTS),
        ("guess", &moderation_session, StatusCode::TOO_MANY_REQUESTS),
    ] {
        assert_eq!(
            beat_as(&app, secret, session).await.status(),
            expected,
            "{secret} with {session}"
        );
    }
}
