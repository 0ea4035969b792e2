use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_error, spawn_app, unique_email};

#[tokio::test]
async fn signin_returns_200_with_a_fresh_token_and_cookie() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;

    let resp = app.signin(&email.to_uppercase(), PASSWORD).await;

    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["user"]["email"], email);
    let token = body["token"].as_str().unwrap();
    assert!(cookie.starts_with(&format!("session={token};")));
    let me = app.me_with_bearer(token).await;
    assert_eq!(me["currentUser"]["email"], email);
    assert_eq!(me["currentUser"]["id"], body["user"]["id"]);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_401_body() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;

    let wrong_password = app.signin(&email, "not the password").await;
    let unknown_email = app.signin(&unique_email(), PASSWORD).await;

    let a = assert_error(wrong_password, StatusCode::UNAUTHORIZED).await;
    let b = assert_error(unknown_email, StatusCode::UNAUTHORIZED).await;
    assert_eq!(a, b);
    assert_eq!(a[0]["message"], "Invalid credentials");
}

#[tokio::test]
async fn a_malformed_email_at_signin_is_just_invalid_credentials() {
    let app = spawn_app().await;
    let errors = assert_error(
        app.signin("nobody", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(errors[0]["message"], "Invalid credentials");
}

#[tokio::test]
async fn signin_bodies_with_wrong_types_answer_400() {
    let app = spawn_app().await;
    for (body, case) in [
        (json!({"email": unique_email()}), "password missing"),
        (
            json!({"email": true, "password": PASSWORD}),
            "email boolean",
        ),
        (
            json!({"email": unique_email(), "password": ["a"]}),
            "password array",
        ),
    ] {
        let resp = app.post_json("/signin", &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "case: {case}");
        assert_error(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn repeated_failures_for_one_email_get_429_with_retry_after() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    let limit = app.settings.limits.per_email;

    for attempt in 0..limit {
        let resp = app.signin(&email, "wrong password!").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let resp = app.signin(&email, PASSWORD).await;

    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > 0 && retry <= app.settings.limits.window.as_secs(),
        "{retry}"
    );
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    // Another account is not locked out by this email's failures.
    let other = unique_email();
    app.signup(&other, PASSWORD).await;
    assert_eq!(app.signin(&other, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_cannot_exceed_the_limit() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    let guesses = (0..30).map(|_| app.signin(&email, "wrong password!"));
    let statuses: Vec<_> = futures::future::join_all(guesses)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        checked as u32, app.settings.limits.per_email,
        "{statuses:?}"
    );
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + limited, 30, "{statuses:?}");
}

#[tokio::test]
async fn repeated_failures_from_one_client_get_429_across_emails() {
    let app = spawn_app().await;
    let limit = app.settings.limits.per_client;
    for attempt in 0..limit {
        let resp = app.signin(&unique_email(), "wrong password!").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let resp = app.signin(&unique_email(), "wrong password!").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_successful_signin_clears_that_emails_failures() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    let limit = app.settings.limits.per_email;
    for _ in 0..limit - 1 {
        app.signin(&email, "wrong password!").await;
    }
    assert_eq!(app.signin(&email, PASSWORD).await.status(), StatusCode::OK);
    for attempt in 0..limit - 1 {
        let resp = app.signin(&email, "wrong password!").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
}
