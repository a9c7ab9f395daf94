//! Brute-force protection: failed authentications are limited per client address.

use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, SECRET, TestApp, settings, spawn_app};

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
