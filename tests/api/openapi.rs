//! The OpenAPI document at `/openapi.json` and the offline docs at `/docs`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{Backend, settings, spawn_app};

async fn document() -> Value {
    let app = spawn_app(settings(Backend::Redis)).await;
    let response = app.get_anonymous("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("JSON")
}

/// Follows a `$ref` like `#/components/schemas/Detail`.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            document.pointer(pointer).unwrap_or(&Value::Null)
        }
        None => value,
    }
}

#[tokio::test]
async fn every_served_route_is_in_the_openapi_document() {
    let document = document().await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().expect("paths");
    assert!(!shardman::http::routes::ROUTES.is_empty());
    for (method, path) in shardman::http::routes::ROUTES {
        let operation = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is served but not documented"))[*method];
        assert!(
            operation.is_object(),
            "{} {path} is served but not documented",
            method.to_uppercase()
        );
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            !responses.is_empty(),
            "{method} {path} documents no response"
        );
        assert!(
            operation["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
                || operation["summary"]
                    .as_str()
                    .is_some_and(|text| !text.is_empty()),
            "{method} {path} is not described"
        );
    }
    // And nothing is documented that the app does not serve.
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            assert!(
                shardman::http::routes::ROUTES.contains(&(method.as_str(), path.as_str())),
                "{method} {path} is documented but not served"
            );
        }
    }
}

#[tokio::test]
async fn json_responses_in_the_document_carry_examples() {
    let document = document().await;
    let mut checked = 0;
    let mut missing = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let Some(json) = response["content"].get("application/json") else {
                    continue;
                };
                let schema = resolve(&document, &json["schema"]);
                let has_example = json.get("example").is_some()
                    || json.get("examples").is_some()
                    || schema.get("example").is_some()
                    || schema.get("examples").is_some();
                if !has_example {
                    missing.push(format!("{method} {path} {status}"));
                }
                checked += 1;
            }
        }
    }
    assert!(
        missing.is_empty(),
        "JSON responses without an example: {missing:#?}"
    );
    assert!(checked >= 10, "only {checked} JSON responses documented");
}

#[tokio::test]
async fn the_document_lists_the_status_codes_and_bodies_of_the_bot_routes() {
    let document = document().await;
    let codes = |path: &str, method: &str| -> Vec<String> {
        document["paths"][path][method]["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for code in ["200", "401", "403", "422", "503"] {
        assert!(
            codes("/connect", "get").contains(&code.to_owned()),
            "/connect {code}"
        );
    }
    for code in ["204", "401", "403", "404", "413", "422", "503"] {
        assert!(
            codes("/beat", "post").contains(&code.to_owned()),
            "/beat {code}"
        );
    }
    let beat_body = &document["paths"]["/beat"]["post"]["requestBody"]["content"];
    assert!(beat_body.get("application/json").is_some());
    assert!(beat_body.get("application/x-www-form-urlencoded").is_some());
    let schema = resolve(&document, &beat_body["application/json"]["schema"]);
    for field in ["session_id", "guild_count", "latency", "extra"] {
        assert!(
            schema["properties"].get(field).is_some(),
            "beat body has {field}"
        );
    }
    // The secret is declared as a security scheme on the Authorization header.
    let scheme = &document["components"]["securitySchemes"]["secret"];
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");
}

#[tokio::test]
async fn docs_render_from_files_inside_the_binary() {
    let app = spawn_app(settings(Backend::Redis)).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app.get_anonymous("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "Swagger UI page");
    // Every script and stylesheet is served by shardman itself.
    for attribute in ["src=\"", "href=\""] {
        for reference in html.split(attribute).skip(1) {
            let url = reference.split('"').next().unwrap();
            assert!(!url.contains("://"), "external asset {url}");
            let asset = app
                .get_anonymous(&format!("/docs/{}", url.trim_start_matches("./")))
                .await;
            assert_eq!(asset.status(), StatusCode::OK, "{url}");
        }
    }
    let initializer = app
        .get_anonymous("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"));
}
