use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn swagger_ui_and_spec_are_served_by_the_service() {
    let app = spawn_app().await;
    let ui = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(ui.status(), StatusCode::OK);
    let html = ui.text().await.unwrap();
    assert!(html.contains("SwaggerUIBundle"));
    assert!(
        !html.contains("cdn"),
        "assets are inlined, not fetched from a CDN"
    );

    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/api/auth/signup",
        "/api/auth/signin",
        "/api/auth/signout",
        "/api/auth/me",
        "/api/auth/.well-known/jwks.json",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "spec lacks {path}");
    }
    let schemes = spec["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearerAuth") && schemes.contains_key("sessionCookie"));
    let signup = &spec["paths"]["/api/auth/signup"]["post"]["responses"];
    for status in ["201", "400", "409", "503"] {
        assert!(signup.get(status).is_some(), "signup documents {status}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.signin("nobody@example.com", "wrong password").await;
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("ticketing_http_requests_total")
                && l.contains(r#"route="signin""#)
                && l.contains(r#"status="401""#)
        })
        .unwrap_or_else(|| panic!("no signin 401 counter in:\n{text}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(text.contains("ticketing_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    crate::helpers::assert_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app.client.get(app.url("/signup")).send().await.unwrap();
    let status = resp.status();
    assert!(status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND);
    crate::helpers::assert_error(resp, status).await;
}
