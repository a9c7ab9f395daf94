//! CORS: browsers from `CORS_ORIGINS` may call the API; others, and every origin when it is unset,
//! get no CORS headers.

use reqwest::{Method, Response, StatusCode};

use crate::helpers::{Backend, TestApp, settings, spawn_app};

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.anonymous(Method::OPTIONS, "/connect")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .expect("request")
}

fn allowed_origin(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_is_allowed() {
    let mut settings = settings(Backend::Memory);
    settings.cors_origins = vec![
        "https://dash.example.com".into(),
        "http://localhost:3000".into(),
    ];
    let app = spawn_app(settings).await;

    let response = preflight(&app, "https://dash.example.com").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&response), Some("https://dash.example.com"));
    let headers = response
        .headers()
        .get("access-control-allow-headers")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization"),
        "allow-headers: {headers}"
    );

    let actual = app
        .request(Method::GET, "/connect")
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .expect("request");
    assert_eq!(actual.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&actual), Some("http://localhost:3000"));
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_cors_headers() {
    let mut settings = settings(Backend::Memory);
    settings.cors_origins = vec!["https://dash.example.com".into()];
    let app = spawn_app(settings).await;

    let response = preflight(&app, "https://evil.example.net").await;
    assert_eq!(allowed_origin(&response), None);
    assert!(!response.status().is_success());
}

#[tokio::test]
async fn without_cors_origins_no_origin_is_allowed() {
    let app = spawn_app(settings(Backend::Memory)).await;
    let response = preflight(&app, "https://dash.example.com").await;
    assert_eq!(allowed_origin(&response), None);
}

#[tokio::test]
async fn a_wildcard_allows_any_origin() {
    let mut settings = settings(Backend::Memory);
    settings.cors_origins = vec!["*".into()];
    let app = spawn_app(settings).await;
    let response = preflight(&app, "https://anywhere.example.org").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&response), Some("*"));
}
