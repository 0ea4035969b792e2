use reqwest::StatusCode;
use serde_json::{Value, json};

use svc_auth::settings::SigninLimits;

use crate::helpers::{PASSWORD, assert_error, spawn_app, spawn_app_with, unique_email};

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

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn repeated_failures_for_one_email_get_429_with_a_short_retry_after_not_a_wall() {
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
    assert_eq!(retry_after(&resp), 1, "the first wait is a second");
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    // Another account is not locked out by this email's failures.
    let other = unique_email();
    app.signup(&other, PASSWORD).await;
    assert_eq!(app.signin(&other, PASSWORD).await.status(), StatusCode::OK);
    // The owner, a second later, is let in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.signin(&email, PASSWORD).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_failure_past_the_budget_doubles_the_wait() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    for _ in 0..app.settings.limits.per_email {
        app.signin(&email, "wrong password!").await;
    }
    let resp = app.signin(&email, "wrong password!").await;
    assert_eq!(
        (resp.status(), retry_after(&resp)),
        (StatusCode::TOO_MANY_REQUESTS, 1)
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = app.signin(&email, "wrong password!").await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "admitted after the wait"
    );
    let resp = app.signin(&email, PASSWORD).await;
    assert_eq!(
        (resp.status(), retry_after(&resp)),
        (StatusCode::TOO_MANY_REQUESTS, 2),
        "the next wait is twice as long"
    );
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
async fn a_guessing_client_does_not_lock_out_others_behind_its_address() {
    // Long waits, so a slow machine's hashing cannot outlast them.
    let limits = SigninLimits {
        per_client: 4,
        first_wait: std::time::Duration::from_secs(30),
        ..SigninLimits::default()
    };
    let app = spawn_app_with(None, limits, "").await;
    let (victim, bystander) = (unique_email(), unique_email());
    app.signup(&victim, PASSWORD).await;
    app.signup(&bystander, PASSWORD).await;
    // One client behind the shared address sprays wrong passwords.
    for attempt in 0..4 {
        let resp = app.signin(&unique_email(), "wrong password!").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let resp = app.signin(&victim, "wrong password!").await;
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "a clean account is still checked"
    );
    // The address now waits for every account with failures...
    let resp = app.signin(&victim, PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&resp) >= 1);
    // ...but someone else's correct password from the same address is accepted.
    assert_eq!(
        app.signin(&bystander, PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn behind_trusted_proxies_each_forwarded_client_has_its_own_budget() {
    let limits = SigninLimits {
        per_client: 3,
        first_wait: std::time::Duration::from_secs(30),
        ..SigninLimits::default()
    };
    let app = spawn_app_with(None, limits, "127.0.0.1/32").await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    for _ in 0..3 {
        let resp = app
            .post_from("203.0.113.5", "/signin", &unique_email(), "wrong password!")
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = app
        .post_from("203.0.113.5", "/signin", &email, "wrong password!")
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .post_from("203.0.113.5", "/signin", &email, PASSWORD)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "203.0.113.5 waits"
    );
    let resp = app
        .post_from("198.51.100.7", "/signin", &email, PASSWORD)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "another client behind the proxy does not"
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forwarded_address_is_ignored() {
    let limits = SigninLimits {
        per_client: 3,
        first_wait: std::time::Duration::from_secs(30),
        ..SigninLimits::default()
    };
    let app = spawn_app_with(None, limits, "").await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;
    app.signin(&email, "wrong password!").await;
    for i in 0..3 {
        // A guesser cannot dodge its budget by naming a new address each time.
        let forged = format!("192.0.2.{i}");
        app.post_from(&forged, "/signin", &unique_email(), "wrong password!")
            .await;
    }
    let resp = app
        .post_from("192.0.2.99", "/signin", &email, PASSWORD)
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
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
